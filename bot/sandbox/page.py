"""The sandbox page: a Slack-like web client for the emulated workspace, on http://127.0.0.1:8000.

It serves a static single page (`static/`: vanilla JavaScript, no build step, no CDN) and a
small JSON API that the page polls and posts to:

    GET  /api/personas        the people the page can act as
    GET  /api/state?user=U…   the workspace as that person sees it (`snapshot`)
    POST /api/compose         {user, channel, text, thread_ts?}: a slash command or a message
    POST /api/click           {user, where: {channel, ts} | {view_id}, block_id, element}
    POST /api/submit          {user, view_id, values}: a modal's `view_submission`
    POST /api/close           {user, view_id}
    POST /api/home            {user}: `app_home_opened`

Everything the page sends on to the app goes as a signed Slack request (`Actor`). The server
runs in its own threads (`start()` returns at once); `close()` stops it.

Only the page itself may use the API, not another site open in the same browser: every
request must name this server in `Host` (a loopback name and its port, which defeats DNS
rebinding), an `Origin` if sent must be the page's own, and every `/api/` request must carry
the page's token in `X-Countersign-Token`. The token is made at start and written into the
served `index.html`, which another origin cannot read; POSTs must be `application/json`, which
a cross-site form cannot send. Anything else is answered 403 (415 for the type), naming why.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from bot.sandbox.actor import Actor
from bot.sandbox.snapshot import snapshot
from bot.sandbox.workspace import JsonDict, SlackError

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/static/mrkdwn.js": ("mrkdwn.js", "text/javascript; charset=utf-8"),
    "/static/blocks.js": ("blocks.js", "text/javascript; charset=utf-8"),
    "/static/modal.js": ("modal.js", "text/javascript; charset=utf-8"),
    "/static/messages.js": ("messages.js", "text/javascript; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
}
# Nothing but our own files may load or run, whatever a message contains.
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'"
MAX_BODY = 256 * 1024
TOKEN_HEADER = "X-Countersign-Token"  # noqa: S105 - a header's name
# In index.html, replaced by the page's token when served.
TOKEN_SLOT = "__COUNTERSIGN_TOKEN__"  # noqa: S105 - a placeholder
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class SandboxPage:
    def __init__(self, actor: Actor, *, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.actor = actor
        self._server = _Server((host, port), _Handler)
        self._server.page = self
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self.token = secrets.token_urlsafe(32)
        self.hosts = _own_hosts(host, self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-page", daemon=True
        )

    def start(self) -> SandboxPage:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def routes(self) -> dict[str, Callable[[JsonDict], JsonDict]]:
        actor = self.actor
        return {
            "/api/compose": lambda b: actor.compose(
                _user(b), _text(b, "channel"), _text(b, "text"), b.get("thread_ts")
            ),
            "/api/click": lambda b: actor.click(_user(b), _dict(b, "where"), _text(b, "block_id"), _dict(b, "element")),
            "/api/submit": lambda b: actor.submit(_user(b), _text(b, "view_id"), _dict(b, "values")),
            "/api/close": lambda b: actor.close(_user(b), _text(b, "view_id")),
            "/api/home": lambda b: actor.open_home(_user(b)),
        }


class BadRequest(ValueError):
    pass


class Forbidden(Exception):
    """A request that is not from the page itself; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def _own_hosts(host: str, port: int) -> frozenset[str]:
    """The `Host` values that name this server: the loopback names, and the bound address
    unless it is a wildcard (a wildcard is not a name anyone's page is served under)."""
    names = set(LOOPBACK_NAMES)
    if host not in ("", "0.0.0.0", "::"):  # noqa: S104 - recognising a wildcard, not binding one
        names.add(f"[{host}]" if ":" in host else host)
    return frozenset(f"{name}:{port}" for name in names)


