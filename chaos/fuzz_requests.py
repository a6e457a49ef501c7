"""The fuzz scenario's requests (`requests`): forged or missing signatures on any body (auth),
correctly signed Slack payloads with flaws (malformed), and signed random bytes, text, forms
and JSON (garbage). A request the product would accept as legitimate is given flaws until
`chaos.fuzz_oracle` says it changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from bot import action_ids
from bot.blocks.card import decide_block_id
from bot.sandbox.signed import FORM, JSON, event_callback_body, slash_command_body
from chaos.common import SECRET, TEAM
from chaos.fuzz_oracle import click_effect, command_effect, event_effect, view_effect
from chaos.fuzz_payloads import (
    click_payload,
    command_form,
    event_envelope,
    huge_text,
    json_values,
    mutate,
    view_payload,
)
from chaos.fuzz_world import (
    APPROVALS,
    APPROVERS,
    MALLORY,
    OTHER_TEAM,
    OTHER_USER,
    REQUESTER,
    SEEDED_EVENT,
    Request,
    Seeded,
)

CONTENT_TYPES = (
    "application/json",
    FORM,
    FORM + "; charset=utf-8",
    "text/plain",
    "multipart/form-data; boundary=fuzz",
    "application/octet-stream",
    "",
)


def _flaw_click(rnd: random.Random, payload: dict[str, Any]) -> None:
    first = payload["actions"][0]
    choice = rnd.choice(["user", "self", "block", "value"])
    if choice == "block" and first.get("action_id") == action_ids.APPROVE:
        first["block_id"] = decide_block_id("0" * 64)
    elif choice == "value":
        first["value"] = "act_" + "Z" * 26
    else:
        user = REQUESTER if choice == "self" else rnd.choice([MALLORY, OTHER_USER])
        payload["user"] = {"id": user, "team_id": rnd.choice([TEAM, OTHER_TEAM])}


def _flaw_view(rnd: random.Random, payload: dict[str, Any]) -> None:
    choice = rnd.choice(["user", "metadata", "reason"])
    if choice == "user":
        payload["user"] = {"id": rnd.choice([MALLORY, OTHER_USER, REQUESTER])}
    elif choice == "metadata":
        payload["view"]["private_metadata"] = json.dumps({"action_id": "act_" + "Z" * 26, "params_hash": ""})
    else:
        payload["view"]["state"] = {"values": {"reason": {"reason": {"value": "   "}}}}
        payload["view"]["callback_id"] = action_ids.REJECT_MODAL


def _flaw_command(rnd: random.Random, form: dict[str, str]) -> None:
    form["text"] = rnd.choice(["run nosuchtype Refund order 1", "run refund", "status", "help", "autonomy refund"])


def _flaw_event(rnd: random.Random, body: dict[str, Any]) -> None:
    choice = rnd.choice(["replay", "empty", "no_channel"])
    if choice == "replay":
        body["event_id"] = SEEDED_EVENT
    elif choice == "empty":
        body["event"]["text"] = "<@U0BOT>  "
    else:
        body["event"].pop("channel", None)


def _flawed(
    verdict: Callable[[], str], flaw: Callable[[], None], last_resort: Callable[[], None], legit_allowed: bool
) -> str:
    """The request's verdict, after giving a legitimate one flaws until it is not (unless allowed)."""
    for _ in range(4):
        found = verdict()
        if found != "legit" or legit_allowed:
            return found
        flaw()
    last_resort()
    found = verdict()
    if found == "legit":
        raise AssertionError("a request meant to be flawed is still legitimate")
    return found


def content(draw: st.DrawFn, rnd: random.Random, seeded: Seeded, *, legit_allowed: bool) -> tuple[str, bytes, str, str]:
    """(shape, body, natural content type, expectation) of a Slack-shaped request."""
    shape = rnd.choice(["click", "click", "click", "view", "command", "event"])
    if shape in ("click", "view"):
        build, effect, flaw = (
            (click_payload, click_effect, _flaw_click) if shape == "click" else (view_payload, view_effect, _flaw_view)
        )
        payload = mutate(draw, rnd, build(draw, rnd, seeded))

        def stranger() -> None:
            payload["user"] = {"id": MALLORY}
            if shape == "click":
                payload["actions"][0]["value"] = "act_" + "Z" * 26

        verdict = _flawed(lambda: effect(payload, seeded), lambda: flaw(rnd, payload), stranger, legit_allowed)
        expect = "malformed" if verdict == "malformed" else "no_change"
        if rnd.random() < 0.9:
            return shape, urllib.parse.urlencode({"payload": json.dumps(payload)}).encode(), FORM, expect
        return shape, json.dumps(payload).encode(), JSON, expect
    if shape == "command":
        form = command_form(draw, rnd, seeded)
        verdict = _flawed(
            lambda: command_effect(form),
            lambda: _flaw_command(rnd, form),
            lambda: form.update(text="help"),
            legit_allowed,
        )
        return (
            shape,
            urllib.parse.urlencode(form).encode(),
            FORM,
            "malformed" if verdict == "malformed" else "no_change",
        )
    body = mutate(draw, rnd, event_envelope(draw, rnd, seeded))
    verdict = _flawed(
        lambda: event_effect(body, seeded),
        lambda: _flaw_event(rnd, body),
        lambda: body.update(event_id=SEEDED_EVENT),
        legit_allowed,
    )
    return shape, json.dumps(body).encode(), JSON, "malformed" if verdict == "malformed" else "no_change"


