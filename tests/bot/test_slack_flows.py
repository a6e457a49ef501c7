"""People meet the product: slash command → card → signed clicks and modals → one execution
→ the card updated in place. Real Bolt, real slack_sdk, the Slack emulator, a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import action_ids
from core.models import AuditEvent, Decision
from tests.approvals import shop_tools
from tests.bot.slack_app import (
    ALICE,
    APPROVALS,
    BOB,
    BUDGET_CONFIG,
    MALLORY,
    REQUESTER,
    SlackApp,
    decide_block,
    edit_values,
    paused_by_budget,
    serving,
    task_state,
)


def _start(app: SlackApp, text: str = "run refund Refund order 1234, it arrived broken") -> tuple[Any, Any]:
    ack = app.command(REQUESTER, text)
    assert ack.status == 200
    assert "Started `tsk_" in ack.body
    app.settle()
    [action] = app.actions()
    return action, app.card(action)


def test_slash_command_to_card_to_approval_to_one_execution(slack_app: SlackApp) -> None:
    action, card = _start(slack_app)
    assert action.state == "pending"
    block_id, buttons = decide_block(card.blocks)
    assert block_id == f"decide:{action.params_hash}.{action.tool_hash}"  # what the click is bound to
    assert buttons == {
        "approve": action.public_id,
        "reject": action.public_id,
        "edit": action.public_id,
        "acknowledge": action.public_id,
    }
    assert "1234" in json.dumps(card.blocks)

    clicked = slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts)
    assert clicked.status == 200
    slack_app.settle()

    assert shop_tools.CALLS[action.public_id] == 1
    updated = slack_app.slack.message(APPROVALS, card.ts)
    assert f"<@{ALICE}>" in json.dumps(updated.blocks)
    assert not [b for b in updated.blocks if b.get("type") == "actions"]  # no buttons once decided
    replies = slack_app.slack.thread(APPROVALS, card.ts)
    assert any("500" in json.dumps(reply.blocks or reply.text) for reply in replies[1:])
    [final] = [m for m in slack_app.slack.messages(APPROVALS) if "Done with order 1234" in json.dumps(m.blocks)]
    assert final.text


def test_reject_asks_for_a_reason_in_a_modal_and_the_model_gets_it(slack_app: SlackApp) -> None:
    action, card = _start(slack_app)
    block_id, _ = decide_block(card.blocks)
    assert slack_app.click(BOB, "reject", action.public_id, block_id, card.ts).status == 200
    slack_app.settle()
    [modal] = slack_app.slack.views
    assert modal.payload["callback_id"] == "reject_reason"

    empty = slack_app.submit(BOB, modal.payload, {"reason": {"reason": {"type": "plain_text_input", "value": " "}}})
    assert empty.json()["response_action"] == "errors"
    reason = "Order 1234 was refunded already."
    done = slack_app.submit(BOB, modal.payload, {"reason": {"reason": {"type": "plain_text_input", "value": reason}}})
    assert (done.status, done.body) == (200, "")
    slack_app.settle()

    [after] = slack_app.actions()
    assert after.state == "rejected"
    assert shop_tools.CALLS[action.public_id] == 0
    text = json.dumps(slack_app.slack.message(APPROVALS, card.ts).blocks)
    assert f"<@{BOB}>" in text
    assert "refunded already" in text


def test_edit_opens_a_modal_from_the_schema_rejects_bad_input_inline_then_approves_with_the_diff(
    slack_app: SlackApp,
) -> None:
    action, card = _start(slack_app)
    block_id, _ = decide_block(card.blocks)
    slack_app.click(ALICE, "edit", action.public_id, block_id, card.ts)
    slack_app.settle()
    [modal] = slack_app.slack.views
    assert modal.payload["callback_id"] == "edit_params"
    inputs = {b["block_id"]: b for b in modal.payload["blocks"] if b["type"] == "input"}
    assert set(inputs) == {"order_id", "amount_cents"}

    def values(amount: str) -> dict[str, object]:
        return {
            "order_id": {inputs["order_id"]["element"]["action_id"]: {"type": "plain_text_input", "value": "1234"}},
            "amount_cents": {inputs["amount_cents"]["element"]["action_id"]: {"type": "number_input", "value": amount}},
        }

    bad = slack_app.submit(ALICE, modal.payload, values("lots"))
    assert bad.json()["response_action"] == "errors"
    assert "amount_cents" in bad.json()["errors"]
    assert slack_app.actions()[0].state == "pending"

    good = slack_app.submit(ALICE, modal.payload, values("300"))
    assert (good.status, good.body) == (200, "")
    slack_app.settle()
    [after] = slack_app.actions()
    assert after.state == "succeeded"
    assert after.params == {"order_id": "1234", "amount_cents": 300}
    assert shop_tools.CALLS[action.public_id] == 1
    text = json.dumps(slack_app.slack.message(APPROVALS, card.ts).blocks)
    assert "500" in text and "300" in text  # the diff


def test_a_huge_exponent_in_the_edit_form_is_a_field_error_not_a_frozen_server(slack_app: SlackApp) -> None:
    action, card = _start(slack_app)
    block_id, _ = decide_block(card.blocks)
    slack_app.click(ALICE, "edit", action.public_id, block_id, card.ts)
    slack_app.settle()
    [modal] = slack_app.slack.views
    # 9 bytes that made int(Decimal(...)) hold the GIL for seconds (/healthz blocked 12 s).
    for typed, problem in (
        ("1e700000", "the exponent must be between -30 and 30"),
        ("9" * 41, "at most 40 characters"),
    ):
        bad = slack_app.submit(ALICE, modal.payload, edit_values(modal.payload, typed))
        assert bad.json()["response_action"] == "errors"
        assert list(bad.json()["errors"]) == ["amount_cents"]
        assert bad.json()["errors"]["amount_cents"].startswith(f"amount_cents: {problem}")
    assert slack_app.actions()[0].state == "pending"
    good = slack_app.submit(ALICE, modal.payload, edit_values(modal.payload, "3e2"))
    assert (good.status, good.body) == (200, "")
    slack_app.settle()
    [after] = slack_app.actions()
    assert after.params == {"order_id": "1234", "amount_cents": 300} and after.state == "succeeded"


def test_refused_clicks_are_told_only_to_the_clicker_and_leave_the_card(slack_app: SlackApp) -> None:
    action, card = _start(slack_app)
    block_id, _ = decide_block(card.blocks)
    updates_before = len(slack_app.slack.calls_to("chat.update"))
    for user in (REQUESTER, MALLORY):
        assert slack_app.click(user, "approve", action.public_id, block_id, card.ts).status == 200
    stale = slack_app.click(ALICE, "approve", action.public_id, "decide:" + "0" * 64, card.ts)
    assert stale.status == 200
    slack_app.settle()
    told = {e.user: e.text for e in slack_app.slack.ephemerals()}
    assert "cannot approve" in told[REQUESTER]
    assert "not an approver" in told[MALLORY]
    assert "changed" in told[ALICE]
    assert len(slack_app.slack.calls_to("chat.update")) == updates_before
    assert slack_app.actions()[0].state == "pending"
    with slack_app.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 0


def test_a_click_from_another_workspace_is_refused(slack_app: SlackApp) -> None:
    action, card = _start(slack_app)
    block_id, _ = decide_block(card.blocks)
    assert slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts, team="T0OTHERCO").status == 200
    slack_app.settle()
    assert "no action" in slack_app.slack.ephemerals(ALICE)[-1].text
    assert slack_app.actions()[0].state == "pending"
    assert shop_tools.CALLS[action.public_id] == 0


@pytest.fixture
def budget_app(db_url: str) -> Iterator[SlackApp]:
    with serving(db_url, BUDGET_CONFIG) as app:
        yield app


def test_task_buttons_are_for_its_requester_approvers_and_admins(budget_app: SlackApp) -> None:
    app = budget_app
    task_id, message = paused_by_budget(app)
    updates_before = len(app.slack.calls_to("chat.update"))
    refused = [
        (MALLORY, action_ids.STOP_TASK, "may not stop"),
        (MALLORY, action_ids.EXTEND_BUDGET, "may not extend the budget"),
        (REQUESTER, action_ids.EXTEND_BUDGET, "may not extend the budget"),  # more spend is for approvers
    ]
    told = []
    for user, button, _ in refused:
        assert app.click(user, button, task_id, "task_controls", message.ts, channel=message.channel).status == 200
        app.settle()
        assert task_state(app, task_id) == "paused"
        told.append(app.slack.ephemerals(user)[-1].text)
    # Audited like refused decisions; told only to the clicker; the message stays as it was.
    with app.services.sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.kind == "decision.refused")).all()
    assert [(e.actor, e.task_public_id, e.data) for e in events] == [
        (user, task_id, {"attempted": button, "code": "not_allowed"}) for user, button, _ in refused
    ]
    assert all(words in text for (_, _, words), text in zip(refused, told, strict=True))
    assert len(app.slack.calls_to("chat.update")) == updates_before

    # Their own task: the requester may stop it.
    app.click(REQUESTER, action_ids.STOP_TASK, task_id, "task_controls", message.ts, channel=message.channel)
    app.settle()
    assert task_state(app, task_id) == "cancelled"


def test_an_approver_extends_a_budget_once(budget_app: SlackApp) -> None:
    app = budget_app
    task_id, message = paused_by_budget(app)
    app.click(BOB, action_ids.EXTEND_BUDGET, task_id, "task_controls", message.ts, channel=message.channel)
    app.settle()
    assert task_state(app, task_id) == "succeeded"
    app.click(BOB, action_ids.EXTEND_BUDGET, task_id, "task_controls", message.ts, channel=message.channel)
    app.settle()
    assert "succeeded, not paused by its budget" in app.slack.ephemerals(BOB)[-1].text
