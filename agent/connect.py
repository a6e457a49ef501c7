"""People connecting their own credential from Slack: the OAuth 2 authorization-code flow
(RFC 6749 §4.1) of the `oauth_providers` that have an `authorize_url`.

A link carries a `state` of 32 random bytes; only its sha256 is stored (`connect_states`),
bound to the Slack user, workspace, provider, secret and tool it was issued for. It expires
(`LINK_TTL` for a link shown after a click, `DM_LINK_TTL` for one sent in a direct message)
and is spent by a compare-and-set (`UPDATE … WHERE used_at IS NULL`), so each link connects
at most once, across replicas too. `complete` spends the state first, then trades the code at
the provider's token endpoint (`agent.oauth.exchange_code`, the refresh's HTTP helper), then
seals the tokens for that person as `countersign secrets connect` does (`connect_credential`)
and audits the connection. Whatever fails stores no token; every `ConnectRefused.problem`
is safe to show (it never carries a token, a code or a client secret).
"""

from __future__ import annotations

import hashlib
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.delegation import connect_credential
from agent.errors import AgentError
from agent.oauth import CodeExchangeFailed, exchange_code
from agent.vault import ANY_TOOL, TEAM, OAuthGrant, Vault, VaultError
from approvals import audit
from core.clock import Clock
from core.config import Config, OAuthProvider
from core.models import ConnectState

__all__ = ["DM_LINK_TTL", "LINK_TTL", "ConnectFlow", "ConnectLink", "ConnectRefused", "Connected"]

LINK_TTL = timedelta(minutes=10)  # shown to the person right after their click
DM_LINK_TTL = timedelta(hours=24)  # sent in a direct message, which may be read hours later
_PROBLEM_LIMIT = 200


