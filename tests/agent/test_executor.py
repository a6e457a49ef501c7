from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from agent.executor import LOST_LEASE_NOTE, Executor
from agent.tools import ToolRegistry, load_tool_modules
from core.db import make_engine, make_sessionmaker
from tests.agent import sample_tools
from tests.agent.helpers import add_action, assert_chain_ok, audit_events, audit_kinds, load, outbox_kinds
from tests.fakes.clock import FrozenClock


class NoJitter(random.Random):
    """uniform(0.5, 1.5) is always 1.0, so backoff delays are exact."""

    def random(self) -> float:
        return 0.5


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def registry() -> ToolRegistry:
    return load_tool_modules(["tests.agent.sample_tools"])


@pytest.fixture
def executor(sessions: sessionmaker[Session], registry: ToolRegistry, clock: FrozenClock) -> Executor:
    return Executor(sessions, registry, clock, owner="executor-1", max_attempts=3, rng=NoJitter())


@pytest.fixture
def effects_db(db_url: str) -> Iterator[None]:
    sample_tools.use_database(db_url)
    yield
    sample_tools.use_database(None)


def ref() -> str:
    return f"ref-{random.randrange(1 << 40):x}"


def test_an_approved_action_runs_once_and_is_recorded(sessions, executor, clock) -> None:
    action_id = add_action(sessions, clock.now(), "record_call", {"ref": "r1"})

    assert executor.run_once() is True
    assert executor.run_once() is False

    action = load(sessions, action_id)
    assert action.state == "succeeded"
    assert action.result == {"ref": "r1", "calls": 1}
    assert sample_tools.CALLS[action_id] == 1
    assert (action.attempts, action.lease_owner, action.lease_until, action.error) == (1, None, None, None)
    assert audit_kinds(sessions, action_id) == ["action.executing", "action.succeeded"]
    executing, succeeded = audit_events(sessions, action_id)
    assert (executing.actor, executing.from_state, executing.to_state) == ("system", "approved", "executing")
    assert executing.data is not None
    assert executing.data["lease_owner"] == "executor-1"
    assert (succeeded.from_state, succeeded.to_state) == ("executing", "succeeded")
    assert outbox_kinds(sessions, action_id) == ["action.succeeded"]
    assert_chain_ok(sessions)


def test_a_non_dict_result_is_wrapped(sessions, executor, clock) -> None:
    action_id = add_action(sessions, clock.now(), "answer", {"ref": ref()}, idempotent=False)
    executor.run_until_idle()
    assert load(sessions, action_id).result == {"value": 42}


def test_a_retryable_error_is_retried_with_backoff_then_succeeds(sessions, executor, clock) -> None:
    key = ref()
    action_id = add_action(sessions, clock.now(), "flaky", {"ref": key, "failures": 2})
    start = clock.now()

    assert executor.run_once() is True
    action = load(sessions, action_id)
    assert (action.state, action.attempts, action.lease_owner) == ("executing", 1, None)
    assert action.run_at == start + timedelta(seconds=1)  # base 1s * 2**0
    assert action.error == "RetryableError: upstream busy (call 1)"

    assert executor.run_once() is False  # not due yet
    clock.advance(1)
    assert executor.run_once() is True
    assert load(sessions, action_id).run_at == clock.now() + timedelta(seconds=2)  # base * 2**1

    clock.advance(1.9)
    assert executor.run_once() is False
    clock.advance(0.1)
    assert executor.run_once() is True

    action = load(sessions, action_id)
    assert (action.state, action.attempts, action.error) == ("succeeded", 3, None)
    assert action.result == {"ref": key, "calls": 3, "key": action_id}
    assert sample_tools.CALLS[key] == 3
    assert audit_kinds(sessions, action_id) == [
        "action.executing",
        "execution.retry_scheduled",
        "execution.attempt",
        "execution.retry_scheduled",
        "execution.attempt",
        "action.succeeded",
    ]
    retry = audit_events(sessions, action_id)[1]
    assert retry.note == "RetryableError: upstream busy (call 1)"
    assert retry.data == {"attempt": 1, "retry_at": (start + timedelta(seconds=1)).isoformat(), "delay_s": 1.0}
    assert outbox_kinds(sessions, action_id) == ["action.succeeded"]
    assert_chain_ok(sessions)


def test_backoff_is_capped_and_jittered(sessions, registry, clock) -> None:
    executor = Executor(
        sessions, registry, clock, max_attempts=10, backoff_base_s=10, backoff_max_s=25, rng=random.Random(7)
    )
    action_id = add_action(sessions, clock.now(), "flaky", {"ref": ref(), "failures": 5})
    delays = []
    for _ in range(4):
        assert executor.run_once() is True
        delay = (load(sessions, action_id).run_at - clock.now()).total_seconds()
        delays.append(delay)
        clock.advance(delay)
    for attempt, delay in enumerate(delays, start=1):
        nominal = min(25, 10 * 2 ** (attempt - 1))
        assert 0.5 * nominal <= delay <= 1.5 * nominal
    assert len(set(delays)) == 4  # jittered, not lock-step


