"""Clients of the actions API: `countersign api-client create|list|revoke`, and the bearer
token check of every API request.

A token is shown once, at creation; only its sha256 is kept. The webhook secret (the HMAC key
of the client's webhook signatures, as its UTF-8 bytes) is sealed by the vault
(`COUNTERSIGN_VAULT_KEYS`) and opened only to sign deliveries. `COUNTERSIGN_API_TOKEN` keeps
working as a client of all task types named `env-token` (its row is written on first use;
it has no webhook secret, so it cannot ask for callbacks).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agent.vault import Vault
from approvals import audit
from core.db import reading
from core.ids import SYSTEM
from core.models import ApiClient

ENV_CLIENT = "env-token"
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
TOKEN_PREFIX = "cs_"  # noqa: S105 - a prefix, not a secret
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


class ClientError(Exception):
    """A client that cannot be created or revoked as asked; the message names why."""


@dataclass(frozen=True)
class Client:
    """An authenticated caller: its row id, name and the task types it may ask for (None: all)."""

    id: int
    name: str
    task_types: frozenset[str] | None
    webhook_secret: str | None  # sealed

    def may_use(self, task_type: str) -> bool:
        return self.task_types is None or task_type in self.task_types

    @property
    def owner(self) -> str:
        """The lease owner of the actions it claims."""
        return f"api:{self.name}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _binding(name: str) -> dict[str, str | None]:
    return {"table": "api_clients", "column": "webhook_secret", "name": name}


def create(
    session: Session, vault: Vault, name: str, task_types: Sequence[str] | None, known: Sequence[str], now: datetime
) -> dict[str, str]:
    """A new client; returns {"name", "token", "webhook_secret"}, the only time they are shown."""
    if not NAME.fullmatch(name) or name == ENV_CLIENT:
        raise ClientError(
            f"not a client name (lowercase letters, digits, '_', '.', '-'; at most 32; not {ENV_CLIENT!r}): {name!r}"
        )
    if task_types is not None:
        unknown = [t for t in task_types if t not in known]
        if unknown or not task_types:
            raise ClientError(
                f"unknown task type(s) {', '.join(unknown) or '(none given)'} (known: {', '.join(known)})"
            )
    if session.scalar(select(ApiClient.id).where(ApiClient.name == name)) is not None:
        raise ClientError(f"a client named {name!r} already exists (revoke it, or pick another name)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    webhook_secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiClient(
            name=name,
            token_hash=token_hash(token),
            webhook_secret=vault.seal_bound(webhook_secret, _binding(name)),
            task_types=list(dict.fromkeys(task_types)) if task_types is not None else None,
            created_at=now,
        )
    )
    data = {"task_types": list(task_types) if task_types is not None else None}
    audit.record(session, audit.AuditEntry(kind="api_client.created", actor=SYSTEM, at=now, note=name, data=data))
    return {"name": name, "token": token, "webhook_secret": webhook_secret}


def revoke(session: Session, name: str, now: datetime) -> None:
    client = session.scalars(select(ApiClient).where(ApiClient.name == name)).first()
    if client is None:
        raise ClientError(f"no client named {name!r}")
    if client.revoked_at is not None:
        raise ClientError(f"client {name!r} was already revoked at {client.revoked_at.isoformat()}")
    client.revoked_at = now
    audit.record(session, audit.AuditEntry(kind="api_client.revoked", actor=SYSTEM, at=now, note=name))


def webhook_secret(vault: Vault, client: ApiClient) -> str | None:
    if client.webhook_secret is None:
        return None
    return vault.open_bound(client.webhook_secret, _binding(client.name))


class Tokens:
    """Finds the client of a bearer token (revoked ones are not found), in a read of its own."""

    def __init__(self, sessions: sessionmaker[Session], env_token: str | None) -> None:
        self.sessions, self.env_token = sessions, env_token

    def client(self, authorization: str, now: datetime) -> Client | None:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            return None
        env = self.env_token is not None and hmac.compare_digest(token.encode(), self.env_token.encode())
        where = ApiClient.name == ENV_CLIENT if env else ApiClient.token_hash == token_hash(token)
        with reading(self.sessions) as session:
            row = session.scalars(select(ApiClient).where(where, ApiClient.revoked_at.is_(None))).first()
            found = _client(row) if row is not None and row.token_hash == token_hash(token) else None
        if found is None and env:
            return self._write_env_client(token, now)
        return found

    def _write_env_client(self, token: str, now: datetime) -> Client:
        """First use of `COUNTERSIGN_API_TOKEN`, or the variable changed: (re)write its row."""
        digest = token_hash(token)
        try:
            with self.sessions.begin() as session:
                row = session.scalars(select(ApiClient).where(ApiClient.name == ENV_CLIENT)).first()
                if row is None:
                    row = ApiClient(name=ENV_CLIENT, token_hash=digest, task_types=None, created_at=now)
                    session.add(row)
                else:
                    row.token_hash, row.revoked_at, row.task_types = digest, None, None
                session.flush()
                return _client(row)
        except IntegrityError:  # another process wrote it first
            with reading(self.sessions) as session:
                return _client(session.scalars(select(ApiClient).where(ApiClient.name == ENV_CLIENT)).one())


def _client(row: ApiClient) -> Client:
    types = frozenset(row.task_types) if row.task_types is not None else None
    return Client(row.id, row.name, types, row.webhook_secret)
