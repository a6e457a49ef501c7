from __future__ import annotations

import pytest
from sqlalchemy import func, select

from approvals.decisions import decide
from approvals.errors import (
    AlreadyAcknowledged,
    AlreadyApprovedByYou,
    AlreadyDecided,
    DecisionRefused,
    InvalidEdit,
    NotAnApprover,
    NotApplicable,
    ReasonRequired,
    SelfApproval,
    StaleParams,
)
from core.models import Action, AuditEvent, Decision, OutboxMessage
from core.states import ActionState
from tests.approvals.conftest import ALICE, BOB, CAROL, MALLORY, REQUESTER, World


def _snapshot(world: World) -> tuple[int, int, int]:
    with world.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Decision)),
            session.scalar(select(func.count()).select_from(OutboxMessage)),
            session.scalar(select(func.count()).select_from(AuditEvent)),
        )


def _state(world: World, action: Action) -> str:
    with world.sessions() as session:
        return session.scalars(select(Action.state).where(Action.id == action.id)).one()


def test_an_approver_approves_and_the_card_is_told(world: World) -> None:
    action = world.draft()
    outcome = decide(
        world.sessions, world.clock, lambda s: world.decisions.approve(s, action.public_id, ALICE, action.params_hash)
    )
    assert outcome.state == ActionState.APPROVED
    assert (outcome.approvals, outcome.quorum) == (1, 1)
    with world.sessions() as session:
        row = session.get(Action, action.id)
        assert (row.state, row.decided_by, row.decided_at) == ("approved", ALICE, world.clock.now())
        kinds = list(session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)))
        assert kinds == ["action.card", "action.decided"]
        audit = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(2)).all()
        assert [(e.kind, e.actor, e.from_state, e.to_state) for e in audit] == [
            ("action.approved", ALICE, "pending", "approved"),
            ("decision.approve", ALICE, None, "pending"),
        ]
        assert audit[0].params_hash == action.params_hash


def test_a_member_of_a_listed_user_group_may_approve(world: World) -> None:
    action = world.draft()
    outcome = decide(
        world.sessions, world.clock, lambda s: world.decisions.approve(s, action.public_id, CAROL, action.params_hash)
    )
    assert outcome.state == ActionState.APPROVED
    assert "@payments-leads" in world.directory.lookups


def _refused(world: World, action: Action, call, error: type[DecisionRefused]) -> DecisionRefused:
    before = _snapshot(world)
    with pytest.raises(error) as caught:
        decide(world.sessions, world.clock, call)
    decisions, outbox, audit = _snapshot(world)
    assert (decisions, outbox) == before[:2], "a refusal writes no decision and no message"
    assert audit == before[2] + 1, "a refusal writes exactly its own audit event"
    with world.sessions() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert event.kind == "decision.refused"
    assert event.data is not None and event.data["code"] == error.code
    assert event.action_public_id == action.public_id
    return caught.value


def test_the_requester_never_approves_their_own_action(world: World) -> None:
    action = world.draft(approvers=[REQUESTER, ALICE])
    refusal = _refused(
        world,
        action,
        lambda s: world.decisions.approve(s, action.public_id, REQUESTER, action.params_hash),
        SelfApproval,
    )
    assert REQUESTER in str(refusal)
    assert _state(world, action) == "pending"


def test_an_unlisted_person_cannot_decide(world: World) -> None:
    action = world.draft()
    refusal = _refused(
        world,
        action,
        lambda s: world.decisions.approve(s, action.public_id, MALLORY, action.params_hash),
        NotAnApprover,
    )
    assert "U0MALLORY is not an approver" in str(refusal)
    _refused(world, action, lambda s: world.decisions.reject(s, action.public_id, MALLORY, "no"), NotAnApprover)
    assert _state(world, action) == "pending"


def test_an_approval_on_a_stale_params_hash_is_refused(world: World) -> None:
    action = world.draft()
    refusal = _refused(
        world, action, lambda s: world.decisions.approve(s, action.public_id, ALICE, "0" * 64), StaleParams
    )
    assert "changed" in str(refusal)
    assert _state(world, action) == "pending"


def test_a_decided_action_refuses_further_decisions_naming_who_and_when(world: World) -> None:
    action = world.draft()
    decided_at = world.clock.now()
    decide(world.sessions, world.clock, lambda s: world.decisions.reject(s, action.public_id, BOB, "wrong order"))
    world.clock.advance(60)
    refusal = _refused(
        world, action, lambda s: world.decisions.approve(s, action.public_id, ALICE, action.params_hash), AlreadyDecided
    )
    assert isinstance(refusal, AlreadyDecided)
    assert (refusal.state, refusal.by) == ("rejected", BOB)
    assert refusal.at == decided_at
    assert "already rejected by U0BOB at 2026-01-05T09:00:00" in str(refusal)


