"""Seconds another server sends (`Retry-After`, `expires_in`) never overflow a `timedelta`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.oauth import MAX_TOKEN_LIFETIME_S, refresh
from core.config import OAuthProvider
from core.durations import seconds_from_peer
from tests.fakes.oauth_server import FakeOAuth


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("30", 30.0),
        (2.5, 2.5),
        ("1e30", 3600.0),
        (10**400, 3600.0),
        ("-5", 0.0),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        (None, None),
        (True, None),
        ("9" * 400, 3600.0),
    ],
)
def test_seconds_from_a_peer_are_finite_and_bounded(sent: object, expected: float | None) -> None:
    assert seconds_from_peer(sent, most=3600.0) == expected


def test_a_token_said_to_live_1e30_seconds_is_stored_with_a_long_but_real_expiry() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    with FakeOAuth(expires_in=10**30) as provider:
        settings = OAuthProvider(token_url=provider.url, client_id="countersign")
        provider.issue("refresh-1")
        tokens = refresh("github", settings, "refresh-1", None, now=now)
    assert tokens.expires_at == now + timedelta(seconds=MAX_TOKEN_LIFETIME_S)
