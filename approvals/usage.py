"""What the model cost, from `trace_events`: one place that counts a day's model calls, so
the agent's daily budget, the budget alerts and `countersign usage` agree on every number.

Here rather than in `agent` because `escalations` (the alerts) needs it too, and the two are
siblings that never import each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.models import Task, TraceEvent

MODEL_CALL = "model_call"
ROUTE = "route"  # the router model's call for a request without a task type
# A trace event without a model (an error before any model answered) is shown under this name.
NO_MODEL = "?"


@dataclass(frozen=True)
class Usage:
    """Model calls and what they used. `input_tokens` are the uncached prompt tokens; cache reads
    and writes come on top, each priced at its own rate in `cost_usd`. `tokens` is what budgets
    count: cached prompt tokens cost money too, so they count with the rest."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def cache_hit_share(self) -> float:
        """The share of prompt tokens read from the cache (0 without any prompt)."""
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cost_usd + other.cost_usd,
        )


_SUMS = (
    func.count(),
    func.coalesce(func.sum(TraceEvent.input_tokens), 0),
    func.coalesce(func.sum(TraceEvent.output_tokens), 0),
    func.coalesce(func.sum(TraceEvent.cache_read_tokens), 0),
    func.coalesce(func.sum(TraceEvent.cache_creation_tokens), 0),
    func.coalesce(func.sum(TraceEvent.cost_usd), 0.0),
)


def _usage(row: Any) -> Usage:
    calls, input_tokens, output_tokens, cache_read, cache_write, cost = row
    return Usage(int(calls), int(input_tokens), int(output_tokens), int(cache_read), int(cache_write), float(cost))


def usage_where(session: Session, *where: Any) -> Usage:
    """All model calls matching `where` (for example one task's), summed."""
    return _usage(session.execute(select(*_SUMS).where(TraceEvent.kind == MODEL_CALL, *where)).one())


def daily_usage(session: Session, day: date, *, task_type: str | None = None) -> dict[tuple[str, str], Usage]:
    """(task type, model) → the model calls on one UTC day, ordered by task type then model;
    only `task_type`'s when given."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    where = [TraceEvent.kind == MODEL_CALL, TraceEvent.at >= start, TraceEvent.at < start + timedelta(days=1)]
    if task_type is not None:
        where.append(TraceEvent.task_type == task_type)
    rows = session.execute(
        select(TraceEvent.task_type, TraceEvent.model, *_SUMS)
        .where(*where)
        .group_by(TraceEvent.task_type, TraceEvent.model)
        .order_by(TraceEvent.task_type, TraceEvent.model)
    ).all()
    usage: dict[tuple[str, str], Usage] = {}
    for row in rows:
        key = (row[0], row[1] or NO_MODEL)
        # Models NULL and "?" would share a key: add rather than overwrite.
        usage[key] = usage.get(key, Usage()) + _usage(row[2:])
    return usage


@dataclass(frozen=True)
class Routed:
    """What became of the router's calls on one day for one task type."""

    kept: int = 0  # the router chose this type and the task kept it
    changed: int = 0  # the router chose this type and the task ended up as another
    asked: int = 0  # the router was unsure; the requester chose this type


@dataclass(frozen=True)
class Routing:
    per_type: dict[str, Routed]
    waiting: int  # the router was unsure and nobody has chosen yet (or the task was stopped first)
    usage: Usage  # the router's own calls


def daily_routing(session: Session, day: date) -> Routing:
    """The router's calls on one UTC day: per task type, how often its choice was kept, changed,
    or (unsure) made by the requester; and what the calls cost. A task's current type is compared
    with the choice recorded in the call's trace (`data.chosen`; calls recorded before it was
    kept there are left out)."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    where = [TraceEvent.kind == ROUTE, TraceEvent.at >= start, TraceEvent.at < start + timedelta(days=1)]
    rows = session.execute(
        select(TraceEvent.data, Task.task_type).join(Task, Task.id == TraceEvent.task_id).where(*where)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    waiting = 0
    for data, task_type in rows:
        if not isinstance(data, dict) or "chosen" not in data:
            continue
        chosen = data["chosen"]
        if chosen is None and not task_type:
            waiting += 1
            continue
        key, kind = (chosen, "kept" if task_type == chosen else "changed") if chosen else (task_type, "asked")
        tally = counts.setdefault(str(key), {})
        tally[kind] = tally.get(kind, 0) + 1
    per_type = {name: Routed(**counts[name]) for name in sorted(counts)}
    return Routing(per_type, waiting, _usage(session.execute(select(*_SUMS).where(*where)).one()))


def per_task_type(usage: Mapping[tuple[str, str], Usage]) -> dict[str, Usage]:
    """`daily_usage`'s rows summed over models: task type → usage."""
    summed: dict[str, Usage] = {}
    for (task_type, _model), used in usage.items():
        summed[task_type] = summed.get(task_type, Usage()) + used
    return summed


def utc_day(now: datetime) -> date:
    """The UTC day `now` falls on (budgets and alerts count per UTC day)."""
    return utc(now).date()
