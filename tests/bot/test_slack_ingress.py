"""What a sender can make `/slack/events` do before we know the request is Slack's: read a
bounded body, log nothing of it, parse nothing of it; and a request taken once is never
taken again (a replay), on any replica."""

from __future__ import annotations

import http.client
import io
import json
import logging
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select

from bot.slack_ingress import MAX_SLACK_BODY
from core.config import Config
from core.models import AuditEvent, Decision, Task
from tests.bot.slack_app import CONFIG, REQUESTER, SECRET, TEAM, SlackApp, serving

FORM = "application/x-www-form-urlencoded"
FORGED = "v0=" + "0" * 64


class Unreadable(io.RawIOBase):
    """A `wsgi.input` that fails the test if anything reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError(f"the body was read ({size} bytes asked for)")


def _call(app: SlackApp, headers: dict[str, str], body: io.RawIOBase) -> tuple[str, dict[str, Any]]:
    """One request straight into the WSGI app (no HTTP server in between)."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/slack/events", "wsgi.input": body, **headers}
    answered: list[str] = []
    chunks = app.process.server(environ, lambda status, _headers, _exc=None: answered.append(status))  # type: ignore[arg-type, return-value]
    return answered[0], json.loads(b"".join(chunks) or b"null")


def _counts(app: SlackApp) -> tuple[int, int, int]:
    with app.services.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Task)) or 0,
            session.scalar(select(func.count()).select_from(Decision)) or 0,
            session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


def _command(app: SlackApp, text: str) -> bytes:
    form = {
        "command": "/countersign",
        "text": text,
        "user_id": REQUESTER,
        "team_id": TEAM,
        "channel_id": "C0APPROVALS",
        "response_url": app.slack.new_response_url("C0APPROVALS", None, REQUESTER),
        "trigger_id": app.slack.new_trigger_id(REQUESTER),
    }
    return urllib.parse.urlencode(form).encode()


def test_a_body_over_the_limit_is_refused_before_it_is_read(slack_app: SlackApp) -> None:
    stamp = str(int(time.time()))
    headers = {"HTTP_X_SLACK_REQUEST_TIMESTAMP": stamp, "HTTP_X_SLACK_SIGNATURE": FORGED}
    status, answer = _call(slack_app, {**headers, "CONTENT_LENGTH": str(MAX_SLACK_BODY + 1)}, Unreadable())
    assert status.startswith("413")
    assert f"limit of {MAX_SLACK_BODY} bytes" in answer["error"]
    # No declared length: nothing decides how much would be read, so nothing is.
    status, answer = _call(slack_app, headers, Unreadable())
    assert status.startswith("411")
    assert "Content-Length" in answer["error"]


def test_a_body_over_the_limit_is_refused_over_http_too(slack_app: SlackApp) -> None:
    # waitress refuses it from the declared length alone: the answer comes before any byte
    # of the body is sent.
    conn = http.client.HTTPConnection(slack_app.url.removeprefix("http://"), timeout=10)
    try:
        conn.putrequest("POST", "/slack/events")
        conn.putheader("Content-Type", FORM)
        conn.putheader("Content-Length", str(30 * 1024 * 1024))
        conn.endheaders()
        with conn.getresponse() as reply:
            assert reply.status == 413
    finally:
        conn.close()
    # A signed body right at the limit is Slack's to send: it gets past the checks (to Bolt).
    at_limit = b"payload=" + b"7" * (MAX_SLACK_BODY - len("payload="))
    assert slack_app.post(at_limit, FORM).status == 400  # not a payload Bolt can route
    assert _counts(slack_app) == (0, 0, 0)