def legit_content(draw: st.DrawFn, rnd: random.Random, seeded: Seeded) -> tuple[str, bytes, str]:
    """A request a listed approver or requester may really send: only its signature may fail."""
    action_id = rnd.choice(sorted(seeded.pending))
    params_hash, requester = seeded.pending[action_id]
    approver = rnd.choice([user for user in APPROVERS if user != requester])
    kind = rnd.choice(["approve", "acknowledge", "command", "mention"])
    if kind == "command":
        body = slash_command_body(
            team_id=TEAM,
            user_id=REQUESTER,
            channel_id=APPROVALS,
            text="run refund Refund order 9",
            response_url="http://127.0.0.1:9/response/x",
            trigger_id="t",
        )
        return "command", body, FORM
    if kind == "mention":
        event = {
            "type": "app_mention",
            "user": REQUESTER,
            "text": "<@U0BOT> refund Refund order 8",
            "channel": APPROVALS,
        }
        return "event", event_callback_body(event, team_id=TEAM, event_id=f"Ev{rnd.getrandbits(40):010X}"), JSON
    action = {"type": "button", "action_id": kind, "block_id": decide_block_id(params_hash), "value": action_id}
    payload = {"type": "block_actions", "user": {"id": approver, "team_id": TEAM}, "actions": [action]}
    return "click", urllib.parse.urlencode({"payload": json.dumps(payload)}).encode(), FORM


def garbage(draw: st.DrawFn, rnd: random.Random) -> tuple[str, bytes, str]:
    shape = rnd.choice(["bytes", "text", "form", "json", "payload"])
    if shape == "bytes":
        body = draw(st.binary(max_size=400))
    elif shape == "text":
        body = draw(st.text(max_size=400)).encode("utf-8", "surrogatepass")
    elif shape == "form":
        pairs = draw(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=6))
        body = urllib.parse.urlencode(pairs).encode()
    elif shape == "json":
        body = json.dumps(draw(json_values)).encode()
    else:
        body = b"payload=" + urllib.parse.quote(json.dumps(draw(json_values))).encode()
    if rnd.random() < 0.03:
        body += huge_text(rnd).encode()
    return shape, body, rnd.choice([FORM, JSON])


def _signature(secret: str, stamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def sign_headers(rnd: random.Random, body: bytes, *, flaw: str | None) -> dict[str, str]:
    now = int(time.time())
    stamp = str(now)
    if flaw in ("stale", "future"):
        drift = int(10 ** rnd.uniform(2.48, 8))  # 301 s to three years
        stamp = str(now - drift if flaw == "stale" else now + drift)
    elif flaw == "bad_timestamp":
        stamp = rnd.choice(["", "abc", f"{now}.5", str(now) + "0" * 30, "-1", "1e10", "0x" + format(now, "x")])
    signature = _signature(SECRET, stamp, body)
    if flaw == "forged":
        signature = "v0=" + "".join(rnd.choice("0123456789abcdef") for _ in range(64))
    elif flaw == "wrong_secret":
        signature = _signature(SECRET + "x", stamp, body)
    elif flaw == "other_body":
        signature = _signature(SECRET, stamp, body + b"&x=1")
    elif flaw == "other_stamp":
        signature = _signature(SECRET, str(now - 1), body)
    elif flaw == "v1":
        signature = "v1=" + signature[3:]
    elif flaw == "truncated":
        signature = signature[: rnd.randrange(len(signature))]
    elif flaw == "upper":
        signature = "v0=" + signature[3:].upper()
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
    if flaw == "no_signature":
        headers.pop("X-Slack-Signature")
    elif flaw == "no_timestamp":
        headers.pop("X-Slack-Request-Timestamp")
    elif flaw == "no_headers":
        headers.clear()
    return headers


AUTH_FLAWS = (
    "forged",
    "wrong_secret",
    "other_body",
    "other_stamp",
    "stale",
    "future",
    "bad_timestamp",
    "v1",
    "truncated",
    "upper",
    "no_signature",
    "no_timestamp",
    "no_headers",
)


@st.composite
def requests(draw: st.DrawFn, seeded: Seeded) -> Request:
    rnd = draw(st.randoms(use_true_random=True))
    roll = rnd.random()
    if roll < 0.3:
        if rnd.random() < 0.4:
            shape, body, content_type = legit_content(draw, rnd, seeded)
        else:
            shape, body, content_type, _ = content(draw, rnd, seeded, legit_allowed=True)
        headers = sign_headers(rnd, body, flaw=rnd.choice(AUTH_FLAWS))
        return Request("auth", shape, body, {"Content-Type": content_type, **headers}, "refused")
    if roll < 0.85:
        family = "malformed"
        shape, body, content_type, expect = content(draw, rnd, seeded, legit_allowed=False)
        if rnd.random() < 0.1:  # cut short, then signed as sent
            body = body[: rnd.randrange(len(body) + 1)]
        if rnd.random() < 0.1:
            content_type = rnd.choice(CONTENT_TYPES)
    else:
        family = "garbage"
        shape, body, content_type = garbage(draw, rnd)
        expect = "no_change"
    headers = {"Content-Type": content_type} if content_type else {}
    return Request(family, shape, body, {**headers, **sign_headers(rnd, body, flaw=None)}, expect)
