"""A scripted Claude Code session for the demo: two `PreToolUse` hook calls, as Claude Code
writes them to the hook's stdin, answered by the real hook (`countersign_client.hook`, what
`countersign hook claude-code` runs) through the demo's actions API. Their cards wait in
#coding: a `Bash` command with a key in an environment variable (shown as code, the key
masked) and an `Edit` of a settings file (shown as a diff). Each hook waits as Claude Code
would, then answers `allow` once approved, `deny` with the reason once rejected, or `ask`
when nobody decided within its timeout (the card stays, pending).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)
TASK_TYPE = "coding"
SESSION = "demo-session-1"
CWD = "/home/riley/shop"
TIMEOUT_S = 600.0  # the hook's `timeout` in the demo's imagined settings.json: ten minutes
# The shape of a Stripe live key, not a real one: the card shows it as `sk_live_…••••`.
DEMO_KEY = "sk_live_DEMO0000notarealkey00000"
CALLS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "toolu_demo_bash",
        "Bash",
        {
            "command": f"export STRIPE_API_KEY={DEMO_KEY}\n./scripts/deploy.sh --env production --migrate",
            "description": "Deploy the shop to production with the new payments key",
        },
    ),
    (
        "toolu_demo_edit",
        "Edit",
        {
            "file_path": f"{CWD}/shop/settings.py",
            "old_string": "DEBUG = True\nPAYMENTS_TIMEOUT_S = 5\nALLOWED_HOSTS = ['*']",
            "new_string": "DEBUG = False\nPAYMENTS_TIMEOUT_S = 30\nALLOWED_HOSTS = ['shop.example.com']",
        },
    ),
)


def event(use: str, tool: str, tool_input: dict[str, Any]) -> str:
    """The hook's stdin, as Claude Code's hooks reference documents it."""
    return json.dumps(
        {
            "session_id": SESSION,
            "transcript_path": f"/home/riley/.claude/projects/shop/{SESSION}.jsonl",
            "cwd": CWD,
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "tool_name": tool,
            "tool_input": tool_input,
            "tool_use_id": use,
        }
    )


def start(url: str, token: str, requester: str) -> list[threading.Thread]:
    """Each scripted call in a thread of its own (daemon: the demo never waits for Claude Code);
    none without the client distribution (`pip install -e clients/python`, which `make` does)."""
    try:
        from countersign_client.hook import HookOptions, run
    except ImportError:
        log.warning("the Claude Code hook calls are skipped: the client distribution is not installed")
        return []
    options = HookOptions(url=url, token=token, task_type=TASK_TYPE, timeout_s=TIMEOUT_S, requester=requester)

    def call(use: str, tool: str, tool_input: dict[str, Any]) -> None:
        answer = run(event(use, tool, tool_input), options)["hookSpecificOutput"]
        log.info("Claude Code's %s: %s (%s)", tool, answer["permissionDecision"], answer["permissionDecisionReason"])

    threads = [
        threading.Thread(target=call, args=spec, name=f"demo-claude-code-{spec[1]}", daemon=True) for spec in CALLS
    ]
    for thread in threads:
        thread.start()
    return threads
