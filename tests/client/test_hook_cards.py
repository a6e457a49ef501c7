"""Cards of Claude Code's tool calls, asked for through the hook (`countersign-client hook
claude-code`) against the served app, as the fake Slack records them: a `Bash` command as code,
an `Edit` as a diff, an `mcp__…` tool's arguments as fields; and secrets: masked in every text
sent to Slack and in the ledger, while the stored params and their hash are the real ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from core.canonical import params_hash
from core.models import AuditEvent, Decision, UnchainedAuditEvent
from tests.bot.blocks.checks import assert_message_valid, block, block_text
from tests.bot.slack_app import ALICE, BOB, SlackApp
from tests.client.served import OPEN_CONFIG, api_serving, card, click, new_client, reject
from tests.client.test_hook import EDIT, MCP, event, hooked, options

STRIPE = "sk_live_DEMO0000notarealkey00000"  # the shape of a key, not a real one
BEARER = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA"
GITHUB = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
SECRETS = (STRIPE, BEARER, GITHUB, "hunter2")
DEPLOY = (
    "Bash",
    {
        "command": (
            f"export STRIPE_API_KEY={STRIPE}\n"
            f'curl -sf -H "Authorization: Bearer {BEARER}" https://deploy.example.com/shop \\\n'
            "  && ./scripts/migrate.sh --password hunter2"
        ),
        "description": "Deploy the shop",
    },
)


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url, OPEN_CONFIG) as served:
        yield served


def posted(app: SlackApp, tool: str, tool_input: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The hook asks for `tool`; the card as posted is read, then Bob approves. (hook answer, card)"""
    token = new_client(app, "laptop", ["coding", "github"])["token"]
    seen: list[Any] = []

    def person(action_id: str) -> None:
        seen.append(card(app, action_id)[2])
        click(app, action_id, BOB, "approve")

    out = hooked(app, options(app, token), event(tool, tool_input), person)
    assert out["permissionDecision"] == "allow"
    assert_message_valid(seen[0].text, seen[0].blocks)
    return out, seen[0]


def test_a_bash_command_is_shown_as_code(app: SlackApp) -> None:
    _, message = posted(app, "Bash", {"command": "rm -rf build/ && make dist", "description": "Rebuild"})
    assert block_text(message.blocks, "change") == "*Command* (`Bash`)\n```\nrm -rf build/ &amp;&amp; make dist\n```"
    assert [f["text"] for f in block(message.blocks, "params")["fields"]] == ["*Description*\nRebuild"]
    assert "Claude Code wants to run Bash in /home/dev/shop (session abc123)" in block_text(message.blocks, "proposal")


def test_an_edit_is_shown_as_a_diff(app: SlackApp) -> None:
    _, message = posted(app, *EDIT)
    assert block_text(message.blocks, "change") == (
        "*Edit* (`Edit`) · `/home/dev/shop/app.py`\n```\n@@ -1,1 +1,1 @@\n-DEBUG = True\n+DEBUG = False\n```"
    )
    assert "params" not in [b["block_id"] for b in message.blocks]  # all it has is in the diff (and the JSON)


def test_an_mcp_tools_arguments_are_fields_with_secrets_masked(app: SlackApp) -> None:
    tool, arguments = MCP
    out, message = posted(app, tool, {**arguments, "body": f"CI fails with token {GITHUB}"})
    assert "change" not in [b["block_id"] for b in message.blocks]
    fields = [f["text"] for f in block(message.blocks, "params")["fields"]]
    assert "*Body*\nCI fails with token ghp_…••••" in fields and "*Title*\nFlaky test" in fields
    assert "updatedInput" not in out  # the masked text never travels back as an edit
    [action] = app.actions()
    assert action.params["body"].endswith(GITHUB)


def test_secrets_reach_neither_slack_nor_the_ledger_while_the_params_and_hash_stay_real(app: SlackApp) -> None:
    tool, tool_input = DEPLOY
    token = new_client(app, "laptop", ["coding"])["token"]
    reason = f"Never paste keys like {STRIPE} into commands; use the vault."

    def person(action_id: str) -> None:
        _, _, message = card(app, action_id)
        change = block_text(message.blocks, "change")
        assert "export STRIPE_API_KEY=sk_live_…••••" in change and "Authorization: Bearer ••••" in change
        assert "--password ••••" in change
        assert "of the real values (:lock: secrets masked here)" in block_text(message.blocks, "params_json")
        app.event({"type": "app_home_opened", "user": ALICE, "tab": "home"}, "Ev0HOOKHOME")  # App Home lists it
        app.settle()
        assert app.slack.home(ALICE) is not None
        reject(app, action_id, BOB, reason)

    out = hooked(app, options(app, token), event(tool, tool_input), person)
    assert out["permissionDecision"] == "deny" and reason in out["permissionDecisionReason"]  # word for word
    app.settle()

    [action] = app.actions()
    assert action.params == tool_input  # stored as asked
    assert action.params_hash == params_hash(tool_input)  # the binding covers the real values
    with app.services.sessions() as session:
        [decision] = session.scalars(select(Decision).where(Decision.kind == "reject")).all()
        assert decision.note == reason  # the agent is told word for word
        events = [*session.scalars(select(AuditEvent)), *session.scalars(select(UnchainedAuditEvent))]
    ledger = json.dumps([(e.kind, e.note, e.data) for e in events], ensure_ascii=False)
    assert "decision.reject" in ledger and "sk_live_…••••" in ledger

    sent = json.dumps(app.slack.calls, ensure_ascii=False)
    assert "chat.postMessage" in sent and "chat.update" in sent and "views.publish" in sent
    for secret in SECRETS:
        assert secret not in sent, secret
        assert secret not in ledger, secret
