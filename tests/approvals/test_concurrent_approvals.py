"""The issue's "Must show": 50 threads approving one pending action at once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select

from agent.executor import Executor
from approvals.decisions import decide
from approvals.errors import AlreadyApprovedByYou, AlreadyDecided, DecisionRefused
from approvals.ledger import verify
from core.models import Action, Decision
from tests.approvals import shop_tools
from tests.approvals.conftest import ALICE, BOB, World

THREADS = 50


def _storm(world: World, action: Action) -> tuple[Counter[str], list[BaseException]]:
    results: Counter[str] = Counter()
    unexpected: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def click(index: int) -> None:
        actor = (ALICE, BOB)[index % 2]
        start.wait()
        try:
            outcome = decide(
                world.sessions,
                world.clock,
                lambda s: world.decisions.approve(s, action.public_id, actor, action.params_hash),
            )
            results[f"ok:{outcome.state}"] += 1
        except DecisionRefused as refusal:
            results[refusal.code] += 1
        except BaseException as exc:
            unexpected.append(exc)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, unexpected


def _executions(world: World, action: Action) -> int:
    Executor(world.sessions, world.registry, world.clock).run_until_idle()
    Executor(world.sessions, world.registry, world.clock).run_until_idle()
    return shop_tools.CALLS[action.public_id]


@pytest.mark.slow
def test_fifty_clicks_quorum_one_approve_once_and_execute_once(world: World) -> None:
    action = world.draft()
    results, unexpected = _storm(world, action)
    assert unexpected == []
    assert results == {"ok:approved": 1, AlreadyDecided.code: THREADS - 1}
    with world.sessions() as session:
        approvals = session.scalars(select(Decision).where(Decision.action_id == action.id)).all()
        assert len(approvals) == 1
        assert session.get(Action, action.id).decided_by == approvals[0].actor
    assert _executions(world, action) == 1
    with world.sessions() as session:
        assert session.get(Action, action.id).state == "succeeded"
        report = verify(session)
    assert report.ok
    assert report.events >= THREADS  # every refusal is on the record


@pytest.mark.slow
def test_fifty_clicks_quorum_two_need_two_distinct_approvers(world: World) -> None:
    action = world.draft(quorum=2)
    results, unexpected = _storm(world, action)
    assert unexpected == []
    assert results["ok:pending"] == 1
    assert results["ok:approved"] == 1
    assert results[AlreadyApprovedByYou.code] + results[AlreadyDecided.code] == THREADS - 2
    with world.sessions() as session:
        approvers = sorted(session.scalars(select(Decision.actor).where(Decision.action_id == action.id)))
        assert approvers == [ALICE, BOB]
    assert _executions(world, action) == 1