def check_request(page: SandboxPage, method: str, path: str, headers: Message) -> None:
    """Raise `Forbidden` unless the request comes from the page itself (see the module doc)."""
    host = headers.get("Host") or ""
    if host.lower() not in page.hosts:
        raise Forbidden(f"Host {host!r} is not this page's ({', '.join(sorted(page.hosts))}): open {page.url}")
    origin = headers.get("Origin")
    if origin is not None and origin.lower() != f"http://{host.lower()}":
        raise Forbidden(f"Origin {origin!r} is not this page's (http://{host})")
    if not path.startswith("/api/"):
        return
    if method == "POST":
        content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise Forbidden(f"Content-Type {content_type!r} is not 'application/json'", status=415)
    token = headers.get(TOKEN_HEADER)
    if not token:
        raise Forbidden(f"no {TOKEN_HEADER}: reload the page")
    if not hmac.compare_digest(token.encode(), page.token.encode()):
        raise Forbidden(f"wrong {TOKEN_HEADER}: the sandbox restarted since the page loaded; reload it")


def _text(body: JsonDict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key!r} must be non-empty text")
    return value


def _user(body: JsonDict) -> str:
    return _text(body, "user")


def _dict(body: JsonDict, key: str) -> JsonDict:
    value = body.get(key)
    if not isinstance(value, dict):
        raise BadRequest(f"{key!r} must be an object")
    return value


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    page: SandboxPage


class _Handler(BaseHTTPRequestHandler):
    server_version = "CountersignSandbox/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page polls every second."""

    def do_GET(self) -> None:
        path = urlsplit(self.path)
        if not self._allowed("GET", path.path):
            return
        if path.path in FILES:
            name, content_type = FILES[path.path]
            data = (STATIC / name).read_bytes()
            if name == "index.html":
                data = data.replace(TOKEN_SLOT.encode(), self._page().token.encode())
            self._reply(200, data, content_type)
        elif path.path == "/api/state":
            user = (parse_qs(path.query).get("user") or [""])[0]
            if not user:
                self._json(400, {"ok": False, "error": "pass ?user=U…"})
                return
            self._json(200, snapshot(self._page().actor, user))
        elif path.path == "/api/personas":
            personas = [{"id": p.id, "name": p.name, "role": p.role} for p in self._page().actor.personas]
            self._reply(200, json.dumps(personas).encode(), "application/json; charset=utf-8")
        elif path.path == "/favicon.ico":
            self._reply(204, b"", "image/x-icon")
        else:
            self._json(404, {"ok": False, "error": f"no route GET {path.path}"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not self._allowed("POST", path):
            return
        route = self._page().routes().get(path)
        if route is None:
            self._json(404, {"ok": False, "error": f"no route POST {path}"})
            return
        length = self._content_length()
        if length is None:
            self._json(400, {"ok": False, "error": "Content-Length must be a number of bytes"})
            self.close_connection = True
            return
        if length > MAX_BODY:
            self._json(413, {"ok": False, "error": "body too large"})
            self.close_connection = True
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            self._json(200, route(body))
        except (ValueError, BadRequest) as exc:
            self._json(400, {"ok": False, "error": str(exc)})
        except SlackError as exc:
            self._json(200, {"ok": False, "notice": f"Slack error: {exc.code}"})
        except Exception:  # the page shows a notice; the server keeps serving
            log.exception("sandbox page: %s failed", path)
            self._json(500, {"ok": False, "notice": "The sandbox failed; see its log."})

    def _allowed(self, method: str, path: str) -> bool:
        try:
            check_request(self._page(), method, path, self.headers)
        except Forbidden as refusal:
            self._discard_body()
            self._json(refusal.status, {"ok": False, "error": str(refusal)})
            return False
        return True

    def _discard_body(self) -> None:
        """Read a refused request's (bounded) body, so that closing the socket with it unread
        does not reset the connection before the browser has the answer."""
        length = self._content_length()
        if length is not None and length <= MAX_BODY:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _content_length(self) -> int | None:
        """The declared body length, or None when it is not a plain count of bytes (`-5` would
        make `read` wait for the end of the stream, `²` is a digit to `int`)."""
        text = (self.headers.get("Content-Length") or "0").strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None

    def _page(self) -> SandboxPage:
        return cast(_Server, self.server).page

    def _json(self, status: int, payload: JsonDict) -> None:
        self._reply(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def _reply(self, status: int, data: bytes, content_type: str) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(data)
