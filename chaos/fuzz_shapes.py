"""The request shapes of issue #14 for `chaos.fuzz_inputs`: requests that cost the server more
than they cost the sender, replays, and the demo page's cross-origin posts. Each shape is a
hypothesis strategy that draws one `Request` with the only answers it may get:

- **large**: a declared length over the 512 KiB limit (up to 2**53 bytes), signed or not, sent
  as headers only: 413, from the length alone;
- **exponent**: a correctly signed Edit-modal `view_submission` on a seeded pending action, by
  a real approver with the card's params hash or by a stranger, whose number field holds
  `1e700000`, `9`*5000, `-1E-999999` and the like: answered within Slack's 3 s;
- **deep**: JSON nested 10,000 to 100,000 deep as a signed `payload=` form, an event body, a
  modal's `private_metadata`, and at `/api/tasks` with its bearer token: a 4xx;
- **surrogate**: `\\ud800`-style escapes and `\\u0000` in JSON string fields of Slack payloads a
  requester or approver might really send (a mention, a rejection's reason, a click's value)
  and of `/api/tasks` bodies (422 there);
- **replay**: the exact bytes and headers of a legitimate slash command sent while seeding,
  and of a signed request sent a moment before: 401 `replayed request`;
- **cross-origin**: posts to the demo page (`SandboxPage`) with a foreign `Origin`, a wrong
  `Host` (DNS rebinding), a `text/plain` body, or a missing or wrong page token: 403 or 415
  (in `chaos.fuzz_page`, with the page itself).

None of them may change anything (the scenario's snapshot checks that), nor get a 5xx.
"""

from __future__ import annotations

import json
import random
import urllib.parse
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from bot import action_ids
from bot.blocks.card import decide_block_id
from bot.sandbox.signed import FORM, JSON, event_callback_body, slash_command_body
from bot.server import MAX_BODY as API_MAX_BODY
from bot.slack_ingress import MAX_SLACK_BODY
from chaos.common import API_TOKEN, TEAM
from chaos.fuzz_page import cross_origin
from chaos.fuzz_requests import sign_headers
from chaos.fuzz_world import Aim, Request

SLACK_DEADLINE_S = 3.0  # Slack shows the person an error when an answer takes longer
HUGE_NUMBERS = (
    "1e700000",
    "1e1000000",
    "1E999999999",
    "-1E-999999",
    "9" * 5000,
    "-" + "9" * 100_000,
    "1" + "0" * 4301,
    "0." + "0" * 5000 + "1",
    "1e+700000",
    "12345678901234567890123456789012345678901",  # 41 digits: one over the limit
)
LONE = ("\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800", "\x00", "a\x00b", "\ud83d")
PRINTABLE = st.characters(exclude_categories=("Cc", "Cs"))  # text a person types (NUL is the surrogate shape's)
NESTINGS = (("[", "]"), ('{"a":', "}"), ('[{"a":', "}]"))


def sign(body: bytes, content_type: str, rnd: random.Random) -> dict[str, str]:
    """Slack's headers for `body`, correctly signed."""
    return {"Content-Type": content_type, **sign_headers(rnd, body, flaw=None)}


def _form(payload: Any) -> bytes:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def _trigger(rnd: random.Random) -> str:
    return f"{rnd.getrandbits(32)}.{rnd.getrandbits(40)}.fuzz"


def _view(
    rnd: random.Random, user: str, team: str, metadata: str, values: dict[str, Any], callback_id: str
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "sandbox"},
        "user": {"id": user, "team_id": team},
        "api_app_id": "A0SANDBOX",
        "trigger_id": _trigger(rnd),  # Slack's are unique: two equal bodies would be a replay
        "view": {
            "id": "V0FUZZ",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": metadata,
            "state": {"values": values},
        },
    }


# -- large bodies -----------------------------------------------------------------------------------


@st.composite
def large(draw: st.DrawFn, aim: Aim) -> Request:
    rnd = draw(st.randoms(use_true_random=True))
    declared = draw(st.integers(MAX_SLACK_BODY + 1, 2**53) | st.integers(MAX_SLACK_BODY + 1, 4 * MAX_SLACK_BODY))
    content_type = draw(st.sampled_from([FORM, JSON, "text/plain", "application/octet-stream"]))
    # The signature is over a body never sent (the server may not read one byte of it).
    headers = sign(b"x" * 64, content_type, rnd) if rnd.random() < 0.5 else {"Content-Type": content_type}
    variant = "signed" if "X-Slack-Signature" in headers else "unsigned"
    if rnd.random() < 0.2:
        path, variant, headers = "/api/tasks", "api", {**headers, "Authorization": f"Bearer {API_TOKEN}"}
    else:
        path = "/slack/events"
    return Request("large", variant, b"", headers, "413", path=path, answers=frozenset({413}), declared=declared)


