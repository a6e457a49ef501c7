"""The sweeper claims due timers in batches: many steps in one transaction, each exactly once;
a bad step fails alone; an action another transaction holds is skipped, not waited for."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text

from core.db import make_engine
from core.models import Action, AuditEvent, OutboxMessage, Timer
from escalations.sweeper import Sweeper
from tests.approvals.conftest import ALICE, BOB, World
from tests.fakes.directory import FakeDirectory

REMIND = [{"after": "5m", "notify": "approvers"}, {"after": "30m", "then": "expire"}]


class BrokenGroupDirectory(FakeDirectory):
    """A directory whose `@broken` group cannot be read (Slack's usergroups API failing for it)."""

    def members(self, handle: str) -> frozenset[str]:
        if handle == "@broken":
            raise RuntimeError("usergroups.users.list failed for @broken")
        return super().members(handle)


def _drafts(world: World, count: int, **overrides: Any) -> list[Action]:
    """`count` pending actions whose first step (a reminder) comes due in 5 minutes."""
    overrides.setdefault("escalation", REMIND)
    return [world.draft(approvers=[ALICE, BOB], **overrides) for _ in range(count)]


def _due_actions(world: World, count: int) -> list[Action]:
    actions = _drafts(world, count)
    world.clock.advance(timedelta(minutes=6))
    return actions


def _notified(world: World) -> tuple[Counter[str], Counter[str]]:
    """How many `escalation.notify` outbox rows and `escalation.notified` events each action has."""
    with world.sessions() as session:
        rows = session.scalars(select(OutboxMessage.ordering_key).where(OutboxMessage.kind == "escalation.notify"))
        events = session.scalars(select(AuditEvent.action_public_id).where(AuditEvent.kind == "escalation.notified"))
        return Counter(rows), Counter(key for key in events if key is not None)


def test_a_batch_of_due_timers_is_swept_in_one_transaction_each_step_once(world: World) -> None:
    actions = _due_actions(world, 30)
    commits: list[object] = []

    def committed(session: object) -> None:
        commits.append(session)

    event.listen(world.sessions, "after_commit", committed)
    try:
        assert Sweeper(world.sessions, world.directory, world.clock, batch=50).run_once()
    finally:
        event.remove(world.sessions, "after_commit", committed)
    assert len(commits) == 1
    everyone = Counter({a.public_id: 1 for a in actions})
    assert _notified(world) == (everyone, everyone)
    with world.sessions() as session:
        assert set(session.scalars(select(Timer.step))) == {1}  # each moved on to its next step
        assert set(session.scalars(select(Timer.fence))) == {1}
    assert not Sweeper(world.sessions, world.directory, world.clock, batch=50).run_once()
    assert _notified(world) == (everyone, everyone)


def test_more_due_than_a_batch_takes_several_batches_and_no_step_twice(world: World) -> None:
    actions = _due_actions(world, 23)
    sweeper = Sweeper(world.sessions, world.directory, world.clock, batch=5)
    assert sweeper.run_once()
    assert sum(_notified(world)[0].values()) == 5
    assert sweeper.run_until_idle() == 18
    everyone = Counter({a.public_id: 1 for a in actions})
    assert _notified(world) == (everyone, everyone)


def test_a_bad_step_fails_alone_and_its_batch_is_taken(world: World, caplog: pytest.LogCaptureFixture) -> None:
    good = _drafts(world, 6)
    [bad] = _drafts(world, 1, escalation=[{"after": "5m", "notify": ["@broken"]}])
    world.clock.advance(timedelta(minutes=6))
    directory = BrokenGroupDirectory()
    assert Sweeper(world.sessions, directory, world.clock, batch=50).run_until_idle() == 6
    everyone = Counter({a.public_id: 1 for a in good})
    assert _notified(world) == (everyone, everyone)
    assert "failed; taking them one per transaction" in caplog.text
    with world.sessions() as session:
        timer = session.scalars(select(Timer).where(Timer.action_id == bad.id)).one()
        assert (timer.state, timer.step, timer.fence) == ("pending", 0, 0)  # still due: retried next round
    with pytest.raises(RuntimeError, match="@broken"):
        Sweeper(world.sessions, directory, world.clock, batch=50).run_until_idle()  # alone, it fails loudly
    assert Sweeper(world.sessions, world.directory, world.clock).run_until_idle() == 1  # the group is back
    assert _notified(world)[0][bad.public_id] == 0  # nobody resolved by @broken in the fake: skipped, audited


def test_a_sweeper_skips_an_action_a_click_holds_and_fires_it_on_a_later_round(world: World, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks (FOR UPDATE SKIP LOCKED) are PostgreSQL's; SQLite serializes writers")
    first, held, last = _due_actions(world, 3)
    sweeper = Sweeper(world.sessions, world.directory, world.clock, batch=50)
    clicker = make_engine(db_url)
    taken: list[int] = []
    try:
        with clicker.connect() as conn, conn.begin() as click:
            conn.execute(text("SELECT id FROM actions WHERE id = :id FOR UPDATE"), {"id": held.id})
            sweep = threading.Thread(target=lambda: taken.append(sweeper.run_until_idle()))
            sweep.start()
            sweep.join(timeout=30)
            blocked = sweep.is_alive()
            click.rollback()  # releases a sweeper that waited on the lock, so that the test ends
            sweep.join()
        assert not blocked, "the sweeper waited for the action the click held"
        assert taken == [2]
        assert _notified(world)[0] == Counter({first.public_id: 1, last.public_id: 1})
        assert sweeper.run_until_idle() == 1  # the next round: the click is over
        everyone = Counter({a.public_id: 1 for a in (first, held, last)})
        assert _notified(world) == (everyone, everyone)
    finally:
        clicker.dispose()
