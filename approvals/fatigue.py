"""Signs that a person is rubber-stamping: how fast, how often and how uniformly they approve.

For each approver, over a window: their decisions on cards (approve, edit, reject, veto), the
share of them that approved, the median time from the card to their click (from the moment the
action was drafted, as graduation's `min_read_time` measures it), the share of their approvals
faster than their task type's `min_read_time`, and their streaks of such fast approvals (the
longest, and the one running now; any other decision ends a streak). An edit is read by
definition, so only plain approvals can be fast.

Read by the admins' App Home, `countersign approvers`, `/metrics` and the alert that tells the
admins when someone's fast share passes `alerts.fast_approval_share` (`escalations.alerts`).
Computed from the decisions table at the time asked; nothing is stored.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Config
from core.models import Action, Decision

CARD_KINDS = ("approve", "edit", "reject", "veto")
APPROVALS = ("approve", "edit")
DEFAULT_READ = timedelta(seconds=5)  # graduation's default min_read_time


@dataclass(frozen=True)
class Signals:
    approver: str  # a Slack user id (or the label people were pooled under)
    decisions: int
    approvals: int
    median_read_s: float | None
    fast: int  # approvals faster than their task type's min_read_time
    longest_fast_streak: int
    current_fast_streak: int

    @property
    def approval_rate(self) -> float:
        return self.approvals / self.decisions if self.decisions else 0.0

    @property
    def fast_share(self) -> float:
        return self.fast / self.approvals if self.approvals else 0.0


@dataclass
class _Tally:
    decisions: int = 0
    approvals: int = 0
    fast: int = 0
    streak: int = 0
    longest: int = 0
    reads: list[float] = field(default_factory=list)


def signals(
    session: Session,
    since: datetime,
    min_read: Mapping[str, timedelta],
    *,
    label: Callable[[str], str] = lambda actor: actor,
) -> list[Signals]:
    """Each approver's signals from the decisions made since `since`, busiest first. `min_read`:
    each task type's `min_read_time` (others: 5 s). `label` pools people under one name (for
    bounded metric labels); by default each person is their own."""
    rows = session.execute(
        select(Decision.actor, Decision.kind, Decision.at, Action.created_at, Action.task_type)
        .join(Action, Action.id == Decision.action_id)
        .where(Decision.at >= since, Decision.kind.in_(CARD_KINDS))
        .order_by(Decision.at, Decision.id)
    ).all()
    tallies: dict[str, _Tally] = {}
    for actor, kind, at, drafted, task_type in rows:
        tally = tallies.setdefault(label(actor), _Tally())
        read = max((at - drafted).total_seconds(), 0.0)
        tally.decisions += 1
        tally.reads.append(read)
        if kind in APPROVALS:
            tally.approvals += 1
        if kind == "approve" and read < min_read.get(task_type, DEFAULT_READ).total_seconds():
            tally.fast += 1
            tally.streak += 1
            tally.longest = max(tally.longest, tally.streak)
        else:
            tally.streak = 0
    found = [
        Signals(
            approver=name,
            decisions=tally.decisions,
            approvals=tally.approvals,
            median_read_s=statistics.median(tally.reads) if tally.reads else None,
            fast=tally.fast,
            longest_fast_streak=tally.longest,
            current_fast_streak=tally.streak,
        )
        for name, tally in tallies.items()
    ]
    return sorted(found, key=lambda s: (-s.decisions, s.approver))


def min_read_times(config: Config) -> dict[str, timedelta]:
    """Each configured task type's `graduation.min_read_time`."""
    return {name: task_type.graduation.min_read_time for name, task_type in config.task_types.items()}


def flagged(found: Signals, config: Config) -> bool:
    """Whether `found` passes the alert's threshold (`alerts.fast_approval_share`, at least
    `alerts.fast_approval_min` approvals)."""
    alerts = config.alerts
    return found.approvals >= alerts.fast_approval_min and found.fast_share > alerts.fast_approval_share
