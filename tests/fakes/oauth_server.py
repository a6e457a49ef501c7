"""A local OAuth 2.0 provider for the tests: its token endpoint (RFC 6749 §6,
`grant_type=refresh_token`; §4.1.3, `grant_type=authorization_code`) and its sign-in page
(§4.1.1, `GET /authorize`), which signs the person in at once and redirects back with a code.

    with FakeOAuth(client_id="countersign", client_secret="cs_…") as fake:
        fake.issue("rt_1")                 # a refresh token it will accept, once
        fake.fail(400, "invalid_grant")    # the next refresh is refused
        fake.url                           # http://127.0.0.1:PORT/token

Refresh tokens are single-use, as providers that rotate them make them: each accepted one is
spent and a new one comes back, so a second refresh with the same token is refused with
`invalid_grant` — the failure that two racing executors would cause. `refreshes` counts the
tokens granted; `requests` holds every form that was posted. `hold()` makes refreshes wait
until `release()`, so a test can line two of them up without sleeping.

    fake.authorize_url                 # http://127.0.0.1:PORT/authorize
    fake.deny()                        # the next sign-in is declined: error=access_denied

Each sign-in issues a code bound to its client id and redirect_uri, good once; exchanging it
gives `at_code_N_PLANTEDACCESS` and `rt_code_N_PLANTEDREFRESH`. `authorizations` holds the
query of every sign-in.
"""

from __future__ import annotations

import itertools
import json
import threading
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class FakeOAuth:
    def __init__(self, *, client_id: str = "countersign", client_secret: str | None = None, expires_in: int = 3600):
        self.client_id, self.client_secret, self.expires_in = client_id, client_secret, expires_in
        self.requests: list[dict[str, str]] = []
        self.authorizations: list[dict[str, str]] = []
        self._codes: dict[str, tuple[str, str]] = {}  # code → (client_id, redirect_uri)
        self._deny = 0
        self.refreshes = 0
        self.arrived = threading.Semaphore(0)  # released once per request, as it arrives
        self._valid: set[str] = set()
        self._faults: deque[tuple[int, str]] = deque()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}/token"
        self.authorize_url = f"http://{host!s}:{port}/authorize"

    def __enter__(self) -> FakeOAuth:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def issue(self, refresh_token: str) -> None:
        """Accept `refresh_token` (once)."""
        with self._lock:
            self._valid.add(refresh_token)

    def fail(self, status: int = 400, error: str = "invalid_grant") -> None:
        """Refuse the next refresh with an OAuth error answer."""
        with self._lock:
            self._faults.append((status, error))

    def deny(self) -> None:
        """Decline the next sign-in (the person clicked Cancel): `error=access_denied`."""
        with self._lock:
            self._deny += 1

    def authorize(self, query: dict[str, str]) -> str:
        """Where the sign-in page sends the browser: back to `redirect_uri` with a code or an error."""
        with self._lock:
            self.authorizations.append(query)
            redirect = query.get("redirect_uri", "")
            back: dict[str, str] = {"state": query["state"]} if "state" in query else {}
            if self._deny:
                self._deny -= 1
                back["error"] = "access_denied"
            elif query.get("response_type") != "code" or query.get("client_id") != self.client_id:
                back["error"] = "unauthorized_client"
            else:
                code = f"code_{next(self._numbers)}"
                self._codes[code] = (query["client_id"], redirect)
                back["code"] = code
        return f"{redirect}{'&' if '?' in redirect else '?'}{urllib.parse.urlencode(back)}"

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(form)
        self.arrived.release()
        self._gate.wait(timeout=30)
        with self._lock:
            if self._faults:
                status, error = self._faults.popleft()
                return status, {"error": error, "error_description": "The refresh token is no longer valid."}
            if form.get("grant_type") not in ("refresh_token", "authorization_code"):
                return 400, {"error": "unsupported_grant_type"}
            if form.get("client_id") != self.client_id or (
                self.client_secret is not None and form.get("client_secret") != self.client_secret
            ):
                return 401, {"error": "invalid_client"}
            if form["grant_type"] == "authorization_code":
                return self._exchange(form)
            token = form.get("refresh_token", "")
            if token not in self._valid:
                return 400, {"error": "invalid_grant", "error_description": "Unknown or already used refresh token."}
            self._valid.discard(token)
            number = next(self._numbers)
            self.refreshes += 1
            rotated = f"rt_rotated_{number}_PLANTEDREFRESH"
            self._valid.add(rotated)
            access = f"at_fresh_{number}_PLANTEDACCESS"
            return 200, {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": self.expires_in,
                "refresh_token": rotated,
            }

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        bound = self._codes.pop(form.get("code", ""), None)  # a code works once
        if bound is None or bound != (form.get("client_id"), form.get("redirect_uri")):
            return 400, {"error": "invalid_grant", "error_description": "Unknown, used or misdirected code."}
        number = next(self._numbers)
        refresh_token = f"rt_code_{number}_PLANTEDREFRESH"
        self._valid.add(refresh_token)
        return 200, {
            "access_token": f"at_code_{number}_PLANTEDACCESS",
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh_token,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOAuth


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `fake.requests`."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path != "/authorize":
            self.send_error(404)
            return
        target = self.server.fake.authorize(dict(urllib.parse.parse_qsl(query)))
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        form = dict(urllib.parse.parse_qsl(body))
        status, answer = self.server.fake.answer(form)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)
