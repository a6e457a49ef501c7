from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.models import Action, AuditEvent, OutboxMessage
from core.states import ActionState
from tests.approvals.conftest import World


def _outbox(world: World, action: Action) -> list[str]:
    with world.sessions() as session:
        return list(session.scalars(select(OutboxMessage.kind).where(OutboxMessage.ordering_key == action.public_id)))


def test_hitl_draft_waits_for_approval_with_a_card(world: World) -> None:
    action = world.draft()
    assert action.state == ActionState.PENDING
    assert action.mode == "hitl"
    assert action.approvers == ["U0ALICE", "U0BOB", "@payments-leads"]
    assert _outbox(world, action) == ["action.card"]
    with world.sessions() as session:
        kinds = list(session.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq)))
    assert kinds == ["action.drafted", "action.pending"]


def test_hotl_draft_is_scheduled_for_the_end_of_its_veto_window(world: World) -> None:
    action = world.draft(
        tool="toggle_flag", params={"flag": "beta", "enabled": True}, autonomy="hotl", veto_window="30s"
    )
    assert action.state == ActionState.SCHEDULED
    assert action.run_at == world.clock.now() + timedelta(seconds=30)
    assert _outbox(world, action) == ["action.card"]


def test_auto_draft_goes_straight_to_the_executor(world: World) -> None:
    action = world.draft(tool="lookup_order", params={"order_id": "1234"}, autonomy="auto")
    assert action.state == ActionState.EXECUTING
    assert action.lease_owner is None
    assert action.run_at == world.clock.now()


def test_low_confidence_forces_approval_whatever_the_level(world: World) -> None:
    action = world.draft(tool="lookup_order", params={"order_id": "1234"}, autonomy="auto", confidence=0.4)
    assert action.state == ActionState.PENDING
    with world.sessions() as session:
        card = session.scalars(select(OutboxMessage).where(OutboxMessage.ordering_key == action.public_id)).one()
    assert card.payload["low_confidence"] is True


def test_tool_caps_lower_the_mode(world: World) -> None:
    refund = world.draft(autonomy="auto")  # high risk, max_autonomy hitl
    note = world.draft(tool="send_note", params={"to": "a@b.c", "text": "hi"}, autonomy="auto")  # not idempotent
    assert (refund.state, refund.mode) == (ActionState.PENDING, "hitl")
    assert (note.state, note.mode) == (ActionState.SCHEDULED, "hotl")


def test_malformed_confidence_counts_as_zero(world: World) -> None:
    action = world.draft(tool="lookup_order", params={"order_id": "1"}, autonomy="auto", confidence=float("nan"))
    assert action.confidence == 0.0
    assert action.state == ActionState.PENDING


def test_out_of_scope_tool_is_refused_and_recorded_never_carded(world: World) -> None:
    action = world.draft(tool="send_note", params={"to": "x", "text": "y"}, tools=["lookup_order"])
    assert action.state == ActionState.REFUSED
    assert action.error is not None and "'send_note' is not allowed" in action.error
    assert _outbox(world, action) == []


def test_invalid_params_are_refused_naming_the_field(world: World) -> None:
    action = world.draft(params={"order_id": "1234", "amount_cents": "a lot"})
    assert action.state == ActionState.REFUSED
    assert action.error is not None and "amount_cents" in action.error
    assert _outbox(world, action) == []


def test_params_are_canonical_before_hashing(world: World) -> None:
    one = world.draft(params={"order_id": "1234", "amount_cents": "500"})
    two = world.draft(params={"amount_cents": 500, "order_id": "1234"})
    assert one.params == two.params == {"order_id": "1234", "amount_cents": 500}
    assert one.params_hash == two.params_hash
