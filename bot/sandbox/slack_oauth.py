"""Multi-workspace installs in the emulator: registered apps, the codes of installs in
progress, and the tokens issued (with rotation), each bound to its workspace, as Slack's
`oauth/v2/authorize` and `oauth.v2.access` hand them out."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from bot.sandbox.faults import Reply
from bot.sandbox.slack_methods import BOT_SCOPES
from bot.sandbox.workspace import JsonDict, SlackError


@dataclass(slots=True)
class Token:
    """A token the emulator issued through OAuth: whose it is, and until when it works."""

    team_id: str
    team_name: str
    kind: str  # "bot" or "refresh"
    expires_at: float | None = None
    revoked: bool = False


class OAuthIssuer:
    def __init__(self, bot_user_id: str) -> None:
        self.bot_user_id = bot_user_id
        self._lock = threading.Lock()
        self._apps: dict[str, tuple[str, str | None, int | None]] = {}  # client id → secret, redirect, rotation
        self._codes: dict[str, tuple[str, str, str, str]] = {}  # code → client id, team, name, installer
        self._tokens: dict[str, Token] = {}
        self.installer: tuple[str, str, str] | None = None  # (team id, team name, user) the next authorize is

    def add_app(self, client_id: str, client_secret: str, redirect_uri: str | None, expires_in: int | None) -> None:
        with self._lock:
            self._apps[client_id] = (client_secret, redirect_uri, expires_in)

    def authorize(self, query: JsonDict) -> Reply:
        """The person logged in approves at once; back to the app with a code."""
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

    def revoke_team(self, team_id: str) -> None:
        with self._lock:
            for token in self._tokens.values():
                if token.team_id == team_id:
                    token.revoked = True

    def access(self, params: JsonDict) -> JsonDict:
        """`oauth.v2.access`: a code (or a refresh token) traded for a bot token."""
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
            self._tokens[access] = Token(team_id, team_name, "bot", expires_at)
            body: JsonDict = {
                "access_token": access, "token_type": "bot", "scope": ",".join(BOT_SCOPES),
                "bot_user_id": self.bot_user_id, "app_id": "A0APP",
                "team": {"id": team_id, "name": team_name}, "enterprise": None, "is_enterprise_install": False,
            }  # fmt: skip
            if user is not None:
                body["authed_user"] = {"id": user}
            if expires_in:
                refresh = f"xoxe-1-{uuid.uuid4().hex}"
                self._tokens[refresh] = Token(team_id, team_name, "refresh")
                body.update(refresh_token=refresh, expires_in=expires_in)
        return body

    def check(self, token: str) -> tuple[Token | None, str | None]:
        """The issued token (None: not one of ours) and why Slack would refuse it (None: it works)."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None:
                return None, None
            if issued.revoked:
                return issued, "token_revoked"
            if issued.kind != "bot":
                return issued, "invalid_auth"
            if issued.expires_at is not None and time.time() >= issued.expires_at:
                return issued, "token_expired"
            return issued, None
