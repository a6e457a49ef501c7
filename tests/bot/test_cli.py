from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from bot.cli import main
from core.db import make_engine
from core.migrate import head_revision

GOOD = """\
slack:
  approvals_channel: C0APPROVALS
tools: {modules: [tests.approvals.shop_tools]}
task_types:
  refund:
    tools: [lookup_order, issue_refund]
    autonomy: hitl
    approvers: [U0ALICE, "@payments-leads"]
    veto_window: 10m
"""


def _check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "countersign.yml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["config", "check", "--file", str(path)])
    return result.exit_code, result.output


def test_config_check_says_ok(tmp_path: Path) -> None:
    assert _check(tmp_path, GOOD) == (0, "ok\n")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("veto_window: 10m", "veto_window: 10 minutes"), "task_types.refund.veto_window (line 9)"),
        (("autonomy: hitl", "autonomy: hitl\n    colour: blue"), "task_types.refund.colour (line 8): unknown key"),
        (("issue_refund]", "isue_refund]"), "task_types.refund.tools[1] (line 6): unknown tool 'isue_refund'"),
        (('approvers: [U0ALICE, "@payments-leads"]', "approvers: []"), "task_types.refund.approvers"),
        (
            ("tools: {", "model: {default: claude-3-5-haiku-latest}\ntools: {"),
            "model.default: 'claude-3-5-haiku-latest' is retired (since 2026-02-19)",
        ),
    ],
)
def test_config_check_names_the_key_of_each_problem(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    code, output = _check(tmp_path, GOOD.replace(*change))
    assert code == 1
    assert expected in output


def test_config_check_names_a_tool_module_that_fails_to_import(tmp_path: Path) -> None:
    code, output = _check(tmp_path, GOOD.replace("tests.approvals.shop_tools", "no_such_module_here"))
    assert code == 1
    assert "no_such_module_here" in output


def test_config_check_reports_every_problem_of_every_stage_in_one_run(tmp_path: Path) -> None:
    """A bad value, a rule over several keys, a tool module that does not import, a tool no
    module defines and a retired model: five problems, four stages, one run."""
    broken = (
        GOOD.replace("tests.approvals.shop_tools]", "tests.approvals.shop_tools, no_such_module_here]")
        .replace("issue_refund]", "issue_refund, launch_rockets]")
        .replace("veto_window: 10m", "veto_window: 10m\n    quorum: 0\n    escalation: [{after: 5m}]")
        .replace("tools: {", "model: {default: claude-2.1}\ntools: {")
    )
    code, output = _check(tmp_path, broken)
    assert code == 1
    assert output.splitlines() == [
        "task_types.refund.quorum (line 11): Input should be greater than or equal to 1, got 0",
        "task_types.refund.escalation[0] (line 12): a step needs exactly one of 'notify' or 'then', got neither",
        "cannot load tool module 'no_such_module_here': ModuleNotFoundError: No module named 'no_such_module_here'",
        "task_types.refund.tools[2] (line 7): unknown tool 'launch_rockets' "
        "(known: issue_refund, lookup_order, send_note, toggle_flag)",
        "model.default: 'claude-2.1' is retired (since 2025-07-21): requests to it fail; choose a current model",
    ]


def test_config_check_leaves_out_what_only_a_removed_part_caused(tmp_path: Path) -> None:
    """A broken tools section is reported once, not as every task type's tools being unknown."""
    code, output = _check(tmp_path, GOOD.replace("tools: {modules: [tests.approvals.shop_tools]}", "tools: 7"))
    assert code == 1
    assert output.splitlines() == [
        "tools (line 3): Input should be a valid dictionary or instance of ToolsConfig, got 7"
    ]


def test_db_upgrade_is_idempotent(db_url: str, tmp_path: Path) -> None:
    fresh = db_url if not db_url.startswith("sqlite") else f"sqlite:///{tmp_path / 'fresh.db'}"
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["db", "upgrade"], env={"DATABASE_URL": fresh})
        assert result.exit_code == 0, result.output
        assert f"database at revision {head_revision()}" in result.output
    engine = make_engine(fresh)
    assert {"actions", "decisions", "audit_events", "outbox", "tasks", "autonomy_levels"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()
