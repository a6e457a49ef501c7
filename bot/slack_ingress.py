"""`POST /slack/events` up to the moment Bolt sees it: everything a sender can make us do
before we know the request is Slack's is kept small and cheap.

In order: the body's declared length (at most `MAX_SLACK_BODY`, refused unread otherwise);
the timestamp (ASCII digits within Slack's five-minute window); the signature, checked on the
raw bytes before anything parses them; the signature never seen before (`core.replays`,
shared by every replica through the database). Only then does Bolt get the bytes already
read, to parse and route, with the request's arrival (`bot.admission`: when we got it, how
old Slack's signed timestamp says it already was) for the listeners. A click on a button that
decides takes its decision slot before the replay check: one that gets none in time is acked
(200) at once and its clicker told to click again (`bot.admission`). A refusal is a 4xx with
a JSON body naming the problem, and it logs nothing of the body.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import Clock, SignatureVerifier
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.admission import ARRIVAL, Admission, Arrival, DecidingClick, Shed, busy, deciding_click
from bot.http_io import BodyRefused, answer_json, read_body
from core import metrics
from core.db import WRITER_TIMEOUT_OPTION
from core.errors import DatabaseBusy
from core.replays import REPLAY_WINDOW, first_sighting

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)
# Slack's payloads are a few KiB; the largest we get (a view_submission of a full modal,
# form-encoded) stays well under this. waitress refuses larger bodies before reading them.
MAX_SLACK_BODY = 512 * 1024
# A Unix time in seconds has 10 digits until the year 2286; anything much longer is not one.
MAX_STAMP_DIGITS = 12
# Set in the WSGI environ of a click shed before Bolt saw it.
SHED = "countersign.shed"
# The least a request's replay check waits for SQLite's write turn, its budget spent or not.
MIN_REPLAY_TURN_S = 0.1


class SlackIngress:
    """The WSGI route in front of Bolt's `SlackRequestHandler`."""

    def __init__(
        self,
        handler: SlackRequestHandler,
        signing_secret: str | None,
        sessions: sessionmaker[Session],
        *,
        clock: Clock | None = None,
        admission: Admission | None = None,
        on_shed: Callable[[DecidingClick], None] = lambda click: None,
    ) -> None:
        """`on_shed`: tells the clicker of a click shed before Bolt saw it (after the ack)."""
        self.handler, self.sessions = handler, sessions
        self.clock = clock or Clock()
        self.admission, self.on_shed = admission or Admission(), on_shed
        self.verifier = SignatureVerifier(signing_secret, clock=self.clock) if signing_secret else None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        at = self.admission.ticks()
        if environ.get("REQUEST_METHOD") != "POST":
            return answer_json(start_response, 405, {"error": "POST only"})
        if self.verifier is None:  # no secret, no way to tell Slack from anyone else
            return answer_json(start_response, 404, {"error": "Slack over HTTP is off: set SLACK_SIGNING_SECRET"})
        try:
            body = read_body(environ, MAX_SLACK_BODY)
        except BodyRefused as refused:
            return answer_json(start_response, refused.status, {"error": refused.message})
        stamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""
        signature = environ.get("HTTP_X_SLACK_SIGNATURE") or ""
        # str.isdigit() also takes "²³" and other scripts' digits, which int() may read as a time.
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_STAMP_DIGITS):
            return answer_json(start_response, 401, {"error": f"invalid request timestamp {stamp[:20]!r}"})
        if abs(self.clock.now() - int(stamp)) > REPLAY_WINDOW.total_seconds():
            return answer_json(start_response, 401, {"error": "request timestamp outside Slack's 5-minute window"})
        try:
            text = body.decode("utf-8")  # what Slack signs and sends; the verifier decodes too
        except UnicodeDecodeError:
            return answer_json(start_response, 400, {"error": "request body is not UTF-8"})
        # hmac.compare_digest raises on non-ASCII text: such a header is simply not a signature.
        if not (signature.isascii() and self.verifier.is_valid(text, stamp, signature)):
            return answer_json(start_response, 401, {"error": "invalid request signature"})
        arrival = self.admission.arrived(at, int(stamp))
        click = deciding_click(body, environ.get("CONTENT_TYPE") or "")
        if click is None:
            return self._checked(environ, start_response, body, signature, int(stamp), arrival)

        def shed(reason: str | None = None) -> Iterable[bytes]:
            # Shed before Bolt, so that a flood of clicks costs little: it writes nothing, and a
            # replay of it could only tell its clicker "busy" once more.
            if reason is not None:  # (`Admission` counts the clicks it sheds itself)
                metrics.CLICKS_SHED.labels(click.kind, reason).inc()
            self.on_shed(click)
            environ[SHED] = True  # nothing was written: no background loop need look for work
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]

        try:
            taken = self.admission.enter(click.kind, arrival)
        except Shed:
            return shed()
        try:
            held = replace(arrival, held=True)
            return self._checked(environ, start_response, body, signature, int(stamp), held, shed=shed)
        finally:
            self.admission.leave(taken)

    def _checked(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        body: bytes,
        signature: str,
        stamp: int,
        arrival: Arrival,
        *,
        shed: Callable[[str], Iterable[bytes]] | None = None,
    ) -> Iterable[bytes]:
        """The replay check, then Bolt, with the request's arrival for its listeners. A click
        (`shed` given) waits for SQLite's write turn no longer than what is left of its budget,
        and is shed if it does not come; other requests wait as any write does."""
        try:
            with self.sessions.begin() as session:
                if shed is not None:
                    waits = max(self.admission.left(arrival), MIN_REPLAY_TURN_S)
                    session.connection(execution_options={WRITER_TIMEOUT_OPTION: waits})
                first = first_sighting(session, signature, datetime.fromtimestamp(stamp, UTC))
        except DatabaseBusy:
            log.warning("cannot check /slack/events for a replay in time: the database's write turn is taken")
            if shed is not None:
                return shed("busy")
            return answer_json(start_response, 503, {"error": busy("try")})
        except OperationalError:
            log.warning("cannot check /slack/events for a replay: the database is unreachable")
            return answer_json(start_response, 503, {"error": "the database is unreachable; try again"})
        if not first:
            log.warning("refused a replayed Slack request (its signature was already taken)")
            return answer_json(start_response, 401, {"error": "replayed request: this signature was already taken"})
        # Bolt reads the body again: hand it the bytes already read.
        verified = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        token = ARRIVAL.set(arrival)
        try:
            return self.handler(verified, start_response)
        except Exception:  # Bolt assumes well-formed payloads; anything else is the sender's
            # Listeners' own errors never get here (Bolt's error handler answers them): this is
            # Bolt failing to parse or route a signed body that is not what Slack sends.
            log.warning("malformed request to /slack/events", exc_info=True)
            return answer_json(start_response, 400, {"error": "malformed Slack request body"})
        finally:
            ARRIVAL.reset(token)
