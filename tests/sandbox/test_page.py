"""The sandbox page's server without a browser: its files and JSON API, and the signed Slack
requests it sends the app (Bolt checks every signature, so an accepted request proves the
signing; a wrong secret is refused)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.demo import Demo
from bot.sandbox import signed
from bot.sandbox.page import TOKEN_HEADER
from tests.sandbox.harness import running_demo

REQUESTER, APPROVER = "U0REQUESTER", "U0APPROVER"
SAY_HI = {"user": REQUESTER, "channel": "C0APPROVALS", "text": "hi from another site"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("page")) as running:
        yield running


def get(demo: Demo, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET `path` as the page does (with its token), or with `headers` instead of the page's."""
    headers = {TOKEN_HEADER: demo.page.token} if headers is None else headers
    request = urllib.request.Request(demo.url.rstrip("/") + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post(demo: Demo, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST `body` as the page does (JSON, with its token), or with `headers` instead of the page's."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", TOKEN_HEADER: demo.page.token} if headers is None else headers
    request = urllib.request.Request(demo.url.rstrip("/") + path, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def state(demo: Demo, user: str) -> Any:
    return json.loads(get(demo, f"/api/state?user={user}")[2])


def eventually(check: Callable[[], Any], timeout_s: float = 15) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_page_and_its_files_are_served_with_a_strict_policy(demo: Demo) -> None:
    status, headers, body = get(demo, "/")
    assert status == 200 and b'<script src="/static/app.js"></script>' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    for name in ("app.js", "blocks.js", "mrkdwn.js", "style.css"):
        assert get(demo, f"/static/{name}")[0] == 200
    assert get(demo, "/static/../page.py")[0] == 404
    assert get(demo, "/api/state")[0] == 400
    personas = json.loads(get(demo, "/api/personas")[2])
    assert [p["role"] for p in personas] == ["requester", "approver", "admin", "stranger"]


def test_the_page_carries_its_token_and_the_api_wants_it(demo: Demo) -> None:
    body = get(demo, "/", headers={})[2].decode()
    assert f'<meta name="countersign-token" content="{demo.page.token}">' in body
    assert len(demo.page.token) >= 32
    assert get(demo, "/api/personas")[0] == 200
    for headers in ({}, {TOKEN_HEADER: ""}, {TOKEN_HEADER: demo.page.token[:-1] + "x"}):
        status, _, answer = get(demo, "/api/state?user=U0REQUESTER", headers=headers)
        assert status == 403 and TOKEN_HEADER in json.loads(answer)["error"]
    status, answer = post(demo, "/api/compose", SAY_HI, headers={"Content-Type": "application/json"})
    assert status == 403 and f"no {TOKEN_HEADER}" in answer["error"]
    _nothing_said(demo)


def test_another_site_in_the_same_browser_cannot_act_for_anyone(demo: Demo) -> None:
    page = {"Content-Type": "application/json", TOKEN_HEADER: demo.page.token}
    # A cross-site fetch or form: another Origin, or text/plain (which needs no preflight).
    status, answer = post(demo, "/api/compose", SAY_HI, headers={**page, "Origin": "http://evil.example"})
    assert status == 403 and "Origin 'http://evil.example' is not this page's" in answer["error"]
    status, answer = post(demo, "/api/compose", SAY_HI, headers={"Content-Type": "text/plain", "Origin": "null"})
    assert status == 403
    status, answer = post(demo, "/api/click", SAY_HI, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert status == 415 and "'text/plain' is not 'application/json'" in answer["error"]
    _nothing_said(demo)


def test_a_rebound_host_name_gets_neither_the_token_nor_the_api(demo: Demo) -> None:
    # DNS rebinding: evil.example resolves to 127.0.0.1, so its pages reach this server as same-origin.
    rebound = f"evil.example:{demo.page.port}"
    for path in ("/", "/api/personas", "/api/state?user=U0REQUESTER"):
        status, _, answer = get(demo, path, headers={"Host": rebound, TOKEN_HEADER: demo.page.token})
        assert status == 403 and f"Host {rebound!r} is not this page's" in json.loads(answer)["error"]
        assert demo.page.token.encode() not in answer
    headers = {"Host": rebound, "Origin": f"http://{rebound}", "Content-Type": "application/json"}
    assert post(demo, "/api/compose", SAY_HI, headers={**headers, TOKEN_HEADER: demo.page.token})[0] == 403
    wrong_port = f"127.0.0.1:{demo.page.port + 1}"
    assert get(demo, "/api/personas", headers={"Host": wrong_port, TOKEN_HEADER: demo.page.token})[0] == 403
    _nothing_said(demo)


def test_the_page_answers_under_each_loopback_name(demo: Demo) -> None:
    for name in ("localhost", "127.0.0.1", "LOCALHOST", "[::1]"):
        host = f"{name}:{demo.page.port}"
        headers = {"Host": host, "Origin": f"http://{host}", TOKEN_HEADER: demo.page.token}
        assert get(demo, "/api/personas", headers=headers)[0] == 200


def _nothing_said(demo: Demo) -> None:
    assert not [m for m in state(demo, REQUESTER)["messages"].get("C0APPROVALS", []) if "hi from" in m["text"]]


def test_bad_requests_to_the_api_are_refused_politely(demo: Demo) -> None:
    assert post(demo, "/api/compose", b"not json")[0] == 400
    assert post(demo, "/api/compose", {"user": REQUESTER, "channel": "C0APPROVALS"})[0] == 400
    assert post(demo, "/api/nothing", {})[0] == 404
    status, answer = post(demo, "/api/compose", {"user": REQUESTER, "channel": "C0NOWHERE", "text": "hi"})
    assert (status, answer["ok"]) == (200, False) and "channel_not_found" in answer["notice"]


def test_a_length_that_is_not_a_count_of_bytes_is_refused(demo: Demo) -> None:
    # int() reads "-5" (then read() waits for the end of the stream) and "²" (not a count).
    for length in ("-5", "abc", "\u00b2", "9" * 40):
        conn = http.client.HTTPConnection("127.0.0.1", demo.page.port, timeout=5)
        conn.putrequest("POST", "/api/compose", skip_accept_encoding=True)
        for name, value in {"Content-Type": "application/json", TOKEN_HEADER: demo.page.token}.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", length.encode("utf-8").decode("latin-1"))
        conn.endheaders(b"{}")
        answer = conn.getresponse()
        assert answer.status in (400, 413), length
        conn.close()
    _nothing_said(demo)


def test_a_slash_command_answers_only_the_person_who_typed_it(demo: Demo) -> None:
    status, answer = post(
        demo, "/api/compose", {"user": REQUESTER, "channel": "C0APPROVALS", "text": "/countersign help"}
    )
    assert (status, answer) == (200, {"ok": True})
    mine = state(demo, REQUESTER)["ephemerals"]
    assert any("run TYPE TEXT" in e["text"] for e in mine)
    assert not any("run TYPE TEXT" in e["text"] for e in state(demo, APPROVER)["ephemerals"])
    post(demo, "/api/compose", {"user": REQUESTER, "channel": "C0APPROVALS", "text": "/deploy now"})
    assert any("`/deploy` is not a valid command" in e["text"] for e in state(demo, REQUESTER)["ephemerals"])


def test_a_card_is_approved_through_signed_clicks(demo: Demo) -> None:
    text = "/countersign run refund Refund order 1005, it arrived broken"
    post(demo, "/api/compose", {"user": REQUESTER, "channel": "C0PAYMENTS", "text": text})

    def open_card() -> Any:
        cards = [m for m in state(demo, APPROVER)["messages"]["C0PAYMENTS"] if "1005" in json.dumps(m["blocks"])]
        return cards and any(b["type"] == "actions" for b in cards[-1]["blocks"]) and cards[-1]

    card = eventually(open_card)
    [actions] = [b for b in card["blocks"] if b["type"] == "actions"]
    approve = next(e for e in actions["elements"] if e["action_id"] == "approve")
    where = {"channel": "C0PAYMENTS", "ts": card["ts"]}
    status, answer = post(
        demo, "/api/click", {"user": APPROVER, "where": where, "block_id": actions["block_id"], "element": approve}
    )
    assert (status, answer) == (200, {"ok": True})

    def decided() -> Any:
        [now] = [m for m in state(demo, APPROVER)["messages"]["C0PAYMENTS"] if m["ts"] == card["ts"]]
        return now["edited"] and "Succeeded" in json.dumps(now["blocks"]) and now

    assert f"<@{APPROVER}>" in json.dumps(eventually(decided)["blocks"])
    # A second click on the stale card: the app refuses it, to the clicker only.
    post(demo, "/api/click", {"user": APPROVER, "where": where, "block_id": actions["block_id"], "element": approve})
    told = eventually(lambda: [e for e in state(demo, APPROVER)["ephemerals"] if e["channel"] == "C0PAYMENTS"])
    assert "already" in told[-1]["text"]


def test_a_mention_posts_the_persons_message_and_the_app_answers_in_its_thread(demo: Demo) -> None:
    text = "@countersign lookup order 1006 <please>"
    assert post(demo, "/api/compose", {"user": REQUESTER, "channel": "C0APPROVALS", "text": text})[1] == {"ok": True}
    messages = state(demo, REQUESTER)["messages"]["C0APPROVALS"]
    [mine] = [m for m in messages if m["user"] == REQUESTER and "1006" in m["text"]]
    assert mine["text"] == "<@U0BOT> lookup order 1006 &lt;please&gt;"  # escaped as Slack's client does
    eventually(
        lambda: [
            m for m in state(demo, REQUESTER)["messages"]["C0APPROVALS"] if m["thread_ts"] == mine["ts"] != m["ts"]
        ]
    )


def test_the_app_home_is_published_when_opened(demo: Demo) -> None:
    assert post(demo, "/api/home", {"user": "U0ADMIN"})[1] == {"ok": True}
    home = eventually(lambda: state(demo, "U0ADMIN")["home"])
    assert "Autonomy levels" in json.dumps(home["view"])


def test_signed_requests_are_what_bolt_accepts_and_a_wrong_secret_is_refused(demo: Demo) -> None:
    body = signed.slash_command_body(
        team_id="T0SANDBOX",
        user_id=REQUESTER,
        channel_id="C0APPROVALS",
        text="help",
        response_url=demo.emulator.new_response_url("C0APPROVALS", None, REQUESTER),
        trigger_id=demo.emulator.new_trigger_id(REQUESTER),
    )
    url = demo.app_url + "/slack/events"
    assert signed.send(url, signed.signed(demo.page.actor.secret, body, signed.FORM)).status == 200
    assert signed.send(url, signed.signed("wrong-secret", body, signed.FORM)).status == 401
    stale = signed.signed(demo.page.actor.secret, body, signed.FORM, timestamp=int(time.time()) - 301)
    assert signed.send(url, stale).status == 401


def test_the_builders_send_what_the_bot_tests_send() -> None:
    form = dict(
        urllib.parse.parse_qsl(
            signed.slash_command_body(
                team_id="T", user_id="U1", channel_id="C1", text="help", response_url="r", trigger_id="t"
            ).decode()
        )
    )
    assert {"team_id", "channel_id", "user_id", "command", "text", "response_url", "trigger_id"} <= set(form)
    click = signed.block_actions_payload(
        team_id="T", user_id="U1", actions=[{"action_id": "approve"}], trigger_id="t", channel_id="C1",
        message={"ts": "1.2"}, response_url="r",
    )  # fmt: skip
    assert click["container"] == {"type": "message", "message_ts": "1.2", "channel_id": "C1", "is_ephemeral": False}
    submission = signed.view_submission_payload(
        team_id="T", user_id="U1", view={"id": "V1"}, values={"a": {}}, trigger_id="t"
    )
    assert submission["view"] == {"id": "V1", "state": {"values": {"a": {}}}}
    event = json.loads(signed.event_callback_body({"type": "app_mention"}, team_id="T", event_id="Ev1"))
    assert (event["type"], event["event_id"], event["event"]["type"]) == ("event_callback", "Ev1", "app_mention")
    assert signed.sign("s", b"body", 1)["X-Slack-Signature"].startswith("v0=")
    assert Path(signed.__file__).name == "signed.py"
