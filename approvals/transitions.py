"""Moving an action through its lifecycle: compare-and-set, audit event and outbox rows,
all in the caller's transaction, or nothing at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from approvals import audit
from approvals.errors import StaleState
from approvals.states import ActionState, check_transition
from core import outbox
from core.models import Action, Task


@dataclass(frozen=True)
class Message:
    """An outbox message a transition causes; delivered in order per action."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


def transition(
    session: Session,
    action: Action,
    target: ActionState,
    *,
    actor: str,
    now: datetime,
    kind: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    messages: Sequence[Message] = (),
    extra_where: Sequence[Any] = (),
) -> None:
    """Move `action` from its current state to `target`.

    Raises `InvalidTransition` if the lifecycle forbids the move and `StaleState` if the
    row is no longer in the state this session saw (or fails `extra_where`, e.g. a lease
    fence); in both cases nothing is written.
    """
    current = action.state
    check_transition(action.public_id, current, target)
    changes: dict[str, Any] = {"state": target.value, "updated_at": now, **(values or {})}
    result = session.execute(
        update(Action)
        .where(Action.id == action.id, Action.state == current, *extra_where)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleState(action.public_id, current)
    # The row is written; update the in-memory copy without marking it dirty.
    for name, value in changes.items():
        set_committed_value(action, name, value)
    record(
        session,
        action,
        kind or f"action.{target.value}",
        actor=actor,
        now=now,
        from_state=current,
        note=note,
        data=data,
        messages=messages,
    )


def record(
    session: Session,
    action: Action,
    kind: str,
    *,
    actor: str,
    now: datetime,
    from_state: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    messages: Sequence[Message] = (),
) -> None:
    """Audit an event about `action` (and queue its messages) without changing its state."""
    audit.record(
        session,
        audit.AuditEntry(
            kind=kind,
            actor=actor,
            at=now,
            task_id=action_task_public_id(session, action),
            action_id=action.public_id,
            task_type=action.task_type,
            params_hash=action.params_hash,
            from_state=from_state,
            to_state=action.state,
            note=note,
            data=data,
        ),
    )
    for message in messages:
        outbox.enqueue(session, message.kind, action.public_id, {"action_id": action.public_id, **message.payload}, now)


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