def test_reject_needs_a_reason_and_keeps_it_word_for_word(world: World) -> None:
    action = world.draft()
    _refused(world, action, lambda s: world.decisions.reject(s, action.public_id, ALICE, "   "), ReasonRequired)
    decide(
        world.sessions,
        world.clock,
        lambda s: world.decisions.reject(s, action.public_id, ALICE, "Order 1234 was already refunded"),
    )
    with world.sessions() as session:
        decision = session.scalars(select(Decision).where(Decision.kind == "reject")).one()
    assert decision.note == "Order 1234 was already refunded"
    assert _state(world, action) == "rejected"


def test_quorum_needs_distinct_approvers(world: World) -> None:
    action = world.draft(quorum=2)
    first = decide(
        world.sessions, world.clock, lambda s: world.decisions.approve(s, action.public_id, ALICE, action.params_hash)
    )
    assert (first.state, first.approvals) == (ActionState.PENDING, 1)
    _refused(
        world,
        action,
        lambda s: world.decisions.approve(s, action.public_id, ALICE, action.params_hash),
        AlreadyApprovedByYou,
    )
    second = decide(
        world.sessions, world.clock, lambda s: world.decisions.approve(s, action.public_id, BOB, action.params_hash)
    )
    assert (second.state, second.approvals) == (ActionState.APPROVED, 2)


def test_an_edit_makes_a_new_hash_and_earlier_approvals_stop_counting(world: World) -> None:
    action = world.draft(quorum=2)
    decide(
        world.sessions, world.clock, lambda s: world.decisions.approve(s, action.public_id, ALICE, action.params_hash)
    )
    edited = decide(
        world.sessions,
        world.clock,
        lambda s: world.decisions.approve_with_edits(
            s, action.public_id, BOB, action.params_hash, {"order_id": "1234", "amount_cents": 300}
        ),
    )
    assert edited.state == ActionState.PENDING
    assert edited.approvals == 1  # Bob's edit; Alice approved the old params
    new_hash = edited.action.params_hash
    assert new_hash != action.params_hash
    assert edited.decision.diff == {"amount_cents": {"from": 500, "to": 300}}
    _refused(
        world, action, lambda s: world.decisions.approve(s, action.public_id, CAROL, action.params_hash), StaleParams
    )
    done = decide(world.sessions, world.clock, lambda s: world.decisions.approve(s, action.public_id, ALICE, new_hash))
    assert done.state == ActionState.APPROVED
    with world.sessions() as session:
        row = session.get(Action, action.id)
        assert row.params == {"order_id": "1234", "amount_cents": 300}
        edit_event = session.scalars(select(AuditEvent).where(AuditEvent.kind == "decision.edit")).one()
    assert edit_event.params_hash == new_hash
    assert edit_event.data == {"diff": {"amount_cents": {"from": 500, "to": 300}}}


def test_an_invalid_edit_is_refused_naming_the_field(world: World) -> None:
    action = world.draft()
    refusal = _refused(
        world,
        action,
        lambda s: world.decisions.approve_with_edits(
            s, action.public_id, ALICE, action.params_hash, {"order_id": "1234", "amount_cents": "lots"}
        ),
        InvalidEdit,
    )
    assert "amount_cents" in str(refusal)
    assert _state(world, action) == "pending"


def test_the_requester_cannot_approve_by_editing(world: World) -> None:
    action = world.draft(approvers=[REQUESTER, ALICE])
    _refused(
        world,
        action,
        lambda s: world.decisions.approve_with_edits(
            s, action.public_id, REQUESTER, action.params_hash, {"order_id": "1234", "amount_cents": 1}
        ),
        SelfApproval,
    )


def test_veto_stops_a_scheduled_action_and_only_a_scheduled_one(world: World) -> None:
    pending = world.draft()
    _refused(world, pending, lambda s: world.decisions.veto(s, pending.public_id, ALICE), NotApplicable)
    scheduled = world.draft(tool="toggle_flag", params={"flag": "beta", "enabled": True}, autonomy="hotl")
    outcome = decide(
        world.sessions, world.clock, lambda s: world.decisions.veto(s, scheduled.public_id, BOB, "not during the sale")
    )
    assert outcome.state == ActionState.VETOED
    _refused(
        world,
        scheduled,
        lambda s: world.decisions.approve(s, scheduled.public_id, ALICE, scheduled.params_hash),
        AlreadyDecided,
    )


def test_acknowledge_once_then_refused_politely(world: World) -> None:
    action = world.draft()
    outcome = decide(world.sessions, world.clock, lambda s: world.decisions.acknowledge(s, action.public_id, ALICE))
    assert outcome.state == ActionState.PENDING
    world.clock.advance(0.08)
    refusal = _refused(
        world, action, lambda s: world.decisions.acknowledge(s, action.public_id, BOB), AlreadyAcknowledged
    )
    assert "already acknowledged by U0ALICE" in str(refusal)
    approved = decide(
        world.sessions, world.clock, lambda s: world.decisions.approve(s, action.public_id, BOB, action.params_hash)
    )
    assert approved.state == ActionState.APPROVED
