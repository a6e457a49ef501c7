"""A local HTTP server that answers like Slack's Web API and keeps the workspace's state.

Point the real `slack_sdk.WebClient(base_url=emulator.api_url)` at it. It speaks the wire
format the SDK uses (form-encoded or JSON bodies, Bearer tokens, HTTP 200 with `ok: false`
for API errors, 429 with `Retry-After`; `slack_http.py`), validates payloads where that is
cheap (`slack_methods.py`), issues tokens through OAuth (`slack_oauth.py`), and can be told to
fail (`fail`, `fail_for`), stall (`hang`) or hold calls until released (`hold`;
`faults.py`). Faulted calls change nothing. With `socket_mode`, `apps.connections.open` hands
an app-level token a Socket Mode server's WebSocket URL (`tests/fakes/socket_mode_server.py`).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from bot.sandbox.faults import Clock, Faults, Hold, Reply
from bot.sandbox.slack_http import Handler, Server
from bot.sandbox.slack_methods import METHODS, error_body
from bot.sandbox.slack_oauth import OAuthIssuer
from bot.sandbox.workspace import Ephemeral, JsonDict, Message, SlackError, View, Workspace

__all__ = ["Clock", "Hold", "Reply", "SlackEmulator"]

logger = logging.getLogger(__name__)


class SlackEmulator:
    """The fake Slack: a Web API on 127.0.0.1 with state, a query API for tests, and faults.

    `token`: the only valid token (default: any `xoxb-` token). `now`: the clock for ts,
    trigger expiry and fail windows. `strict_triggers=False` accepts any trigger_id;
    `strict_ids=False` creates unknown channels and users on first use.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        now: Clock = time.time,
        strict_triggers: bool = True,
        strict_ids: bool = True,
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        team_id: str = "T0SANDBOX",
        port: int = 0,
    ) -> None:
        self.token, self.now, self.strict_triggers = token, now, strict_triggers
        self.workspace = Workspace(
            now=now, bot_user_id=bot_user_id, bot_id=bot_id, team_id=team_id, strict_ids=strict_ids
        )
        self.workspace.add_user(bot_user_id, "countersign", "countersign")
        self._lock = threading.Lock()
        self._calls: list[tuple[str, JsonDict]] = []
        self._faulted: list[tuple[str, JsonDict]] = []
        self._faults = Faults(now)
        self._closed = threading.Event()
        self._oauth = OAuthIssuer(bot_user_id)
        self._call_teams: list[str | None] = []
        self._socket_mode: tuple[str, Callable[[], str]] | None = None
        self._server = Server(("127.0.0.1", port), Handler)
        self._server.emulator = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self.api_url = self.url + "api/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-emulator", daemon=True
        )
        self._thread.start()

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> SlackEmulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving; calls still hanging are released at once."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._faults.release_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- seeding -------------------------------------------------------------------------
    def add_user(self, id: str, name: str, real_name: str = "") -> None:
        self.workspace.add_user(id, name, real_name)

    def add_usergroup(self, id: str, handle: str, users: list[str], name: str = "") -> None:
        self.workspace.add_usergroup(id, handle, users, name)

    def add_channel(self, id: str, name: str) -> None:
        self.workspace.add_channel(id, name)

    def new_trigger_id(self, user: str | None = None) -> str:
        """A trigger_id as a click would carry: good for one views.open/push within 3 s."""
        return self.workspace.new_trigger_id(user)

    def new_response_url(self, channel: str | None = None, ts: str | None = None, user: str | None = None) -> str:
        """A response_url on this server; with `channel` and `ts` it can replace or delete
        that message, with `channel` and `user` it can show them ephemeral messages."""
        return f"{self.url}response/{self.workspace.new_response_url(channel, ts, user)}"

    def dm(self, user: str) -> str:
        """The id of the DM channel with `user` (what conversations.open answers)."""
        return self.workspace.open_dm(user).id

    # -- OAuth (multi-workspace installs) -------------------------------------------------
    def add_oauth_app(
        self, client_id: str, client_secret: str, *, redirect_uri: str | None = None, expires_in: int | None = None
    ) -> None:
        """Register an app for the OAuth flow; `expires_in` (seconds) turns on token rotation."""
        self._oauth.add_app(client_id, client_secret, redirect_uri, expires_in)

    def log_in(self, team_id: str, user: str, team_name: str = "") -> None:
        """Who approves the next install on the authorize page: `user` of workspace `team_id`."""
        self._oauth.installer = (team_id, team_name or team_id.lower(), user)

    def authorize(self, query: JsonDict) -> Reply:
        """GET /oauth/v2/authorize: the person logged in approves at once; back to the app with a code."""
        return self._oauth.authorize(query)

    def uninstall(self, team_id: str) -> None:
        """Revoke every token of workspace `team_id`, as Slack does when the app is uninstalled."""
        self._oauth.revoke_team(team_id)

    def calls_by_team(self, method: str) -> list[tuple[str | None, JsonDict]]:
        """Calls of `method` with the workspace whose issued token made each (None: another token)."""
        with self._lock:
            return [
                (team, copy.deepcopy(p))
                for (m, p), team in zip(self._calls, self._call_teams, strict=True)
                if m == method
            ]

    def _token_problem(self, token: str) -> str | None:
        """Why Slack would refuse `token` (None: it works); records whose call this is."""
        issued, problem = self._oauth.check(token)
        with self._lock:
            self._call_teams.append(issued.team_id if issued else None)
        if issued is not None:
            return problem
        return None if (token == self.token if self.token else token.startswith("xoxb-")) else "invalid_auth"

    # -- Socket Mode ---------------------------------------------------------------------
    def socket_mode(self, app_token: str, issue_url: Callable[[], str]) -> None:
        """Turn Socket Mode on: `apps.connections.open` called with the app-level token
        `app_token` (`xapp-…`) answers with a new WebSocket URL from `issue_url`."""
        self._socket_mode = (app_token, issue_url)

    def _connections_open(self, token: str | None) -> Reply:
        """As Slack: only an app-level token opens a connection; a bot's is the wrong type."""
        with self._lock:
            self._call_teams.append(None)
        if not token:
            return Reply(200, {"ok": False, "error": "not_authed"})
        if not token.startswith("xapp-"):
            return Reply(200, {"ok": False, "error": "not_allowed_token_type"})
        if self._socket_mode is None or token != self._socket_mode[0]:
            return Reply(200, {"ok": False, "error": "invalid_auth"})
        return Reply(200, {"ok": True, "url": self._socket_mode[1]()})

    # -- faults --------------------------------------------------------------------------
    def fail(
        self,
        method: str | None = None,
        *,
        status: int = 429,
        retry_after: float = 1,
        times: int | None = 1,
        error: str | None = None,
    ) -> None:
        """Fail the next `times` calls of `method` (any method if None; "response_url" for
        response_url posts). 429 carries `Retry-After`; status 200 answers `ok: false`."""
        self._faults.fail(method, status=status, retry_after=retry_after, times=times, error=error)

    def fail_for(
        self,
        seconds: float,
        *,
        status: int = 429,
        clock: Clock | None = None,
        retry_after: float | None = None,
        error: str | None = None,
        method: str | None = None,
    ) -> None:
        """Fail every call for `seconds` by `clock` (default: the emulator's clock). A 429's
        `Retry-After` defaults to the time left in the window."""
        self._faults.fail_for(seconds, status=status, clock=clock, retry_after=retry_after, error=error, method=method)

    def hang(self, method: str | None, seconds: float, *, times: int | None = 1) -> None:
        """Answer the next `times` calls of `method` only after `seconds` of real time. The
        call is still applied, like a slow Slack whose success the client never saw."""
        self._faults.hold(method, times=times, seconds=seconds)

    def hold(self, method: str | None, *, times: int | None = 1) -> Hold:
        """Keep the next `times` calls of `method` unanswered until `.release()` (or close),
        then apply them. Unlike `hang`, no timer decides when: a test waits on the hold's
        `arrived` and `landed` events, so a busy machine cannot reorder what it checks."""
        return self._faults.hold(method, times=times)

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- the API, in process (the HTTP handler and the sandbox page call these) ------------
    def call(self, method: str, params: JsonDict, token: str | None = None) -> Reply:
        """Answer one Web API call as Slack would."""
        params = {k: v for k, v in params.items() if k != "token"}
        fault = self._faults.take_fault(method)
        if fault is not None:
            with self._lock:
                self._faulted.append((method, copy.deepcopy(params)))
            return fault
        hold = self._faults.take_hold(method)
        if hold is None:
            return self._apply(method, params, token)
        hold.wait(self._closed)
        reply = self._apply(method, params, token)
        hold.landed.set()
        return reply

    def _apply(self, method: str, params: JsonDict, token: str | None) -> Reply:
        with self._lock:
            self._calls.append((method, copy.deepcopy({k: v for k, v in params.items() if k != "client_secret"})))
        if method == "oauth.v2.access":  # client credentials instead of a token
            with self._lock:
                self._call_teams.append(None)
            try:
                return Reply(200, {"ok": True, **self._oauth.access(params)})
            except SlackError as exc:
                return Reply(200, error_body(exc))
        if method == "apps.connections.open":  # an app-level token, not a workspace's
            return self._connections_open(token)
        handler = METHODS.get(method)
        problem = "unknown_method" if handler is None else ("not_authed" if not token else self._token_problem(token))
        if handler is None or problem is not None:
            if not token or handler is None:
                with self._lock:
                    self._call_teams.append(None)
            return Reply(200, {"ok": False, "error": problem or "unknown_method"})
        try:
            return Reply(200, {"ok": True, **handler(self, params)})
        except SlackError as exc:
            return Reply(200, error_body(exc))
        except Exception:  # a bug here should reach the client as an error, not a dropped connection
            logger.exception("slack emulator: %s failed on %r", method, params)
            return Reply(500, {"ok": False, "error": "internal_error"})

    def respond(self, url_id: str, payload: JsonDict) -> Reply:
        """Answer a POST to a response_url."""
        fault = self._faults.take_fault("response_url")
        if fault is not None:
            with self._lock:
                self._faulted.append(("response_url", copy.deepcopy(payload)))
            return fault
        hold = self._faults.take_hold("response_url")
        if hold is None:
            return self._respond(url_id, payload)
        hold.wait(self._closed)
        reply = self._respond(url_id, payload)
        hold.landed.set()
        return reply

    def _respond(self, url_id: str, payload: JsonDict) -> Reply:
        with self._lock:
            self._calls.append(("response_url", {"response_url": url_id, **copy.deepcopy(payload)}))
            self._call_teams.append(None)
        try:
            self.workspace.respond(url_id, payload)
        except SlackError as exc:
            status = 404 if exc.code in ("invalid_response_url", "expired_url", "used_url") else 400
            return Reply(status, error_body(exc))
        return Reply(200, {"ok": True})

    # -- what happened (for tests and the sandbox page) ------------------------------------
    @property
    def calls(self) -> list[tuple[str, JsonDict]]:
        """Every call that reached the API (not faulted), in order, without its token."""
        with self._lock:
            return copy.deepcopy(self._calls)

    @property
    def faulted_calls(self) -> list[tuple[str, JsonDict]]:
        with self._lock:
            return copy.deepcopy(self._faulted)

    def calls_to(self, method: str) -> list[JsonDict]:
        return [params for name, params in self.calls if name == method]

    def messages(self, channel: str) -> list[Message]:
        """Every message in the channel (thread replies too), oldest first."""
        return self.workspace.messages(channel)

    def message(self, channel: str, ts: str) -> Message:
        return self.workspace.message(channel, ts)

    def thread(self, channel: str, ts: str) -> list[Message]:
        return self.workspace.thread(channel, ts)

    def ephemerals(self, user: str | None = None, channel: str | None = None) -> list[Ephemeral]:
        return self.workspace.ephemerals(user, channel)

    def home(self, user: str) -> View | None:
        return self.workspace.home(user)

    @property
    def views(self) -> list[View]:
        """Modals opened or pushed, in order, as last updated."""
        return self.workspace.views()
