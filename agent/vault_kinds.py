"""The vault's keys and what it hands out: Fernet keys and their fingerprints, a secret's
listing (never its value), a decrypted secret on its way to a tool, an OAuth grant sealed
beside a person's access token, and a key rotation's report."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet


def parse_keys(value: str) -> list[str]:
    """The keys in `COUNTERSIGN_VAULT_KEYS`: comma-separated, newest first, blanks ignored."""
    return [key.strip() for key in value.split(",") if key.strip()]


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def key_id(key: str) -> str:
    """A short fingerprint that names a key in rows and listings (a hash; it reveals nothing useful)."""
    raw = base64.urlsafe_b64decode(key.encode("ascii"))
    return hashlib.sha256(b"countersign vault key\0" + raw).hexdigest()[:16]


@dataclass(frozen=True)
class SecretInfo:
    """What `list` shows of a secret: never its value."""

    name: str
    scope: str
    owner: str
    team_id: str | None
    created_at: datetime
    rotated_at: datetime | None
    key_id: str
    current_key: bool  # encrypted with the newest key

    def age(self, now: datetime) -> timedelta:
        """How long the value has been in use: since it was set or last replaced."""
        return now - (self.rotated_at or self.created_at)


@dataclass(frozen=True)
class OAuthGrant:
    """What refreshes a delegated OAuth access token: the provider (a key of the config's
    `oauth_providers`), the refresh token if the provider gave one, and the expiry if known."""

    provider: str
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None

    def expired(self, now: datetime, margin: timedelta = timedelta(0)) -> bool:
        return self.expires_at is not None and self.expires_at <= now + margin

    def sealed(self) -> dict[str, Any]:
        expires_at = self.expires_at.isoformat() if self.expires_at else None
        return {"provider": self.provider, "refresh_token": self.refresh_token, "expires_at": expires_at}

    @classmethod
    def unsealed(cls, data: object) -> OAuthGrant | None:
        if not isinstance(data, dict) or not isinstance(data.get("provider"), str):
            return None
        refresh_token, expires_at = data.get("refresh_token"), data.get("expires_at")
        return cls(
            data["provider"],
            refresh_token if isinstance(refresh_token, str) and refresh_token else None,
            datetime.fromisoformat(expires_at) if isinstance(expires_at, str) else None,
        )


@dataclass(frozen=True)
class Revealed:
    """A decrypted secret on its way to a tool, and the row it came from (for the audit)."""

    name: str
    scope: str
    owner: str
    value: str = field(repr=False)
    oauth: OAuthGrant | None = field(default=None, repr=False)
    team_id: str | None = None


@dataclass(frozen=True)
class Rotation:
    rotated: int
    unreadable: list[str]  # rows no key decrypts, left as they were: "NAME (tool T, owner O)"