# -- huge exponents ---------------------------------------------------------------------------------


def _number(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(HUGE_NUMBERS))
    mantissa = draw(st.from_regex(r"\A-?[1-9][0-9]{0,5}(\.[0-9]{1,5})?\Z"))
    exponent = draw(st.integers(31, 10_000_000))
    return f"{mantissa}{draw(st.sampled_from(['e', 'E']))}{draw(st.sampled_from(['', '+', '-']))}{exponent}"


# The field of each chaos tool that a number in it must fail to become (a bool is read as JSON).
NUMBER_FIELDS = {"chaos_refund": "amount_cents", "chaos_flag": "enabled"}


@st.composite
def exponent(draw: st.DrawFn, aim: Aim) -> Request:
    rnd = draw(st.randoms(use_true_random=True))
    target = draw(st.sampled_from(aim.actions))
    deciders = [user for user in aim.approvers if user != target.requester]
    real = draw(st.booleans())
    user = draw(st.sampled_from(deciders if real else list(aim.strangers)))
    params_hash = target.params_hash if real or draw(st.booleans()) else "0" * 64
    metadata = json.dumps({"action_id": target.public_id, "params_hash": params_hash, "tool": target.tool})
    number = _number(draw)
    field = NUMBER_FIELDS[target.tool]
    kind = draw(st.sampled_from(["number_input", "plain_text_input"]))
    values: dict[str, Any] = {field: {field: {"type": kind, "value": number}}}
    if draw(st.booleans()):  # the other fields filled in as the modal shows them
        values["order_id" if target.tool == "chaos_refund" else "flag"] = {
            "x": {"type": "plain_text_input", "value": draw(st.text(PRINTABLE, max_size=20))}
        }
    payload = _view(rnd, user, target.team or TEAM, metadata, values, action_ids.EDIT_MODAL)
    body = _form(payload)
    variant = ("approver" if real else "stranger") + f" {number[:12]}"
    return Request(
        "exponent",
        variant,
        body,
        sign(body, FORM, rnd),
        "answer in 3 s",
        answers=frozenset({200}),
        deadline_s=SLACK_DEADLINE_S,
    )


# -- deep JSON --------------------------------------------------------------------------------------


