"""Refreshing a delegated OAuth access token at its provider's token endpoint (RFC 6749 §6).

One POST (`grant_type=refresh_token`, the client's id and secret in the form body), no
retries: a refresh token may be single-use, so a second try after an unclear failure could
burn it. Standard library only (a few lines do not need an HTTP client dependency). Errors
never carry a token: the provider's `error` code and description are kept, its body is not.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.errors import AgentError
from core.config import OAuthProvider

__all__ = ["RefreshFailed", "Refreshed", "refresh"]

_DESCRIPTION_LIMIT = 200
_CODE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz_0123456789")


class RefreshFailed(AgentError):
    """The provider did not give a new access token. `reason` is safe to show to people."""

    def __init__(self, provider: str, reason: str) -> None:
        self.provider, self.reason = provider, reason
        super().__init__(f"provider {provider!r} did not refresh the token: {reason}")


@dataclass(frozen=True)
class Refreshed:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)  # a new one if the provider rotates them
    expires_at: datetime | None


def refresh(
    name: str, provider: OAuthProvider, refresh_token: str, client_secret: str | None, *, now: datetime
) -> Refreshed:
    """Trade `refresh_token` for a new access token at `provider` (`name` in the config)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": provider.client_id}
    if client_secret is not None:
        form["client_secret"] = client_secret
    request = urllib.request.Request(  # noqa: S310 - https://, or http:// to localhost: checked by the config
        provider.token_url,
        data=urllib.parse.urlencode(form).encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=provider.timeout.total_seconds()) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise RefreshFailed(name, _refused(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RefreshFailed(name, f"the token endpoint could not be reached ({type(exc).__name__}: {reason})") from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise RefreshFailed(name, "the token endpoint's answer is not JSON") from None
    access_token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(access_token, str) or not access_token:
        raise RefreshFailed(name, "the token endpoint's answer has no access_token")
    rotated = answer.get("refresh_token")
    expires_in = answer.get("expires_in")
    expires_at = (
        now + timedelta(seconds=float(expires_in))
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0
        else None
    )
    return Refreshed(access_token, rotated if isinstance(rotated, str) and rotated else None, expires_at)


def _refused(exc: urllib.error.HTTPError) -> str:
    """`HTTP 400 invalid_grant: Refresh token expired` from an OAuth error answer."""
    try:
        answer = json.loads(exc.read())
    except (ValueError, OSError):
        answer = None
    text = f"HTTP {exc.code}"
    if isinstance(answer, dict):
        code = answer.get("error")
        if isinstance(code, str) and code and set(code) <= _CODE_CHARACTERS:
            text += f" {code}"
        description = answer.get("error_description")
        if isinstance(description, str) and description.strip():
            text += f": {description.strip()[:_DESCRIPTION_LIMIT]}"
    return text
