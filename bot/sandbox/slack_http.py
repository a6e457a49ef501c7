"""The emulator's HTTP front: Slack's wire format (form-encoded or JSON bodies, Bearer or
Basic auth, JSON answers) in front of `SlackEmulator.call`, `respond` and `authorize`."""

from __future__ import annotations

import base64
import contextlib
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlsplit

from bot.sandbox.faults import Reply
from bot.sandbox.slack_methods import error_body
from bot.sandbox.workspace import JsonDict, SlackError

if TYPE_CHECKING:
    from bot.sandbox.slack_api import SlackEmulator


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of concurrent clients for a 1 s SYN retry
    block_on_close = False
    emulator: SlackEmulator


class Handler(BaseHTTPRequestHandler):
    server_version = "SlackEmulator/1"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `emulator.calls`, not the access log."""

    def _dispatch(self) -> None:
        emulator = cast(Server, self.server).emulator
        path = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind, _, name = path.path.strip("/").partition("/")
        if kind == "oauth" and name == "v2/authorize" and self.command == "GET":
            self._send(emulator.authorize(dict(parse_qsl(path.query))))
        elif kind == "api" and name:
            params: JsonDict = dict(parse_qsl(path.query))
            try:
                params.update(self._body(raw))
            except SlackError as exc:
                self._send(Reply(200, error_body(exc)))
                return
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):  # oauth.v2.access: the app's client id and secret
                client_id, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
                params.setdefault("client_id", client_id)
                params.setdefault("client_secret", secret)
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else params.get("token")
            self._send(emulator.call(name, params, str(token) if token else None))
        elif kind == "response" and name and self.command == "POST":
            try:
                payload = json.loads(raw or b"{}")
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                self._send(Reply(400, {"ok": False, "error": "invalid_payload"}))
                return
            self._send(emulator.respond(name, payload))
        else:
            self._send(Reply(404, {"ok": False, "error": "not_found"}))

    def _body(self, raw: bytes) -> JsonDict:
        if not raw:
            return {}
        content_type = self.headers.get_content_type()
        if content_type == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                raise SlackError("invalid_json") from None
            if not isinstance(body, dict):
                raise SlackError("invalid_json")
            return body
        if content_type == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        raise SlackError("invalid_post_type", f"unsupported Content-Type {content_type!r}")

    def _send(self, reply: Reply) -> None:
        data = json.dumps(reply.body).encode("utf-8")
        # A client that gave up (a timeout against `hang`) is gone; the call still happened.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
