"""Slack over Socket Mode (`serve --socket`): the Bolt app behind slack_sdk's built-in Socket
Mode client instead of behind `POST /slack/events`.

The client asks `apps.connections.open` (with the app-level `xapp-` token, at the Web API the
app's own client uses) for a WebSocket URL, and reconnects through a new one when Slack says
`disconnect` or closes the socket. Slack sends each request as an envelope; the app answers
by acking its `envelope_id`, with the reply (a slash command's text, a form's errors) as the
ack's payload. What this adapter does that Bolt's own (`slack_bolt.adapter.socket_mode`) does
not:

- it acks every envelope, whatever Bolt answered. Bolt's adapter acks only a 200, so a
  request Bolt refuses (a NUL in a command's text is a 400, a payload it cannot route a 404)
  went unacked: Slack retries an event it sees unacked, and shows a person's command or
  click as failed. Over HTTP the refusal itself is the answer.
- each envelope wakes the background loops, as a POST does over HTTP (`bot.server`): a
  command's card or a click's tool run does not wait for an idle loop's next poll (2 s).

No signature or replay check: the socket is the app's own, opened with its app-level token.
A redelivered envelope changes nothing, as over HTTP: an event is known by its `event_id`
(`bot.listeners.events`), and a decision is a compare-and-set on the action's state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Sequence
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from agent.worker import Wakeup

log = logging.getLogger(__name__)


class SocketMode(SocketModeHandler):
    """The Bolt app on a Socket Mode connection. `connect()` opens it (returns once the first
    connection is up; the client keeps it up from then on), `close()` lets it go after the
    envelopes in hand are answered. `wakeup`: the serving process's background loops."""

    def __init__(self, app: App, app_token: str, *, wakeup: Wakeup | None = None) -> None:
        super().__init__(app, app_token)
        self.wakeup = wakeup

    def close(self) -> None:
        """Stop taking envelopes and let the connection go, once those in hand are answered.
        The socket is shut down first: the client's reader otherwise holds it in a `recv` for
        up to its 3 s timeout before the close can take it."""
        session = self.client.current_session
        if session is not None and session.sock is not None:
            with contextlib.suppress(OSError):
                session.sock.shutdown(socket.SHUT_RDWR)
        super().close()  # type: ignore[no-untyped-call]

    def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        try:
            reply = self._dispatch(req)
            client.send_socket_mode_response(SocketModeResponse(req.envelope_id, payload=reply))
        finally:
            if self.wakeup is not None:
                self.wakeup.wake()

    def _dispatch(self, req: SocketModeRequest) -> dict[str, Any] | None:
        """What to ack `req` with: Bolt's answer as the payload, or nothing."""
        headers: dict[str, str | Sequence[str]] = {}
        if req.retry_attempt:  # as Slack's HTTP retries say it, for the listeners that ask
            headers = {"x-slack-retry-num": str(req.retry_attempt), "x-slack-retry-reason": req.retry_reason or ""}
        try:
            response: BoltResponse = self.app.dispatch(
                BoltRequest(mode="socket_mode", body=req.payload, headers=headers)
            )
        except Exception:  # Bolt assumes well-formed payloads; anything else is the sender's
            # Listeners' own errors never get here (Bolt's error handler answers them).
            log.warning("Socket Mode: a malformed %s envelope; acked without a reply", req.type, exc_info=True)
            return None
        if response.status != 200:
            # Nothing of the body: like `bot.slack_ingress`, a refusal logs none of what was sent.
            log.warning("Socket Mode: refused a %s envelope (%s); acked without a reply", req.type, response.status)
            return None
        if not response.body:
            return None
        content_type = (response.headers.get("content-type") or [""])[0]
        if content_type.startswith("application/json"):
            reply: dict[str, Any] = json.loads(response.body)
            return reply
        return {"text": response.body}