class ConnectRefused(AgentError):
    """A sign-in that connects nothing: a bad, expired or spent link, the person declined, or
    the provider refused the code. `problem` is safe to show to people."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


@dataclass(frozen=True)
class ConnectLink:
    name: str  # the secret it connects
    provider: str
    url: str  # {public_url}/oauth/{provider}/start?state=…


@dataclass(frozen=True)
class Connected:
    user: str
    team_id: str | None
    provider: str
    name: str
    replaced: bool  # they had one connected before
    refreshable: bool


class ConnectFlow:
    """Issues people's connect links and completes their sign-in."""

    def __init__(
        self,
        config: Config,
        sessions: sessionmaker[Session],
        clock: Clock,
        public_url: str,
        vault: Vault | None,
    ) -> None:
        self.config, self.sessions, self.clock, self.vault = config, sessions, clock, vault
        self.public_url = public_url.rstrip("/")

    def provider_of(self, name: str) -> str | None:
        """The provider whose sign-in connects the secret `name`; None: only the CLI does."""
        return self.config.connect_provider(name)

    def redirect_uri(self, provider: str) -> str:
        return f"{self.public_url}/oauth/{urllib.parse.quote(provider, safe='')}/callback"

    def links(
        self,
        user: str,
        team_id: str | None,
        names: list[str] | tuple[str, ...],
        tool: str,
        *,
        action_id: str | None = None,
        ttl: timedelta = LINK_TTL,
    ) -> list[ConnectLink]:
        """One fresh personal link for each of `names` a provider's sign-in connects (the others
        are left out: the CLI connects them)."""
        found: list[ConnectLink] = []
        with self.sessions.begin() as session:
            now = self.clock.now()
            for name in dict.fromkeys(names):
                provider = self.provider_of(name)
                if provider is None:
                    continue
                state = secrets.token_urlsafe(32)
                session.add(
                    ConnectState(
                        state_hash=_hash(state),
                        user_id=user,
                        team_id=team_id,
                        provider=provider,
                        secret_name=name,
                        tool=tool,
                        action_id=action_id,
                        created_at=now,
                        expires_at=now + ttl,
                        used_at=None,
                    )
                )
                start = f"{self.public_url}/oauth/{urllib.parse.quote(provider, safe='')}/start"
                found.append(ConnectLink(name, provider, f"{start}?{urllib.parse.urlencode({'state': state})}"))
        return found

    def authorize_url(self, provider: str, state: str | None) -> str:
        """Where `/oauth/{provider}/start` sends the person: the provider's sign-in, carrying the
        state. The link is checked, not spent (the callback spends it)."""
        settings = self._provider(provider)
        assert settings.authorize_url is not None  # _provider checked it
        with self.sessions() as session:
            row = self._row(session, provider, state)
            self._check_usable(row, self.clock.now())
        query = {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": self.redirect_uri(provider),
            "state": state,
        }
        if settings.scopes:
            query["scope"] = " ".join(settings.scopes)
        separator = "&" if urllib.parse.urlsplit(settings.authorize_url).query else "?"
        return f"{settings.authorize_url}{separator}{urllib.parse.urlencode(query)}"

    def complete(self, provider: str, state: str | None, code: str | None, error: str | None) -> Connected:
        """The provider's redirect back: spend the state, trade the code, seal the tokens."""
        settings = self._provider(provider)
        with self.sessions.begin() as session:
            now = self.clock.now()
            row = self._row(session, provider, state)
            self._check_usable(row, now)
            spent = session.execute(
                update(ConnectState)
                .where(ConnectState.id == row.id, ConnectState.used_at.is_(None), ConnectState.expires_at > now)
                .values(used_at=now)
            )
            if getattr(spent, "rowcount", 0) != 1:  # another request spent it between our read and now
                raise ConnectRefused("this link was already used: connect links work once")
            link = _Link(row.user_id, row.team_id, row.secret_name, row.tool, row.action_id)
        try:
            return self._connect(provider, settings, link, code, error)
        except ConnectRefused as refused:
            with self.sessions.begin() as session:
                self._audit(session, "secret.connect_failed", link, provider, {"problem": refused.problem})
            raise

    def _connect(
        self, provider: str, settings: OAuthProvider, link: _Link, code: str | None, error: str | None
    ) -> Connected:
        if error is not None:
            if error == "access_denied":
                raise ConnectRefused(f"the sign-in at {provider!r} was declined (access_denied): nothing was connected")
            raise ConnectRefused(f"{provider!r} did not sign you in ({_short(error)}): nothing was connected")
        if not code:
            raise ConnectRefused(f"{provider!r} sent no authorization code back: nothing was connected")
        if self.vault is None:
            raise ConnectRefused("no vault is configured (COUNTERSIGN_VAULT_KEYS), so nothing can be stored")
        client_secret = None
        if settings.client_secret_name:
            try:
                client_secret = self.vault.get(settings.client_secret_name, tool=link.tool, owner=TEAM)
            except VaultError as exc:
                raise ConnectRefused(f"the client secret of {provider!r} cannot be read: {exc}") from None
        now = self.clock.now()
        try:
            tokens = exchange_code(provider, settings, code, self.redirect_uri(provider), client_secret, now=now)
        except CodeExchangeFailed as exc:
            raise ConnectRefused(f"{exc.reason}: nothing was connected") from None
        grant = OAuthGrant(provider, tokens.refresh_token, tokens.expires_at)
        replaced = connect_credential(
            self.vault, link.name, tokens.access_token, owner=link.user, scope=ANY_TOOL, actor=link.user, oauth=grant
        )
        with self.sessions.begin() as session:
            expires_at = tokens.expires_at.isoformat() if tokens.expires_at else None
            data = {"refreshable": tokens.refresh_token is not None, "replaced": replaced, "expires_at": expires_at}
            self._audit(session, "secret.connected", link, provider, data)
        return Connected(link.user, link.team_id, provider, link.name, replaced, tokens.refresh_token is not None)

    # -- helpers --------------------------------------------------------------------------------

    def _provider(self, provider: str) -> OAuthProvider:
        settings = self.config.oauth_providers.get(provider)
        if settings is None or settings.authorize_url is None:
            raise ConnectRefused(f"no provider {provider!r} that people connect from Slack")
        return settings

    def _row(self, session: Session, provider: str, state: str | None) -> ConnectState:
        if not state:
            raise ConnectRefused("the link has no state: open the link from Slack again")
        row = session.scalars(select(ConnectState).where(ConnectState.state_hash == _hash(state))).one_or_none()
        if row is None:
            raise ConnectRefused("this link is not one countersign issued: open the link from Slack again")
        if row.provider != provider:
            raise ConnectRefused(f"this link was issued for provider {row.provider!r}, not {provider!r}")
        return row

    def _check_usable(self, row: ConnectState, now: datetime) -> None:
        if row.used_at is not None:
            raise ConnectRefused("this link was already used: connect links work once")
        if row.expires_at <= now:
            raise ConnectRefused("this link has expired: ask countersign for a new one (click Approve again)")

    def _audit(self, session: Session, kind: str, link: _Link, provider: str, data: dict[str, Any]) -> None:
        described = {"secret": link.name, "owner": link.user, "team_id": link.team_id, "provider": provider}
        entry = audit.AuditEntry(
            kind=kind,
            actor=link.user,
            at=self.clock.now(),
            action_id=link.action_id,
            data={**described, "via": "slack", **data},
        )
        audit.record(session, entry)


@dataclass(frozen=True)
class _Link:
    user: str
    team_id: str | None
    name: str
    tool: str
    action_id: str | None


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _short(text: str) -> str:
    """A provider's error code, trimmed: it comes from a query string anyone can write."""
    return text.strip()[:_PROBLEM_LIMIT] or "no reason given"
