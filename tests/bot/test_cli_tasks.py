from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.executor import Executor
from agent.runner import AgentRunner
from agent.scripted_model import ScriptedModel
from agent.tools import load_tool_modules
from bot.cli import main
from core.config import load_config
from core.db import make_engine, make_sessionmaker
from tests.fakes.clock import FrozenClock

CONFIG = """\
slack: {approvals_channel: C0APPROVALS}
tools: {modules: [tests.approvals.shop_tools]}
task_types:
  refund:
    instructions: Refund broken orders.
    tools: [lookup_order, issue_refund]
    autonomy: auto
    approvers: [U0ALICE]
"""

SCRIPT = {
    "refund": {
        "match": r"order (?P<order_id>\d+)",
        "replies": [
            {
                "text": "Checking.",
                "tool_use": [
                    {
                        "name": "lookup_order",
                        "input": {"order_id": "{order_id}"},
                        "rationale": "look it up",
                        "confidence": 0.99,
                    }
                ],
            },
            {"text": "Order {order_id} is delivered; nothing to refund."},
        ],
    }
}


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "countersign.yml"
    path.write_text(CONFIG)
    return {"DATABASE_URL": db_url, "COUNTERSIGN_CONFIG": str(path)}


def test_submit_then_trace_shows_the_timeline_and_cost(env: dict[str, str]) -> None:
    runner = CliRunner()
    submitted = runner.invoke(
        main, ["task", "submit", "refund", "Refund order 77 please", "--requester", "U0REQ"], env=env
    )
    assert submitted.exit_code == 0, submitted.output
    task_id = submitted.output.strip()
    assert task_id.startswith("tsk_")

    engine = make_engine(env["DATABASE_URL"])
    sessions = make_sessionmaker(engine)
    config = load_config(env["COUNTERSIGN_CONFIG"])
    clock = FrozenClock(datetime.now(UTC))
    registry = load_tool_modules(config.tools.modules)
    agent = AgentRunner(sessions, config, registry, ScriptedModel(SCRIPT), clock)
    for _ in range(5):
        agent.run_until_idle()
        Executor(sessions, registry, clock).run_until_idle()
    engine.dispose()

    traced = runner.invoke(main, ["trace", task_id], env=env)
    assert traced.exit_code == 0, traced.output
    lines = traced.output.splitlines()
    assert lines[0].startswith(f"task {task_id} · refund · succeeded · requested by U0REQ")
    kinds = [line.split()[2] for line in lines[1:-1]]
    assert kinds[0] == "task.submitted"
    assert kinds.count("model_call") == 2
    assert "action.succeeded" in kinds
    assert "→ lookup_order" in traced.output
    assert lines[-1].startswith("total: 2 model calls")
    # The scripted model is named as what it is, and it costs nothing.
    calls = [line for line in lines if " model_call " in line]
    assert all("scripted model" in line and "$0.0000" in line for line in calls), calls
    assert "claude" not in traced.output

    used = runner.invoke(main, ["usage", "--day", clock.now().date().isoformat()], env=env)
    assert used.exit_code == 0
    assert "refund" in used.output and "2 calls" in used.output


def test_submit_names_the_known_types_for_an_unknown_one(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["task", "submit", "refnud", "x"], env=env)
    assert result.exit_code == 1
    assert "unknown task type 'refnud' (known: refund)" in result.output


def test_trace_of_an_unknown_task_is_a_clear_error(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["trace", "tsk_nope"], env=env)
    assert result.exit_code == 1
    assert "no task 'tsk_nope'" in result.output


def test_trace_prints_escape_sequences_in_the_request_as_visible_text(env: dict[str, str]) -> None:
    runner = CliRunner()
    text = "Refund order 77\x1b[2J\x1b]0;pwn\x07\r\n2026-01-01 00:00:00.000  decision.approved  U0ADMIN \x9b31m"
    submitted = runner.invoke(main, ["task", "submit", "refund", text, "--requester", "U0REQ"], env=env)
    assert submitted.exit_code == 0, submitted.output

    traced = runner.invoke(main, ["trace", submitted.output.strip()], env=env)
    assert traced.exit_code == 0, traced.output
    assert not {"\x1b", "\x07", "\r", "\x9b"} & set(traced.output)  # nothing a terminal would interpret
    lines = traced.output.splitlines()
    assert len(lines) == 3  # header, task.submitted, total: the text forges no line of its own
    assert "Refund order 77\\x1b[2J\\x1b]0;pwn\\x07\\r\\n2026-01-01" in lines[1]
    assert lines[1].endswith("U0ADMIN \\x9b31m")
