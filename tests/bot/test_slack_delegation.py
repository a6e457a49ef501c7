"""Acting on behalf of a person, through Slack: the card says whose credential the tool runs
with, an approver who has not connected theirs is refused (only they are told), an expired
token is refreshed before the run, a failed refresh fails the action and the person gets a
DM. Planted tokens are then searched for in every Slack call, every prompt, the logs, the
trace, the audit export and every table.

The whole app over signed HTTP, the real `anthropic` SDK against the fake Messages API, the
Slack emulator, the fake OAuth token endpoint and a real database.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anthropic
import pytest
from sqlalchemy import select

from agent.anthropic_model import AnthropicModel
from agent.traces import timeline
from agent.vault import OAuthGrant, Vault, generate_key
from approvals.ledger import export
from core.config import Config
from core.models import Task
from tests.agent import delegated_tools
from tests.agent.test_secret_injection import _every_table
from tests.bot.slack_app import ADMIN, ADMINS, ALICE, APPROVALS, BOB, REQUESTER, SlackApp, decide_block
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.clock import FrozenClock
from tests.fakes.oauth_server import FakeOAuth
from tests.fakes.slack_server import SlackEmulator, seconds

KEY = generate_key()
ALICE_TOKEN, ALICE_REFRESH = "gho_PLANTEDALICEACCESS_111", "ghr_PLANTEDALICEREFRESH_222"
BOB_TOKEN, BOB_REFRESH = "gho_PLANTEDBOBACCESS_333", "ghr_PLANTEDBOBREFRESH_444"
CLIENT_SECRET = "cs_PLANTEDCLIENT_555"
REDACTED = "[redacted:github_token]"


def _config(oauth: FakeOAuth) -> Config:
    return Config.model_validate(
        {
            "slack": {"approvals_channel": APPROVALS, "admin_channel": ADMINS, "admins": [ADMIN]},
            "tools": {"modules": ["tests.agent.delegated_tools"]},
            "oauth_providers": {
                "github": {"token_url": oauth.url, "client_id": "countersign", "client_secret_name": "github_client"}
            },
            "task_types": {
                "github": {
                    "instructions": "You open pull requests.",
                    "tools": ["open_pr"],
                    "approvers": [ALICE, BOB],
                    "credentials": "approver",
                }
            },
        }
    )


@pytest.fixture
def delegated_app(db_url: str) -> Iterator[tuple[SlackApp, FakeAnthropic, FakeOAuth]]:
    clock = FrozenClock(FrozenClock().now().replace(year=2026, month=11))
    with (
        SlackEmulator(now=seconds(clock)) as slack,
        FakeAnthropic() as fake,
        FakeOAuth(client_secret=CLIENT_SECRET) as oauth,
    ):
        slack.add_channel(APPROVALS, "approvals")
        slack.add_channel(ADMINS, "admins")
        for user in (REQUESTER, ALICE, BOB, ADMIN):
            slack.add_user(user, user.lower())
        client = anthropic.Anthropic(api_key="test-key", base_url=fake.url, max_retries=0, timeout=5.0)
        app = SlackApp(db_url, slack, clock, _config(oauth), model=AnthropicModel(client), vault_keys=KEY)
        try:
            yield app, fake, oauth
        finally:
            app.close()


def _pr(title: str) -> dict[str, Any]:
    return {"repo": "shop/web", "title": title, "echo": True, "rationale": "asked to", "confidence": 0.9}


def _connect(vault: Vault, app: SlackApp, owner: str, token: str, refresh: str, oauth: FakeOAuth) -> None:
    grant = OAuthGrant("github", refresh, app.clock.now() + timedelta(minutes=30))
    vault.put("github_token", token, scope="*", owner=owner, oauth=grant)
    oauth.issue(refresh)


def test_on_behalf_of_the_approver_through_slack_and_no_token_leaks(
    delegated_app: tuple[SlackApp, FakeAnthropic, FakeOAuth], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app, fake, oauth = delegated_app
    vault = Vault(app.services.sessions, [KEY], clock=app.clock)
    vault.put("github_client", CLIENT_SECRET, scope="*")
    fake.reply_tool_use("open_pr", _pr("Fix checkout"))
    fake.reply_tool_use("open_pr", _pr("Follow-up"))
    fake.reply_text("One is open; the other needs Bob to connect GitHub again.")

    app.command(REQUESTER, "run github Open the checkout fix PR")
    app.settle()
    [first] = app.actions()
    card = app.card(first)
    blocks = json.dumps(card.blocks)
    assert "Runs with the approver's own `github_token`: connect yours before you approve" in blocks
    block_id, _ = decide_block(card.blocks)

    # Alice has not connected hers: only she is told, and the card stays as it was.
    app.click(ALICE, "approve", first.public_id, block_id, card.ts)
    app.settle()
    [refusal] = app.slack.ephemerals(ALICE)
    assert "runs with your own `github_token`: connect it first" in refusal.text
    assert "`countersign secrets connect github_token --owner U0ALICE`" in refusal.text
    assert app.card(first).blocks == card.blocks

    # Connected (expiring soon, refreshable): approving refreshes it once, then the tool runs.
    _connect(vault, app, ALICE, ALICE_TOKEN, ALICE_REFRESH, oauth)
    app.clock.advance(timedelta(hours=1))
    app.click(ALICE, "approve", first.public_id, block_id, card.ts)
    app.settle()
    first, second = app.actions()
    assert first.state == "succeeded"
    assert delegated_tools.GIVEN[first.public_id] == {"github_token": "at_fresh_1_PLANTEDACCESS"}
    assert oauth.refreshes == 1
    assert f"Runs with <@{ALICE}>'s own `github_token`." in json.dumps(app.card(first).blocks)

    # Bob's refresh token was revoked: the run fails cleanly, and Bob hears of it directly.
    _connect(vault, app, BOB, BOB_TOKEN, BOB_REFRESH, oauth)
    oauth.fail(400, "invalid_grant")
    app.clock.advance(timedelta(hours=1))
    card = app.card(second)
    block_id, _ = decide_block(card.blocks)
    app.click(BOB, "approve", second.public_id, block_id, card.ts)
    app.settle()
    second = app.actions()[1]
    assert second.state == "failed"
    assert second.public_id not in delegated_tools.GIVEN
    assert second.error is not None and "U0BOB's `github_token` has expired and could not be refreshed" in second.error
    assert vault.get("github_token", tool="open_pr", owner=BOB) == BOB_TOKEN  # untouched
    dm_channel = app.slack.calls_to("conversations.open")[-1]["users"]
    assert dm_channel == BOB
    dms = [c for c in app.slack.calls_to("chat.postMessage") if "could not run with your credential" in c["text"]]
    assert len(dms) == 1 and "invalid_grant" in dms[0]["text"]

    with app.services.sessions() as session:
        task = session.scalars(select(Task)).one()
        assert task.state == "succeeded", task.paused_reason
        exported = io.StringIO()
        export(session, exported)
        trace = repr(timeline(session, task))
    prompts = json.dumps([request.body for request in fake.requests])
    assert REDACTED in prompts  # the echoed token reached the model scrubbed
    places = {
        "Slack calls": json.dumps(app.slack.calls),
        "prompts sent to the model": prompts,
        "the audit export": exported.getvalue(),
        "the trace": trace,
        "the logs": "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records),
        **_every_table(app.engine),
    }
    planted = (
        ALICE_TOKEN,
        ALICE_REFRESH,
        BOB_TOKEN,
        BOB_REFRESH,
        CLIENT_SECRET,
        "at_fresh_1_PLANTEDACCESS",
        "rt_rotated_1_PLANTEDREFRESH",
    )
    for value in planted:
        leaks = [where for where, content in places.items() if value in content]
        assert leaks == [], f"{value} leaked into: {leaks}"
