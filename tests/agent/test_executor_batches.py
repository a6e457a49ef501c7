"""The executor claims a small batch of due actions in one transaction and runs them one by one:
each lease covers the wait for its turn; a turn that comes later than its lease allows renews
the lease first, or leaves the action alone if another executor took it over meanwhile."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent import tool
from agent.executor import Executor
from agent.tools import ToolRegistry, load_tool_modules
from core.clock import utc
from core.models import Action
from tests.agent import sample_tools
from tests.agent.helpers import add_action, assert_chain_ok, audit_events, load
from tests.fakes.clock import FrozenClock

GRACE_S, TIMEOUT_S = 30.0, 10.0


@contextmanager
def counting_commits(sessions: sessionmaker[Session]) -> Iterator[list[object]]:
    """A list that grows by one on every commit of `sessions` while the block runs."""
    commits: list[object] = []

    def committed(session: object) -> None:
        commits.append(session)

    event.listen(sessions, "after_commit", committed)
    try:
        yield commits
    finally:
        event.remove(sessions, "after_commit", committed)


def _lease_until(sessions: sessionmaker[Session], public_id: str) -> datetime:
    [claimed] = [e for e in audit_events(sessions, public_id) if e.kind == "action.executing"]
    assert claimed.data is not None
    return datetime.fromisoformat(claimed.data["lease_until"])


def test_a_batch_is_claimed_at_once_each_lease_covering_its_wait_up_to_max_queue(sessions) -> None:
    clock = FrozenClock()
    registry = load_tool_modules(["tests.agent.sample_tools"])
    ids = [add_action(sessions, clock.now(), "record_call", {"ref": f"b{n}"}, timeout_s=TIMEOUT_S) for n in range(5)]
    executor = Executor(sessions, registry, clock, owner="batcher", lease_grace_s=GRACE_S, max_queue_s=25)
    with counting_commits(sessions) as commits:
        assert executor.run_once() is True
    # The tools claimed before the fourth could make it wait 30 s > max_queue_s (25 s): three claimed.
    assert [load(sessions, public_id).state for public_id in ids] == ["succeeded"] * 3 + ["approved"] * 2
    assert len(commits) == 1 + 3  # one claim, then each outcome as soon as it is known
    for turn, public_id in enumerate(ids[:3]):
        assert sample_tools.CALLS[public_id] == 1
        waited = turn * TIMEOUT_S
        assert _lease_until(sessions, public_id) == clock.now() + timedelta(seconds=waited + TIMEOUT_S + GRACE_S)
    assert executor.run_until_idle() == 2
    assert {load(sessions, public_id).state for public_id in ids} == {"succeeded"}
    assert_chain_ok(sessions)


def test_a_late_turn_renews_its_lease_and_one_taken_over_is_left_to_its_new_holder(sessions) -> None:
    clock = FrozenClock()
    ids: list[str] = []
    leases: list[datetime] = []

    @tool(idempotent=True)
    def slow_first(ref: str, *, idempotency_key: str) -> dict[str, str]:
        """Takes 55 s (by the clock), meanwhile another executor takes the second action over."""
        clock.advance(55)
        with sessions.begin() as session:
            session.execute(update(Action).where(Action.public_id == ids[1]).values(lease_owner="thief"))
        return {"ref": ref}

    @tool(idempotent=True)
    def see_lease(ref: str, *, idempotency_key: str) -> dict[str, str]:
        """Notes the lease its action holds while it runs."""
        with sessions() as session:
            leases.append(session.scalars(select(Action.lease_until).where(Action.public_id == idempotency_key)).one())
        return {"ref": ref}

    registry = ToolRegistry([slow_first, sample_tools.record_call, see_lease])
    ids.append(add_action(sessions, clock.now(), "slow_first", {"ref": "first"}, timeout_s=TIMEOUT_S))
    ids.append(add_action(sessions, clock.now(), "record_call", {"ref": "second"}, timeout_s=TIMEOUT_S))
    ids.append(add_action(sessions, clock.now(), "see_lease", {"ref": "third"}, timeout_s=TIMEOUT_S))
    start = clock.now()
    executor = Executor(sessions, registry, clock, owner="batcher", lease_grace_s=GRACE_S)
    assert executor.run_once() is True
    first, taken, renewed = (load(sessions, public_id) for public_id in ids)
    # Leases as claimed: +40 s, +50 s, +60 s. At +55 s the second's is short and no longer ours:
    # it is not run. The third's is short too (55 + 10 > 60): renewed from now, then run.
    assert first.state == "succeeded"
    assert (taken.state, taken.lease_owner, sample_tools.CALLS[ids[1]]) == ("executing", "thief", 0)
    assert renewed.state == "succeeded"
    assert _lease_until(sessions, ids[2]) == start + timedelta(seconds=2 * TIMEOUT_S + TIMEOUT_S + GRACE_S)
    assert [utc(lease) for lease in leases] == [start + timedelta(seconds=55 + TIMEOUT_S + GRACE_S)]
    assert_chain_ok(sessions)


def test_a_tool_that_is_not_idempotent_is_never_claimed_to_wait_its_turn(sessions) -> None:
    clock = FrozenClock()
    registry = load_tool_modules(["tests.agent.sample_tools"])
    first = add_action(sessions, clock.now(), "record_call", {"ref": "first"})
    key = f"once-{uuid.uuid4().hex}"  # `CALLS` outlives the test: a key of its own
    once = add_action(sessions, clock.now(), "answer", {"ref": key}, idempotent=False)
    after = add_action(sessions, clock.now(), "record_call", {"ref": "after"})
    executor = Executor(sessions, registry, clock, owner="batcher")
    assert executor.run_once() is True
    # Queued behind `first`, a crash would leave `once` unknown without it ever starting: not claimed.
    assert [load(sessions, a).state for a in (first, once, after)] == ["succeeded", "approved", "approved"]
    assert executor.run_once() is True  # first in its batch, it starts at once; `after` may wait behind it
    assert [load(sessions, a).state for a in (first, once, after)] == ["succeeded"] * 3
    assert sample_tools.CALLS[key] == 1


def test_a_stopping_executor_gives_back_the_claims_whose_tool_has_not_started(sessions) -> None:
    clock = FrozenClock()
    registry = load_tool_modules(["tests.agent.sample_tools"])
    ids = [add_action(sessions, clock.now(), "record_call", {"ref": f"stop-{n}"}) for n in range(3)]
    stopping = Executor(sessions, registry, clock, owner="stopping")

    def stop_after_the_claim(_session: object) -> None:
        stopping.stopping.set()  # SIGTERM arrives right after the batch was claimed

    event.listen(sessions, "after_commit", stop_after_the_claim, once=True)
    assert stopping.run_once() is True
    for public_id in ids:  # calls are counted per idempotency key, the action's public id
        action = load(sessions, public_id)
        assert (action.state, action.lease_owner, action.lease_until, action.attempts) == ("executing", None, None, 0)
        assert utc(action.run_at) == clock.now()
        assert [e.kind for e in audit_events(sessions, public_id)][-2:] == ["action.executing", "execution.released"]
        assert public_id not in sample_tools.CALLS

    assert Executor(sessions, registry, clock, owner="next").run_until_idle() == 3
    for public_id in ids:
        action = load(sessions, public_id)
        assert (action.state, action.attempts) == ("succeeded", 1)
        assert sample_tools.CALLS[public_id] == 1
    assert_chain_ok(sessions)
