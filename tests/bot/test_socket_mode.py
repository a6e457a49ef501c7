"""Slack over Socket Mode, end to end: the flows of `test_slack_flows.py` delivered as envelopes
on a WebSocket through slack_sdk's real Socket Mode client (`bot.socket_mode`) instead of
signed HTTP requests, with Slack recycling the connection in the middle of them. Every
envelope is acked by its id (`socket_serving` checks on the way out)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from bot.sandbox.signed import event_callback, view_submission_payload
from core.models import AuditEvent, Task
from tests.approvals import shop_tools
from tests.bot.slack_app import ALICE, APPROVALS, BOB, REQUESTER, TEAM, decide_block
from tests.bot.socket_app import SocketApp, socket_serving


@pytest.fixture
def socket_app(db_url: str) -> Iterator[SocketApp]:
    with socket_serving(db_url) as app:
        yield app


def _card(app: SocketApp, order: int = 1234):
    started = app.command(REQUESTER, f"run refund Refund order {order}, it arrived broken")
    reply = app.sockets.ack(started).payload
    assert reply is not None and "Started `tsk_" in reply["text"]
    app.settle()
    [action] = app.actions()
    return action, app.card(action)


def _audited(app: SocketApp, kind: str) -> int:
    with app.services.sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.kind == kind)) or 0


def test_a_card_approved_over_socket_mode_runs_its_tool_once(socket_app: SocketApp) -> None:
    action, card = _card(socket_app)
    block_id, buttons = decide_block(card.blocks)
    clicked = socket_app.click(ALICE, "approve", buttons["approve"], block_id, card)
    assert socket_app.sockets.ack(clicked).payload is None  # a click's ack carries nothing
    socket_app.settle()

    [after] = socket_app.actions()
    assert after.state == "succeeded"
    assert shop_tools.CALLS[action.public_id] == 1
    updated = socket_app.slack.message(APPROVALS, card.ts)
    assert f"<@{ALICE}>" in json.dumps(updated.blocks)
    assert not [b for b in updated.blocks if b.get("type") == "actions"]  # no buttons once decided
    assert [len(socket_app.slack.calls_to("apps.connections.open")), socket_app.sockets.links] == [1, 1]


def test_a_disconnect_between_card_and_click_loses_nothing(socket_app: SocketApp) -> None:
    sockets = socket_app.sockets
    action, card = _card(socket_app)
    assert sockets.disconnect("refresh_requested") == 1
    sockets.link(2)  # through a new apps.connections.open: the first ticket is spent
    sockets.closed(1)
    assert len(socket_app.slack.calls_to("apps.connections.open")) == 2

    block_id, buttons = decide_block(card.blocks)
    clicked = socket_app.click(ALICE, "approve", buttons["approve"], block_id, card)
    assert sockets.ack(clicked).link == 2
    socket_app.settle()
    [after] = socket_app.actions()
    assert after.state == "succeeded"
    assert shop_tools.CALLS[action.public_id] == 1
    assert sockets.refused == 0


def test_a_click_whose_ack_was_lost_is_redelivered_after_the_reconnect_and_decides_once(
    socket_app: SocketApp,
) -> None:
    sockets = socket_app.sockets
    action, card = _card(socket_app)
    block_id, buttons = decide_block(card.blocks)
    first = socket_app.click(ALICE, "approve", buttons["approve"], block_id, card, lose_ack=True)
    sockets.lost_ack(first)  # the app took it and acked; the connection died before Slack read the ack
    sockets.disconnect("warning")
    sockets.link(2)
    [again] = sockets.redeliver()
    assert sockets.ack(again).link == 2
    socket_app.settle()

    [after] = socket_app.actions()
    assert after.state == "succeeded"
    assert shop_tools.CALLS[action.public_id] == 1
    assert (_audited(socket_app, "decision.approve"), _audited(socket_app, "action.executing")) == (1, 1)
    assert sockets.redeliver() == []  # nothing else was left unacked


def test_a_mention_whose_ack_was_lost_is_retried_after_the_reconnect_and_starts_one_task(
    socket_app: SocketApp,
) -> None:
    sockets = socket_app.sockets
    first = socket_app.mention(REQUESTER, "refund Refund order 55, it is broken", "Ev0SOCKET1", lose_ack=True)
    sockets.lost_ack(first)
    sockets.disconnect("refresh_requested")
    sockets.link(2)
    [retry] = sockets.redeliver()
    assert [e.retry_attempt for e in sockets.envelopes] == [None, 1]  # Slack's retry says it is one
    sockets.ack(retry)
    socket_app.settle()

    with socket_app.services.sessions() as session:
        tasks = list(session.scalars(select(Task)))
    assert [(t.task_type, t.request_text) for t in tasks] == [("refund", "Refund order 55, it is broken")]
    [action] = socket_app.actions()
    assert socket_app.card(action).ts  # one card, posted once
    assert _audited(socket_app, "task.submitted") == 1


def test_a_click_sent_on_the_old_connection_after_disconnect_is_answered_or_redelivered_once(
    socket_app: SocketApp,
) -> None:
    """Slack keeps delivering on the old connection until the app lets it go: a click sent
    there in that moment is either taken before the client closes it or lost unacked, and then
    redelivered on the new one. Either way the action is decided once."""
    sockets = socket_app.sockets
    action, card = _card(socket_app)
    block_id, buttons = decide_block(card.blocks)
    sockets.disconnect("refresh_requested")
    socket_app.click(BOB, "approve", buttons["approve"], block_id, card)  # on connection 1, if still open
    sockets.link(2)
    sockets.closed(1)
    for envelope_id in sockets.redeliver():
        sockets.ack(envelope_id)
    socket_app.settle()
    [after] = socket_app.actions()
    assert (after.state, after.decided_by) == ("succeeded", BOB)
    assert shop_tools.CALLS[action.public_id] == 1
    assert _audited(socket_app, "decision.approve") == 1


def test_a_modal_answers_over_socket_mode_in_the_ack(socket_app: SocketApp) -> None:
    """A view submission's `response_action` goes back as the ack's payload, as HTTP's body."""
    sockets, slack = socket_app.sockets, socket_app.slack
    action, card = _card(socket_app)
    block_id, buttons = decide_block(card.blocks)
    sockets.ack(socket_app.click(BOB, "reject", buttons["reject"], block_id, card))
    socket_app.settle()
    [modal] = slack.views
    assert modal.payload["callback_id"] == "reject_reason"

    def submit(reason: str) -> str:
        values = {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
        payload = view_submission_payload(
            team_id=TEAM, user_id=BOB, view=modal.payload, values=values, trigger_id=slack.new_trigger_id(BOB)
        )
        return sockets.send("interactive", payload, accepts_response_payload=True)

    empty = sockets.ack(submit(" ")).payload
    assert empty is not None and empty["response_action"] == "errors" and "reason" in empty["errors"]
    assert socket_app.actions()[0].state == "pending"
    assert sockets.ack(submit("Order 1234 was refunded already.")).payload is None  # the modal closes
    socket_app.settle()
    [after] = socket_app.actions()
    assert after.state == "rejected"
    assert shop_tools.CALLS[action.public_id] == 0
    assert "refunded already" in json.dumps(slack.message(APPROVALS, card.ts).blocks)


def test_envelopes_bolt_refuses_are_acked_all_the_same(socket_app: SocketApp) -> None:
    """Bolt's own adapter acks only what Bolt answers with a 200: Slack would retry an event it
    refused, and show a refused command as failed. Here each is acked, without a reply."""
    sockets = socket_app.sockets
    nul = socket_app.command(REQUESTER, "run refund Refund order \x00 1234")  # Bolt: 400
    # The manifest subscribes to `tokens_revoked`, which only multi-workspace mode (HTTP only)
    # listens to: in Socket Mode no listener takes it, and Bolt answers 404.
    revoked = {"type": "tokens_revoked", "tokens": {"bot": ["U0BOT"]}}
    unrouted = sockets.send("events_api", event_callback(revoked, team_id=TEAM))
    assert [sockets.ack(nul).payload, sockets.ack(unrouted).payload] == [None, None]
    socket_app.settle()
    assert socket_app.actions() == []
    assert _audited(socket_app, "task.submitted") == 0


def test_an_envelope_wakes_the_background_loops(socket_app: SocketApp) -> None:
    """As a POST does over HTTP: the card of a command, the tool run of a click, are looked
    for at once rather than at an idle loop's next poll."""
    assert not socket_app.wakeup.wait(0)  # connecting woke nothing
    socket_app.sockets.ack(socket_app.command(REQUESTER, "help"))
    assert socket_app.wakeup.wait(5)
