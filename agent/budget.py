"""Budgets that stop a task before it overspends: per task (steps, tokens, cost; a person
may extend them once) and per task type and UTC day (tokens, cost)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from approvals.usage import Usage, daily_usage, per_task_type, utc_day
from core.config import Budget
from core.models import Task


def exceeded(session: Session, task: Task, budget: Budget, now: datetime) -> str | None:
    """Why `task` may not ask the model again, or None."""
    return over_task(task, budget) or over_day(session, task, budget, now)


def daily(budget: Budget) -> bool:
    """Whether the budget has limits per task type and day (`over_day` reads the day's usage)."""
    return budget.daily_max_tokens is not None or budget.daily_max_cost_usd is not None


def over_task(task: Task, budget: Budget) -> str | None:
    """Why `task` has spent its own budget, or None."""
    scale = 1 + task.budget_extensions
    tokens = task.input_tokens + task.output_tokens
    if task.steps >= budget.max_steps * scale:
        return f"budget: {task.steps} model steps reached the limit of {budget.max_steps * scale}"
    if tokens >= budget.max_tokens * scale:
        return f"budget: {tokens} tokens reached the limit of {budget.max_tokens * scale}"
    if task.cost_usd >= budget.max_cost_usd * scale:
        return f"budget: ${task.cost_usd:.4f} reached the limit of ${budget.max_cost_usd * scale:.2f}"
    return None


def over_day(session: Session, task: Task, budget: Budget, now: datetime) -> str | None:
    """Why `task`'s type has spent its budget for the UTC day, or None."""
    if not daily(budget):
        return None
    today = per_task_type(daily_usage(session, utc_day(now), task_type=task.task_type)).get(task.task_type, Usage())
    day_tokens, day_cost = today.tokens, today.cost_usd
    if budget.daily_max_tokens is not None and day_tokens >= budget.daily_max_tokens:
        return f"budget: task type {task.task_type!r} used {day_tokens} tokens today (limit {budget.daily_max_tokens})"
    if budget.daily_max_cost_usd is not None and day_cost >= budget.daily_max_cost_usd:
        return (
            f"budget: task type {task.task_type!r} spent ${day_cost:.4f} today (limit ${budget.daily_max_cost_usd:.2f})"
        )
    return None
