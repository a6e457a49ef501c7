"""`countersign-client mcp-gate` end to end: the mcp SDK's own client drives the gate over stdio,
the gate fronts a real upstream MCP server (tests/client/mcp_upstream.py, over stdio too) and asks
the served app, where people decide with signed Slack requests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp.types as types
import pytest
from mcp import Client, StdioServerParameters

from tests.bot.slack_app import ALICE, APPROVALS, BOB, SlackApp
from tests.client.served import OPEN_CONFIG, api_serving, approve_with_edits, card, new_client, reject

ROOT = Path(__file__).resolve().parents[2]
ACTION_ID = re.compile(r"act_[a-z0-9]+")


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url, OPEN_CONFIG) as served:
        yield served


def gate(app: SlackApp, token: str, calls: Path, *extra: str) -> StdioServerParameters:
    upstream = [sys.executable, "-m", "tests.client.mcp_upstream", str(calls)]
    command = ["-m", "countersign_client.cli", "mcp-gate", "--task-type", "notes", "--url", app.url, "--token", token]
    return StdioServerParameters(command=sys.executable, args=[*command, *extra, "--", *upstream], cwd=ROOT)


def received(calls: Path) -> list[dict[str, Any]]:
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


def call_while(
    params: StdioServerParameters,
    tool: str,
    arguments: dict[str, Any],
    meanwhile: Callable[[str], None],
) -> types.CallToolResult:
    """Call `tool` through the gate; once its progress names the action it waits on, run
    `meanwhile(action_id)` (the Slack side, blocking) in a thread; the call's result."""

    async def scenario() -> types.CallToolResult:
        waiting = anyio.Event()
        named: list[str] = []
        results: list[types.CallToolResult] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            found = ACTION_ID.search(message or "")
            if found and not named:
                named.append(found.group())
                waiting.set()

        async with Client(params) as client:
            listed = await client.list_tools()
            assert {tool.name for tool in listed.tools} == {"write_note", "read_note"}

            async def call() -> None:
                results.append(await client.call_tool(tool, arguments, progress_callback=progress))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    group.start_soon(call)
                    await waiting.wait()
                    await anyio.to_thread.run_sync(meanwhile, named[0])
        return results[0]

    return anyio.run(scenario)


def direct(params: StdioServerParameters, run: Callable[[Client], Awaitable[Any]]) -> Any:
    async def scenario() -> Any:
        async with Client(params) as client:
            with anyio.fail_after(60):
                return await run(client)

    return anyio.run(scenario)


def test_the_gate_lists_the_upstream_tools_unchanged(app: SlackApp, tmp_path: Path) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    calls = tmp_path / "calls.jsonl"

    async def both(client: Client) -> tuple[list[types.Tool], list[types.Tool]]:
        through_gate = (await client.list_tools()).tools
        upstream = StdioServerParameters(
            command=sys.executable, args=["-m", "tests.client.mcp_upstream", str(calls)], cwd=ROOT
        )
        async with Client(upstream) as plain:
            return through_gate, (await plain.list_tools()).tools

    through_gate, upstream = direct(gate(app, token, calls), both)
    assert [t.model_dump() for t in through_gate] == [t.model_dump() for t in upstream]


def test_a_write_waits_for_a_card_and_runs_once_with_the_approvers_edits(app: SlackApp, tmp_path: Path) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    calls = tmp_path / "calls.jsonl"
    asked = {"title": "standup", "body": "ship it"}

    def edit(action_id: str) -> None:
        assert received(calls) == []  # the upstream waits too
        approve_with_edits(app, action_id, ALICE, {"body": "ship it on Monday"})

    result = call_while(gate(app, token, calls, "--progress-every", "1"), "write_note", asked, edit)
    assert not result.is_error, result
    assert result.structured_content == {"written": "standup", "chars": len("ship it on Monday")}
    assert received(calls) == [{"tool": "write_note", "arguments": {"title": "standup", "body": "ship it on Monday"}}]
    [action] = [a for a in app.actions() if a.tool == "write_note"]
    assert (action.state, action.decided_by) == ("succeeded", ALICE)
    assert action.params_schema is not None and action.params_schema["required"] == ["title", "body"]