def test_gives_up_after_max_attempts(sessions, executor, clock) -> None:
    action_id = add_action(sessions, clock.now(), "flaky", {"ref": ref(), "failures": 100})
    for _ in range(3):
        assert executor.run_once() is True
        clock.advance(timedelta(minutes=10))
    assert executor.run_once() is False

    action = load(sessions, action_id)
    assert (action.state, action.attempts, action.lease_owner) == ("failed", 3, None)
    assert action.error == "gave up after 3 attempts: RetryableError: upstream busy (call 3)"
    assert audit_kinds(sessions, action_id)[-1] == "action.failed"
    assert outbox_kinds(sessions, action_id) == ["action.failed"]


def test_any_other_exception_fails_at_once(sessions, executor, clock) -> None:
    key = ref()
    action_id = add_action(sessions, clock.now(), "explode", {"ref": key}, idempotent=False)
    assert executor.run_until_idle() == 1
    clock.advance(timedelta(hours=1))
    assert executor.run_until_idle() == 0

    action = load(sessions, action_id)
    assert (action.state, action.attempts) == ("failed", 1)
    assert action.error == f"ValueError: no such order {key!r}"
    assert sample_tools.CALLS[key] == 1
    assert outbox_kinds(sessions, action_id) == ["action.failed"]


def test_a_tool_missing_from_the_registry_fails_with_a_clear_error(sessions, clock) -> None:
    executor = Executor(sessions, ToolRegistry(), clock)
    action_id = add_action(sessions, clock.now(), "issue_refund", {"order_id": "1", "amount_cents": 5})
    assert executor.run_once() is True
    action = load(sessions, action_id)
    assert action.state == "failed"
    assert action.error == "UnknownTool: no tool named 'issue_refund' (known tools: none)"


def test_params_that_no_longer_validate_fail_without_calling_the_tool(sessions, executor, clock) -> None:
    action_id = add_action(sessions, clock.now(), "flaky", {"ref": "r", "failures": "many"})
    assert executor.run_once() is True
    action = load(sessions, action_id)
    assert action.state == "failed"
    assert action.error is not None
    assert "failures" in action.error
    assert "'many'" in action.error
    assert sample_tools.CALLS["r"] == 0


def test_a_timeout_of_an_idempotent_tool_is_retried(sessions, executor, clock) -> None:
    gate = sample_tools.new_gate()
    action_id = add_action(sessions, clock.now(), "wait_for_gate", {"gate": gate}, timeout_s=0.2)
    try:
        assert executor.run_once() is True
        action = load(sessions, action_id)
        assert (action.state, action.lease_owner) == ("executing", None)
        assert action.error == "ToolTimeout: tool 'wait_for_gate' did not finish within 0.2s"
    finally:
        sample_tools.GATES[gate].set()
    clock.advance(1)
    assert executor.run_once() is True
    action = load(sessions, action_id)
    assert (action.state, action.attempts, action.result) == ("succeeded", 2, {"value": "opened"})


def test_a_timeout_of_a_non_idempotent_tool_leaves_it_unknown(sessions, executor, clock) -> None:
    gate = sample_tools.new_gate()
    action_id = add_action(sessions, clock.now(), "wait_for_gate_once", {"gate": gate}, timeout_s=0.2, idempotent=False)
    try:
        assert executor.run_once() is True
    finally:
        sample_tools.GATES[gate].set()
    clock.advance(timedelta(hours=1))
    assert executor.run_once() is False

    action = load(sessions, action_id)
    assert (action.state, action.lease_owner) == ("unknown", None)
    assert action.error is not None
    assert action.error.startswith("tool 'wait_for_gate_once' did not finish within 0.2s")
    assert sample_tools.CALLS[gate] == 1
    assert outbox_kinds(sessions, action_id) == ["action.unknown"]


def test_a_scheduled_action_runs_only_when_its_veto_window_ends(sessions, executor, clock) -> None:
    run_at = clock.now() + timedelta(minutes=10)
    action_id = add_action(
        sessions, clock.now(), "record_call", {"ref": ref()}, state="scheduled", mode="hotl", run_at=run_at
    )
    assert executor.run_once() is False
    clock.advance(timedelta(minutes=9, seconds=59))
    assert executor.run_once() is False
    clock.advance(1)
    assert executor.run_once() is True
    action = load(sessions, action_id)
    assert action.state == "succeeded"
    assert audit_events(sessions, action_id)[0].from_state == "scheduled"


