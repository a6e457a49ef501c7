"""`countersign-client hook claude-code`: Claude Code's `PreToolUse` hook, answered by a person
in Slack through countersign.

Claude Code runs the command before each tool call and writes the hook's JSON to its stdin
(`tool_name`, `tool_input`, `tool_use_id`, `session_id`, `cwd`, ...). The hook asks countersign
for an action of the tool's task type (an open tool: `open_tools` in the server's config; the
session and working directory go on the card as its rationale), waits within the hook's
timeout, and prints exactly one JSON object, whatever happens:

    {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                            "permissionDecision": "allow" | "deny" | "ask",
                            "permissionDecisionReason": "..."}}

`allow` once approved (an approver's edits go along as `updatedInput`); `deny` with the
approver's reason when rejected or vetoed, or when the action expired; otherwise (countersign
unreachable or refusing, no task type for the tool, no decision before the hook's timeout nears,
anything unexpected) the fail-safe: `ask` (Claude Code asks at the terminal) or `deny`, never
`allow`. An allowed action is claimed and reported as handed to Claude Code, so it never lapses
to `unknown`: the hook cannot see the tool's own outcome.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx2

from countersign_client.action import outcome
from countersign_client.client import Countersign
from countersign_client.errors import CountersignError, Expired, NotApproved, Rejected, WaitTimedOut

FailSafe = Literal["ask", "deny"]
EVENT = "PreToolUse"
# The hook answers this long before its timeout, so Claude Code reads the answer, not a kill.
MARGIN_S = 3.0
# Of what is left, the wait for a decision ends this much sooner (the claim and report follow).
WAIT_MARGIN_S = 2.0


@dataclass(frozen=True)
class HookOptions:
    url: str | None
    token: str | None
    task_type: str | None = None  # for a tool no `matches` pattern names
    matches: tuple[tuple[str, str], ...] = ()  # (tool name pattern, task type), first match wins
    timeout_s: float = 60.0  # the hook's `timeout` in Claude Code's settings (its default: 60)
    fail_safe: FailSafe = "ask"
    requester: str | None = None  # a Slack user id: the cards name them, and they cannot approve

    def task_type_for(self, tool: str) -> str | None:
        return next((kind for pattern, kind in self.matches if fnmatch.fnmatchcase(tool, pattern)), self.task_type)


def answer(
    decision: Literal["allow", "deny", "ask"], reason: str, updated: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    output: dict[str, Any] = {
        "hookEventName": EVENT,
        "permissionDecision": decision,
        "permissionDecisionReason": reason,
    }
    if updated is not None:
        output["updatedInput"] = dict(updated)
    return {"hookSpecificOutput": output}


def run(
    stdin_text: str,
    options: HookOptions,
    *,
    transport: httpx2.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The hook's answer to one PreToolUse event, within `options.timeout_s - MARGIN_S`: the
    decision is looked for in a thread of its own, and the fail-safe answered when it is late."""
    budget = max(options.timeout_s - MARGIN_S, 0.5)
    found: list[dict[str, Any]] = []
    abandoned = threading.Event()  # the fail-safe went out: the worker must hand nothing over

    def look() -> None:
        deadline = clock() + budget - WAIT_MARGIN_S
        try:
            found.append(decide(stdin_text, options, deadline, transport=transport, clock=clock, abandoned=abandoned))
        except BaseException as exc:  # noqa: BLE001 - whatever happens, one answer of the documented shape
            found.append(fail_safe(options, f"the hook failed: {type(exc).__name__}: {exc}"))

    worker = threading.Thread(target=look, name="countersign-hook", daemon=True)
    worker.start()
    worker.join(budget)
    abandoned.set()
    if found:
        return found[0]
    return fail_safe(options, f"countersign gave no decision within the hook's {options.timeout_s:g} s")


def fail_safe(options: HookOptions, why: str) -> dict[str, Any]:
    then = "Claude Code asks you instead" if options.fail_safe == "ask" else "denied to be safe"
    return answer(options.fail_safe, f"countersign: {why}; {then}")


