"""What the gate reads of a task type's level per draft: an outcome that could demote the type is
labelled (and the demotion applied) before routing; a clean success is left to the periodic job;
a draft bound for a veto window cannot slip past a demotion in flight."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from approvals import autonomy, machine
from core.config import AutonomyLevel
from core.ids import SYSTEM
from core.models import Action, AuditEvent, AutonomyState
from core.states import ActionState
from tests.approvals.conftest import World, task_type

FLAG = {"tool": "toggle_flag", "params": {"flag": "beta", "enabled": True}}
LOOKUP = {"tool": "lookup_order", "params": {"order_id": "1234"}}
# Two outcomes fill the clean-rate window: two failures demote the type one level.
TWO_STRIKES = {"demote_window": 2, "demote_below": 0.9, "probation": 0}


def _end(world: World, action: Action, state: ActionState) -> None:
    """Run the action to `state` as the executor would (the outcome is what matters here)."""
    with world.sessions.begin() as session:
        row = session.get_one(Action, action.id)
        if row.state == ActionState.SCHEDULED:
            machine.move(session, row, ActionState.EXECUTING, actor=SYSTEM, now=world.clock.now())
        machine.move(session, row, state, actor=SYSTEM, now=world.clock.now())


def _outcome(world: World, action: Action) -> str | None:
    with world.sessions() as session:
        return session.get_one(Action, action.id).outcome


def _level(world: World) -> str:
    with world.sessions() as session:
        return session.get_one(AutonomyState, "refund").level


def test_failures_waiting_to_be_labelled_demote_the_type_before_the_next_draft_is_routed(world: World) -> None:
    kind: dict[str, Any] = {**FLAG, "autonomy": "hotl", "graduation": TWO_STRIKES}
    for _ in range(2):
        _end(world, world.draft(**kind), ActionState.FAILED)
    assert _level(world) == "hotl"  # nothing labelled them yet
    action = world.draft(**kind)
    assert (action.state, action.mode) == (ActionState.PENDING, "hitl")  # routed after the demotion
    assert _level(world) == "hitl"


def test_a_clean_success_is_left_to_the_periodic_job_and_the_draft_reads_the_level_in_one_statement(
    world: World, engine: Engine
) -> None:
    first = world.draft(**LOOKUP, autonomy="auto")
    _end(world, first, ActionState.SUCCEEDED)
    reads: list[str] = []

    def read(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "autonomy_levels" in statement:
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", read)
    try:
        second = world.draft(**LOOKUP, autonomy="auto")
    finally:
        event.remove(engine, "before_cursor_execute", read)
    assert second.state == ActionState.EXECUTING
    assert len(reads) == 1 and "FOR UPDATE" not in reads[0]  # read once, no lock, nothing settled
    assert _outcome(world, first) is None
    with world.sessions.begin() as session:  # the periodic job (`escalations.jobs.Settler`) labels it
        autonomy.settle(session, "refund", task_type(autonomy="auto"), world.clock.now())
    assert _outcome(world, first) == "clean"


def _waiting_on_a_lock(engine: Engine, deadline_s: float = 10.0) -> bool:
    """Whether some other backend of this database waits on a lock (polled until the deadline)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with engine.connect() as conn:
            if conn.execute(query).scalar():
                return True
        time.sleep(0.01)
    return False


def test_a_draft_bound_for_a_veto_window_waits_for_a_demotion_in_flight_and_is_routed_after_it(
    world: World, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serializes writers")
    kind: dict[str, Any] = {**FLAG, "autonomy": "hotl"}
    world.draft(**kind)  # the type's row exists, at hotl
    hotl = task_type(autonomy="hotl")
    drafted: list[Action] = []
    with sessions.begin() as session:  # a demotion under way: the row locked for update
        state = autonomy.state_for(session, "refund", hotl, world.clock.now())
        autonomy.change_level(
            session, state, AutonomyLevel.HITL, actor=SYSTEM, reason="test", now=world.clock.now(), task_type=hotl
        )
        drafting = threading.Thread(target=lambda: drafted.append(world.draft(**kind)))
        drafting.start()
        assert _waiting_on_a_lock(engine), "the draft did not wait for the demotion"
    drafting.join(10)
    assert [(action.state, action.mode) for action in drafted] == [(ActionState.PENDING, "hitl")]
    with sessions() as session:
        scheduled = session.scalars(select(Action.id).where(Action.state == ActionState.SCHEDULED)).all()
        assert scheduled == []  # the first one was re-gated, the second routed at hitl
        routed = session.scalars(
            select(AuditEvent.data).where(
                AuditEvent.action_public_id == drafted[0].public_id, AuditEvent.kind == "action.pending"
            )
        ).one()
    assert routed is not None and routed["level"] == "hitl"  # the level it was routed at, read under the lock