def test_an_auto_action_waiting_in_executing_is_picked_up(sessions, executor, clock) -> None:
    action_id = add_action(
        sessions, clock.now(), "record_call", {"ref": ref()}, state="executing", mode="auto", run_at=clock.now()
    )
    assert executor.run_once() is True
    assert load(sessions, action_id).state == "succeeded"
    assert audit_kinds(sessions, action_id) == ["execution.attempt", "action.succeeded"]


def test_an_action_leased_by_a_live_executor_is_left_alone(sessions, executor, clock) -> None:
    add_action(
        sessions,
        clock.now(),
        "record_call",
        {"ref": ref()},
        state="executing",
        lease_owner="executor-2",
        lease_until=clock.now() + timedelta(seconds=1),
        attempts=1,
    )
    assert executor.run_once() is False


def test_an_expired_lease_of_an_idempotent_tool_is_run_again_with_the_same_key(sessions, executor, clock) -> None:
    action_id = add_action(
        sessions,
        clock.now(),
        "record_call",
        {"ref": ref()},
        state="executing",
        lease_owner="dead",
        lease_until=clock.now() - timedelta(seconds=1),
        attempts=1,
    )
    assert executor.run_once() is True
    action = load(sessions, action_id)
    assert (action.state, action.attempts) == ("succeeded", 2)
    assert sample_tools.CALLS[action_id] == 1
    recovered = audit_events(sessions, action_id)[0]
    assert recovered.kind == "execution.recovered"
    assert recovered.note is not None
    assert "'dead' lost its lease" in recovered.note
    assert action_id in recovered.note


def test_an_expired_lease_of_a_non_idempotent_tool_is_never_run_again(sessions, executor, clock) -> None:
    key = ref()
    action_id = add_action(
        sessions,
        clock.now(),
        "answer",
        {"ref": key},
        state="executing",
        idempotent=False,
        lease_owner="dead",
        lease_until=clock.now() - timedelta(seconds=1),
        attempts=1,
    )
    assert executor.run_once() is True
    assert executor.run_once() is False
    action = load(sessions, action_id)
    assert (action.state, action.error, action.lease_owner) == ("unknown", LOST_LEASE_NOTE, None)
    assert sample_tools.CALLS[key] == 0
    assert audit_events(sessions, action_id)[0].note == LOST_LEASE_NOTE
    assert outbox_kinds(sessions, action_id) == ["action.unknown"]


def test_repeated_lease_losses_count_as_attempts(sessions, executor, clock) -> None:
    action_id = add_action(
        sessions,
        clock.now(),
        "record_call",
        {"ref": ref()},
        state="executing",
        lease_owner="dead",
        lease_until=clock.now() - timedelta(seconds=1),
        attempts=3,
    )
    assert executor.run_once() is True
    action = load(sessions, action_id)
    assert action.state == "failed"
    assert action.error == "executor lost its lease on attempt 3 of 3; giving up"
    assert sample_tools.CALLS[action_id] == 0


@pytest.mark.usefixtures("effects_db")
def test_an_outcome_is_dropped_when_the_lease_was_taken_over(sessions, executor, clock) -> None:
    action_id = add_action(sessions, clock.now(), "steal_lease", {"ref": ref()})
    assert executor.run_once() is True
    action = load(sessions, action_id)
    assert (action.state, action.lease_owner, action.result) == ("executing", "thief", None)
    assert audit_kinds(sessions, action_id) == ["action.executing"]
    assert outbox_kinds(sessions, action_id) == []


@pytest.mark.slow
def test_racing_executors_run_each_action_exactly_once(db_url, sessions, registry, clock) -> None:
    action_ids = [add_action(sessions, clock.now(), "record_call", {"ref": f"race-{n}"}) for n in range(40)]
    other_engine = make_engine(db_url)
    executors = [
        Executor(sessions, registry, clock, owner="racer-1"),
        Executor(make_sessionmaker(other_engine), registry, clock, owner="racer-2"),
        Executor(sessions, registry, clock, owner="racer-3"),
    ]
    handled: dict[str, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(executors))

    def race(executor: Executor) -> None:
        try:
            start.wait()
            handled[executor.owner] = executor.run_until_idle()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(executor,)) for executor in executors]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        other_engine.dispose()
    assert errors == []
    assert sum(handled.values()) == len(action_ids)
    assert [sample_tools.CALLS[action_id] for action_id in action_ids] == [1] * len(action_ids)
    assert {load(sessions, action_id).state for action_id in action_ids} == {"succeeded"}
    for action_id in action_ids:
        assert audit_kinds(sessions, action_id) == ["action.executing", "action.succeeded"]
        assert outbox_kinds(sessions, action_id) == ["action.succeeded"]
    assert_chain_ok(sessions)
