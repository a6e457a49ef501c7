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

A link is also bound to the browser that confirmed it, so a planted link connects nothing: the
person who holds a link could otherwise get a colleague's browser to sign in at the provider,
and the colleague's account would be sealed under the link's person. `pending` describes a link
for the confirmation page without spending or binding it; `confirm` binds it, once, to the
sha256 of a random nonce the confirming browser keeps in a cookie (`browser_hash`, compare-and-
set: a second browser is refused) and only then gives the provider's sign-in URL; `complete`
refuses a callback from any browser but that one (`WrongBrowser`) before it spends anything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.delegation import connect_credential
from agent.errors import AgentError
from agent.oauth import CodeExchangeFailed, exchange_code
from agent.vault import ANY_TOOL, TEAM, OAuthGrant, Vault, VaultError
from approvals import audit
from core.clock import Clock
from core.config import Config, OAuthProvider
from core.models import ConnectState

__all__ = [
    "DM_LINK_TTL",
    "LINK_TTL",
    "ConnectFlow",
    "ConnectLink",
    "ConnectRefused",
    "Connected",
    "PendingLink",
    "WrongBrowser",
    "link_key",
]

LINK_TTL = timedelta(minutes=10)  # shown to the person right after their click
DM_LINK_TTL = timedelta(hours=24)  # sent in a direct message, which may be read hours later
_PROBLEM_LIMIT = 200
_NOT_THIS_BROWSER = (
    "this browser did not start this sign-in: open the link in the browser you started in (nothing was connected)"
)
_OTHER_BROWSER = (
    "this link was already opened in another browser: open it in the browser you started in, "
    "or ask countersign for a new one"
)


class ConnectRefused(AgentError):
    """A sign-in that connects nothing: a bad, expired or spent link, the person declined, or
    the provider refused the code. `problem` is safe to show to people."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class WrongBrowser(ConnectRefused):
    """A link used from a browser other than the one that confirmed it (or before any did):
    the shape of a planted link. Nothing is spent; the link still works in its own browser."""


@dataclass(frozen=True)
class ConnectLink:
    name: str  # the secret it connects
    provider: str
    url: str  # {public_url}/oauth/{provider}/start?state=…


@dataclass(frozen=True)
class PendingLink:
    """What a usable link would connect, for the page that asks its person to confirm."""

    user: str  # the Slack user the account will be connected for
    team_id: str | None
    provider: str
    name: str  # the secret


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
        action_public_id: str | None = None,
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
                        action_public_id=action_public_id,
                        created_at=now,
                        expires_at=now + ttl,
                        used_at=None,
                    )
                )
                start = f"{self.public_url}/oauth/{urllib.parse.quote(provider, safe='')}/start"
                found.append(ConnectLink(name, provider, f"{start}?{urllib.parse.urlencode({'state': state})}"))
        return found

    def pending(self, provider: str, state: str | None, browser: str | None) -> PendingLink:
        """The link behind `/oauth/{provider}/start`'s confirmation page: checked, neither spent
        nor bound. A link another browser already confirmed is refused here too."""
        self._provider(provider)
        with self.sessions() as session:
            row = self._row(session, provider, state)
            self._check_usable(row, self.clock.now())
            if row.browser_hash is not None and not self._confirmed_in(row, browser):
                raise WrongBrowser(_OTHER_BROWSER)
            return PendingLink(row.user_id, row.team_id, row.provider, row.secret_name)

    def confirm(self, provider: str, state: str | None, browser: str) -> str:
        """The person confirmed in the browser holding the nonce `browser`: bind the link to it
        (once; the same browser may confirm again) and answer the provider's sign-in URL,
        carrying the state. The link is not spent (the callback spends it)."""
        settings = self._provider(provider)
        assert settings.authorize_url is not None  # _provider checked it
        with self.sessions.begin() as session:
            now = self.clock.now()
            row = self._row(session, provider, state)
            self._check_usable(row, now)
            bound = session.execute(
                update(ConnectState)
                .where(
                    ConnectState.id == row.id,
                    ConnectState.used_at.is_(None),
                    ConnectState.expires_at > now,
                    or_(ConnectState.browser_hash.is_(None), ConnectState.browser_hash == _hash(browser)),
                )
                .values(browser_hash=_hash(browser))
            )
            if getattr(bound, "rowcount", 0) != 1:  # another browser bound it between our read and now
                raise WrongBrowser(_OTHER_BROWSER)
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

    def complete(
        self, provider: str, state: str | None, code: str | None, error: str | None, browser: str | None
    ) -> Connected:
        """The provider's redirect back to the browser holding the nonce `browser`: check it is
        the browser that confirmed the link, spend the state, trade the code, seal the tokens."""
        settings = self._provider(provider)
        with self.sessions.begin() as session:
            now = self.clock.now()
            row = self._row(session, provider, state)
            self._check_usable(row, now)
            if not self._confirmed_in(row, browser):
                raise WrongBrowser(_NOT_THIS_BROWSER)
            spent = session.execute(
                update(ConnectState)
                .where(
                    ConnectState.id == row.id,
                    ConnectState.used_at.is_(None),
                    ConnectState.expires_at > now,
                    ConnectState.browser_hash == row.browser_hash,
                )
                .values(used_at=now)
            )
            if getattr(spent, "rowcount", 0) != 1:  # another request spent it between our read and now
                raise ConnectRefused("this link was already used: connect links work once")
            link = _Link(row.user_id, row.team_id, row.secret_name, row.tool, row.action_public_id)
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

    def _confirmed_in(self, row: ConnectState, browser: str | None) -> bool:
        """The link was confirmed, and in the browser holding the nonce `browser`."""
        if row.browser_hash is None or browser is None:
            return False
        return hmac.compare_digest(row.browser_hash, _hash(browser))

    def _audit(self, session: Session, kind: str, link: _Link, provider: str, data: dict[str, Any]) -> None:
        described = {"secret": link.name, "owner": link.user, "team_id": link.team_id, "provider": provider}
        entry = audit.AuditEntry(
            kind=kind,
            actor=link.user,
            at=self.clock.now(),
            action_public_id=link.action_public_id,
            data={**described, "via": "slack", **data},
        )
        audit.record(session, entry)


@dataclass(frozen=True)
class _Link:
    user: str
    team_id: str | None
    name: str
    tool: str
    action_public_id: str | None


def link_key(state: str) -> str:
    """A short name for a link that does not reveal its state (the browser's cookie is named by it)."""
    return _hash(state)[:16]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _short(text: str) -> str:
    """A provider's error code, trimmed: it comes from a query string anyone can write."""
    return text.strip()[:_PROBLEM_LIMIT] or "no reason given"
