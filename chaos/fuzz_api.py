"""The actions API's requests for `chaos.fuzz_inputs`: every one refused or a read, so none may
change anything (the scenario's snapshot checks it), nor get a 5xx. Each draws one of:

- **token**: any route with a missing, malformed, lower-case-scheme, unknown or near-miss
  bearer token: 401;
- **other-client**: the second client's token on the env token's action (read, claim,
  report): 404; asking for a task type it was not given: 403 (or 422 for a tool that is no
  external tool);
- **body**: `POST /api/actions` with the env token (a client of every task type) and a body
  given at least one flaw: unknown fields, wrong types, unknown task type or tool, params
  against the tool's JSON Schema, confidence out of 0..1 or `NaN`, a requester that is no
  Slack id, an over-long `external_id`, a callback URL (none is allowlisted: internal
  addresses, other schemes), NUL or lone surrogates in text, not an object, not JSON, JSON
  nested thousands deep, over 64 KiB: 422 (413 over the limit);
- **wait**: `GET ?wait=` with values out of 0..60 or no number (`nan`, `inf`, `1e309`, 400
  digits, ...): 422; short valid waits on the pending action: 200;
- **verbs**: claims and results of the pending action (409), results with flawed bodies (422),
  wrong methods (405), ids that are not ids or not there (404).
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import strategies as st

from bot.api_actions import MAX_BODY
from chaos.common import API_TOKEN
from chaos.fuzz_world import INTRUDER_TOKEN, Request, Seeded

VALID = {"task_type": "ops", "tool": "chaos_restart", "params": {"service": "db", "replicas": 2}}
LONE = ("\ud800", "\udfff", "\x00", "a\x00b")
BAD_WAITS = ("61", "60.001", "-1", "-0.5", "nan", "NaN", "inf", "-inf", "1e309", "x", "", "9" * 400, "0x10", "1e2")
BAD_IDS = (
    "act_UPPER",
    "act_" + "a" * 41,
    "..",
    "%2e%2e",
    "act_doesnotexist00",
    "act_",
    "tsk_abc",
    "act_abc%00",
    "act_abc/../../healthz",
)


def _flaw(draw: st.DrawFn, rnd: random.Random, body: dict[str, Any]) -> None:
    """One change that makes `body` a request the server must refuse (422)."""
    kind = draw(
        st.sampled_from(
            [
                "unknown_field",
                "task_type",
                "tool",
                "params",
                "confidence",
                "requester",
                "external_id",
                "callback_url",
                "text",
            ]
        )
    )
    if kind == "unknown_field":
        body[draw(st.sampled_from(["bogus", "state", "action_id", "decided_by", "", "params_hash"]))] = rnd.random()
    elif kind == "task_type":
        body["task_type"] = draw(st.sampled_from([None, 5, "", "nope", "refund", ["ops"], {"a": 1}, "ops\x00"]))
    elif kind == "tool":
        body["tool"] = draw(st.sampled_from([None, 7, "", "chaos_refund", "restart", "chaos_restart\ud800"]))
    elif kind == "params":
        body["params"] = draw(
            st.sampled_from(
                [
                    None,
                    [],
                    "x",
                    {},
                    {"service": 5},
                    {"service": "db", "replicas": 0},
                    {"service": "db", "replicas": "2"},
                    {"service": "db", "extra": 1},
                    {"service": "x" * 65},
                    {"replicas": 1},
                ]
            )
        )
    elif kind == "confidence":
        body["confidence"] = draw(st.sampled_from([2, -0.1, "0.9", True, float("nan"), float("inf"), [0.5]]))
    elif kind == "requester":
        body["requester"] = draw(st.sampled_from(["x", "U", "u0alice", 5, "U0ALICE\x00", "C0APPROVALS"]))
    elif kind == "external_id":
        body["external_id"] = draw(st.sampled_from(["", "x" * 129, 5, ["a"], "a\ud800"]))
    elif kind == "callback_url":
        body["callback_url"] = draw(
            st.sampled_from(
                [
                    "http://169.254.169.254/latest/meta-data",
                    "http://127.0.0.1:5432/",
                    "http://[::1]/hook",
                    "http://10.0.0.1/hook",
                    "file:///etc/passwd",
                    "gopher://127.0.0.1/",
                    "not a url",
                    "http://",
                    "https://example.com/hook",
                    5,
                ]
            )
        )
    else:
        body["rationale"] = "why" + draw(st.sampled_from(LONE))


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token
    return headers


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def _route(draw: st.DrawFn, action_id: str) -> tuple[str, str]:
    return draw(
        st.sampled_from(
            [
                ("POST", "/api/actions"),
                ("GET", f"/api/actions/{action_id}"),
                ("GET", f"/api/actions/{action_id}?wait=1"),
                ("POST", f"/api/actions/{action_id}/claim"),
                ("POST", f"/api/actions/{action_id}/result"),
            ]
        )
    )


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()  # NaN and infinities as JSON's extensions, as some clients send


@st.composite
def api_requests(draw: st.DrawFn, seeded: Seeded) -> Request:
    rnd = draw(st.randoms(use_true_random=True))
    action_id = seeded.api_action
    family = draw(st.sampled_from(["token", "other-client", "body", "wait", "verbs"]))
    owner = _bearer(API_TOKEN)

    def request(shape: str, method: str, path: str, body: bytes, token: str | None, answers: set[int]) -> Request:
        return Request(
            family="api",
            shape=f"{family}/{shape}",
            body=body,
            headers=_headers(token),
            expect=",".join(str(a) for a in sorted(answers)),
            path=path,
            method=method,
            answers=frozenset(answers),
        )

    if family == "token":
        method, path = _route(draw, action_id)
        token = draw(
            st.sampled_from(
                [
                    None,
                    "",
                    "Bearer",
                    "Bearer ",
                    f"bearer {API_TOKEN}",
                    f"Basic {API_TOKEN}",
                    f"Bearer {API_TOKEN}x",
                    f"Bearer {API_TOKEN[:-1]}",
                    f"Bearer  {API_TOKEN}",
                    f"Bearer {INTRUDER_TOKEN.upper()}",
                    "Bearer cs_" + "A" * 43,
                    "Bearer " + "x" * 5000,
                ]
            )
        )
        return request("token", method, path, _json(VALID), token, {401})
    if family == "other-client":
        intruder = _bearer(INTRUDER_TOKEN)
        which = draw(st.sampled_from(["get", "wait", "claim", "result", "ask"]))
        if which == "ask":
            task_type = draw(st.sampled_from(["ops2", "refund", "flag"]))
            answers = {403} if task_type == "ops2" else {422}
            return request("ask", "POST", "/api/actions", _json({**VALID, "task_type": task_type}), intruder, answers)
        path = (
            f"/api/actions/{action_id}"
            + {"get": "", "wait": "?wait=0.2", "claim": "/claim", "result": "/result"}[which]
        )
        method = "GET" if which in ("get", "wait") else "POST"
        body = _json({"status": "succeeded", "result": {"ok": True}}) if which == "result" else b""
        return request(which, method, path, body, intruder, {404})
    if family == "body":
        form = draw(st.sampled_from(["flawed", "not-object", "not-json", "deep", "huge"]))
        if form == "flawed":
            body: dict[str, Any] = json.loads(json.dumps(VALID))
            for _ in range(draw(st.integers(1, 3))):
                _flaw(draw, rnd, body)
            return request(form, "POST", "/api/actions", _json(body), owner, {422})
        if form == "not-object":
            value = draw(st.sampled_from([[], "ops", 5, None, True, [VALID]]))
            return request(form, "POST", "/api/actions", _json(value), owner, {422})
        if form == "not-json":
            raw = draw(st.sampled_from([b"{", b"\xff\xfe", b"task_type=ops", b'{"a":1}x', b"\x00"]))
            return request(form, "POST", "/api/actions", raw, owner, {422})
        if form == "deep":
            depth = draw(st.integers(2_000, MAX_BODY // 2 - 10))
            opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
            deep = (opening * depth + "1" + closing * depth).encode()[:MAX_BODY]
            return request(form, "POST", "/api/actions", deep, owner, {422})
        padding = "x" * draw(st.integers(MAX_BODY, 2 * MAX_BODY))
        path = draw(st.sampled_from(["/api/actions", f"/api/actions/{action_id}/result"]))
        return request(form, "POST", path, _json({**VALID, "rationale": padding}), owner, {413})
    if family == "wait":
        if draw(st.integers(0, 9)) == 0:  # a short wait on the pending action: its state, at once or soon
            wait = draw(st.sampled_from(["0", "0.1", "0.2"]))
            return request("valid", "GET", f"/api/actions/{action_id}?wait={wait}", b"", owner, {200})
        wait = draw(st.sampled_from(BAD_WAITS))
        path = f"/api/actions/{action_id}?wait={wait}"
        if draw(st.booleans()):
            path += "&wait=" + draw(st.sampled_from(BAD_WAITS))  # the last one counts: still bad
        return request("bad", "GET", path, b"", owner, {422})
    verb = draw(st.sampled_from(["claim", "result", "bad-result", "method", "id"]))
    if verb == "claim":
        return request(verb, "POST", f"/api/actions/{action_id}/claim", b"", owner, {409})
    if verb == "result":
        status = draw(st.sampled_from(["succeeded", "failed"]))
        return request(verb, "POST", f"/api/actions/{action_id}/result", _json({"status": status}), owner, {409})
    if verb == "bad-result":
        value = draw(
            st.sampled_from(
                [
                    {"status": "done"},
                    {"status": "succeeded", "result": [1]},
                    {"status": "failed", "error": 5},
                    {"status": "failed", "error": "x\ud800"},
                    {"status": "succeeded", "extra": 1},
                    [],
                    {},
                ]
            )
        )
        return request(verb, "POST", f"/api/actions/{action_id}/result", _json(value), owner, {422})
    if verb == "method":
        method, path = draw(
            st.sampled_from(
                [
                    ("GET", "/api/actions"),
                    ("PUT", "/api/actions"),
                    ("DELETE", f"/api/actions/{action_id}"),
                    ("POST", f"/api/actions/{action_id}"),
                    ("GET", f"/api/actions/{action_id}/claim"),
                    ("PATCH", f"/api/actions/{action_id}/result"),
                ]
            )
        )
        return request(verb, method, path, b"", owner, {405})
    bad_id = draw(st.sampled_from(BAD_IDS))
    suffix = draw(st.sampled_from(["", "/claim", "/result", "/claim/extra"]))
    method = "GET" if suffix == "" else "POST"
    return request(verb, method, f"/api/actions/{bad_id}{suffix}", b"{}", owner, {404})
