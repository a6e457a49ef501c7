"""Budgets that stop a task before it overspends: per task (steps, tokens, cost; a person
may extend them once) and per task type and UTC day (tokens, cost)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.config import Budget
from core.models import Task, TraceEvent


def exceeded(session: Session, task: Task, budget: Budget, now: datetime) -> str | None:
    """Why `task` may not ask the model again, or None."""
    scale = 1 + task.budget_extensions
    tokens = task.input_tokens + task.output_tokens
    if task.steps >= budget.max_steps * scale:
        return f"budget: {task.steps} model steps reached the limit of {budget.max_steps * scale}"
    if tokens >= budget.max_tokens * scale:
        return f"budget: {tokens} tokens reached the limit of {budget.max_tokens * scale}"
    if task.cost_usd >= budget.max_cost_usd * scale:
        return f"budget: ${task.cost_usd:.4f} reached the limit of ${budget.max_cost_usd * scale:.2f}"
    if budget.daily_max_tokens is None and budget.daily_max_cost_usd is None:
        return None
    day_tokens, day_cost = daily_usage(session, task.task_type, now)
    if budget.daily_max_tokens is not None and day_tokens >= budget.daily_max_tokens:
        return f"budget: task type {task.task_type!r} used {day_tokens} tokens today (limit {budget.daily_max_tokens})"
    if budget.daily_max_cost_usd is not None and day_cost >= budget.daily_max_cost_usd:
        return (
            f"budget: task type {task.task_type!r} spent ${day_cost:.4f} today (limit ${budget.daily_max_cost_usd:.2f})"
        )
    return None


def daily_usage(session: Session, task_type: str, now: datetime) -> tuple[int, float]:
    """(tokens, USD) that `task_type`'s model calls used since midnight UTC."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    row = session.execute(
        select(
            func.coalesce(
                func.sum(
                    TraceEvent.input_tokens
                    + TraceEvent.output_tokens
                    + TraceEvent.cache_read_tokens
                    + TraceEvent.cache_creation_tokens
                ),
                0,
            ),
            func.coalesce(func.sum(TraceEvent.cost_usd), 0.0),
        ).where(TraceEvent.task_type == task_type, TraceEvent.at >= midnight, TraceEvent.kind == "model_call")
    ).one()
    return int(row[0]), float(row[1])
