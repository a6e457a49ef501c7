"""`countersign-client`: the client's commands (the server's `countersign mcp-gate` and
`countersign hook claude-code` run these same ones).

    countersign-client mcp-gate --task-type ops [--wait-limit 1h] -- python -m some_server
    countersign-client mcp-gate --task-type ops --upstream-url https://example.com/mcp [--http 8765]
    countersign-client hook claude-code --task-type dev [--match 'mcp__github__*=github'] [--timeout 60]

Both find countersign at `COUNTERSIGN_URL` with the API client token in
`COUNTERSIGN_API_TOKEN` (or `--url` / `--token`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>[smh]?)")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """`90`, `90s`, `15m`, `2h` → seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"a duration like 90s, 15m or 2h, not {text!r}")
    return float(match["number"]) * _UNITS[match["unit"]]


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("COUNTERSIGN_URL"), help="countersign's URL ($COUNTERSIGN_URL)")
    parser.add_argument(
        "--token", default=os.environ.get("COUNTERSIGN_API_TOKEN"), help="an API client token ($COUNTERSIGN_API_TOKEN)"
    )
    parser.add_argument("--requester", help="a Slack user id the cards name as asking (they cannot approve it)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="countersign-client", description="countersign's client commands")
    commands = top.add_subparsers(dest="command", required=True)

    gate = commands.add_parser(
        "mcp-gate",
        help="an MCP server in front of another that asks countersign before every tool call",
        description="Serve MCP (stdio, or streamable HTTP with --http) in front of an upstream MCP server: "
        "its tools unchanged, each call approved in countersign first. "
        "The upstream: a command after `--`, or --upstream-url.",
    )
    _connection(gate)
    gate.add_argument("--task-type", required=True, help="the task type of the calls (with open_tools in its config)")
    gate.add_argument("--upstream-url", help="a streamable HTTP upstream instead of a command")
    gate.add_argument(
        "--wait-limit", type=duration, default=3600.0, help="no decision by then: not run, an error result (1h)"
    )
    gate.add_argument("--progress-every", type=duration, default=10.0, help="a progress notification this often (10s)")
    gate.add_argument(
        "--http", type=int, metavar="PORT", help="serve streamable HTTP on PORT (at /mcp) instead of stdio"
    )
    gate.add_argument("--host", default="127.0.0.1", help="with --http: the address to listen on (127.0.0.1)")
    gate.add_argument("upstream", nargs=argparse.REMAINDER, help="-- the upstream's command and its arguments")

    hook = commands.add_parser("hook", help="hooks of coding agents")
    hooks = hook.add_subparsers(dest="hook", required=True)
    claude = hooks.add_parser(
        "claude-code",
        help="Claude Code's PreToolUse hook: allow, deny or ask, as decided in countersign",
        description="Reads the PreToolUse JSON on stdin, prints one JSON answer on stdout.",
    )
    _connection(claude)
    claude.add_argument("--task-type", help="the task type of tools no --match names")
    claude.add_argument(
        "--match", action="append", default=[], metavar="PATTERN=TYPE", help="tools matching PATTERN go to TYPE"
    )
    claude.add_argument(
        "--timeout", type=duration, default=60.0, help="the hook's timeout in Claude Code's settings (60s)"
    )
    claude.add_argument(
        "--fail-safe", choices=["ask", "deny"], default="ask", help="the answer when countersign cannot decide (ask)"
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        arguments = parser().parse_args(given)
    except SystemExit as stop:
        if stop.code and given[:2] == ["hook", "claude-code"]:
            # Claude Code reads stdout: even a mistyped hook command answers in the documented shape.
            from countersign_client.hook import answer

            print(json.dumps(answer("ask", "countersign hook: bad arguments (see the hook's stderr)")))
            return 0
        raise
    if arguments.command == "mcp-gate":
        return _mcp_gate(arguments)
    return _hook(arguments)


def _mcp_gate(arguments: argparse.Namespace) -> int:
    if not arguments.url or not arguments.token:
        print("mcp-gate: COUNTERSIGN_URL and COUNTERSIGN_API_TOKEN (or --url and --token) are needed", file=sys.stderr)
        return 2
    command = list(arguments.upstream)
    if command[:1] == ["--"]:
        command = command[1:]
    if bool(command) == bool(arguments.upstream_url):
        print("mcp-gate: give the upstream as a command after `--`, or --upstream-url (one of them)", file=sys.stderr)
        return 2
    try:
        import anyio

        from countersign_client.mcp_gate import GateOptions, run_gate
    except ImportError as missing:
        print(f"mcp-gate needs the mcp extra: pip install 'countersign-client[mcp]' ({missing})", file=sys.stderr)
        return 2
    options = GateOptions(
        url=arguments.url,
        token=arguments.token,
        task_type=arguments.task_type,
        upstream_command=tuple(command),
        upstream_url=arguments.upstream_url,
        wait_limit_s=arguments.wait_limit,
        progress_every_s=max(arguments.progress_every, 1.0),
        requester=arguments.requester,
        http_port=arguments.http,
        http_host=arguments.host,
    )
    anyio.run(run_gate, options)
    return 0


def _hook(arguments: argparse.Namespace) -> int:
    from countersign_client.hook import HookOptions, answer, parse_matches, run

    try:
        options = HookOptions(
            url=arguments.url,
            token=arguments.token,
            task_type=arguments.task_type,
            matches=parse_matches(arguments.match),
            timeout_s=arguments.timeout,
            fail_safe=arguments.fail_safe,
            requester=arguments.requester,
        )
    except ValueError as bad:
        # A broken hook command still answers in the documented shape (and never allows).
        print(json.dumps(answer(arguments.fail_safe, f"countersign hook: {bad}")))
        return 0
    try:
        event = sys.stdin.read()
    except (OSError, UnicodeDecodeError) as unread:
        event = f"(stdin unreadable: {unread})"
    print(json.dumps(run(event, options)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
