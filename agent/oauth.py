"""A provider's token endpoint: refreshing a delegated OAuth access token (RFC 6749 §6) and
trading an authorization code for one when a person connects from Slack (§4.1.3).

One POST (the grant, the client's id and secret in the form body), no retries: a refresh
token or a code may be single-use, so a second try after an unclear failure could burn it.
Standard library only (a few lines do not need an HTTP client dependency). Errors never
carry a token: the provider's `error` code and description are kept, its body is not.
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
from core.durations import seconds_from_peer

__all__ = [
    "CodeExchangeFailed",
    "RefreshFailed",
    "TokenRequestFailed",
    "Tokens",
    "exchange_code",
    "refresh",
]

_DESCRIPTION_LIMIT = 200
# A token that says it lives longer than this is taken to live this long (`timedelta` tops out
# at 999,999,999 days; a provider that sends 1e30 seconds means "does not expire").
MAX_TOKEN_LIFETIME_S = 10 * 365 * 86400.0
_CODE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz_0123456789")


class TokenRequestFailed(AgentError):
    """The provider's token endpoint gave no access token. `reason` is safe to show to people."""

    doing = "answer the token request"

    def __init__(self, provider: str, reason: str) -> None:
        self.provider, self.reason = provider, reason
        super().__init__(f"provider {provider!r} did not {self.doing}: {reason}")


class RefreshFailed(TokenRequestFailed):
    doing = "refresh the token"


class CodeExchangeFailed(TokenRequestFailed):
    doing = "exchange the authorization code for a token"


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)  # on a refresh: a new one if the provider rotates them
    expires_at: datetime | None


def refresh(
    name: str, provider: OAuthProvider, refresh_token: str, client_secret: str | None, *, now: datetime
) -> Tokens:
    """Trade `refresh_token` for a new access token at `provider` (`name` in the config)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _token_request(name, provider, form, client_secret, now, RefreshFailed)


def exchange_code(
    name: str, provider: OAuthProvider, code: str, redirect_uri: str, client_secret: str | None, *, now: datetime
) -> Tokens:
    """Trade the authorization `code` a person's sign-in gave for their tokens (RFC 6749 §4.1.3)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return _token_request(name, provider, form, client_secret, now, CodeExchangeFailed)


def _token_request(
    name: str,
    provider: OAuthProvider,
    grant: dict[str, str],
    client_secret: str | None,
    now: datetime,
    failed: type[TokenRequestFailed],
) -> Tokens:
    form = {**grant, "client_id": provider.client_id}
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
        raise failed(name, _refused(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise failed(name, f"the token endpoint could not be reached ({type(exc).__name__}: {reason})") from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise failed(name, "the token endpoint's answer is not JSON") from None
    access_token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(access_token, str) or not access_token:
        raise failed(name, "the token endpoint's answer has no access_token")
    rotated = answer.get("refresh_token")
    lifetime = answer.get("expires_in")
    seconds = seconds_from_peer(lifetime, most=MAX_TOKEN_LIFETIME_S) if isinstance(lifetime, int | float) else None
    expires_at = now + timedelta(seconds=seconds) if seconds else None
    return Tokens(access_token, rotated if isinstance(rotated, str) and rotated else None, expires_at)


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
