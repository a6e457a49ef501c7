"""`countersign-client hook claude-code`: Claude Code's documented PreToolUse JSON in, exactly one
answer of the documented shape out, decided by people in the served app with signed Slack
requests; the fail-safe (ask, or deny; never allow) when countersign cannot decide in time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from countersign_client.hook import HookOptions, run

from tests.bot.slack_app import ALICE, BOB, SlackApp
from tests.client.served import (
    OPEN_CONFIG,
    Calls,
    Recording,
    api_serving,
    approve_with_edits,
    click,
    new_client,
    reject,
)

ROOT = Path(__file__).resolve().parents[2]
SHAPE = {"hookEventName", "permissionDecision", "permissionDecisionReason"}


def event(tool: str, tool_input: dict[str, Any], use: str = "toolu_01") -> str:
    """A PreToolUse event as Claude Code's hooks reference documents it."""
    return json.dumps(
        {
            "session_id": "abc123",
            "transcript_path": "/home/dev/.claude/projects/shop/abc123.jsonl",
            "cwd": "/home/dev/shop",
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "tool_name": tool,
            "tool_input": tool_input,
            "tool_use_id": use,
        }
    )


BASH = ("Bash", {"command": "rm -rf build/", "description": "Clean the build"})
EDIT = ("Edit", {"file_path": "/home/dev/shop/app.py", "old_string": "DEBUG = True", "new_string": "DEBUG = False"})
MCP = ("mcp__github__create_issue", {"owner": "acme", "repo": "shop", "title": "Flaky test"})


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url, OPEN_CONFIG) as served:
        yield served


def options(app: SlackApp, token: str, **given: Any) -> HookOptions:
    defaults: dict[str, Any] = {"task_type": "coding", "matches": (("mcp__github__*", "github"),), "timeout_s": 60.0}
    return HookOptions(url=app.url, token=token, **{**defaults, **given})


def hooked(app: SlackApp, hook: HookOptions, text: str, person: Callable[[str], None]) -> dict[str, Any]:
    """Run the hook on `text` in a thread; once it asked, `person(action_id)` decides in Slack."""
    calls = Calls()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run, text, hook, transport=Recording(calls))
        person(calls.asked())
        answer: dict[str, Any] = running.result(timeout=60)
    assert set(answer) == {"hookSpecificOutput"} and set(answer["hookSpecificOutput"]) >= SHAPE
    return answer["hookSpecificOutput"]


@pytest.mark.parametrize(("tool", "tool_input"), [BASH, EDIT, MCP])
def test_allow_after_approval(app: SlackApp, tool: str, tool_input: dict[str, Any]) -> None:
    token = new_client(app, "laptop", ["coding", "github"])["token"]
    approver = BOB if tool.startswith("mcp__") else ALICE
    out = hooked(app, options(app, token), event(tool, tool_input), lambda a: click(app, a, approver, "approve"))
    assert out["permissionDecision"] == "allow"
    assert approver in out["permissionDecisionReason"]
    assert "updatedInput" not in out
    [action] = app.actions()
    assert (action.tool, action.params, action.state) == (tool, tool_input, "succeeded")
    assert action.task_type == ("github" if tool.startswith("mcp__") else "coding")
    assert action.result == {"handed_to": "Claude Code"}
    assert "/home/dev/shop" in action.rationale and "abc123" in action.rationale


@pytest.mark.parametrize(("tool", "tool_input"), [BASH, EDIT, MCP])
def test_deny_with_the_reason_after_rejection(app: SlackApp, tool: str, tool_input: dict[str, Any]) -> None:
    token = new_client(app, "laptop", ["coding", "github"])["token"]
    out = hooked(
        app, options(app, token), event(tool, tool_input), lambda a: reject(app, a, BOB, "Use the staging branch.")
    )
    assert out["permissionDecision"] == "deny"
    assert "Use the staging branch." in out["permissionDecisionReason"]
    [action] = app.actions()
    assert action.state == "rejected"


def test_an_approvers_edit_goes_to_claude_code_as_updated_input(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["coding"])["token"]
    out = hooked(
        app,
        options(app, token),
        event(*BASH),
        lambda a: approve_with_edits(app, a, ALICE, {"command": "rm -rf build/cache/"}),
    )
    assert out["permissionDecision"] == "allow" and "with edits" in out["permissionDecisionReason"]
    assert out["updatedInput"] == {"command": "rm -rf build/cache/", "description": "Clean the build"}


def test_the_same_tool_use_asks_once(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["coding"])["token"]
    text = event(*BASH)
    first = hooked(app, options(app, token), text, lambda a: click(app, a, ALICE, "approve"))
    assert first["permissionDecision"] == "allow"
    # Run again for the same tool_use_id: the same action, already handed over; nothing new to decide.
    again = run(text, options(app, token))["hookSpecificOutput"]
    assert again["permissionDecision"] != "allow"
    assert len(app.actions()) == 1


@pytest.mark.parametrize("fail_safe", ["ask", "deny"])
def test_the_fail_safe_when_countersign_is_unreachable(fail_safe: str) -> None:
    hook = HookOptions(url="http://127.0.0.1:9", token="t", task_type="coding", fail_safe=fail_safe)  # type: ignore[arg-type]
    out = run(event(*BASH), hook)["hookSpecificOutput"]
    assert out["permissionDecision"] == fail_safe
    assert "could not ask" in out["permissionDecisionReason"]


def test_the_fail_safe_when_the_hooks_timeout_nears(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["coding"])["token"]
    out = run(event(*BASH), options(app, token, timeout_s=6.0))["hookSpecificOutput"]
    assert out["permissionDecision"] == "ask"
    assert "in time" in out["permissionDecisionReason"]
    [action] = app.actions()
    assert action.state == "pending"  # still on its card; never allowed by the clock


def test_no_task_type_for_the_tool_is_the_fail_safe(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["coding"])["token"]
    out = run(event(*BASH), options(app, token, task_type=None, fail_safe="deny"))["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny" and "no task type" in out["permissionDecisionReason"]
    assert app.actions() == []


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["--url", "http://127.0.0.1:9", "--token", "t", "--task-type", "coding"], event(*BASH)),
        (["--url", "http://127.0.0.1:9", "--token", "t", "--task-type", "coding"], "not json"),
        (["--url", "http://127.0.0.1:9", "--token", "t", "--task-type", "coding"], json.dumps({"tool_name": 3})),
        (["--match", "no-equals-sign"], event(*EDIT)),
        (["--timeout", "soon"], event(*EDIT)),
        ([], event(*MCP)),
    ],
)
def test_stdout_is_exactly_one_json_object_of_the_documented_shape(args: list[str], stdin: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "countersign_client.cli", "hook", "claude-code", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)  # one JSON document, nothing else on stdout
    assert set(answer) == {"hookSpecificOutput"}
    out = answer["hookSpecificOutput"]
    assert set(out) == SHAPE
    assert out["hookEventName"] == "PreToolUse"
    assert out["permissionDecision"] in ("ask", "deny")
    assert isinstance(out["permissionDecisionReason"], str) and out["permissionDecisionReason"]


def test_the_servers_cli_runs_the_same_hook() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "countersign"), "hook", "claude-code", "--task-type", "coding"],
        input=event(*BASH),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "COUNTERSIGN_URL": "http://127.0.0.1:9", "COUNTERSIGN_API_TOKEN": "t"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)["hookSpecificOutput"]
    assert (out["hookEventName"], out["permissionDecision"]) == ("PreToolUse", "ask")
    assert "could not ask for approval" in out["permissionDecisionReason"]
