"""The vault: tool secrets encrypted at rest, each bound to its name, scope and owner.

Keys come from `COUNTERSIGN_VAULT_KEYS` (comma-separated Fernet keys, newest first), never
from the database. A row's ciphertext is a Fernet token (`MultiFernet`: the newest key
encrypts, any key decrypts) over a JSON payload that repeats the row's name, scope, owner and
team beside the value, so a ciphertext copied onto another row is refused (`SecretMisuse`)
instead of being handed to another tool or person. It also repeats the row's `version`, which
every write of a value raises by one: an older ciphertext of the same secret written back
over the row (a revoked token, a rotated-out password) is refused too (`StaleSecret`). Rows
sealed before versions existed (version 0, payload format 1) still open until next written.

`rotate_key` re-encrypts the rows not yet under the newest key in short batches; readers
never wait for it, and every row stays readable throughout because every key in the list
decrypts. Values leave this module only through `get` and `fetch`; `list` shows names,
scopes, owners and ages. `Scrubber` takes known values out of text and JSON before anything
is stored. Creating, replacing, deleting and re-keying secrets is audited (without values).

A person's own credential is a secret whose owner is their Slack user id. One connected
through OAuth also seals an `OAuthGrant` (provider, refresh token, expiry) beside the access
token, which stays the secret's value: a tool only ever receives the access token.
`replace` re-seals a refreshed token in the caller's transaction, under the row lock that
`fetch(..., lock=True)` took.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, sessionmaker

from agent.scrubber import Scrubber
from agent.tools import SECRET_NAME
from agent.vault_errors import (
    KEY_HINT,
    KEYS_VARIABLE,
    TEAM,
    InvalidSecret,
    SealedValueRefused,
    SecretMisuse,
    SecretNotSet,
    SecretUnreadable,
    StaleSecret,
    VaultError,
    VaultKeyError,
    VaultNotConfigured,
)
from agent.vault_kinds import OAuthGrant, Revealed, Rotation, SecretInfo, generate_key, key_id, parse_keys
from approvals import audit
from core.clock import Clock, SystemClock
from core.config import is_user_id
from core.db import reading
from core.models import Secret

__all__ = [
    "ANY_TOOL",
    "KEYS_VARIABLE",
    "TEAM",
    "InvalidSecret",
    "OAuthGrant",
    "Revealed",
    "Rotation",
    "Scrubber",
    "SealedValueRefused",
    "Secret",
    "SecretInfo",
    "SecretMisuse",
    "SecretNotSet",
    "SecretUnreadable",
    "StaleSecret",
    "Vault",
    "VaultError",
    "VaultKeyError",
    "VaultNotConfigured",
    "generate_key",
    "key_id",
    "parse_keys",
]

ANY_TOOL = "*"  # the scope of a secret every tool that declares it may use
SYSTEM = "system"
_PAYLOAD_VERSION = 1  # values sealed with `seal_bound`, and secrets sealed before versions
_SECRET_PAYLOAD_VERSION = 2  # secrets: the payload also carries the row's version
_BOUND = ("name", "scope", "owner", "team_id")
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TEAM_ID = re.compile(r"[TE][A-Z0-9]{2,31}")


class Vault:
    """Encrypted tool secrets in the `secrets` table; each method runs in its own transaction,
    except `fetch`, which joins the caller's (the executor records each use beside it)."""

    def __init__(self, sessions: sessionmaker[Session], keys: Sequence[str], *, clock: Clock | None = None) -> None:
        unique = list(dict.fromkeys(keys))
        if not unique:
            raise VaultKeyError(f"no keys: give one or more Fernet keys, newest first ({KEY_HINT})")
        fernets: list[Fernet] = []
        for number, key in enumerate(unique, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # The key itself is never repeated: it is a secret even when it is malformed.
                problem = f"key {number} of {len(unique)} is not a Fernet key (32 url-safe base64-encoded bytes)"
                raise VaultKeyError(f"{problem}; {KEY_HINT}") from None
        self.sessions = sessions
        self.clock: Clock = clock or SystemClock()
        self.key_ids = [key_id(key) for key in unique]
        self._fernet = MultiFernet(fernets)

    def __repr__(self) -> str:
        return f"Vault(keys={len(self.key_ids)}, current={self.current_key_id!r})"

    @property
    def current_key_id(self) -> str:
        return self.key_ids[0]

    def put(
        self,
        name: str,
        value: str,
        *,
        scope: str,
        owner: str = TEAM,
        team_id: str | None = None,
        actor: str = SYSTEM,
        oauth: OAuthGrant | None = None,
    ) -> bool:
        """Store `value` as `name` for the tool `scope` (or `*`); True if it replaced a value.

        `oauth` (only for a person's own secret) seals what refreshes the value, an access token."""
        _check_identity(name, scope, owner, team_id, actor)
        if not isinstance(value, str) or not value:
            raise InvalidSecret(f"secret {name!r}: the value is empty")
        if oauth is not None and owner == TEAM:
            raise InvalidSecret(f"secret {name!r}: an OAuth token belongs to a person; give its owner's user id")
        with self.sessions.begin() as session:
            now = self.clock.now()
            row = session.scalars(
                select(Secret).where(*_identity(name, scope, owner, team_id)).with_for_update()
            ).one_or_none()
            version = 1 if row is None else row.version + 1
            sealed = self._seal(name, scope, owner, team_id, version, value, oauth)
            if row is None:
                session.add(
                    Secret(
                        name=name,
                        scope=scope,
                        owner=owner,
                        team_id=team_id,
                        ciphertext=sealed,
                        version=version,
                        key_id=self.current_key_id,
                        created_at=now,
                        rotated_at=None,
                    )
                )
            else:
                row.ciphertext, row.version, row.key_id, row.rotated_at = sealed, version, self.current_key_id, now
            data = {**_described(name, scope, owner, team_id), "replaced": row is not None}
            if oauth is not None:
                data["oauth"] = {"provider": oauth.provider, "refreshable": oauth.refresh_token is not None}
            _record(session, "secret.set", actor, now, data)
        return row is not None

    def get(self, name: str, *, tool: str, owner: str = TEAM, team_id: str | None = None) -> str:
        """The value of `name` for `tool`: the secret scoped to that tool, else the one scoped `*`."""
        with reading(self.sessions) as session:
            [found] = self.fetch(session, [name], tool=tool, owner=owner, team_id=team_id)
        return found.value

    def grant(self, name: str, *, tool: str, owner: str, team_id: str | None = None) -> OAuthGrant | None:
        """What refreshes a person's own `name` (never its tokens' use); None for a plain secret."""
        with reading(self.sessions) as session:
            [found] = self.fetch(session, [name], tool=tool, owner=owner, team_id=team_id)
        return found.oauth

    def fetch(
        self,
        session: Session,
        names: Iterable[str],
        *,
        tool: str,
        owner: str = TEAM,
        team_id: str | None = None,
        lock: bool = False,
    ) -> builtins.list[Revealed]:
        """Decrypt `names` for `tool` in the caller's transaction, in order.

        Each comes from the row scoped to `tool`, else from the one scoped `*`. Raises
        `SecretNotSet` for the first name with neither, `SecretMisuse` for a row sealed for
        another secret (`StaleSecret` for an older value of its own) and `SecretUnreadable` for a
        row no key decrypts. `lock` takes the rows'
        write lock (`FOR UPDATE`; SQLite's writers are serialized already), for a `replace`.
        """
        wanted = list(dict.fromkeys(names))
        query = select(Secret).where(
            Secret.name.in_(wanted),
            Secret.scope.in_([tool, ANY_TOOL]),
            Secret.owner == owner,
            _same_team(team_id),
        )
        rows = session.scalars(query.with_for_update() if lock else query).all()
        by_scope = {(row.name, row.scope): row for row in rows}
        found: list[Revealed] = []
        for name in wanted:
            row = by_scope.get((name, tool)) or by_scope.get((name, ANY_TOOL))
            if row is None:
                raise SecretNotSet(name, tool, owner)
            value, oauth = self._open(row)
            found.append(Revealed(row.name, row.scope, row.owner, value, oauth, row.team_id))
        return found

    def replace(self, session: Session, secret: Revealed, value: str, oauth: OAuthGrant | None) -> Revealed:
        """Re-seal `secret` (as `fetch` revealed it) with a new value, in the caller's transaction.

        For refreshed OAuth tokens: the caller holds the row lock and audits the refresh with
        the action it serves, so this writes no audit event of its own.
        """
        if not value:
            raise InvalidSecret(f"secret {secret.name!r}: the value is empty")
        row = session.scalars(
            select(Secret).where(*_identity(secret.name, secret.scope, secret.owner, secret.team_id)).with_for_update()
        ).one_or_none()
        if row is None:
            raise SecretNotSet(secret.name, secret.scope, secret.owner)
        row.version += 1
        row.ciphertext = self._seal(secret.name, secret.scope, secret.owner, secret.team_id, row.version, value, oauth)
        row.key_id, row.rotated_at = self.current_key_id, self.clock.now()
        return Revealed(secret.name, secret.scope, secret.owner, value, oauth, secret.team_id)

    def delete(
        self, name: str, *, scope: str, owner: str = TEAM, team_id: str | None = None, actor: str = SYSTEM
    ) -> bool:
        """Delete one secret; False if there was none."""
        _check_identity(name, scope, owner, team_id, actor)
        with self.sessions.begin() as session:
            row = session.scalars(
                select(Secret).where(*_identity(name, scope, owner, team_id)).with_for_update()
            ).one_or_none()
            if row is None:
                return False
            session.delete(row)
            _record(session, "secret.deleted", actor, self.clock.now(), _described(name, scope, owner, team_id))
        return True

    def rotate_key(self, *, batch_size: int = 100, actor: str = SYSTEM) -> Rotation:
        """Re-encrypt every row not yet under the newest key, `batch_size` rows per transaction.

        Each batch commits on its own, and readers never wait for one: until it commits they
        read the old ciphertext, which every key in the list still decrypts. Running it again
        resumes where it stopped; once nothing is left, keys after the first may be dropped.
        Re-keying keeps the sealed payload, and so the row's version: the value is the same.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (got {batch_size!r})")
        _check_actor(actor)
        current, rotated, unreadable, after = self.current_key_id, 0, [], 0
        while True:
            with self.sessions.begin() as session:
                query = select(Secret).where(Secret.key_id != current, Secret.id > after)
                rows = session.scalars(query.order_by(Secret.id).limit(batch_size).with_for_update()).all()
                if not rows:
                    break
                done = 0
                for row in rows:
                    try:
                        row.ciphertext = self._fernet.rotate(row.ciphertext.encode()).decode("ascii")
                    except InvalidToken:
                        unreadable.append(f"{row.name} (tool {row.scope}, owner {row.owner})")
                        continue
                    row.key_id = current
                    done += 1
                after, rotated = rows[-1].id, rotated + done
                if done:
                    _record(session, "secret.key_rotated", actor, self.clock.now(), {"key_id": current, "rows": done})
        return Rotation(rotated, unreadable)

    def list(self) -> builtins.list[SecretInfo]:
        """Every secret's name, scope, owner, team, dates and key; never a value."""
        with reading(self.sessions) as session:
            rows = session.scalars(select(Secret).order_by(Secret.name, Secret.scope, Secret.owner, Secret.id)).all()
            return [
                SecretInfo(
                    name=row.name,
                    scope=row.scope,
                    owner=row.owner,
                    team_id=row.team_id,
                    created_at=row.created_at,
                    rotated_at=row.rotated_at,
                    key_id=row.key_id,
                    current_key=row.key_id == self.current_key_id,
                )
                for row in rows
            ]

    # -- values kept outside the secrets table (Slack installation tokens) ----------------------

    def seal_bound(self, value: str, binding: Mapping[str, str | None]) -> str:
        """Encrypt `value` for a column of another table, bound to `binding` (e.g. the team and
        column it belongs in): `open_bound` refuses it anywhere else."""
        plain = json.dumps(
            {"v": _PAYLOAD_VERSION, "bound": dict(binding), "value": value}, separators=(",", ":"), sort_keys=True
        )
        return self._fernet.encrypt(plain.encode()).decode("ascii")

    def open_bound(self, ciphertext: str, binding: Mapping[str, str | None]) -> str:
        """The value `seal_bound` sealed with this `binding`; `SealedValueRefused` otherwise."""
        what = ", ".join(f"{key} {value!r}" for key, value in sorted(binding.items()))
        try:
            payload = json.loads(self._fernet.decrypt(ciphertext.encode()))
        except InvalidToken:
            raise SealedValueRefused(what, f"no key in {KEYS_VARIABLE} decrypts it") from None
        except ValueError:
            payload = None
        if not (isinstance(payload, dict) and payload.get("v") == _PAYLOAD_VERSION and "bound" in payload):
            raise SealedValueRefused(what, "it is not a value sealed by countersign")
        if payload["bound"] != dict(binding) or not isinstance(payload.get("value"), str):
            raise SealedValueRefused(what, "it was sealed for another place (copied or altered)")
        value: str = payload["value"]
        return value

    def reseal(self, ciphertext: str) -> str:
        """`ciphertext` re-encrypted under the newest key (any key in the list opens it)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode("ascii")
        except InvalidToken:
            raise SealedValueRefused("a sealed value", f"no key in {KEYS_VARIABLE} decrypts it") from None

    # -- sealing --------------------------------------------------------------------------------

    def _seal(
        self,
        name: str,
        scope: str,
        owner: str,
        team_id: str | None,
        version: int,
        value: str,
        oauth: OAuthGrant | None = None,
    ) -> str:
        payload: dict[str, Any] = {"v": _SECRET_PAYLOAD_VERSION, "name": name, "scope": scope, "owner": owner}
        payload.update(team_id=team_id, version=version, value=value)
        if oauth is not None:
            payload["oauth"] = oauth.sealed()
        plain = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        return self._fernet.encrypt(plain.encode()).decode("ascii")

    def _open(self, row: Secret) -> tuple[str, OAuthGrant | None]:
        try:
            plain = self._fernet.decrypt(row.ciphertext.encode())
        except InvalidToken:
            raise SecretUnreadable(row.name, row.scope, row.owner) from None
        try:
            payload = json.loads(plain)
        except ValueError:
            payload = None
        if not (
            isinstance(payload, dict)
            and payload.get("v") in (_PAYLOAD_VERSION, _SECRET_PAYLOAD_VERSION)
            and isinstance(payload.get("value"), str)
        ):
            raise SecretMisuse(row.name, row.scope, row.owner, "its ciphertext is not a sealed countersign secret")
        stored = {"name": row.name, "scope": row.scope, "owner": row.owner, "team_id": row.team_id}
        wrong = [
            f"{key} {stored[key]!r} (sealed for {payload.get(key)!r})"
            for key in _BOUND
            if payload.get(key) != stored[key]
        ]
        if wrong:
            raise SecretMisuse(row.name, row.scope, row.owner, "it was sealed for another secret: " + ", ".join(wrong))
        # A payload from before versions counts as version 0: it opens only on a row never written since.
        sealed_version = payload.get("version") if payload["v"] == _SECRET_PAYLOAD_VERSION else 0
        if type(sealed_version) is not int or sealed_version != row.version:
            raise StaleSecret(row.name, row.scope, row.owner, sealed_version, row.version)
        value: str = payload["value"]
        return value, OAuthGrant.unsealed(payload.get("oauth"))


# -- helpers ------------------------------------------------------------------------------------


def _check_identity(name: str, scope: str, owner: str, team_id: str | None, actor: str) -> None:
    if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
        raise InvalidSecret(f"not a secret name: {name!r} (letters, digits, '_', '.', '-'; a letter first)")
    if not isinstance(scope, str) or not (scope == ANY_TOOL or _TOOL_NAME.fullmatch(scope)):
        raise InvalidSecret(f"not a tool name or '*': {scope!r}")
    if not isinstance(owner, str) or not (owner == TEAM or is_user_id(owner)):
        raise InvalidSecret(f"not an owner: {owner!r} (use 'team' or a Slack user id like U0123ABCD)")
    if team_id is not None and not (isinstance(team_id, str) and _TEAM_ID.fullmatch(team_id)):
        raise InvalidSecret(f"not a Slack team id: {team_id!r} (like T0123ABCD)")
    _check_actor(actor)


def _check_actor(actor: str) -> None:
    if actor != SYSTEM and not (isinstance(actor, str) and is_user_id(actor)):
        raise InvalidSecret(f"not an actor: {actor!r} (a Slack user id like U0123ABCD, or 'system')")


def _same_team(team_id: str | None) -> ColumnElement[bool]:
    return Secret.team_id.is_(None) if team_id is None else Secret.team_id == team_id


def _identity(name: str, scope: str, owner: str, team_id: str | None) -> list[ColumnElement[bool]]:
    return [Secret.name == name, Secret.scope == scope, Secret.owner == owner, _same_team(team_id)]


def _described(name: str, scope: str, owner: str, team_id: str | None) -> dict[str, Any]:
    return {"secret": name, "scope": scope, "owner": owner, "team_id": team_id}


def _record(session: Session, kind: str, actor: str, now: datetime, data: dict[str, Any]) -> None:
    audit.record(session, audit.AuditEntry(kind=kind, actor=actor, at=now, data=data))
