"""The secrets a tool runs with: read from the vault just before the call, each use audited
(`secret.used`) before the tool sees it, and a person's expired OAuth token refreshed first.

A task type with `credentials: requester | approver` runs its tools with that person's own
secrets (`agent.delegation`). Their rows are read under a row lock, and an OAuth access token
that has expired (or expires within `REFRESH_MARGIN`) is refreshed first, once, at its
provider: the new tokens are re-sealed and the refresh audited in that same transaction, so a
second executor waiting on the lock sees the new token instead of spending a single-use
refresh token again. If the refresh fails, nothing is stored and `CredentialError` names the
person, whom the executor's `action.failed` message tells.

Kept apart from `agent.executor`, whose lease loop only asks `RunSecrets.reveal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from agent.delegation import CredentialError, Delegation, NotConnected, connect_command
from agent.oauth import RefreshFailed, refresh
from agent.tools import Secrets, ToolSpec
from agent.vault import TEAM, OAuthGrant, Revealed, SecretNotSet, Vault, VaultError, VaultNotConfigured
from approvals import machine
from core import metrics
from core.clock import Clock
from core.ids import SYSTEM
from core.models import Action
from core.states import ActionState

REFRESH_MARGIN = timedelta(seconds=60)  # a token this close to expiring is refreshed before the call


@dataclass(frozen=True)
class Caller:
    """The run asking for secrets: its action and whose secrets it may use."""

    action_id: int
    task_type: str
    requester: str | None
    decided_by: str | None
    attempt: int


class RunSecrets:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, vault: Vault | None, delegation: Delegation | None
    ) -> None:
        self.sessions, self.clock, self.vault, self.delegation = sessions, clock, vault, delegation

    def reveal(self, spec: ToolSpec, run: Caller, known: list[tuple[str, str]]) -> Secrets:
        """The tool's declared secrets, each use audited in the transaction that reads it.

        Every value read or received is added to `known`, for scrubbing what comes back."""
        if self.vault is None:
            raise VaultNotConfigured(spec.name, spec.secrets)
        mode = self.delegation.mode(run.task_type) if self.delegation is not None else None
        owner = TEAM
        if mode is not None:
            person = run.requester if mode == "requester" else run.decided_by
            if person is None:
                raise NotConnected(None, list(spec.secrets), spec.name)
            owner = person
        with self.sessions.begin() as session:
            now = self.clock.now()
            action = session.get(Action, run.action_id)
            assert action is not None  # actions are never deleted
            try:
                found = self.vault.fetch(session, spec.secrets, tool=spec.name, owner=owner, lock=mode is not None)
            except SecretNotSet as exc:
                if mode is None:
                    raise
                raise NotConnected(owner, [exc.name], spec.name) from None
            for secret in found:
                known.append((secret.name, secret.value))
                if secret.oauth and secret.oauth.refresh_token:
                    known.append((f"{secret.name}.refresh_token", secret.oauth.refresh_token))
            found = [self._fresh(session, action, spec, secret, now, known) for secret in found]
            for secret in found:
                data = {"secret": secret.name, "tool": spec.name, "scope": secret.scope, "owner": secret.owner}
                _audit(session, action, "secret.used", now, {**data, "attempt": run.attempt})
        return Secrets({secret.name: secret.value for secret in found})

    def _fresh(
        self,
        session: Session,
        action: Action,
        spec: ToolSpec,
        secret: Revealed,
        now: datetime,
        known: list[tuple[str, str]],
    ) -> Revealed:
        """`secret`, refreshed first if it is a person's OAuth token that has (nearly) expired.

        Runs under the row lock `fetch(lock=True)` took: whoever waited on it reads the new token.
        A failure raises `CredentialError`, and the caller's transaction stores nothing."""
        grant = secret.oauth
        if grant is None or secret.owner == TEAM or not grant.expired(now, REFRESH_MARGIN):
            return secret
        assert self.vault is not None and self.delegation is not None
        reconnect = f"Connect it again: {connect_command([secret.name], secret.owner)}"
        expired = f"{secret.owner}'s `{secret.name}` has expired"
        details = {"credential": "refresh_failed", "secrets": [secret.name], "provider": grant.provider}
        if grant.refresh_token is None:
            message = f"{expired} and cannot be refreshed (no refresh token); the tool did not run. {reconnect}"
            raise CredentialError(secret.owner, message, {**details, "credential": "expired"})
        provider = self.delegation.config.oauth_providers.get(grant.provider)
        if provider is None:
            configured = ", ".join(sorted(self.delegation.config.oauth_providers)) or "none"
            problem = f"its provider {grant.provider!r} is not in oauth_providers (configured: {configured})"
            raise CredentialError(secret.owner, f"{expired} and {problem}; the tool did not run", details)
        client_secret = None
        if provider.client_secret_name:
            try:
                [found] = self.vault.fetch(session, [provider.client_secret_name], tool=spec.name, owner=TEAM)
            except VaultError as exc:
                message = f"{expired} and cannot be refreshed: {exc}; the tool did not run"
                raise CredentialError(secret.owner, message, details) from None
            client_secret = found.value
            known.append((provider.client_secret_name, client_secret))
        try:
            fresh = refresh(grant.provider, provider, grant.refresh_token, client_secret, now=now)
        except RefreshFailed as exc:
            metrics.TOKEN_REFRESHES.labels(grant.provider, "failed").inc()
            message = f"{expired} and could not be refreshed: {exc}; the tool did not run. {reconnect}"
            raise CredentialError(secret.owner, message, {**details, "reason": exc.reason}) from None
        known.append((secret.name, fresh.access_token))
        if fresh.refresh_token:
            known.append((f"{secret.name}.refresh_token", fresh.refresh_token))
        renewed = OAuthGrant(grant.provider, fresh.refresh_token or grant.refresh_token, fresh.expires_at)
        replaced = self.vault.replace(session, secret, fresh.access_token, renewed)
        data = {
            "secret": secret.name,
            "owner": secret.owner,
            "provider": grant.provider,
            "expired_at": _iso(grant.expires_at),
            "expires_at": _iso(fresh.expires_at),
            "refresh_token_rotated": fresh.refresh_token is not None,
        }
        _audit(session, action, "secret.refreshed", now, data)
        metrics.TOKEN_REFRESHES.labels(grant.provider, "refreshed").inc()
        return replaced


def _audit(session: Session, action: Action, kind: str, now: datetime, data: dict[str, Any]) -> None:
    """Audit a use of a secret by the executing action (its state does not move)."""
    machine.record(session, action, kind, actor=SYSTEM, now=now, from_state=ActionState.EXECUTING, data=data)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
