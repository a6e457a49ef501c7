"""The sender has one delivery for every outbox message type, and gives up a stored row whose
payload does not match its kind at once, saying why, instead of retrying it forever."""

from __future__ import annotations

from sqlalchemy import select

from bot.deliveries import DELIVERIES
from core.messages import MESSAGES
from core.models import OutboxMessage
from tests.bot.slack_app import REQUESTER, SlackApp


def test_every_message_type_has_a_delivery() -> None:
    assert [cls.__name__ for cls in MESSAGES if cls not in DELIVERIES] == []
    assert set(DELIVERIES) == set(MESSAGES)


def test_a_malformed_row_is_given_up_loudly_and_the_queue_moves_on(slack_app: SlackApp) -> None:
    with slack_app.services.sessions.begin() as session:
        now = slack_app.clock.now()
        bad = OutboxMessage(kind="task.paused", ordering_key="tsk_x", payload={"task_id": "tsk_x"}, created_at=now,
                            available_at=now)  # fmt: skip
        session.add(bad)
    slack_app.command(REQUESTER, "run refund Refund order 1234")
    slack_app.settle()
    with slack_app.services.sessions() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.id == bad.id)).one()
        assert row.delivered_at is not None and row.attempts == 1  # given up, not retried
        assert row.last_error is not None
        assert "gave up: outbox message 'task.paused' is malformed" in row.last_error
        assert "reason: Field required" in row.last_error
    [action] = slack_app.actions()
    assert slack_app.card(action) is not None  # the rows after it were delivered
