"""A tool turn with the runner and the executor of one process: an autonomous action is claimed
for the executor where it is drafted, and the outcome that ends the turn hands its results back
to the conversation in the same transaction. The ledger tells the same story as with separate
claims and resumes; a crash after the drafting commit leaves the action to whoever takes its
expired lease; a stopping executor claims nothing and gives back what it did not start."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.executor import Executor
from agent.turns import hand_back
from core.models import Action, AuditEvent, Task
from tests.agent.harness import Stack, build_stack, make_config
from tests.agent.helpers import assert_chain_ok, audit_kinds
from tests.approvals import shop_tools
from tests.factories import make_task
from tests.fakes.anthropic_server import FakeAnthropic

AUTO = {"tools": ["lookup_order", "toggle_flag"], "autonomy": "auto"}


def _flag(name: str = "beta") -> dict[str, Any]:
    return {"flag": name, "enabled": True, "rationale": "asked for", "confidence": 0.95}


def _stack(sessions: sessionmaker[Session], fake: FakeAnthropic) -> Stack:
    stack = build_stack(sessions, fake, make_config(**AUTO))
    stack.runner.executor = stack.executor  # as `serve` wires them
    return stack


def _task_kinds(stack: Stack, task_id: str) -> list[str]:
    with stack.sessions() as session:
        query = select(AuditEvent.kind).where(AuditEvent.task_public_id == task_id).order_by(AuditEvent.seq)
        return [kind for kind in session.scalars(query) if kind.startswith("task.")]


def test_an_auto_action_is_claimed_where_drafted_and_its_outcome_hands_the_turn_back(
    sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic
) -> None:
    stack = _stack(sessions, fake_anthropic)
    tool_use_id = stack.fake.reply_tool_use("toggle_flag", _flag())
    stack.fake.reply_text("Flag on.")
    task_id = stack.submit()

    assert stack.runner.run_once()  # the step: reply recorded, action drafted and claimed
    [action] = stack.actions(task_id)
    assert (action.state, action.lease_owner, action.attempts) == ("executing", stack.executor.owner, 1)
    assert audit_kinds(stack.sessions, action.public_id) == ["action.drafted", "action.executing", "execution.attempt"]

    assert stack.executor.run_once()  # runs the handed action: no claim of its own
    task = stack.task(task_id)
    assert task.state == "running"  # handed back by the outcome's transaction, no resume unit
    assert task.messages[-1]["content"][0]["tool_use_id"] == tool_use_id
    assert shop_tools.CALLS[action.public_id] == 1

    stack.drive()
    assert stack.task(task_id).state == "succeeded"
    assert audit_kinds(stack.sessions, action.public_id)[-1] == "action.succeeded"
    kinds = _task_kinds(stack, task_id)
    assert kinds == ["task.submitted", "task.waiting", "task.running", "task.succeeded"]
    assert_chain_ok(stack.sessions)


def test_a_turn_of_two_actions_is_handed_back_by_the_outcome_of_the_second(
    sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic
) -> None:
    stack = _stack(sessions, fake_anthropic)
    ids = stack.fake.reply_blocks(
        [
            {"type": "tool_use", "name": "toggle_flag", "input": _flag("a")},
            {"type": "tool_use", "name": "toggle_flag", "input": _flag("b")},
        ]
    )
    stack.fake.reply_text("Both on.")
    task_id = stack.submit()
    assert stack.runner.run_once()
    assert [action.lease_owner for action in stack.actions(task_id)] == [stack.executor.owner] * 2
    assert stack.executor.run_once()  # both handed actions, one after the other
    task = stack.task(task_id)
    assert task.state == "running"
    assert [result["tool_use_id"] for result in task.messages[-1]["content"]] == ids
    with stack.sessions() as session:
        events = session.execute(
            select(AuditEvent.kind, AuditEvent.action_public_id).order_by(AuditEvent.seq.desc()).limit(3)
        ).all()
    first, second = (action.public_id for action in stack.actions(task_id))
    assert list(reversed(events)) == [("action.succeeded", first), ("action.succeeded", second), ("task.running", None)]


def test_a_crash_after_the_drafting_commit_leaves_the_action_to_whoever_takes_its_expired_lease(
    sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic
) -> None:
    stack = _stack(sessions, fake_anthropic)
    stack.fake.reply_tool_use("toggle_flag", _flag())
    stack.fake.reply_text("Flag on.")
    task_id = stack.submit()
    assert stack.runner.run_once()  # claimed for `stack.executor`, which dies before running it
    [action] = stack.actions(task_id)

    survivor = Executor(stack.sessions, stack.registry, stack.clock, owner="survivor")
    assert survivor.run_until_idle() == 0  # the lease still holds
    stack.clock.advance(timedelta(seconds=action.lease_until.timestamp() - stack.clock.now().timestamp() + 1))
    assert survivor.run_until_idle() == 1
    assert shop_tools.CALLS[action.public_id] == 1  # the tool never started before: it runs once
    assert audit_kinds(stack.sessions, action.public_id) == [
        "action.drafted",
        "action.executing",
        "execution.attempt",
        "execution.recovered",
        "action.succeeded",
    ]
    assert stack.task(task_id).state == "running"  # the survivor's outcome handed the turn back


def test_a_stopping_executor_is_handed_nothing_and_gives_back_what_it_did_not_start(
    sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic
) -> None:
    stack = _stack(sessions, fake_anthropic)
    stack.fake.reply_tool_use("toggle_flag", _flag("a"))
    stack.fake.reply_tool_use("toggle_flag", _flag("b"))
    first_task, second_task = stack.submit(), stack.submit()
    assert stack.runner.run_once()
    [handed] = stack.actions(first_task)
    assert handed.lease_owner == stack.executor.owner

    stack.executor.stopping.set()
    assert stack.runner.run_once()
    [unclaimed] = stack.actions(second_task)
    assert (unclaimed.state, unclaimed.lease_owner) == ("executing", None)  # left to any executor

    stack.executor.give_back()
    assert audit_kinds(stack.sessions, handed.public_id)[-1] == "execution.released"
    other = Executor(stack.sessions, stack.registry, stack.clock, owner="other")
    assert other.run_until_idle() == 2
    assert shop_tools.CALLS[handed.public_id] == shop_tools.CALLS[unclaimed.public_id] == 1


def test_hand_back_reads_the_turn_again_when_the_callers_read_shows_an_action_in_flight(
    sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic
) -> None:
    stack = _stack(sessions, fake_anthropic)
    stack.fake.reply_blocks(
        [
            {"type": "tool_use", "name": "toggle_flag", "input": _flag("a")},
            {"type": "tool_use", "name": "toggle_flag", "input": _flag("b")},
        ]
    )
    task_id = stack.submit()
    assert stack.runner.run_once()
    with stack.sessions.begin() as session:
        stale = list(session.scalars(select(Action).order_by(Action.id)))  # both executing
        session.expunge_all()
    stack.executor.run_once()  # both end: the second's transaction handed the turn back
    with stack.sessions.begin() as session:  # a task waiting again, with that stale read in hand
        task = session.scalars(select(Task).where(Task.public_id == task_id)).one()
        task.state = "waiting"
        session.flush()
        assert hand_back(session, task, stack.clock.now(), stale)


def test_a_leased_task_whose_type_is_gone_fails_and_lets_go_of_its_lease(
    sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic
) -> None:
    stack = _stack(sessions, fake_anthropic)
    with stack.sessions.begin() as session:
        task = make_task(session, stack.clock.now(), task_type="retired")
        task.next_step_at = stack.clock.now()
        task_id = task.public_id
    assert stack.runner.run_once()
    task = stack.task(task_id)
    assert (task.state, task.lease_owner, task.lease_until) == ("failed", None, None)
    assert _task_kinds(stack, task_id) == ["task.failed"]
    assert [message.payload["task_id"] for message in stack.outbox("task.finished")] == [task_id]
    assert not stack.fake.requests  # the model was never asked


def test_a_resume_another_transaction_holds_does_not_keep_the_runner_from_a_due_step(
    sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic
) -> None:
    if sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serializes writers")
    stack = build_stack(sessions, fake_anthropic, make_config())  # hitl: a person ends the turn
    stack.fake.reply_tool_use("lookup_order", {"order_id": "1", "rationale": "r", "confidence": 0.9})
    stack.fake.reply_text("Done.")
    ready = stack.submit()
    assert stack.runner.run_once()
    stack.reject(stack.pending(ready), "no")  # the turn ended: the task is due a resume
    due = stack.submit()
    with stack.sessions.begin() as holder:  # another transaction holds the task due a resume
        holder.scalars(select(Task).where(Task.public_id == ready).with_for_update()).one()
        assert stack.runner.run_once()
        assert stack.task(due).state == "succeeded"  # stepped meanwhile
    assert stack.runner.run_once()  # and then the resume
    assert stack.task(ready).state == "running"
