"""A task that stops moving is escalated once per stall, saying what it is stuck on."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.config import Config
from core.models import AuditEvent, OutboxMessage, Task
from escalations import stalls
from tests.approvals.conftest import ALICE, BOB, World
from tests.factories import make_action, make_task

CONFIG = Config.model_validate(
    {
        "slack": {"approvals_channel": "C0APPROVALS", "admins": ["U0ADMIN"]},
        "task_types": {"refund": {"tools": ["issue_refund"], "approvers": [ALICE, BOB], "stall_after": "30m"}},
    }
)


def _sweep(world: World) -> int:
    with world.sessions.begin() as session:
        return stalls.sweep(session, CONFIG, world.clock.now())


def _alerts(world: World) -> list[OutboxMessage]:
    with world.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "task.stall")))


def test_an_action_in_unknown_stalls_its_task_once_per_stall(world: World) -> None:
    with world.sessions.begin() as session:
        task = make_task(session, world.clock.now())
        task.state = "waiting"
        make_action(session, task, world.clock.now(), state="unknown")
        task_id = task.public_id
    world.clock.advance(timedelta(minutes=29))
    assert _sweep(world) == 0
    world.clock.advance(timedelta(minutes=2))
    assert _sweep(world) == 1
    assert _sweep(world) == 0  # once per stall
    [alert] = _alerts(world)
    assert alert.payload["targets"] == [ALICE, BOB, "U0ADMIN"]
    assert "crashed mid-run" in alert.payload["what"]
    with world.sessions() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.kind == "task.stall_escalated")).all()
        assert event.task_public_id == task_id

    world.clock.advance(timedelta(minutes=1))
    with world.sessions.begin() as session:  # progress, then a new stall
        moved = session.scalars(select(Task).where(Task.public_id == task_id)).one()
        moved.updated_at = world.clock.now()
    world.clock.advance(timedelta(minutes=31))
    assert _sweep(world) == 1
    assert len(_alerts(world)) == 2


def test_waiting_for_a_decision_is_not_a_stall(world: World) -> None:
    with world.sessions.begin() as session:
        task = make_task(session, world.clock.now())
        task.state = "waiting"
        make_action(session, task, world.clock.now(), state="pending")
    world.clock.advance(timedelta(hours=2))
    assert _sweep(world) == 0
    assert _alerts(world) == []
