from __future__ import annotations

import pytest
from sqlalchemy import func, select

from approvals import machine
from core.errors import InvalidTransition, StaleState
from core.messages import ActionDecided
from core.models import Action, AuditEvent, OutboxMessage
from core.states import ACTION, ActionState
from tests.factories import make_action, make_task
from tests.fakes.clock import FrozenClock


def test_every_state_has_a_row_and_terminal_states_lead_nowhere() -> None:
    assert set(ACTION.table) == set(ActionState)
    for terminal in ("succeeded", "rejected", "vetoed", "expired", "refused", "cancelled", "failed"):
        assert ACTION.table[ActionState(terminal)] == frozenset()
    # unknown waits for a person: it ran, it did not run, or run it again (`approvals.resolutions`)
    assert ACTION.table[ActionState.UNKNOWN] == {ActionState.SUCCEEDED, ActionState.FAILED, ActionState.APPROVED}
    assert ActionState.APPROVED not in ACTION.table[ActionState.REJECTED]


def _counts(session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(AuditEvent)),
        session.scalar(select(func.count()).select_from(OutboxMessage)),
    )


def test_impossible_transition_raises_and_changes_nothing(sessions) -> None:
    clock = FrozenClock()
    with sessions.begin() as session:
        action = make_action(session, make_task(session, clock.now()), clock.now(), state="rejected")
    with pytest.raises(InvalidTransition, match="'rejected' to 'approved'"), sessions.begin() as session:
        row = session.get(Action, action.id)
        machine.move(session, row, ActionState.APPROVED, actor="U0ALICE", now=clock.now())
    with sessions() as session:
        assert session.get(Action, action.id).state == "rejected"
        assert _counts(session) == (0, 0)


def test_compare_and_set_loses_to_a_concurrent_change(sessions) -> None:
    clock = FrozenClock()
    with sessions.begin() as session:
        action = make_action(session, make_task(session, clock.now()), clock.now(), state="pending")
    with sessions() as session:
        seen = session.get(Action, action.id)  # a copy that says "pending"
        session.expunge(seen)
    with sessions.begin() as session:
        machine.move(session, session.get(Action, action.id), ActionState.REJECTED, actor="U0ALICE", now=clock.now())
    with pytest.raises(StaleState), sessions.begin() as session:
        stale = session.merge(seen, load=False)
        machine.move(
            session,
            stale,
            ActionState.APPROVED,
            actor="U0BOB",
            now=clock.now(),
            messages=[ActionDecided(action.public_id, "approve", "U0BOB")],
        )
    with sessions() as session:
        assert session.get(Action, action.id).state == "rejected"
        assert _counts(session) == (1, 0)  # only the winner's audit event, no outbox row
