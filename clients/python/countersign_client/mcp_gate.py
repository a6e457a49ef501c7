"""`countersign-client mcp-gate`: an MCP server in front of another MCP server (the upstream)
that asks countersign before every tool call.

It lists the upstream's tools unchanged (names, descriptions, input schemas). Each `tools/call`
becomes an action of the gate's task type (the tool, its arguments as the params, its
`inputSchema` as the schema: an open tool, `open_tools` in the server's config); the gate waits
for the decision, sending progress notifications when the caller asked for them, then claims the
approved action, calls the upstream with the APPROVED arguments (a person's edits applied) and
returns the upstream's result unchanged (`content`, `structuredContent`, `isError`), reporting
how it went. A rejection, veto, expiry, or no decision within the wait limit is a tool error
result (`isError: true`) whose text says why: the upstream is never called then. Tools the
server's config lists as read-only are approved at once (no card) and still recorded.

Only tools are gated and forwarded; the upstream's resources and prompts are not offered.
Needs the `mcp` extra: `pip install 'countersign-client[mcp]'`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from countersign_client.action import Action, outcome
from countersign_client.async_client import AsyncCountersign
from countersign_client.errors import CountersignError, Expired, NotApproved, Rejected, WaitTimedOut

NAME = "countersign-gate"
_REPORTED_TEXT = 2000  # characters of the upstream's text kept in the reported result


@dataclass(frozen=True)
class GateOptions:
    url: str
    token: str
    task_type: str
    upstream_command: tuple[str, ...] = ()  # a stdio upstream: the command and its arguments
    upstream_url: str | None = None  # or a streamable HTTP upstream
    wait_limit_s: float = 3600.0  # no decision by then: not run (fails safe)
    progress_every_s: float = 10.0
    requester: str | None = None
    http_port: int | None = None  # serve streamable HTTP on this port instead of stdio
    http_host: str = "127.0.0.1"

    def upstream(self) -> StdioServerParameters | str:
        if self.upstream_url is not None:
            return self.upstream_url
        if not self.upstream_command:
            raise ValueError("an upstream is needed: a command after `--`, or --upstream-url")
        return StdioServerParameters(command=self.upstream_command[0], args=list(self.upstream_command[1:]))

    def upstream_label(self) -> str:
        return self.upstream_url or " ".join(self.upstream_command)


def refusal(text: str) -> types.CallToolResult:
    """A tool error result: the calling model reads why the call did not run."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class Gate:
    """The gate's two handlers over one upstream session and one countersign client."""

    def __init__(self, countersign: AsyncCountersign, upstream: Client, options: GateOptions) -> None:
        self.countersign, self.upstream, self.options = countersign, upstream, options
        self.tools: dict[str, types.Tool] = {}

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await self._upstream_tools())

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name, arguments = params.name, dict(params.arguments or {})
        tool = self.tools.get(name)
        if tool is None:
            tool = next((t for t in await self._upstream_tools() if t.name == name), None)
            if tool is None:
                return refusal(f"no tool {name!r} upstream ({self.options.upstream_label()})")
        try:
            action = await self.countersign.request(
                self.options.task_type,
                name,
                arguments,
                rationale=f"{name}, called through countersign mcp-gate (upstream: {self.options.upstream_label()})",
                requester=self.options.requester,
                schema=tool.input_schema,
            )
        except CountersignError as exc:
            return refusal(f"countersign did not take the call, so {name} was not run: {exc}")
        try:
            decided = await self._wait(ctx, action)
        except WaitTimedOut as late:
            return refusal(
                f"nobody decided {late.action.action_id} within {self.options.wait_limit_s:g} s, so {name} was not run"
                " (the action stays on its card until its escalation chain ends it)"
            )
        except CountersignError as exc:
            return refusal(
                f"countersign could not say whether {action.action_id} was approved, so it was not run: {exc}"
            )
        try:
            runnable = outcome(decided)
        except Rejected as no:
            how = "vetoed" if decided.state == "vetoed" else "rejected"
            return refusal(f"{name} was {how} by {decided.decided_by or 'an approver'}: {no.reason}")
        except Expired:
            return refusal(f"{name} was not run: {decided.action_id} expired undecided")
        except NotApproved as exc:
            return refusal(f"{name} was not run: {exc}")
        approved = dict(runnable.params) if runnable.params is not None else arguments
        try:
            claimed = await self.countersign.claim(runnable)
        except CountersignError as exc:
            return refusal(f"{name} was approved but could not be claimed, so it was not run: {exc}")
        return await self._run(claimed, name, approved)

    async def _run(self, claimed: Action, name: str, approved: dict[str, Any]) -> types.CallToolResult:
        try:
            result = await self.upstream.call_tool(name, approved)
        except Exception as exc:  # noqa: BLE001 - whatever the upstream or its transport raised, it is reported
            error = f"{type(exc).__name__}: {exc}"[:_REPORTED_TEXT]
            await self._report(claimed, "failed", error=error)
            return refusal(f"{name} was approved, but the upstream failed: {error}")
        text = " ".join(block.text for block in result.content if isinstance(block, types.TextContent))
        if result.is_error:
            await self._report(claimed, "failed", error=text[:_REPORTED_TEXT] or "the upstream returned an error")
        else:
            await self._report(claimed, "succeeded", result={"content": text[:_REPORTED_TEXT]})
        return result

    async def _report(
        self, claimed: Action, status: str, *, result: Mapping[str, Any] | None = None, error: str | None = None
    ) -> None:
        # Unreported, the claim's lease runs out and a person resolves the action (`unknown`).
        with contextlib.suppress(CountersignError):
            await self.countersign.report(claimed, "succeeded" if status == "succeeded" else "failed", result, error)

    async def _wait(self, ctx: ServerRequestContext[Any], action: Action) -> Action:
        """The decided action; `WaitTimedOut` after the wait limit. A progress notification at
        the start and after each `progress_every_s` without a decision."""
        deadline = time.monotonic() + self.options.wait_limit_s
        current, beats = action, 0
        while not current.decided:
            await _progress(ctx, beats, f"waiting for approval in countersign: {current.action_id} ({current.state})")
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimedOut(current)
            try:
                current = await self.countersign.wait(current, timeout=min(self.options.progress_every_s, left))
            except WaitTimedOut as still:
                current = still.action
            beats += 1
        return current

    async def _upstream_tools(self) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            page = await self.upstream.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        self.tools = {tool.name: tool for tool in tools}
        return tools


async def _progress(ctx: ServerRequestContext[Any], beats: int, message: str) -> None:
    # Progress is a courtesy: a caller that went away must not stop the wait.
    with contextlib.suppress(Exception):
        await ctx.session.report_progress(beats, None, message)


async def run_gate(options: GateOptions) -> None:
    """Serve the gate (stdio, or streamable HTTP with `http_port`) until its client goes away."""
    async with (
        AsyncCountersign(options.url, options.token) as countersign,
        Client(options.upstream()) as upstream,
    ):
        gate = Gate(countersign, upstream, options)
        server: Server[Any] = Server(
            NAME,
            instructions="Every tool call waits for a person's approval in countersign; a refusal says why.",
            on_list_tools=gate.list_tools,
            on_call_tool=gate.call_tool,
        )
        if options.http_port is None:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())
            return
        import uvicorn

        app = server.streamable_http_app(host=options.http_host)
        config = uvicorn.Config(app, host=options.http_host, port=options.http_port, log_level="warning")
        await uvicorn.Server(config).serve()
