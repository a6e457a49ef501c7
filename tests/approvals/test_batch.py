"""Review many at once (`approvals.batch`): the set approved is exactly the set checked, minus
those refused, each refused with its reason; nothing unchecked, unshown or changed since it
was shown is approved. A property over random reviews, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from approvals.batch import approve_checked, waiting_for
from approvals.decisions import decide, shown_binding
from approvals.errors import DecisionRefused
from approvals.gate import Draft, submit
from core.models import Action, Decision
from tests.approvals.conftest import ALICE, BOB, World, task_type
from tests.factories import make_task

# What may happen to an item between the review showing it and its submission.
CHANGES = ("none", "edited", "rejected", "own", "approved_by_me", "not_shown")
REFUSED_AS = {
    "edited": "stale_params",
    "rejected": "already_decided",
    "own": "self_approval",
    "approved_by_me": "duplicate_approval",
    "not_shown": "not_shown",
}


def _draft(world: World, order: int, *, requester: str = "U0REQUESTER") -> Action:
    with world.sessions.begin() as session:
        task = make_task(session, world.clock.now(), requester=requester)
        return submit(
            session,
            task,
            Draft("issue_refund", {"order_id": str(order), "amount_cents": 500}, "asked", 0.9),
            task_type=task_type(quorum=2, approvers=[ALICE, BOB]),
            catalog=world.registry,
            now=world.clock.now(),
        )


def _call(world: World, call: Any) -> None:
    decide(world.sessions, world.clock, call)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(CHANGES), st.booleans()), min_size=1, max_size=6))
def test_approved_is_exactly_checked_minus_refused(world: World, plan: list[tuple[str, bool]]) -> None:
    items = [
        _draft(world, n, requester=ALICE if change == "own" else "U0REQUESTER") for n, (change, _) in enumerate(plan)
    ]
    # What the review showed, when it opened.
    shown = {
        a.public_id: shown_binding(a.params_hash, a.tool_hash)
        for a, (change, _) in zip(items, plan, strict=True)
        if change != "not_shown"
    }
    world.clock.advance(5)
    for action, (change, _) in zip(items, plan, strict=True):
        if change == "edited":  # Bob changes its params (quorum 2: it stays pending, on new params)
            edited = {"order_id": action.params["order_id"], "amount_cents": 300}
            _call(
                world,
                lambda s, a=action, p=edited: world.decisions.approve_with_edits(s, a.public_id, BOB, a.params_hash, p),
            )
        elif change == "rejected":
            _call(world, lambda s, a=action: world.decisions.reject(s, a.public_id, BOB, "no"))
        elif change == "approved_by_me":  # Alice approved it on its card already (1 of 2)
            _call(world, lambda s, a=action: world.decisions.approve(s, a.public_id, ALICE, a.params_hash))
    checked = [action.public_id for action, (_, ticked) in zip(items, plan, strict=True) if ticked]
    mine_before = _mine(world)

    result = approve_checked(world.sessions, world.clock, world.decisions, ALICE, checked, shown)

    assert set(result.approved) | set(result.refused) == set(checked)
    assert not set(result.approved) & set(result.refused)
    for action, (change, ticked) in zip(items, plan, strict=True):
        if not ticked:
            continue
        if change == "none":
            assert action.public_id in result.approved
        else:
            refusal = result.refused[action.public_id]
            assert isinstance(refusal, DecisionRefused) and refusal.code == REFUSED_AS[change] and str(refusal)
    # Exactly one new approval by Alice per approved item, on the params it was shown with; none elsewhere.
    new = _mine(world) - mine_before
    assert {public_id for public_id, _ in new} == set(result.approved)
    for public_id, params_hash in new:
        [action] = [a for a in items if a.public_id == public_id]
        assert params_hash == action.params_hash


def _mine(world: World) -> set[tuple[str, str]]:
    with world.sessions() as session:
        rows = session.execute(
            select(Action.public_id, Decision.params_hash)
            .join(Action, Action.id == Decision.action_id)
            .where(Decision.actor == ALICE, Decision.kind == "approve")
        ).all()
    return {(row[0], row[1]) for row in rows}


def test_what_waits_for_a_person_is_theirs_to_approve_oldest_first(world: World) -> None:
    first, second = world.draft(), world.draft(quorum=2)
    world.draft(approvers=[BOB])  # not Alice's to approve
    _draft(world, 9, requester=ALICE)  # her own request
    decided = world.draft()
    _call(world, lambda s: world.decisions.reject(s, decided.public_id, BOB, "no"))
    with world.sessions() as session:
        assert [a.public_id for a in waiting_for(session, ALICE, world.directory)] == [
            first.public_id,
            second.public_id,
        ]
    _call(world, lambda s: world.decisions.approve(s, second.public_id, ALICE, second.params_hash))  # 1 of 2
    with world.sessions() as session:
        assert [a.public_id for a in waiting_for(session, ALICE, world.directory)] == [first.public_id]
        assert waiting_for(session, ALICE, world.directory, task_type="other") == []
        assert [a.public_id for a in waiting_for(session, "U0CAROL", world.directory)] == [
            first.public_id,
            second.public_id,
        ]  # through @payments-leads