def decide(
    stdin_text: str,
    options: HookOptions,
    deadline: float,
    *,
    transport: httpx2.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    abandoned: threading.Event | None = None,
) -> dict[str, Any]:
    """The answer to one event, asking and waiting until `deadline` (on `clock`); an approved
    action is claimed and reported handed over unless `abandoned` is set (the fail-safe went out)."""
    event, problem = _event(stdin_text)
    if event is None:
        return fail_safe(options, f"the hook's input is not Claude Code's PreToolUse JSON: {problem}")
    tool, params = event["tool_name"], event["tool_input"]
    task_type = options.task_type_for(tool)
    if task_type is None:
        return fail_safe(options, f"no task type for tool {tool!r} (give --task-type, or a --match for it)")
    if not options.url or not options.token:
        return fail_safe(options, "COUNTERSIGN_URL and COUNTERSIGN_API_TOKEN (or --url and --token) are needed")
    with Countersign(options.url, options.token, timeout_s=max(deadline - clock(), 0.5), transport=transport) as client:
        try:
            action = client.request(
                task_type,
                tool,
                params,
                rationale=_rationale(event),
                requester=options.requester,
                external_id=_external_id(event),
            )
            decided = client.wait(action, timeout=max(deadline - clock(), 0.0))
        except WaitTimedOut as late:
            return fail_safe(options, f"nobody decided {late.action.action_id} in time (it stays on its card)")
        except CountersignError as exc:
            return fail_safe(options, f"could not ask for approval: {exc}")
        who = decided.decided_by or "an approver"
        try:
            runnable = outcome(decided)
        except Rejected as no:
            how = "vetoed" if decided.state == "vetoed" else "rejected"
            return answer("deny", f"{how} in countersign by {who}: {no.reason}")
        except Expired:
            return answer("deny", f"countersign: {decided.action_id} expired undecided")
        except NotApproved as exc:
            return answer("deny", f"countersign: {exc}")
        approved = dict(runnable.params) if runnable.params is not None else dict(params)
        if abandoned is not None and abandoned.is_set():
            return fail_safe(options, f"{decided.action_id} was decided too late for the hook")
        try:
            claimed = client.claim(runnable)
            client.report(claimed, "succeeded", result={"handed_to": "Claude Code"})
        except CountersignError as exc:
            return fail_safe(
                options, f"{decided.action_id} was approved but could not be recorded as handed over: {exc}"
            )
    how = "approved" if runnable.state == "approved" else "not vetoed"
    edited = approved != params
    reason = f"{how} in countersign by {who}" if runnable.decided_by else f"{how} in countersign ({runnable.action_id})"
    return answer("allow", reason + (" with edits" if edited else ""), approved if edited else None)


def _event(text: str) -> tuple[dict[str, Any] | None, str]:
    try:
        event = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(event, dict):
        return None, "not a JSON object"
    if not isinstance(event.get("tool_name"), str) or not event["tool_name"]:
        return None, "no tool_name"
    if not isinstance(event.get("tool_input"), dict):
        return None, "no tool_input object"
    return event, ""


def _rationale(event: Mapping[str, Any]) -> str:
    where = f" in {event['cwd']}" if isinstance(event.get("cwd"), str) else ""
    session = f" (session {event['session_id']})" if isinstance(event.get("session_id"), str) else ""
    return f"Claude Code wants to run {event['tool_name']}{where}{session}"


def _external_id(event: Mapping[str, Any]) -> str | None:
    """One action per tool use, however often the hook runs for it."""
    use, session = event.get("tool_use_id"), event.get("session_id")
    if not isinstance(use, str) or not use:
        return None
    key = f"claude-code:{session}:{use}" if isinstance(session, str) else f"claude-code:{use}"
    return key if len(key) <= 128 else "claude-code:" + hashlib.sha256(key.encode()).hexdigest()


def parse_matches(entries: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`PATTERN=TASK_TYPE` entries; `ValueError` naming one without `=`."""
    pairs = []
    for entry in entries:
        pattern, sep, kind = entry.rpartition("=")
        if not sep or not pattern or not kind:
            raise ValueError(f"--match takes PATTERN=TASK_TYPE (like 'mcp__github__*=github'), not {entry!r}")
        pairs.append((pattern, kind))
    return tuple(pairs)
