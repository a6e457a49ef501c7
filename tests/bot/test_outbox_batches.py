"""The outbox sender claims a few rows at once (only the oldest undelivered row of each ordering
key) and writes their outcomes together; a row whose lease ran short while it waited its turn
is renewed first, or left alone if another sender claimed it meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.outbox_sender import OutboxSender
from core.clock import utc
from core.models import OutboxMessage
from tests.bot.slack_app import SlackApp
from tests.factories import make_action, make_task


@contextmanager
def counting_commits(sessions: sessionmaker[Session]) -> Iterator[list[object]]:
    commits: list[object] = []

    def committed(session: object) -> None:
        commits.append(session)

    event.listen(sessions, "after_commit", committed)
    try:
        yield commits
    finally:
        event.remove(sessions, "after_commit", committed)


def _rows(app: SlackApp, *keys: str) -> list[int]:
    """One row per key, in order. Their payloads lack a field, so each is given up at once
    (delivered, with the reason) without a Slack call: what is measured is claiming and settling."""
    now = app.clock.now()
    with app.services.sessions.begin() as session:
        rows = [
            OutboxMessage(
                kind="task.paused", ordering_key=key, payload={"task_id": key}, created_at=now, available_at=now
            )
            for key in keys
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _delivered(app: SlackApp) -> dict[int, bool]:
    with app.services.sessions() as session:
        rows = session.execute(select(OutboxMessage.id, OutboxMessage.delivered_at)).all()
        return {row_id: at is not None for row_id, at in rows}


def test_a_batch_takes_the_oldest_row_of_each_key_and_settles_them_in_one_transaction(slack_app: SlackApp) -> None:
    a1, a2, b1, c1 = _rows(slack_app, "tsk_a", "tsk_a", "tsk_b", "tsk_c")
    sender = OutboxSender(slack_app.services, batch=4)
    with counting_commits(slack_app.services.sessions) as commits:
        assert sender.run_once() is True
    assert _delivered(slack_app) == {a1: True, a2: False, b1: True, c1: True}  # a2 waits for a1
    assert len(commits) == 2  # the claim, then every outcome at once
    assert sender.run_once() is True
    assert _delivered(slack_app) == {a1: True, a2: True, b1: True, c1: True}
    assert sender.run_once() is False


def test_a_tasks_row_waits_for_the_earlier_rows_of_its_actions(slack_app: SlackApp) -> None:
    """The answer ("the result is above, in this thread") never arrives before the result."""
    with slack_app.services.sessions.begin() as session:
        task = make_task(session, slack_app.clock.now())
        action, other = (make_action(session, task, slack_app.clock.now()).public_id for _ in range(2))
        task_id = task.public_id
    (result,) = _rows(slack_app, action)
    answer, unrelated = _rows(slack_app, task_id, "tsk_other")
    later_of_other_action = _rows(slack_app, other)[0]  # after the task's row: it does not hold it back
    sender = OutboxSender(slack_app.services, batch=4)
    assert sender.run_once() is True
    assert _delivered(slack_app) == {result: True, answer: False, unrelated: True, later_of_other_action: True}
    assert sender.run_once() is True
    assert _delivered(slack_app)[answer] is True


def test_a_late_turn_renews_its_lease_and_a_row_claimed_by_another_sender_is_left_to_it(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture
) -> None:
    first, taken, last = _rows(slack_app, "tsk_a", "tsk_b", "tsk_c")
    sender = OutboxSender(slack_app.services, batch=3, lease_s=60)
    claimed = sender._claim(3)
    assert [message.id for message in claimed] == [first, taken, last]
    late = slack_app.clock.advance(45)  # 15 s of lease left: less than half, so each is renewed before its delivery
    with slack_app.services.sessions.begin() as session:  # another sender claimed the second meanwhile
        session.execute(update(OutboxMessage).where(OutboxMessage.id == taken).values(attempts=2))
    sender._deliver_all(claimed)
    assert _delivered(slack_app) == {first: True, taken: False, last: True}
    assert f"outbox row {taken}: its lease was taken over while it waited its turn" in caplog.text
    with slack_app.services.sessions() as session:
        row = session.get_one(OutboxMessage, taken)
        assert (row.attempts, row.last_error) == (2, None)  # untouched: the other sender's now
        renewed = [utc(session.get_one(OutboxMessage, row_id).available_at) for row_id in (first, last)]
    assert renewed == [late + timedelta(seconds=60)] * 2
