"""Only Slack may speak for Slack: signatures, stale timestamps, malformed payloads."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select

from core.models import AuditEvent, Decision, Task
from tests.bot.slack_app import ALICE, MALLORY, REQUESTER, SECRET, SlackApp, decide_block, edit_values


def _nothing_written(app: SlackApp) -> None:
    with app.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 0
        assert session.scalar(select(func.count()).select_from(Decision)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def _command_body(text: str = "run refund Refund order 1") -> bytes:
    return urllib.parse.urlencode(
        {
            "command": "/countersign",
            "text": text,
            "user_id": REQUESTER,
            "team_id": "T0SANDBOX",
            "channel_id": "C0APPROVALS",
        }
    ).encode()


def test_a_forged_signature_is_refused(slack_app: SlackApp) -> None:
    reply = slack_app.post(_command_body(), "application/x-www-form-urlencoded", signature="v0=" + "0" * 64)
    assert reply.status == 401
    _nothing_written(slack_app)


def test_a_request_older_than_five_minutes_is_refused(slack_app: SlackApp) -> None:
    reply = slack_app.post(_command_body(), "application/x-www-form-urlencoded", timestamp=int(time.time()) - 301)
    assert reply.status == 401
    _nothing_written(slack_app)


@pytest.mark.parametrize(
    "body",
    [
        b"payload=%7Bnot-json",
        b"payload=" + urllib.parse.quote(json.dumps({"type": "block_actions"})).encode(),
        b"payload="
        + urllib.parse.quote(
            json.dumps({"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": [{"action_id": "approve"}]})
        ).encode(),
        b"payload="
        + urllib.parse.quote(
            json.dumps(
                {
                    "type": "view_submission",
                    "user": {"id": "U0ALICE"},
                    "view": {"callback_id": "reject_reason", "private_metadata": "{{"},
                }
            )
        ).encode(),
        b"payload="
        + urllib.parse.quote(
            json.dumps(
                {
                    "type": "view_submission",
                    "user": {"id": "U0ALICE"},
                    "view": {"callback_id": "edit_params", "private_metadata": "{}"},
                }
            )
        ).encode(),
        b"\xff\xfe\x00garbage",
        b"",
    ],
)
def test_malformed_payloads_get_a_4xx_or_a_polite_answer_never_a_5xx(slack_app: SlackApp, body: bytes) -> None:
    reply = slack_app.post(body, "application/x-www-form-urlencoded")
    assert reply.status < 500
    slack_app.settle()
    _nothing_written(slack_app)


def test_a_truncated_click_on_a_real_card_changes_nothing(slack_app: SlackApp) -> None:
    slack_app.command(REQUESTER, "run refund Refund order 9")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    block_id, _ = decide_block(card.blocks)
    payload = json.dumps(
        {
            "type": "block_actions",
            "user": {"id": ALICE},
            "actions": [{"action_id": "approve", "block_id": block_id, "value": action.public_id}],
        }
    )
    body = b"payload=" + urllib.parse.quote(payload[: len(payload) // 2]).encode()
    assert slack_app.post(body, "application/x-www-form-urlencoded").status < 500
    assert slack_app.actions()[0].state == "pending"


@pytest.mark.parametrize("stamp", ["", "abc", "1e10", "-1", "17000000000.5"])
def test_a_timestamp_that_is_not_unix_time_is_refused_even_when_signed_over_it(slack_app: SlackApp, stamp: str) -> None:
    body = _command_body()
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body.decode())
    reply = slack_app.post(
        body,
        "application/x-www-form-urlencoded",
        headers={"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature},
    )
    assert reply.status == 401
    _nothing_written(slack_app)


def test_a_signed_command_without_a_user_starts_nothing(slack_app: SlackApp) -> None:
    body = urllib.parse.urlencode(
        {
            "command": "/countersign",
            "text": "run refund Refund order 1",
            "team_id": "T0SANDBOX",
            "channel_id": "C0APPROVALS",
        }
    ).encode()
    reply = slack_app.post(body, "application/x-www-form-urlencoded")
    assert reply.status == 200
    assert "without a user" in reply.body
    _nothing_written(slack_app)


def _edit_form(app: SlackApp) -> tuple[Any, dict[str, Any]]:
    """A pending refund and the edit form an approver opened on its card: (action, modal view)."""
    app.command(REQUESTER, "run refund Refund order 77")
    app.settle()
    [action] = app.actions()
    card = app.card(action)
    block_id, _ = decide_block(card.blocks)
    app.click(ALICE, "edit", action.public_id, block_id, card.ts)
    app.settle()
    [modal] = app.slack.views
    return action, modal.payload


def test_an_edit_from_someone_who_may_not_decide_is_refused_before_its_numbers_are_read(slack_app: SlackApp) -> None:
    action, view = _edit_form(slack_app)
    # 1e700000 froze the server for seconds when it was parsed first; now nobody parses it for them.
    for user, refusal in ((MALLORY, "not an approver"), (REQUESTER, "cannot approve")):
        reply = slack_app.submit(user, view, edit_values(view, "1e700000"))
        assert reply.status == 200
        assert reply.json()["response_action"] == "errors"
        [message] = reply.json()["errors"].values()
        assert refusal in message and "exponent" not in message
    [after] = slack_app.actions()
    assert (after.state, after.params) == ("pending", action.params)
    with slack_app.services.sessions() as session:
        refused = session.execute(
            select(AuditEvent.actor, AuditEvent.data).where(AuditEvent.kind == "decision.refused")
        ).all()
        assert session.scalar(select(func.count()).select_from(Decision)) == 0
    assert [(actor, data["attempted"], data["code"]) for actor, data in refused] == [
        (MALLORY, "edit", "not_an_approver"),
        (REQUESTER, "edit", "self_approval"),
    ]
