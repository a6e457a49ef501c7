"""The one-statement decision (PostgreSQL) writes exactly what the ORM path writes, in one
statement per decision (two above quorum 1), and leaves to the ORM path what it cannot decide."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from approvals.decisions import Decisions, Outcome, decide
from core.models import Action, AuditEvent, Decision, OutboxMessage
from tests.approvals.conftest import ALICE, BOB, CAROL, World


class EveryTypeDelegated:
    """A credentials port under which no task type may take the one-statement path."""

    def missing(self, session: Session, action: Action, approver: str) -> None:
        return None

    def delegated_task_types(self) -> Collection[str]:
        return ["refund"]


Decide = Callable[[Decisions, Session, Action], Outcome]
CASES: dict[str, tuple[dict[str, Any], list[Decide]]] = {
    "approve": ({}, [lambda d, s, a: d.approve(s, a.public_id, ALICE, a.params_hash, note="ok")]),
    "approve to quorum": (
        {"quorum": 2},
        [
            lambda d, s, a: d.approve(s, a.public_id, ALICE, a.params_hash),
            lambda d, s, a: d.approve(s, a.public_id, BOB, a.params_hash, team_id="T0ACME"),
        ],
    ),
    "reject after an approval": (
        {"quorum": 2},
        [
            lambda d, s, a: d.approve(s, a.public_id, ALICE, a.params_hash),
            lambda d, s, a: d.reject(s, a.public_id, BOB, "  wrong order  "),
        ],
    ),
    "veto": (
        {"tool": "toggle_flag", "params": {"flag": "beta", "enabled": True}, "autonomy": "hotl"},
        [lambda d, s, a: d.veto(s, a.public_id, BOB, "not now")],
    ),
}


def _chains(statement: str) -> bool:
    return "pg_advisory_xact_lock" in statement or "audit_unchained" in statement or "audit_events" in statement


def _written(world: World, action: Action) -> dict[str, Any]:
    """What the decisions wrote, without ids, public ids and hashes (they differ per action),
    times counted from the action's creation."""
    with world.sessions() as session:
        decisions = session.scalars(select(Decision).where(Decision.action_id == action.id).order_by(Decision.id))
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action_public_id == action.public_id).order_by(AuditEvent.seq)
        )
        messages = session.scalars(
            select(OutboxMessage).where(OutboxMessage.ordering_key == action.public_id).order_by(OutboxMessage.id)
        )
        row = session.get_one(Action, action.id)
        written = {
            "action": [(row.state, row.decided_by, row.decided_at, row.updated_at)],
            "decisions": [(d.kind, d.actor, d.team_id, d.params_hash == action.params_hash, d.note, d.diff, d.at)
                          for d in decisions],
            "events": [(e.kind, e.actor, e.at, e.task_type, e.from_state, e.to_state, e.note, e.data,
                        e.task_public_id is not None, e.params_hash == action.params_hash) for e in events],
            "messages": [(m.kind, {k: v for k, v in m.payload.items() if k != "action_id"}, m.created_at,
                          m.available_at, m.attempts, m.delivered_at) for m in messages],
        }  # fmt: skip
    return {name: [_since(action.created_at, values) for values in rows] for name, rows in written.items()}


def _since(base: datetime, values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(value - base if isinstance(value, datetime) else value for value in values)


POSTGRES_ONLY = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # the path is PostgreSQL's


@POSTGRES_ONLY
@pytest.mark.parametrize("case", CASES)
def test_one_statement_and_the_orm_path_write_the_same_rows(world: World, case: str) -> None:
    overrides, steps = CASES[case]
    orm = Decisions(world.directory, world.registry, world.clock, credentials=EveryTypeDelegated())
    results: dict[str, tuple[list[Outcome], dict[str, Any]]] = {}
    for name, decisions in (("statement", world.decisions), ("orm", orm)):
        action = world.draft(**overrides)
        statements: list[str] = []
        engine = world.sessions.kw["bind"]

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)  # noqa: B023 - used within the loop's iteration

        outcomes = []
        for step in steps:
            world.clock.advance(7)
            event.listen(engine, "before_cursor_execute", count)
            try:
                outcomes.append(decide(world.sessions, world.clock, lambda s: step(decisions, s, action)))  # noqa: B023
            finally:
                event.remove(engine, "before_cursor_execute", count)
        results[name] = (outcomes, _written(world, action))
        if name == "statement":
            # Besides the decision's own statements, only the chaining of its events at commit.
            ours = [s for s in statements if s.lstrip().startswith("WITH") or not _chains(s)]
            assert len(ours) == len(steps) * (2 if overrides.get("quorum", 1) > 1 else 1), ours
    (fast, fast_rows), (slow, slow_rows) = results["statement"], results["orm"]
    assert [(o.state, o.approvals, o.quorum, o.decision.kind, o.decision.actor) for o in fast] == [
        (o.state, o.approvals, o.quorum, o.decision.kind, o.decision.actor) for o in slow
    ]
    assert fast_rows["decisions"] and fast_rows["events"]
    assert fast_rows == slow_rows


@POSTGRES_ONLY
def test_a_clicker_listed_through_a_group_first_seen_is_decided_on_the_orm_path_then_in_one_statement(
    world: World,
) -> None:
    first, second = world.draft(), world.draft()
    for action in (first, second):
        outcome = decide(
            world.sessions,
            world.clock,
            lambda s: world.decisions.approve(s, action.public_id, CAROL, action.params_hash),  # noqa: B023
        )
        assert outcome.state == "approved"  # CAROL is in @payments-leads
    assert world.decisions._groups == {"@payments-leads"}
