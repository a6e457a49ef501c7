"""An executor process killed with SIGKILL in the middle of a tool call, and a new one started:
an idempotent tool ends with exactly one effect and the action succeeded; a tool that is not
idempotent is not run again and its action ends `unknown`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from agent.executor import LOST_LEASE_NOTE, Executor
from agent.tools import load_tool_modules
from tests.agent import sample_tools
from tests.agent.helpers import add_action, assert_chain_ok, audit_kinds, load, outbox_kinds
from tests.fakes.clock import FrozenClock

ROOT = Path(__file__).resolve().parents[2]
MID_CALL_DEADLINE_S = 60.0

pytestmark = pytest.mark.slow


@pytest.fixture
def effects_db(db_url: str) -> Iterator[None]:
    sample_tools.use_database(db_url)
    yield
    sample_tools.use_database(None)


def run_executor_until_mid_call(db_url: str, ref: str, log_path: Path) -> None:
    """Start an executor process, wait until its tool has recorded its effect, then SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "tests/agent/run_executor.py", db_url, "doomed-executor"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + MID_CALL_DEADLINE_S
            # Waiting on another process: polling the database is the only signal it gives.
            while sample_tools.effects(ref) == 0:
                if process.poll() is not None:
                    pytest.fail(f"the executor exited ({process.returncode}) early:\n{log_path.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the tool was not called within {MID_CALL_DEADLINE_S}s:\n{log_path.read_text()}")
                time.sleep(0.05)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def recovery_executor(sessions: sessionmaker[Session]) -> Executor:
    """A new executor whose clock is past the dead one's lease (timeout 10m + 30s grace)."""
    clock = FrozenClock(datetime.now(UTC) + timedelta(hours=1))
    return Executor(sessions, load_tool_modules(["tests.agent.sample_tools"]), clock, owner="recovery-executor")


@pytest.mark.usefixtures("effects_db")
def test_an_idempotent_tool_killed_mid_call_takes_effect_once(db_url, sessions, tmp_path) -> None:
    ref = uuid.uuid4().hex
    now = datetime.now(UTC)
    action_id = add_action(sessions, now, "record_then_hang", {"ref": ref}, idempotent=True, timeout_s=600)

    run_executor_until_mid_call(db_url, ref, tmp_path / "executor.log")

    stuck = load(sessions, action_id)
    assert (stuck.state, stuck.lease_owner, stuck.attempts) == ("executing", "doomed-executor", 1)
    assert sample_tools.effects(ref) == 1

    assert recovery_executor(sessions).run_until_idle() == 1

    action = load(sessions, action_id)
    assert (action.state, action.attempts, action.lease_owner) == ("succeeded", 2, None)
    assert action.result == {"ref": ref, "replayed": True}
    assert sample_tools.effects(ref) == 1
    assert audit_kinds(sessions, action_id) == ["action.executing", "execution.recovered", "action.succeeded"]
    assert outbox_kinds(sessions, action_id) == ["action.succeeded"]
    assert_chain_ok(sessions)


@pytest.mark.usefixtures("effects_db")
def test_a_non_idempotent_tool_killed_mid_call_is_not_run_again(db_url, sessions, tmp_path) -> None:
    ref = uuid.uuid4().hex
    now = datetime.now(UTC)
    action_id = add_action(sessions, now, "record_then_hang_once", {"ref": ref}, idempotent=False, timeout_s=600)

    run_executor_until_mid_call(db_url, ref, tmp_path / "executor.log")

    executor = recovery_executor(sessions)
    assert executor.run_until_idle() == 1
    assert executor.run_until_idle() == 0

    action = load(sessions, action_id)
    assert (action.state, action.error, action.lease_owner) == ("unknown", LOST_LEASE_NOTE, None)
    assert sample_tools.effects(ref) == 1
    assert audit_kinds(sessions, action_id) == ["action.executing", "action.unknown"]
    assert outbox_kinds(sessions, action_id) == ["action.unknown"]
    assert_chain_ok(sessions)
