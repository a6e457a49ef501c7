"""Retention: delete old operational rows in small batches, never the audit ledger.

What goes, once older than the cutoff: model-call and other trace events (by `at`), outbox
rows that were delivered (by `delivered_at`), handled Slack event ids (by `received_at`),
finished timers (`done`, by `updated_at`) whose action no longer waits for a
decision, people's connect links (by `expires_at`: used or not, they work no more), and
delivered webhooks of the actions API (by `delivered_at`; undelivered ones stay).
What stays: tasks, actions, decisions, proposals, posted-message ids, undelivered outbox rows,
the newest published audit head (the ledger compares the next head with it, and `audit
verify` checks the chain against it), and the audit ledger, whose export is the archive path
(`countersign audit export`) and which its append-only triggers would not let go anyway.

Each batch is one short transaction of one `DELETE … WHERE key IN (SELECT … LIMIT n)`, so a
serving process beside it waits at most one batch for a lock. On PostgreSQL the inner
select takes `FOR UPDATE SKIP LOCKED`: rows a server holds are left for the next prune
instead of waited for. Imports nothing from the other countersign packages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from core.clock import utc
from core.db import make_sessionmaker
from core.errors import CoreError
from core.messages import AUDIT_ORDERING_KEY, AuditHead
from core.models import Action, Base, ConnectState, OutboxMessage, SlackEvent, Timer, TraceEvent, WebhookDelivery
from core.states import OPEN_FOR_DECISION, TimerState

DEFAULT_BATCH = 1000
# Daily budgets count today's model calls from trace_events: a cutoff inside today would
# hand a task type its daily budget back.
MIN_AGE = timedelta(days=1)
# The newest of these rows is what `publish_head` compares the ledger's head with, and what
# `verify` checks the chain against.
AUDIT_HEAD_KIND, AUDIT_HEAD_ORDERING_KEY = AuditHead.KIND, AUDIT_ORDERING_KEY
FINISHED_TIMER_STATES = (TimerState.DONE,)


class RetentionError(CoreError, ValueError):
    """A prune that would delete what must stay."""


Condition = Callable[[Session, datetime], ColumnElement[bool]]


def _trace_events(_session: Session, cutoff: datetime) -> ColumnElement[bool]:
    return TraceEvent.at < cutoff


def _outbox(session: Session, cutoff: datetime) -> ColumnElement[bool]:
    delivered = OutboxMessage.delivered_at.is_not(None) & (OutboxMessage.delivered_at < cutoff)
    newest_head = session.execute(
        select(func.max(OutboxMessage.id)).where(
            OutboxMessage.ordering_key == AUDIT_HEAD_ORDERING_KEY, OutboxMessage.kind == AUDIT_HEAD_KIND
        )
    ).scalar_one_or_none()
    return delivered if newest_head is None else delivered & (OutboxMessage.id != newest_head)


def _slack_events(_session: Session, cutoff: datetime) -> ColumnElement[bool]:
    return SlackEvent.received_at < cutoff


def _timers(_session: Session, cutoff: datetime) -> ColumnElement[bool]:
    # Its chain may still serve an action that waits (acknowledge reads the chain's targets).
    still_open = exists().where(Action.id == Timer.action_id, Action.state.in_(OPEN_FOR_DECISION))
    return Timer.state.in_(FINISHED_TIMER_STATES) & (Timer.updated_at < cutoff) & ~still_open


def _webhook_deliveries(_session: Session, cutoff: datetime) -> ColumnElement[bool]:
    return WebhookDelivery.delivered_at.is_not(None) & (WebhookDelivery.delivered_at < cutoff)


def _connect_states(_session: Session, cutoff: datetime) -> ColumnElement[bool]:
    return ConnectState.expires_at < cutoff


# table name → (its model, its key column, which of its rows are old enough to go)
TABLES: dict[str, tuple[type[Base], InstrumentedAttribute[Any], Condition]] = {
    "trace_events": (TraceEvent, TraceEvent.id, _trace_events),
    "outbox": (OutboxMessage, OutboxMessage.id, _outbox),
    "slack_events": (SlackEvent, SlackEvent.event_id, _slack_events),
    "timers": (Timer, Timer.id, _timers),
    "connect_states": (ConnectState, ConnectState.id, _connect_states),
    "webhook_deliveries": (WebhookDelivery, WebhookDelivery.id, _webhook_deliveries),
}


def prune(engine: Engine, older_than: timedelta, now: datetime, batch: int = DEFAULT_BATCH) -> dict[str, int]:
    """Delete rows older than `now - older_than`, `batch` rows per transaction; count per table.

    Raises `RetentionError` for an age under one day (today's traces feed the daily budgets)
    and `ValueError` for a batch under 1. Never touches `audit_events`.
    """
    if older_than < MIN_AGE:
        raise RetentionError(f"keep at least one day of history, got older_than={older_than!r}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch!r}")
    cutoff = utc(now) - older_than
    sessions = make_sessionmaker(engine)
    counts: dict[str, int] = {}
    for name, (model, key, condition) in TABLES.items():
        counts[name] = 0
        while True:
            with sessions.begin() as session:
                deleted = _delete_batch(session, model, key, condition(session, cutoff), batch)
            counts[name] += deleted
            if deleted < batch:
                break
    return counts


def _delete_batch(
    session: Session, model: type[Base], key: InstrumentedAttribute[Any], where: ColumnElement[bool], batch: int
) -> int:
    chosen = select(key).where(where).limit(batch)
    if session.get_bind().dialect.name == "postgresql":
        chosen = chosen.with_for_update(of=model, skip_locked=True)
    statement = delete(model).where(key.in_(chosen)).execution_options(synchronize_session=False)
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)
