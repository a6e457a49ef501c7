"""Slack's end of Socket Mode, on 127.0.0.1: a WebSocket server (the `websockets` library)
whose URLs the Web API emulator hands out from `apps.connections.open`, speaking the envelope
protocol as Slack does (https://api.slack.com/apis/socket-mode):

- each `apps.connections.open` issues a ticket, `ws://127.0.0.1:PORT/link/?ticket=…&app_id=…`,
  good for one connection: a client that reconnects without asking for a new URL is refused;
- a new connection is greeted with `hello`;
- `send` delivers one envelope (`events_api`, `interactive`, `slash_commands`, with its
  `envelope_id` and `accepts_response_payload`) on the newest open connection; the app acks
  it by `envelope_id`, with a `payload` where it answers (a slash command's reply, a form's
  `response_action`); `ack` waits for that ack and returns it;
- `disconnect` sends `{"type": "disconnect", "reason": …}` (`refresh_requested`, `warning`)
  on the newest connection; the client opens another through `apps.connections.open`, and
  `link` waits for it to be greeted;
- `turn_away(n)` refuses the next `n` connections, as an endpoint that is down;
- `send(..., lose_ack=True)` loses that envelope's ack, as when the connection it came back
  on died before Slack read it; `redeliver` sends every envelope whose ack never arrived
  again on the newest connection (an Events API one with `retry_attempt` one higher, as
  Slack retries), as new envelopes.

Waiting here is on a condition the server's threads signal, never a sleep.

    with SlackEmulator() as slack, SocketModeServer(slack) as sockets:
        # SLACK_APP_TOKEN=sockets.app_token, the app's WebClient at slack.api_url
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakes.slack_server import SlackEmulator

__all__ = ["APP_TOKEN", "Ack", "Envelope", "SocketModeServer"]

JsonDict = dict[str, Any]
APP_TOKEN = "xapp-1-A0APP-1-sockettest"
APP_ID = "A0APP"
WAIT_S = 15.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Envelope:
    """One envelope sent: what it carried and the connection (`link`, from 1) it went out on."""

    envelope_id: str
    type: str
    payload: JsonDict
    accepts_response_payload: bool
    link: int
    retry_attempt: int | None = None
    lose_ack: bool = False


@dataclass(frozen=True)
class Ack:
    """The app's answer to an envelope, and the connection it came back on."""

    envelope_id: str
    payload: JsonDict | None
    link: int


@dataclass
class _Link:
    number: int
    connection: ServerConnection
    greeted: bool = False
    closed: bool = False
    received: list[str] = field(default_factory=list)


