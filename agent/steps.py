"""What one model step leaves behind: its trace event and metrics, the task's counters after
it, and whether the reply shows the task going in circles (loop detection)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from agent.conversation import split_input
from agent.model import ModelReply
from agent.tools import ToolRegistry
from core import metrics
from core.canonical import params_hash
from core.config import TaskTypeConfig
from core.models import Action, Task, TraceEvent
from core.states import ActionState


def usage_after(task: Task, reply: ModelReply, cost: float) -> dict[str, Any]:
    """The task's counters after `reply`, with its lease released."""
    return {
        "steps": task.steps + 1,
        "input_tokens": task.input_tokens
        + reply.usage.input_tokens
        + reply.usage.cache_read_tokens
        + reply.usage.cache_creation_tokens,
        "output_tokens": task.output_tokens + reply.usage.output_tokens,
        "cost_usd": task.cost_usd + cost,
        "model_failures": 0,
        "unavailable_since": None,
        "lease_owner": None,
        "lease_until": None,
        "next_step_at": None,
    }


def trace(
    session: Session,
    task: Task,
    now: datetime,
    kind: str,
    reply: ModelReply | None,
    cost: float,
    latency_ms: float | None,
    data: dict[str, Any] | None = None,
) -> None:
    if reply is not None:
        data = {
            "stop_reason": reply.stop_reason,
            "request_id": reply.request_id,
            "content": reply.content,
            **(data or {}),
        }
        labels = (task.task_type or "unrouted", reply.model)
        metrics.MODEL_CALLS.labels(*labels, "ok").inc()
        used = reply.usage
        for direction, tokens in (
            ("input", used.input_tokens),  # uncached prompt tokens; the four kinds add up to all tokens
            ("cache_read", used.cache_read_tokens),
            ("cache_write", used.cache_creation_tokens),
            ("output", used.output_tokens),
        ):
            metrics.MODEL_TOKENS.labels(*labels, direction).inc(tokens)
        metrics.MODEL_COST.labels(*labels).inc(cost)
    elif kind == "model_error":
        metrics.MODEL_CALLS.labels(task.task_type or "unrouted", "unknown", "unavailable").inc()
    session.add(
        TraceEvent(
            task_id=task.id,
            task_type=task.task_type,
            at=now,
            kind=kind,
            model=reply.model if reply else None,
            input_tokens=reply.usage.input_tokens if reply else 0,
            output_tokens=reply.usage.output_tokens if reply else 0,
            cache_read_tokens=reply.usage.cache_read_tokens if reply else 0,
            cache_creation_tokens=reply.usage.cache_creation_tokens if reply else 0,
            cost_usd=cost,
            latency_ms=latency_ms,
            data=data,
        )
    )


# The task's earlier drafts (built once: building a statement costs more than running it).
_EARLIER = select(Action.tool, Action.params_hash, Action.state).where(Action.task_id == bindparam("task_id"))


def loop_reason(
    session: Session,
    registry: ToolRegistry,
    task: Task,
    task_type: TaskTypeConfig,
    reply: ModelReply,
    *,
    max_repeats: int,
    max_refusals: int,
) -> str | None:
    """Why this reply shows the task going in circles, or None."""
    earlier = session.execute(_EARLIER, {"task_id": task.id}).all()
    refusals = sum(1 for _, _, state in earlier if state == ActionState.REFUSED)
    for use in reply.tool_uses:
        name = str(use.get("name"))
        params, _, _ = split_input(use.get("input"))
        try:
            canonical = registry.validate(name, params) if name in task_type.tools else None
        except ValueError:
            canonical = None
        if canonical is None:
            refusals += 1
            continue
        digest = params_hash(canonical)
        repeats = 1 + sum(1 for tool, hashed, _ in earlier if tool == name and hashed == digest)
        if repeats >= max_repeats:
            return f"loop: {name} drafted {repeats} times with the same parameters ({digest[:12]})"
    if refusals >= max_refusals:
        return f"loop: {refusals} refused calls (out-of-scope tools or invalid parameters)"
    return None
