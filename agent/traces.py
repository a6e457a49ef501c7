"""A task's timeline and what it cost: model calls from `trace_events`, everything else
(drafts, decisions, executions, escalations) from the audit ledger, merged by time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.pricing import SCRIPTED
from approvals.usage import Usage, usage_where
from core.models import AuditEvent, Task, TraceEvent


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str
    actor: str
    summary: str
    cost_usd: float = 0.0


def timeline(session: Session, task: Task) -> list[Entry]:
    entries = [
        _from_trace(event)
        for event in session.scalars(select(TraceEvent).where(TraceEvent.task_id == task.id).order_by(TraceEvent.id))
    ]
    entries += [
        _from_audit(event)
        for event in session.scalars(
            select(AuditEvent).where(AuditEvent.task_public_id == task.public_id).order_by(AuditEvent.seq)
        )
    ]
    return sorted(entries, key=lambda entry: entry.at)  # stable: same-time entries keep their order


def task_usage(session: Session, task: Task) -> Usage:
    return usage_where(session, TraceEvent.task_id == task.id)


def _from_trace(event: TraceEvent) -> Entry:
    data = event.data or {}
    if event.kind == "model_call":
        tools = [block.get("name") for block in data.get("content", []) if block.get("type") == "tool_use"]
        cached = (
            f" · cache read {event.cache_read_tokens} / write {event.cache_creation_tokens}"
            if event.cache_read_tokens or event.cache_creation_tokens
            else ""
        )
        drafted_by = f"{event.model} (fallback: {data.get('primary')} failing)" if data.get("fallback") else event.model
        if event.model == SCRIPTED:
            drafted_by = "scripted model (replies from a script: no model called)"
        summary = (
            f"{drafted_by} · in {event.input_tokens}{cached} / out {event.output_tokens} tokens · "
            f"${event.cost_usd:.4f} · {event.latency_ms or 0:.0f} ms · {data.get('stop_reason')}"
        )
        if tools:
            summary += f" → {', '.join(str(t) for t in tools)}"
    else:
        summary = str(data.get("error", data))
    return Entry(event.at, event.kind, event.model or "model", summary, event.cost_usd)


def _from_audit(event: AuditEvent) -> Entry:
    parts = [
        part
        for part in (
            event.action_public_id,
            f"{event.from_state} → {event.to_state}" if event.from_state and event.to_state else event.to_state,
            event.note,
        )
        if part
    ]
    return Entry(event.at, event.kind, event.actor, " · ".join(parts))
