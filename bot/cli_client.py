"""`countersign mcp-gate …` and `countersign hook claude-code …`: the client distribution's own
commands (`countersign-client`, clients/python), offered by the server's CLI too. Each hands
its arguments, untouched, to `countersign_client.cli`, so both spellings take the same
options and behave the same; the client package is imported only when one of them runs."""

from __future__ import annotations

import click

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _delegate(*args: str) -> None:
    try:
        from countersign_client.cli import main as client_main
    except ImportError:
        raise click.ClickException(
            "this command comes with the client distribution: pip install 'countersign-client[mcp]' (clients/python)"
        ) from None
    raise SystemExit(client_main(list(args)))


@click.command("mcp-gate", context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def mcp_gate(args: tuple[str, ...]) -> None:
    """An MCP server in front of another: every tool call approved in countersign first
    (`countersign mcp-gate --help`)."""
    _delegate("mcp-gate", *args)


@click.group()
def hook() -> None:
    """Permission hooks of coding agents, answered in countersign."""


@hook.command("claude-code", context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def claude_code(args: tuple[str, ...]) -> None:
    """Claude Code's PreToolUse hook (`countersign hook claude-code --help`)."""
    _delegate("hook", "claude-code", *args)
