"""A local HTTP server that answers like Slack's Web API and keeps the workspace's state.

Point the real `slack_sdk.WebClient(base_url=emulator.api_url)` at it. It speaks the wire
format the SDK uses (form-encoded or JSON bodies, Bearer tokens, HTTP 200 with `ok: false`
for API errors, 429 with `Retry-After`), validates payloads where that is cheap, and can be
told to fail (`fail`, `fail_for`) or stall (`hang`). Faulted calls change nothing.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from bot.sandbox.workspace import (
    Ephemeral,
    JsonDict,
    Message,
    SlackError,
    View,
    Workspace,
    parse_blocks,
    parse_view,
    truthy,
)

logger = logging.getLogger(__name__)
Clock = Callable[[], float]
_FAULT_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Fault:
    method: str | None
    status: int
    error: str
    retry_after: float | None
    times: int | None  # None: until the window ends or faults are cleared
    until: float | None = None
    clock: Clock | None = None


@dataclass(slots=True)
class _Token:
    """A token the emulator issued through OAuth: whose it is, and until when it works."""

    team_id: str
    team_name: str
    kind: str  # "bot" or "refresh"
    expires_at: float | None = None
    revoked: bool = False


@dataclass(slots=True)
class _Hang:
    method: str | None
    seconds: float
    times: int | None


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
        self._faults: list[_Fault] = []
        self._hangs: list[_Hang] = []
        self._closed = threading.Event()
        # OAuth: registered apps (client id → secret, redirect URL, rotation), the codes of
        # installs in progress, and the tokens issued, each bound to its workspace.
        self._apps: dict[str, tuple[str, str | None, int | None]] = {}
        self._codes: dict[str, tuple[str, str, str, str]] = {}  # code → client id, team, name, installer
        self._tokens: dict[str, _Token] = {}
        self._call_teams: list[str | None] = []
        self.installer: tuple[str, str, str] | None = None  # (team id, team name, user) the next authorize is
        self._server = _Server(("127.0.0.1", port), _Handler)
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
        with self._lock:
            self._apps[client_id] = (client_secret, redirect_uri, expires_in)

    def log_in(self, team_id: str, user: str, team_name: str = "") -> None:
        """Who approves the next install on the authorize page: `user` of workspace `team_id`."""
        self.installer = (team_id, team_name or team_id.lower(), user)

    def authorize(self, query: JsonDict) -> Reply:
        """GET /oauth/v2/authorize: the person logged in approves at once; back to the app with a code."""
        app = self._apps.get(str(query.get("client_id") or ""))
        if app is None or self.installer is None:
            return Reply(400, {"ok": False, "error": "invalid_client_id" if app is None else "not_logged_in"})
        redirect = str(query.get("redirect_uri") or app[1] or "")
        if not redirect:
            return Reply(400, {"ok": False, "error": "bad_redirect_uri"})
        code = f"code-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._codes[code] = (str(query["client_id"]), *self.installer)
        location = f"{redirect}?{urlencode({'code': code, 'state': query.get('state') or ''})}"
        return Reply(302, {}, {"Location": location})

    def uninstall(self, team_id: str) -> None:
        """Revoke every token of workspace `team_id`, as Slack does when the app is uninstalled."""
        with self._lock:
            for token in self._tokens.values():
                if token.team_id == team_id:
                    token.revoked = True

    def expire_tokens(self, team_id: str) -> None:
        """Let the access tokens of `team_id` reach their expiry now (token rotation)."""
        with self._lock:
            for token in self._tokens.values():
                if token.team_id == team_id and token.kind == "bot" and token.expires_at is not None:
                    token.expires_at = time.time()

    def calls_by_team(self, method: str) -> list[tuple[str | None, JsonDict]]:
        """Calls of `method` with the workspace whose issued token made each (None: another token)."""
        with self._lock:
            return [
                (team, copy.deepcopy(p))
                for (m, p), team in zip(self._calls, self._call_teams, strict=True)
                if m == method
            ]

    def _oauth_access(self, params: JsonDict) -> JsonDict:
        client_id = str(params.get("client_id") or "")
        app = self._apps.get(client_id)
        if app is None or params.get("client_secret") != app[0]:
            raise SlackError("invalid_client_id" if app is None else "bad_client_secret")
        expires_in = app[2]
        with self._lock:
            if params.get("grant_type") == "refresh_token":
                old = self._tokens.get(str(params.get("refresh_token") or ""))
                if old is None or old.kind != "refresh" or old.revoked:
                    raise SlackError("invalid_refresh_token")
                team_id, team_name, user = old.team_id, old.team_name, None
            else:
                grant = self._codes.pop(str(params.get("code") or ""), None)
                if grant is None or grant[0] != client_id:
                    raise SlackError("invalid_code")
                _, team_id, team_name, user = grant
            prefix = "xoxe.xoxb-1-" if expires_in else "xoxb-"
            access = f"{prefix}{team_id}-{uuid.uuid4().hex}"
            expires_at = time.time() + expires_in if expires_in else None
            self._tokens[access] = _Token(team_id, team_name, "bot", expires_at)
            body: JsonDict = {
                "access_token": access, "token_type": "bot", "scope": ",".join(_BOT_SCOPES),
                "bot_user_id": self.workspace.bot_user_id, "app_id": "A0APP",
                "team": {"id": team_id, "name": team_name}, "enterprise": None, "is_enterprise_install": False,
            }  # fmt: skip
            if user is not None:
                body["authed_user"] = {"id": user}
            if expires_in:
                refresh = f"xoxe-1-{uuid.uuid4().hex}"
                self._tokens[refresh] = _Token(team_id, team_name, "refresh")
                body.update(refresh_token=refresh, expires_in=expires_in)
        return body

    def _token_problem(self, token: str) -> str | None:
        """Why Slack would refuse `token` (None: it works); records whose call this is."""
        with self._lock:
            issued = self._tokens.get(token)
            self._call_teams.append(issued.team_id if issued else None)
            if issued is not None:
                if issued.revoked:
                    return "token_revoked"
                if issued.kind != "bot":
                    return "invalid_auth"
                if issued.expires_at is not None and time.time() >= issued.expires_at:
                    return "token_expired"
                return None
        return None if (token == self.token if self.token else token.startswith("xoxb-")) else "invalid_auth"

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
        with self._lock:
            self._faults.append(_Fault(method, status, _fault_error(status, error), retry_after, times))

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
        clock = clock or self.now
        fault = _Fault(method, status, _fault_error(status, error), retry_after, None, clock() + seconds, clock)
        with self._lock:
            self._faults.append(fault)

    def hang(self, method: str | None, seconds: float, *, times: int | None = 1) -> None:
        """Answer the next `times` calls of `method` only after `seconds` of real time. The
        call is still applied, like a slow Slack whose success the client never saw."""
        with self._lock:
            self._hangs.append(_Hang(method, seconds, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hangs.clear()

    def _take_fault(self, method: str) -> Reply | None:
        with self._lock:
            for fault in list(self._faults):
                if fault.until is not None and fault.clock is not None and fault.clock() >= fault.until:
                    self._faults.remove(fault)
                    continue
                if fault.method not in (None, method) or (fault.method is None and method == "response_url"):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                headers = {}
                if fault.status == 429:
                    retry_after = fault.retry_after
                    if retry_after is None and fault.until is not None and fault.clock is not None:
                        retry_after = fault.until - fault.clock()
                    headers["Retry-After"] = str(max(0, math.ceil(retry_after or 0)))
                return Reply(fault.status, {"ok": False, "error": fault.error}, headers)
        return None

    def _take_hang(self, method: str) -> float:
        with self._lock:
            for hang in self._hangs:
                if hang.method == method or (hang.method is None and method != "response_url"):
                    if hang.times is not None:
                        hang.times -= 1
                        if hang.times <= 0:
                            self._hangs.remove(hang)
                    return hang.seconds
        return 0.0

    # -- the API, in process (the HTTP handler and the sandbox page call these) ------------
    def call(self, method: str, params: JsonDict, token: str | None = None) -> Reply:
        """Answer one Web API call as Slack would."""
        params = {k: v for k, v in params.items() if k != "token"}
        fault = self._take_fault(method)
        if fault is not None:
            with self._lock:
                self._faulted.append((method, copy.deepcopy(params)))
            return fault
        self._closed.wait(self._take_hang(method))
        with self._lock:
            self._calls.append((method, copy.deepcopy({k: v for k, v in params.items() if k != "client_secret"})))
        if method == "oauth.v2.access":  # client credentials instead of a token
            with self._lock:
                self._call_teams.append(None)
            try:
                return Reply(200, {"ok": True, **self._oauth_access(params)})
            except SlackError as exc:
                return Reply(200, _error_body(exc))
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
            return Reply(200, _error_body(exc))
        except Exception:  # a bug here should reach the client as an error, not a dropped connection
            logger.exception("slack emulator: %s failed on %r", method, params)
            return Reply(500, {"ok": False, "error": "internal_error"})

    def respond(self, url_id: str, payload: JsonDict) -> Reply:
        """Answer a POST to a response_url."""
        fault = self._take_fault("response_url")
        if fault is not None:
            with self._lock:
                self._faulted.append(("response_url", copy.deepcopy(payload)))
            return fault
        self._closed.wait(self._take_hang("response_url"))
        with self._lock:
            self._calls.append(("response_url", {"response_url": url_id, **copy.deepcopy(payload)}))
            self._call_teams.append(None)
        try:
            self.workspace.respond(url_id, payload)
        except SlackError as exc:
            status = 404 if exc.code in ("invalid_response_url", "expired_url", "used_url") else 400
            return Reply(status, _error_body(exc))
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


def _fault_error(status: int, error: str | None) -> str:
    if error:
        return error
    if status == 200:
        raise ValueError("a fault with status 200 needs an error code, e.g. error='channel_not_found'")
    return _FAULT_ERRORS.get(status, "fatal_error")


def _error_body(exc: SlackError) -> JsonDict:
    body: JsonDict = {"ok": False, "error": exc.code}
    if exc.messages:
        body["response_metadata"] = {"messages": exc.messages}
    return body


def _required(params: JsonDict, key: str, error: str) -> str:
    value = params.get(key)
    if not value:
        raise SlackError(error, f"missing `{key}`")
    return str(value)


def _content(params: JsonDict) -> tuple[str, list[JsonDict]]:
    text, blocks = str(params.get("text") or ""), parse_blocks(params.get("blocks"))
    if not text and not blocks and not params.get("attachments"):
        raise SlackError("no_text")
    return text, blocks


def _flag(params: JsonDict, key: str) -> bool:
    return truthy(params.get(key))


def _metadata(params: JsonDict) -> JsonDict | None:
    """Message metadata as Slack checks it: an object (or its JSON) with a string `event_type`
    and an object `event_payload`."""
    raw = params.get("metadata")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SlackError("invalid_metadata_format", "metadata must be a JSON object") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event_type"), str):
        raise SlackError("invalid_metadata_schema", "metadata needs a string event_type")
    if not isinstance(raw.get("event_payload", {}), dict):
        raise SlackError("invalid_metadata_schema", "event_payload must be an object")
    return {"event_type": raw["event_type"], "event_payload": raw.get("event_payload", {})}


# -- methods ------------------------------------------------------------------------------------
Method = Callable[[SlackEmulator, JsonDict], JsonDict]
METHODS: dict[str, Method] = {}


def _method(name: str) -> Callable[[Method], Method]:
    def register(handler: Method) -> Method:
        METHODS[name] = handler
        return handler

    return register


@_method("auth.test")
def _auth_test(em: SlackEmulator, p: JsonDict) -> JsonDict:
    ws = em.workspace
    return {
        "url": "https://countersign-sandbox.slack.com/", "team": "countersign sandbox", "user": "countersign",
        "team_id": ws.team_id, "user_id": ws.bot_user_id, "bot_id": ws.bot_id, "is_enterprise_install": False,
    }  # fmt: skip


_BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "commands",
    "groups:history",
    "im:history",
    "im:write",
    "usergroups:read",
    "users:read",
)


@_method("chat.postMessage")
def _post_message(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel = _required(p, "channel", "channel_not_found")
    text, blocks = _content(p)
    thread_ts = str(p.get("thread_ts") or "") or None
    message = em.workspace.post(
        channel, text, blocks, thread_ts=thread_ts, broadcast=_flag(p, "reply_broadcast"), metadata=_metadata(p)
    )
    return {"channel": message.channel, "ts": message.ts, "message": em.workspace.to_slack(message, metadata=True)}


@_method("chat.update")
def _update(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel, ts = _required(p, "channel", "channel_not_found"), _required(p, "ts", "message_not_found")
    text, blocks = _content(p)
    message = em.workspace.update(channel, ts, text, blocks, via="chat.update")
    return {"channel": channel, "ts": ts, "text": text, "message": em.workspace.to_slack(message)}


@_method("chat.delete")
def _delete(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel, ts = _required(p, "channel", "channel_not_found"), _required(p, "ts", "message_not_found")
    em.workspace.delete(channel, ts)
    return {"channel": channel, "ts": ts}


@_method("chat.postEphemeral")
def _post_ephemeral(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel, user = _required(p, "channel", "channel_not_found"), _required(p, "user", "user_not_found")
    text, blocks = _content(p)
    thread_ts = str(p.get("thread_ts") or "") or None
    return {"message_ts": em.workspace.post_ephemeral(channel, user, text, blocks, thread_ts=thread_ts).ts}


@_method("conversations.open")
def _open(em: SlackEmulator, p: JsonDict) -> JsonDict:
    users = p.get("users") or ""
    users = [u.strip() for u in users.split(",") if u.strip()] if isinstance(users, str) else list(users)
    if len(users) != 1:
        raise SlackError("users_list_not_supplied" if not users else "not_supported", "open a DM with one user")
    channel = em.workspace.open_dm(str(users[0]))
    return {"channel": {"id": channel.id, "is_im": True, "user": channel.user}}


@_method("conversations.history")
def _history(em: SlackEmulator, p: JsonDict) -> JsonDict:
    messages = em.workspace.history(_required(p, "channel", "channel_not_found"))
    limit = int(p.get("limit") or 100)
    page = [em.workspace.to_slack(m, metadata=_flag(p, "include_all_metadata")) for m in messages[:limit]]
    return {"messages": page, "has_more": len(messages) > limit, "response_metadata": {"next_cursor": ""}}


@_method("conversations.replies")
def _replies(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel, ts = _required(p, "channel", "channel_not_found"), _required(p, "ts", "thread_not_found")
    with_metadata = _flag(p, "include_all_metadata")
    messages = [em.workspace.to_slack(m, metadata=with_metadata) for m in em.workspace.thread(channel, ts)]
    return {"messages": messages, "has_more": False, "response_metadata": {"next_cursor": ""}}


@_method("views.open")
def _views_open(em: SlackEmulator, p: JsonDict) -> JsonDict:
    trigger_id = _required(p, "trigger_id", "invalid_arguments")
    view = em.workspace.open_view(trigger_id, parse_view(p.get("view"), kinds=("modal",)), strict=em.strict_triggers)
    return {"view": em.workspace.view_to_slack(view)}


@_method("views.push")
def _views_push(em: SlackEmulator, p: JsonDict) -> JsonDict:
    trigger_id = _required(p, "trigger_id", "invalid_arguments")
    view = em.workspace.push_view(trigger_id, parse_view(p.get("view"), kinds=("modal",)), strict=em.strict_triggers)
    return {"view": em.workspace.view_to_slack(view)}


@_method("views.update")
def _views_update(em: SlackEmulator, p: JsonDict) -> JsonDict:
    payload = parse_view(p.get("view"), kinds=("modal", "home"))
    view_id, external_id = p.get("view_id"), p.get("external_id")
    if not view_id and not external_id:
        raise SlackError("invalid_arguments", "pass `view_id` or `external_id`")
    view = em.workspace.update_view(view_id, external_id, p.get("hash"), payload)
    return {"view": em.workspace.view_to_slack(view)}


@_method("views.publish")
def _views_publish(em: SlackEmulator, p: JsonDict) -> JsonDict:
    user = _required(p, "user_id", "invalid_arguments")
    view = em.workspace.publish_home(user, parse_view(p.get("view"), kinds=("home",)), p.get("hash"))
    return {"view": em.workspace.view_to_slack(view)}


@_method("usergroups.list")
def _usergroups(em: SlackEmulator, p: JsonDict) -> JsonDict:
    groups = []
    for group in em.workspace.usergroups():
        data: JsonDict = {"id": group.id, "team_id": em.workspace.team_id, "handle": group.handle}
        data.update(name=group.name, is_usergroup=True, user_count=len(group.users))
        if _flag(p, "include_users"):
            data["users"] = group.users
        groups.append(data)
    return {"usergroups": groups}


@_method("usergroups.users.list")
def _usergroup_users(em: SlackEmulator, p: JsonDict) -> JsonDict:
    return {"users": em.workspace.usergroup(_required(p, "usergroup", "no_such_subteam")).users}


@_method("users.info")
def _users_info(em: SlackEmulator, p: JsonDict) -> JsonDict:
    user = em.workspace.user(_required(p, "user", "user_not_found"))
    profile = {"real_name": user.real_name, "display_name": user.name}
    data = {"id": user.id, "team_id": em.workspace.team_id, "name": user.name, "real_name": user.real_name}
    return {"user": {**data, "profile": profile, "deleted": False, "is_bot": user.id == em.workspace.bot_user_id}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of concurrent clients for a 1 s SYN retry
    block_on_close = False
    emulator: SlackEmulator


class _Handler(BaseHTTPRequestHandler):
    server_version = "SlackEmulator/1"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `emulator.calls`, not the access log."""

    def _dispatch(self) -> None:
        emulator = cast(_Server, self.server).emulator
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
                self._send(Reply(200, _error_body(exc)))
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
