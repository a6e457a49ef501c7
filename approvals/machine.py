"""The write recipe of every lifecycle (`core.states`): move a row with a compare-and-set
fenced on the state this session saw, and write its audit event and outbox messages in the
caller's transaction; all of it, or nothing.

`move` works for actions, tasks, timers, proposals and questions alike: the row's type names its
machine. `record` writes an event about a row (and queues its messages) without a move.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from approvals import audit, external_changes
from core import outbox
from core.db import compare_and_set
from core.errors import StaleState
from core.messages import Message
from core.models import Action, Proposal, Question, Task, Timer
from core.states import ACTION, PROPOSAL, QUESTION, TASK, TIMER, Machine

Row = Action | Task | Timer | Proposal | Question
MACHINES: dict[type[Any], Machine[Any]] = {
    Action: ACTION,
    Task: TASK,
    Timer: TIMER,
    Proposal: PROPOSAL,
    Question: QUESTION,
}


def move(
    session: Session,
    row: Row,
    target: StrEnum,
    *,
    actor: str,
    now: datetime,
    kind: str | None = None,
    audited: bool = True,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    fence: Sequence[Any] = (),
    messages: Sequence[Message] = (),
) -> None:
    """Move `row` from its current state to `target`, setting `values` too.

    Raises `InvalidTransition` if its lifecycle forbids the move and `StaleState` if the row
    is no longer in the state this session saw (or fails `fence`, e.g. a lease); in both
    cases nothing is written. The audit event is `kind` (default `{machine}.{target}`);
    `audited=False` leaves it to an event the caller writes (a timer's is its action's).
    """
    machine = MACHINES[type(row)]
    current, subject = row.state, _subject(row)
    machine.check(subject, current, target)
    model = type(row)
    changes: dict[str, Any] = {"state": target.value, **(values or {})}
    if "updated_at" in model.__table__.columns:
        changes.setdefault("updated_at", now)
    if not compare_and_set(session, model, row.id, model.state == current, *fence, **changes):
        raise StaleState(machine.name, subject, current)
    # The row is written; update the in-memory copy without marking it dirty.
    for name, value in changes.items():
        set_committed_value(row, name, value)
    if audited:
        kind = kind or f"{machine.name}.{target.value}"
        record(
            session,
            row,
            kind,
            actor=actor,
            now=now,
            from_state=current,
            to_state=target.value,
            note=note,
            data=data,
            messages=messages,
        )
    else:
        enqueue(session, messages, now)
        if isinstance(row, Action) and row.api_client_id is not None:
            external_changes.changed(session, row, current, target.value, now, note)


def record(
    session: Session,
    row: Row,
    kind: str,
    *,
    actor: str,
    now: datetime,
    from_state: str | None = None,
    to_state: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    messages: Sequence[Message] = (),
) -> None:
    """Audit an event about `row` (and queue its messages) without changing its state. An
    action's event names the state it is in unless `to_state` says otherwise."""
    if isinstance(row, Action):
        about: dict[str, Any] = {
            "task_public_id": action_task_public_id(session, row),
            "action_public_id": row.public_id,
            "params_hash": row.params_hash,
        }
        to_state = to_state or row.state
    elif isinstance(row, Task):
        about = {"task_public_id": row.public_id}
    else:
        about = {}
    if isinstance(row, Question):  # the ledger has no column for it: its events carry it in data
        data = {"question_id": row.public_id, **(data or {})}
    task_type = row.task_type if not isinstance(row, Timer) else None
    entry = audit.AuditEntry(
        kind=kind,
        actor=actor,
        at=now,
        task_type=task_type,
        from_state=from_state,
        to_state=to_state,
        note=note,
        data=data,
        **about,
    )
    audit.record(session, entry)
    enqueue(session, messages, now)
    if isinstance(row, Action) and row.api_client_id is not None and from_state and to_state != from_state:
        assert to_state is not None
        external_changes.changed(session, row, from_state, to_state, now, note)


def enqueue(session: Session, messages: Sequence[Message], now: datetime) -> None:
    for message in messages:
        outbox.enqueue(session, message, now)


def _subject(row: Row) -> str:
    return row.public_id if not isinstance(row, Timer) else str(row.id)


_TASK_IDS = "countersign.task_public_ids"


def action_task_public_id(session: Session, action: Action) -> str | None:
    """The public id of the action's task, read once per session (it never changes; the
    session's identity map holds objects weakly, so `get` alone would read it again per event)."""
    known: dict[int, str | None] = session.info.setdefault(_TASK_IDS, {})
    if action.task_id not in known:
        task = session.get(Task, action.task_id)  # no query when the session holds the task
        known[action.task_id] = task.public_id if task else None
    return known[action.task_id]


@event.listens_for(Session, "after_soft_rollback")
def _forget_task_ids(session: Session, _previous: Any) -> None:
    session.info.pop(_TASK_IDS, None)  # a rolled-back task's id may be given to another
