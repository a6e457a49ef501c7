"""Ids are whole ids: a trailing newline (which `$` lets through) makes a value no id at all."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from bot.blocks.text import mention
from bot.listeners.payloads import BadPayload, click_from, slack_id
from core.config import Config, is_user_id
from core.models import AuditEvent, Decision, Task
from tests.bot.slack_app import ALICE, CONFIG, REQUESTER, SlackApp, decide_block


def test_an_id_with_a_trailing_newline_is_no_id() -> None:
    assert (slack_id("U0ALICE"), is_user_id("U0ALICE"), mention("U0ALICE")) == ("U0ALICE", True, "<@U0ALICE>")
    assert slack_id("U0ALICE\n") is None
    assert not is_user_id("U0ALICE\n")
    assert mention("U0ALICE\n") == "U0ALICE\n"  # plain text, not a mention


def test_config_refuses_an_approver_id_with_a_trailing_newline() -> None:
    config = json.loads(json.dumps(CONFIG))
    config["task_types"]["refund"]["approvers"] = ["U0ALICE\n"]
    with pytest.raises(ValueError, match=r"not a Slack user id .*'U0ALICE\\n'"):
        Config.model_validate(config)


def test_a_click_by_a_user_id_with_a_trailing_newline_is_not_a_click() -> None:
    body = {"user": {"id": "U0ALICE\n"}, "actions": [{"action_id": "approve", "value": "act_1"}]}
    with pytest.raises(BadPayload, match="user"):
        click_from(body)


def test_a_signed_command_from_a_user_id_with_a_trailing_newline_starts_nothing(slack_app: SlackApp) -> None:
    # Otherwise "U0REQUESTER\n" would be the requester, and U0REQUESTER could approve their own task.
    reply = slack_app.command(REQUESTER + "\n", "run refund Refund order 1")
    assert reply.status == 200 and "without a user" in reply.body
    slack_app.settle()
    with slack_app.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 0


def test_a_signed_click_from_a_user_id_with_a_trailing_newline_records_nothing(slack_app: SlackApp) -> None:
    slack_app.command(REQUESTER, "run refund Refund order 9")
    slack_app.settle()
    [action] = slack_app.actions()
    block_id, _ = decide_block(slack_app.card(action).blocks)
    with slack_app.services.sessions() as session:
        events = session.scalar(select(func.count()).select_from(AuditEvent))
    reply = slack_app.click(ALICE + "\n", "approve", action.public_id, block_id, slack_app.card(action).ts)
    assert reply.status < 500
    slack_app.settle()
    assert slack_app.actions()[0].state == "pending"
    with slack_app.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == events  # no refusal by "U0ALICE\n"
