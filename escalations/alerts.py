"""Cost and backlog alerts for the admins: one message per problem, not one per event.

`check` runs periodically (see `escalations.jobs`) and enqueues an `ops.alert` outbox row
(ordering key `ops`) holding the alert's facts, numbers and names (`core.messages.BudgetAlert`,
`BacklogAlert`); `bot.blocks.alerts` renders them as the line the sender posts to the admin
channel. Five alert kinds:

- `budget_tokens`, `budget_cost`: a task type's model calls since midnight UTC passed
  `alerts.budget_share` of its `daily_max_tokens` / `daily_max_cost_usd`. At most once per
  (kind, task type, UTC day).
- `pending_approvals`, `outbox_backlog`: more than `alerts.pending_max` actions wait for
  approval, or more than `alerts.outbox_max` outbox rows wait for delivery. Once when the
  backlog goes above the threshold, then a `resolved` message once it is back to
  `CLEAR_RATIO` of the threshold or less (the gap keeps a backlog hovering at the threshold
  from posting every minute); only after that can it fire again.
- `fast_approvals`: a person's share of approvals faster than their task type's
  `min_read_time`, over `alerts.fast_approval_window` (7 days), passed
  `alerts.fast_approval_share` with at least `alerts.fast_approval_min` approvals
  (`approvals.fatigue`). Once per person until it is back to `CLEAR_RATIO` of the threshold (or
  they approved too few to say), then `resolved`.

The state is the outbox rows themselves: an alert was sent today if today's `ops.alert`
rows hold it, and a backlog alert is open if the newest row of its kind says `firing`. So
there is no table to migrate and nothing to keep in step with what was actually sent. On
PostgreSQL a transaction-scoped advisory try-lock lets one replica check at a time (the
others skip that round), so two replicas never send the same alert; SQLite's
`BEGIN IMMEDIATE` serializes writers already.

Imports `approvals` and `core`; never `agent` (the daily usage query is `approvals.usage`, shared with the budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from approvals import fatigue
from approvals.usage import Usage, daily_usage, per_task_type
from core import outbox
from core.clock import utc
from core.config import AlertsConfig, Config
from core.messages import (
    OPS_ORDERING_KEY,
    AlertState,
    BacklogAlert,
    BacklogKind,
    BudgetAlert,
    BudgetKind,
    FatigueAlert,
    FatigueKind,
    Message,
)
from core.models import Action, OutboxMessage, Task, TraceEvent
from core.states import ActionState

ALERT_KIND = BudgetAlert.KIND
ORDERING_KEY = OPS_ORDERING_KEY
BUDGET_TOKENS: BudgetKind = "budget_tokens"
BUDGET_COST: BudgetKind = "budget_cost"
PENDING_APPROVALS: BacklogKind = "pending_approvals"
OUTBOX_BACKLOG: BacklogKind = "outbox_backlog"
FAST_APPROVALS: FatigueKind = "fast_approvals"
FIRING: Literal["firing"] = "firing"
RESOLVED: AlertState = "resolved"
# A backlog alert resolves once the backlog is back to this share of its threshold or less.
CLEAR_RATIO = 0.8
# pg_try_advisory_xact_lock key: the bytes of "cs-alert" as a signed 64-bit integer.
LOCK_KEY = int.from_bytes(b"cs-alert", "big", signed=True)
_TOKENS = (
    TraceEvent.input_tokens + TraceEvent.output_tokens + TraceEvent.cache_read_tokens + TraceEvent.cache_creation_tokens
)


def check(session: Session, config: Config, now: datetime, *, limits: AlertsConfig | None = None) -> int:
    """Enqueue the alerts (and resolutions) due now; return how many rows were enqueued.

    `limits` default to the config's `alerts` section. The caller commits. Returns 0 at once
    on PostgreSQL while another replica is checking.
    """
    if not _take_turn(session):
        return 0
    now = utc(now)
    limits = limits or config.alerts
    sent = _budgets(session, config, limits.budget_share, now)
    sent += _backlog(session, PENDING_APPROVALS, _pending(session), limits.pending_max, now)
    sent += _backlog(session, OUTBOX_BACKLOG, _undelivered(session), limits.outbox_max, now)
    sent += _fatigue(session, config, limits, now)
    return sent


def _take_turn(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY}).scalar_one())


def _enqueue(session: Session, alert: Message, now: datetime) -> int:
    outbox.enqueue(session, alert, now)
    return 1


# -- budgets --------------------------------------------------------------------------------


def _budgets(session: Session, config: Config, share: float, now: datetime) -> int:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    usage = per_task_type(daily_usage(session, midnight.date()))
    sent_today = {
        (payload.get("kind"), payload.get("task_type"))
        for payload in session.scalars(
            select(OutboxMessage.payload).where(
                OutboxMessage.ordering_key == ORDERING_KEY,
                OutboxMessage.kind == ALERT_KIND,
                OutboxMessage.created_at >= midnight,
            )
        )
    }
    sent = 0
    for name, task_type in config.task_types.items():
        tokens, cost = (today := usage.get(name, Usage())).tokens, today.cost_usd
        limits: tuple[tuple[BudgetKind, float, float | None], ...] = (
            (BUDGET_TOKENS, tokens, task_type.budget.daily_max_tokens),
            (BUDGET_COST, cost, task_type.budget.daily_max_cost_usd),
        )
        for kind, used, limit in limits:
            if limit is None or used <= 0 or used < share * limit or (kind, name) in sent_today:
                continue
            top = _top_task(session, name, kind, midnight)
            alert = BudgetAlert(
                kind,
                FIRING,
                name,
                midnight.date().isoformat(),
                used,
                limit,
                round(used / limit, 4),
                share,
                top[0] if top else None,
                top[1] if top else None,
            )
            sent += _enqueue(session, alert, now)
    return sent


def _top_task(session: Session, task_type: str, kind: str, midnight: datetime) -> tuple[str, float] | None:
    """The task that used the most today (public id, amount): where to start looking."""
    amount = func.sum(_TOKENS if kind == BUDGET_TOKENS else TraceEvent.cost_usd)
    row = session.execute(
        select(Task.public_id, amount)
        .join(TraceEvent, TraceEvent.task_id == Task.id)
        .where(TraceEvent.task_type == task_type, TraceEvent.kind == "model_call", TraceEvent.at >= midnight)
        .group_by(Task.public_id)
        .order_by(amount.desc(), Task.public_id)
        .limit(1)
    ).first()
    return None if row is None else (row[0], float(row[1] or 0))


# -- backlogs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    count: int
    oldest_at: datetime | None = None
    by_task_type: dict[str, int] | None = None
    oldest_action_public_id: str | None = None
    last_error: str | None = None


def _pending(session: Session) -> Backlog:
    pending = Action.state == ActionState.PENDING.value
    by_type = dict(
        session.execute(
            select(Action.task_type, func.count()).where(pending).group_by(Action.task_type).order_by(Action.task_type)
        ).all()
    )
    oldest = session.execute(
        select(Action.public_id, Action.created_at).where(pending).order_by(Action.created_at, Action.id).limit(1)
    ).first()
    if oldest is None:
        return Backlog(sum(by_type.values()), None, by_type)
    return Backlog(sum(by_type.values()), oldest[1], by_type, oldest_action_public_id=oldest[0])


def _undelivered(session: Session) -> Backlog:
    undelivered = OutboxMessage.delivered_at.is_(None)
    count, oldest = session.execute(select(func.count(), func.min(OutboxMessage.created_at)).where(undelivered)).one()
    last_error = session.scalars(
        select(OutboxMessage.last_error)
        .where(undelivered, OutboxMessage.last_error.is_not(None))
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    return Backlog(int(count), oldest, last_error=None if last_error is None else last_error[:200])


def _backlog(session: Session, kind: BacklogKind, backlog: Backlog, threshold: int, now: datetime) -> int:
    firing = _open(session, kind)
    if not firing and backlog.count > threshold:
        return _enqueue(session, _backlog_alert(kind, FIRING, backlog, threshold), now)
    if firing and backlog.count <= threshold * CLEAR_RATIO:
        return _enqueue(session, _backlog_alert(kind, RESOLVED, backlog, threshold), now)
    return 0


def _open(session: Session, kind: str) -> bool:
    """Whether the newest alert of `kind` fired and was not resolved since."""
    newest = session.scalars(
        select(OutboxMessage.payload)
        .where(
            OutboxMessage.ordering_key == ORDERING_KEY,
            OutboxMessage.kind == ALERT_KIND,
            OutboxMessage.payload["kind"].as_string() == kind,
        )
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    return newest is not None and newest.get("state") == FIRING


# -- approvers approving too fast ----------------------------------------------------------


def _fatigue(session: Session, config: Config, limits: AlertsConfig, now: datetime) -> int:
    """Each person whose share of fast approvals passes `fast_approval_share` (with at least
    `fast_approval_min` approvals in `fast_approval_window`): one alert when it does, a resolution
    once it is back to CLEAR_RATIO of the threshold (or they approved too few to say)."""
    window = limits.fast_approval_window
    found = {s.approver: s for s in fatigue.signals(session, now - window, fatigue.min_read_times(config))}
    opened, sent = _open_fatigue(session), 0
    for approver in sorted(set(found) | opened):
        signals = found.get(approver)
        over = signals is not None and signals.approvals >= limits.fast_approval_min
        share = signals.fast_share if signals is not None else 0.0
        firing = approver in opened
        if not firing and over and share > limits.fast_approval_share:
            state: AlertState = FIRING
        elif firing and (not over or share <= limits.fast_approval_share * CLEAR_RATIO):
            state = RESOLVED
        else:
            continue
        alert = FatigueAlert(
            FAST_APPROVALS,
            state,
            approver,
            signals.approvals if signals else 0,
            signals.fast if signals else 0,
            round(share, 4),
            limits.fast_approval_share,
            window.total_seconds() / 86400,
            signals.longest_fast_streak if signals else 0,
            signals.median_read_s if signals else None,
        )
        sent += _enqueue(session, alert, now)
    return sent


def _open_fatigue(session: Session) -> set[str]:
    """The people whose newest fast-approval alert fired and was not resolved since."""
    query = select(OutboxMessage.payload).where(
        OutboxMessage.ordering_key == ORDERING_KEY,
        OutboxMessage.kind == ALERT_KIND,
        OutboxMessage.payload["kind"].as_string() == FAST_APPROVALS,
    )
    newest: dict[str, bool] = {}
    for payload in session.scalars(query.order_by(OutboxMessage.id.desc())):
        person = payload.get("approver")
        if isinstance(person, str):
            newest.setdefault(person, payload.get("state") == FIRING)
    return {person for person, firing in newest.items() if firing}


def _backlog_alert(kind: BacklogKind, state: AlertState, backlog: Backlog, threshold: int) -> BacklogAlert:
    oldest_at = backlog.oldest_at.isoformat(timespec="seconds") if backlog.oldest_at else None
    return BacklogAlert(
        kind,
        state,
        backlog.count,
        threshold,
        oldest_at,
        backlog.by_task_type,
        backlog.oldest_action_public_id,
        backlog.last_error,
    )