def _deep(draw: st.DrawFn, budget: int, per_byte: int = 1) -> str:
    """JSON nested 10,000 to 100,000 deep (fewer if `budget` bytes cannot hold it), balanced or not."""
    opening, closing = draw(st.sampled_from(NESTINGS))
    balanced = draw(st.booleans())
    unit = (len(opening) + (len(closing) if balanced else 0)) * per_byte
    depth = min(draw(st.integers(10_000, 100_000)), (budget - 1) // unit)
    return opening * depth + ("0" + closing * depth if balanced else "")


@st.composite
def deep(draw: st.DrawFn, aim: Aim) -> Request:
    rnd = draw(st.randoms(use_true_random=True))
    where = draw(st.sampled_from(["payload", "event", "metadata", "api"]))
    room = MAX_SLACK_BODY - 400
    nonce = rnd.getrandbits(48)  # two equal bodies in one second would be a replay, refused as one
    if where == "payload":  # the form value unescaped: Slack escapes it, parse_qs takes both
        body = f"trigger_id={nonce}&payload={_deep(draw, room)}".encode()
        headers = sign(body, FORM, rnd)
    elif where == "event":
        envelope = f'{{"type":"event_callback","event_id":"Ev{nonce}","team_id":"{TEAM}","event":'
        body = f"{envelope}{_deep(draw, room)}}}".encode()
        headers = sign(body, JSON, rnd)
    elif where == "metadata":  # a string field Slack hands back, parsed by the listener
        target = draw(st.sampled_from(aim.actions))
        callback = draw(st.sampled_from([action_ids.EDIT_MODAL, action_ids.REJECT_MODAL]))
        values = {"reason": {"reason": {"type": "plain_text_input", "value": "no"}}}
        user = draw(st.sampled_from(aim.approvers))
        payload = _view(rnd, user, target.team or TEAM, _deep(draw, room // 3, 2), values, callback)
        body = _form(payload)
        assume(len(body) <= MAX_SLACK_BODY)
        headers = sign(body, FORM, rnd)
    else:
        body = _deep(draw, API_MAX_BODY).encode()
        headers = {"Content-Type": JSON, "Authorization": f"Bearer {API_TOKEN}"}
    if where == "metadata":  # the listener reads it: the person sees the form's error, not a crash
        return Request("deep", where, body, headers, "form error", answers=frozenset({200}), marker=b"errors")
    path, answers = ("/api/tasks", frozenset({422})) if where == "api" else ("/slack/events", frozenset({400}))
    return Request("deep", where, body, headers, "4xx", path=path, answers=answers)


# -- lone surrogates and NUL ------------------------------------------------------------------------


def _spoiled(draw: st.DrawFn, text: str) -> str:
    """`text` with a lone surrogate or a NUL put somewhere in it."""
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(LONE)) + text[at:]


@st.composite
def surrogate(draw: st.DrawFn, aim: Aim) -> Request:
    rnd = draw(st.randoms(use_true_random=True))
    where = draw(st.sampled_from(["mention", "reason", "click", "command", "api"]))
    target = draw(st.sampled_from(aim.actions))
    approver = draw(st.sampled_from([user for user in aim.approvers if user != target.requester]))
    requester = target.requester or approver
    # json.dumps writes a lone surrogate as its `\ud800` escape and NUL as `\u0000`, as a sender would.
    if where == "mention":
        event = {
            "type": "app_mention",
            "user": requester,
            "text": _spoiled(draw, "<@U0BOT> refund Refund order 31"),
            "channel": aim.channel,
            "ts": "1700000001.000300",
        }
        body = event_callback_body(event, team_id=TEAM, event_id=f"Ev{rnd.getrandbits(40):010X}")
        headers = sign(body, JSON, rnd)
    elif where == "reason":
        metadata = json.dumps({"action_id": target.public_id, "params_hash": target.params_hash})
        values = {"reason": {"reason": {"type": "plain_text_input", "value": _spoiled(draw, "Wrong order")}}}
        body = _form(_view(rnd, approver, target.team or TEAM, metadata, values, action_ids.REJECT_MODAL))
        headers = sign(body, FORM, rnd)
    elif where == "click":
        kind = draw(st.sampled_from([action_ids.APPROVE, action_ids.ACKNOWLEDGE]))
        value = _spoiled(draw, target.public_id)
        action = {"type": "button", "action_id": kind, "block_id": decide_block_id(target.params_hash), "value": value}
        user = {"id": approver, "team_id": TEAM}
        payload = {"type": "block_actions", "user": user, "actions": [action], "trigger_id": _trigger(rnd)}
        body = _form(payload)
        headers = sign(body, FORM, rnd)
    elif where == "command":  # a form carries NUL as %00 (a surrogate cannot be UTF-8)
        spoiled = _spoiled(draw, "run refund Refund order 32")
        text = "".join(ch if not 0xD800 <= ord(ch) <= 0xDFFF else "\x00" for ch in spoiled)
        body = slash_command_body(
            team_id=TEAM,
            user_id=requester,
            channel_id=aim.channel,
            text=text,
            response_url="http://127.0.0.1:9/response/x",
            trigger_id=_trigger(rnd),
        )
        headers = sign(body, FORM, rnd)
    else:
        task = {"task_type": "refund", "text": "Refund order 33", "requester": requester}
        task[draw(st.sampled_from(sorted(task)))] = _spoiled(draw, str(task["text"]))
        body = json.dumps(task).encode()
        headers = {"Content-Type": JSON, "Authorization": f"Bearer {API_TOKEN}"}
    path, answers = ("/api/tasks", frozenset({422})) if where == "api" else ("/slack/events", None)
    return Request("surrogate", where, body, headers, "422" if answers else "no_change", path=path, answers=answers)


# -- replays ----------------------------------------------------------------------------------------


@st.composite
def replay(draw: st.DrawFn, aim: Aim) -> Request:
    rnd = draw(st.randoms(use_true_random=True))
    if draw(st.booleans()):
        kept = aim.kept
        return Request(
            "replay",
            "legit command",
            kept.body,
            dict(kept.headers),
            "401",
            answers=frozenset({401}),
            marker=b"replayed",
        )
    # Any signed request (fuzz_inputs' own generator, flawed so that it changes nothing), sent
    # and then sent again: the first answer may be anything, the second must refuse it.
    shape, body, content_type = aim.flawed(draw, rnd)
    assume(len(body) <= MAX_SLACK_BODY)
    headers = sign(body, content_type, rnd)
    return Request("replay", shape, body, headers, "401", answers=frozenset({401}), marker=b"replayed", again=True)


SHAPES = {
    "large": large,
    "exponent": exponent,
    "deep": deep,
    "surrogate": surrogate,
    "replay": replay,
    "cross-origin": cross_origin,
}
