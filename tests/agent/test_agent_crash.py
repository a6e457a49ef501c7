"""The agent process is killed (SIGKILL) while a task waits for approval, and while a model
call is in flight; after a restart every task completes with no tool run twice and no
recorded step repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.config import load_config
from core.models import Action, Task, TraceEvent
from tests.agent import sample_tools
from tests.agent.harness import ALICE, Stack, build_stack
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.clock import FrozenClock

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
CONFIG = """\
slack: {approvals_channel: C0OPS}
tools: {modules: [tests.agent.sample_tools]}
task_types:
  refund:
    instructions: Record effects when asked.
    tools: [record_effect]
    autonomy: hitl
    approvers: [U0ALICE, U0BOB]
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def effects_db(db_url: str) -> Iterator[None]:
    sample_tools.use_database(db_url)
    yield
    sample_tools.use_database(None)


@contextmanager
def agent_process(
    db_url: str, config_path: Path, fake: FakeAnthropic, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "tests/agent/run_agent.py", db_url, str(config_path), fake.url],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], log_path: Path, what: str) -> None:
    # Waiting on another process: polling what it writes is the only signal it gives.
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the agent process exited ({process.returncode}) before {what}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_S}s:\n{log_path.read_text()}")
        time.sleep(0.05)


def _recorded_steps(stack: Stack, task_id: str) -> tuple[int, int]:
    """(model calls in the trace, assistant turns in the conversation)."""
    with stack.sessions() as session:
        task = session.scalars(select(Task).where(Task.public_id == task_id)).one()
        calls = session.scalar(
            select(func.count())
            .select_from(TraceEvent)
            .where(TraceEvent.task_id == task.id, TraceEvent.kind == "model_call")
        )
        return calls or 0, sum(1 for message in task.messages if message["role"] == "assistant")


@pytest.fixture
def crash_stack(sessions, fake_anthropic, tmp_path) -> Stack:
    path = tmp_path / "countersign.yml"
    path.write_text(CONFIG)
    # The victim process runs on the system clock; so does this one, until a test moves it.
    return build_stack(sessions, fake_anthropic, load_config(path), FrozenClock(datetime.now(UTC)))


@pytest.mark.usefixtures("effects_db")
def test_killed_while_waiting_for_approval_then_restarted(db_url, crash_stack: Stack, tmp_path) -> None:
    stack, fake, ref = crash_stack, crash_stack.fake, uuid.uuid4().hex
    fake.reply_tool_use("record_effect", {"ref": ref, "rationale": "asked to", "confidence": 0.9})
    fake.reply_text("Recorded.")
    task_id = stack.submit(f"record {ref}")
    log, config = tmp_path / "agent.log", tmp_path / "countersign.yml"

    with agent_process(db_url, config, fake, log) as victim:
        wait_for(lambda: any(a.state == "pending" for a in stack.actions(task_id)), victim, log, "pending action")
        os.kill(victim.pid, signal.SIGKILL)
    stack.approve(stack.pending(task_id), ALICE)
    with agent_process(db_url, config, fake, log) as restarted:
        wait_for(lambda: stack.task(task_id).state == "succeeded", restarted, log, "finished task")

    assert sample_tools.effects(ref) == 1
    assert len(fake.requests) == 2
    assert _recorded_steps(stack, task_id) == (2, 2)
    [action] = stack.actions(task_id)
    assert (action.state, action.attempts) == ("succeeded", 1)


@pytest.mark.usefixtures("effects_db")
def test_killed_while_a_model_call_is_in_flight_then_restarted(db_url, crash_stack: Stack, tmp_path) -> None:
    stack, fake, ref = crash_stack, crash_stack.fake, uuid.uuid4().hex
    fake.hang(120)  # the call the victim dies waiting for
    fake.reply_tool_use("record_effect", {"ref": ref, "rationale": "asked to", "confidence": 0.9})
    fake.reply_text("Recorded.")
    task_id = stack.submit(f"record {ref}")
    log, config = tmp_path / "agent.log", tmp_path / "countersign.yml"

    with agent_process(db_url, config, fake, log) as victim:
        wait_for(lambda: len(fake.requests) == 1, victim, log, "model call")
        os.kill(victim.pid, signal.SIGKILL)
    with stack.sessions() as session:
        leased = session.scalars(select(Task).where(Task.public_id == task_id)).one()
        assert (leased.state, leased.lease_owner, leased.steps) == ("running", "doomed-agent", 0)

    stack.clock.advance(timedelta(minutes=10))  # past the dead process's lease
    stack.drive()
    stack.approve(stack.pending(task_id), ALICE)
    stack.drive()

    assert stack.task(task_id).state == "succeeded"
    assert len(fake.requests) == 3  # the unrecorded call was asked again, once
    assert _recorded_steps(stack, task_id) == (2, 2)
    assert sample_tools.effects(ref) == 1
    with stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Action).where(Action.state == "succeeded")) == 1