def test_a_rejection_is_a_tool_error_with_the_reason_and_the_upstream_is_never_called(
    app: SlackApp, tmp_path: Path
) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    calls = tmp_path / "calls.jsonl"
    result = call_while(
        gate(app, token, calls),
        "write_note",
        {"title": "prod", "body": "drop it"},
        lambda action_id: reject(app, action_id, BOB, "Not on a Friday."),
    )
    assert result.is_error
    [text] = [block.text for block in result.content if isinstance(block, types.TextContent)]
    assert "Not on a Friday." in text and "rejected" in text and BOB in text
    assert received(calls) == []


def test_an_expiry_is_a_tool_error_and_the_upstream_is_never_called(app: SlackApp, tmp_path: Path) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    calls = tmp_path / "calls.jsonl"

    def expire(action_id: str) -> None:
        card(app, action_id)  # posted, its escalation chain started
        app.clock.advance(11 * 60)
        app.settle()

    result = call_while(gate(app, token, calls), "write_note", {"title": "a", "body": "b"}, expire)
    assert result.is_error
    [text] = [block.text for block in result.content if isinstance(block, types.TextContent)]
    assert "expired" in text
    assert received(calls) == []
    [action] = app.actions()
    assert action.state == "expired"


def test_the_wait_limit_fails_safe(app: SlackApp, tmp_path: Path) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    calls = tmp_path / "calls.jsonl"

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("write_note", {"title": "a", "body": "b"})

    result = direct(gate(app, token, calls, "--wait-limit", "1s"), call)
    assert result.is_error
    [text] = [block.text for block in result.content if isinstance(block, types.TextContent)]
    assert "was not run" in text
    assert received(calls) == []
    [action] = app.actions()
    assert action.state == "pending"  # still on its card: its chain ends it, never a run


def test_a_read_only_tool_passes_without_a_card_and_is_recorded(app: SlackApp, tmp_path: Path) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    calls = tmp_path / "calls.jsonl"

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("read_note", {"title": "standup"})

    result = direct(gate(app, token, calls), call)
    assert not result.is_error, result
    assert [block.text for block in result.content if isinstance(block, types.TextContent)] == ["standup: nothing new"]
    assert received(calls) == [{"tool": "read_note", "arguments": {"title": "standup"}}]
    [action] = app.actions()
    assert (action.tool, action.state, action.mode) == ("read_note", "succeeded", "auto")
    app.settle()
    # No card to decide on: the receipt of a run that needed nobody, as for any `auto` action.
    about = [m for m in app.slack.messages(APPROVALS) if action.public_id in json.dumps(m.blocks)]
    assert [m.text.split(":")[0] for m in about if m.thread_ts is None] == ["Succeeded"]
    assert '"approve"' not in json.dumps([m.blocks for m in about])


def test_killing_the_gate_while_it_waits_loses_nothing_and_runs_nothing(app: SlackApp, tmp_path: Path) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    calls, parent = tmp_path / "calls.jsonl", tmp_path / "gate.pid"
    upstream = [sys.executable, "-m", "tests.client.mcp_upstream", str(calls), str(parent)]
    command = ["-m", "countersign_client.cli", "mcp-gate", "--task-type", "notes", "--url", app.url, "--token", token]
    params = StdioServerParameters(command=sys.executable, args=[*command, "--", *upstream], cwd=ROOT)

    async def scenario() -> str:
        waiting = anyio.Event()
        named: list[str] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            found = ACTION_ID.search(message or "")
            if found and not named:
                named.append(found.group())
                waiting.set()

        async with Client(params) as client:

            async def call() -> None:
                with contextlib.suppress(Exception):  # the gate dies under it
                    await client.call_tool("write_note", {"title": "a", "body": "b"}, progress_callback=progress)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    group.start_soon(call)
                    await waiting.wait()
                    os.kill(int(parent.read_text()), signal.SIGKILL)  # the gate this test started
        return named[0]

    with contextlib.suppress(Exception):  # closing a client whose server was killed may complain
        anyio.run(scenario)
    [action] = app.actions()
    assert action.state == "pending"  # still on its card
    card(app, action.public_id)
    app.clock.advance(11 * 60)  # ...until its chain expires it
    app.settle()
    [action] = app.actions()
    assert action.state == "expired"
    assert received(calls) == []