def test_a_large_forged_body_leaves_the_log_small(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # Logging at DEBUG everywhere before the app is built, as a verbose deployment would.
    caplog.set_level(logging.DEBUG)
    with serving(db_url) as app:
        body = b"payload=" + urllib.parse.quote(json.dumps({"note": "FORGED-BODY " * 16_000})).encode()
        assert 150_000 < len(body) < MAX_SLACK_BODY
        caplog.clear()
        reply = app.post(body, FORM, signature=FORGED)
        assert reply.status == 401
        assert "FORGED-BODY" not in caplog.text
        assert len(caplog.text) < 2_000, caplog.text[:500]


def test_a_forged_body_is_not_parsed(slack_app: SlackApp) -> None:
    # 60,000 nested arrays: json.loads gives up with a RecursionError, if anything calls it.
    # The signature is wrong, so nothing should: the answer is the signature's 401.
    deep = b"[" * 60_000
    reply = slack_app.post(deep, "application/json", signature=FORGED)
    assert reply.status == 401
    assert reply.json() == {"error": "invalid request signature"}


def test_a_signed_request_sent_again_is_refused_and_changes_nothing(slack_app: SlackApp, db_url: str) -> None:
    body, stamp = _command(slack_app, "run refund Refund order 41"), int(time.time())
    first = slack_app.post(body, FORM, timestamp=stamp)
    assert first.status == 200 and "Started" in first.body
    slack_app.settle()
    before = _counts(slack_app)
    assert before[0] == 1

    again = slack_app.post(body, FORM, timestamp=stamp)  # the very same bytes and headers
    assert again.status == 401
    assert "replayed request" in again.json()["error"]

    # A second replica on the same database refuses it too.
    replica = SlackApp(db_url, slack_app.slack, slack_app.clock, Config.model_validate(CONFIG))
    try:
        elsewhere = replica.post(body, FORM, timestamp=stamp)
        assert elsewhere.status == 401
        assert "replayed request" in elsewhere.json()["error"]
    finally:
        replica.close()
    slack_app.settle()
    assert _counts(slack_app) == before

    # The same words typed again are a new request, signed anew: it starts a second task.
    assert slack_app.post(_command(slack_app, "run refund Refund order 41"), FORM).status == 200
    assert _counts(slack_app)[0] == 2


def test_a_replay_to_two_replicas_at_once_is_taken_once(slack_app: SlackApp, db_url: str) -> None:
    body, stamp = _command(slack_app, "run refund Refund order 42"), int(time.time())
    replica = SlackApp(db_url, slack_app.slack, slack_app.clock, Config.model_validate(CONFIG))
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            statuses = sorted(pool.map(lambda app: app.post(body, FORM, timestamp=stamp).status, [slack_app, replica]))
    finally:
        replica.close()
    assert statuses == [200, 401]
    assert _counts(slack_app)[0] == 1


def test_a_timestamp_of_other_digits_is_refused_even_when_signed_over_it(slack_app: SlackApp) -> None:
    # HTTP headers reach WSGI as latin-1, which has "²", "³" and "¹": str.isdigit() takes them.
    for stamp in ("²³", "¹²³"):
        body = _command(slack_app, "run refund Refund order 43")
        signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body.decode())
        headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature or ""}
        reply = slack_app.post(body, FORM, headers=headers)
        assert reply.status == 401, stamp
        assert "invalid request timestamp" in reply.json()["error"]
    # int() reads other scripts' digits as numbers: "now" so written would pass as a time.
    now = "".join(chr(0x0660 + int(digit)) for digit in str(int(time.time())))
    for stamp in (now, "".join(chr(0xFF10 + int(digit)) for digit in str(int(time.time())))):
        body = _command(slack_app, "run refund Refund order 44")
        signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body.decode())
        headers = {"HTTP_X_SLACK_REQUEST_TIMESTAMP": stamp, "HTTP_X_SLACK_SIGNATURE": signature or ""}
        status, answer = _call(slack_app, {**headers, "CONTENT_LENGTH": str(len(body))}, io.BytesIO(body))
        assert status.startswith("401"), stamp
        assert "invalid request timestamp" in answer["error"]
    assert _counts(slack_app) == (0, 0, 0)