class SocketModeServer:
    def __init__(self, slack: SlackEmulator, *, app_token: str = APP_TOKEN, app_id: str = APP_ID) -> None:
        self.app_token, self.app_id = app_token, app_id
        self._changed = threading.Condition()
        self._tickets: dict[str, bool] = {}  # ticket -> used
        self._links: list[_Link] = []
        self._envelopes: list[Envelope] = []
        self._acks: list[Ack] = []
        self._lost: list[Ack] = []
        self._strays: list[str] = []  # what the app sent that acks no envelope of ours
        self._redelivered: set[str] = set()
        self._refused = 0
        self._down = 0  # connections still to turn away, as an endpoint that is down does
        self._server: Server = serve(
            self._session,
            "127.0.0.1",
            0,
            process_request=self._admit,
            compression=None,  # Slack's client (slack_sdk's built-in one) offers no extensions
            ping_interval=None,  # the client pings; Slack answers with pongs (websockets does)
            close_timeout=1,
            logger=log,
        )
        self.port = int(self._server.socket.getsockname()[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="socket-mode-server", daemon=True)
        self._thread.start()
        slack.socket_mode(app_token, self._issue_url)

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> SocketModeServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    # -- Slack's side of the protocol ----------------------------------------------------------
    def _issue_url(self) -> str:
        ticket = uuid.uuid4().hex
        with self._changed:
            self._tickets[ticket] = False
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        [ticket] = parse_qs(url.query).get("ticket") or [""]
        with self._changed:
            if url.path.rstrip("/") != "/link" or self._tickets.get(ticket) is not False:
                self._refused += 1
                return connection.respond(HTTPStatus.UNAUTHORIZED, "unknown or used ticket\n")
            self._tickets[ticket] = True
            if self._down:
                self._down -= 1
                self._refused += 1
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "try again\n")
        return None

    def _session(self, connection: ServerConnection) -> None:
        with self._changed:
            link = _Link(len(self._links) + 1, connection)
            self._links.append(link)
        hello = {
            "type": "hello",
            "num_connections": sum(not other.closed for other in self._links),
            "debug_info": {"host": f"applink-fake-{link.number}", "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        try:
            connection.send(json.dumps(hello))
            with self._changed:
                link.greeted = True
                self._changed.notify_all()
            for message in connection:
                self._received(link, message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass  # slack_sdk's client drops the TCP connection without a close frame
        finally:
            with self._changed:
                link.closed = True
                self._changed.notify_all()

    def _received(self, link: _Link, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        with self._changed:
            link.received.append(text)
            sent = {e.envelope_id: e for e in self._envelopes}
            envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
            if not isinstance(envelope_id, str) or envelope_id not in sent:
                self._strays.append(text)
            else:
                ack = Ack(envelope_id, message.get("payload"), link.number)
                (self._lost if sent[envelope_id].lose_ack else self._acks).append(ack)
            self._changed.notify_all()

    # -- what a test does ----------------------------------------------------------------
    def link(self, number: int, timeout: float = WAIT_S) -> None:
        """Wait until connection `number` (from 1) has been greeted with `hello`."""
        self._wait(
            lambda: len(self._links) >= number and self._links[number - 1].greeted, f"connection {number}", timeout
        )

    def send(
        self,
        kind: str,
        payload: JsonDict,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        lose_ack: bool = False,
    ) -> str:
        """Deliver one envelope on the newest open connection (waiting for one while the client
        is between two); its `envelope_id`."""
        self._wait(lambda: bool(self._live()), "an open connection to deliver on")
        with self._changed:
            link = self._live()[-1]
        envelope = Envelope(
            str(uuid.uuid4()), kind, payload, accepts_response_payload, link.number, retry_attempt, lose_ack
        )
        message: JsonDict = {
            "envelope_id": envelope.envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            message |= {"retry_attempt": retry_attempt or 0, "retry_reason": "timeout" if retry_attempt else ""}
        with self._changed:
            self._envelopes.append(envelope)
        with contextlib.suppress(ConnectionClosed):  # closed under it: `redeliver` sends it again, as Slack would
            link.connection.send(json.dumps(message))
        return envelope.envelope_id

    def ack(self, envelope_id: str, timeout: float = WAIT_S) -> Ack:
        """The app's ack of the envelope `envelope_id`, waiting for it."""
        found: list[Ack] = []

        def acked() -> bool:
            found[:] = [a for a in self._acks if a.envelope_id == envelope_id]
            return bool(found)

        self._wait(acked, f"an ack of envelope {envelope_id}", timeout)
        return found[0]

    def lost_ack(self, envelope_id: str, timeout: float = WAIT_S) -> Ack:
        """The ack the app sent for an envelope sent with `lose_ack`, which Slack never got."""
        found: list[Ack] = []

        def arrived() -> bool:
            found[:] = [a for a in self._lost if a.envelope_id == envelope_id]
            return bool(found)

        self._wait(arrived, f"the (lost) ack of envelope {envelope_id}", timeout)
        return found[0]

    def disconnect(self, reason: str = "refresh_requested") -> int:
        """Tell the newest open connection to go, as Slack does before it closes one; its number."""
        with self._changed:
            [*_, link] = self._live()
        message = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": f"applink-fake-{link.number}"},
        }
        link.connection.send(json.dumps(message))
        return link.number

    def closed(self, number: int, timeout: float = WAIT_S) -> None:
        """Wait until connection `number` is closed (the client lets an old one go)."""
        self._wait(lambda: len(self._links) >= number and self._links[number - 1].closed, f"close of {number}", timeout)

    def turn_away(self, times: int) -> None:
        """Refuse the next `times` connections (HTTP 503), their tickets spent, as a Socket
        Mode endpoint that is down does: the client must ask for a new URL to try again."""
        with self._changed:
            self._down = times

    def redeliver(self) -> list[str]:
        """Send again every envelope whose ack Slack never got (and that was not redelivered
        already), as new envelopes on the newest connection; their envelope ids."""
        with self._changed:
            acked = {a.envelope_id for a in self._acks}
            due = [e for e in self._envelopes if e.envelope_id not in acked | self._redelivered]
            self._redelivered |= {e.envelope_id for e in due}
        retried = []
        for envelope in due:
            attempt = (envelope.retry_attempt or 0) + 1 if envelope.type == "events_api" else None
            retried.append(
                self.send(
                    envelope.type,
                    envelope.payload,
                    accepts_response_payload=envelope.accepts_response_payload,
                    retry_attempt=attempt,
                )
            )
        return retried

    # -- what happened -------------------------------------------------------------------
    @property
    def envelopes(self) -> list[Envelope]:
        with self._changed:
            return list(self._envelopes)

    @property
    def acks(self) -> list[Ack]:
        """Every ack Slack got, in order (lost ones are not)."""
        with self._changed:
            return list(self._acks)

    @property
    def strays(self) -> list[str]:
        """What the app sent that acks no envelope sent to it (an unknown id, not an ack at all)."""
        with self._changed:
            return list(self._strays)

    @property
    def refused(self) -> int:
        """Connections refused: for a ticket never issued or already used, or turned away."""
        with self._changed:
            return self._refused

    @property
    def links(self) -> int:
        with self._changed:
            return len(self._links)

    def unanswered(self) -> list[Envelope]:
        """Envelopes the app never acked and that were not redelivered (a lost ack was still
        sent by the app; a redelivered envelope is answered by its redelivery's ack)."""
        with self._changed:
            answered = {a.envelope_id for a in self._acks + self._lost} | self._redelivered
            return [e for e in self._envelopes if e.envelope_id not in answered]

    def _live(self) -> list[_Link]:
        return [link for link in self._links if link.greeted and not link.closed]

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise AssertionError(f"waited {timeout}s in vain for {what}")
