"""The fake Slack for tests: `bot.sandbox`'s emulator of the Web API, plus helpers.

Use the fixture by importing it in a conftest (`from tests.fakes.slack_server import fake_slack`),
or open an emulator yourself: `with SlackEmulator(now=seconds(clock)) as slack: ...`.
Point the real client at it with `client_for(slack)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler

from bot.sandbox import Ephemeral, Message, Reply, SlackEmulator, SlackError, View
from tests.fakes.clock import FrozenClock

__all__ = [
    "Ephemeral",
    "Message",
    "Reply",
    "SlackEmulator",
    "SlackError",
    "View",
    "client_for",
    "fake_slack",
    "seconds",
    "seeded_emulator",
]

TOKEN = "xoxb-test"


def seconds(clock: FrozenClock) -> Callable[[], float]:
    """The emulator's clock (epoch seconds) read from the tests' frozen clock."""
    return lambda: clock.now().timestamp()


def client_for(emulator: SlackEmulator, *retry_handlers: RetryHandler, token: str = TOKEN) -> WebClient:
    """A real `WebClient` talking to the emulator, with only the given retry handlers."""
    return WebClient(token=token, base_url=emulator.api_url, retry_handlers=list(retry_handlers), timeout=5)


@contextmanager
def seeded_emulator(**options: Any) -> Iterator[SlackEmulator]:
    """A running emulator with a channel `C0APPROVALS` (#approvals) and users U0ALICE, U0BOB;
    `options` go to `SlackEmulator` (`now=`, `token=`, `strict_triggers=`...)."""
    with SlackEmulator(**options) as emulator:
        emulator.add_channel("C0APPROVALS", "approvals")
        emulator.add_user("U0ALICE", "alice", "Alice Example")
        emulator.add_user("U0BOB", "bob", "Bob Example")
        yield emulator


@pytest.fixture
def fake_slack() -> Iterator[SlackEmulator]:
    with seeded_emulator() as emulator:
        yield emulator
