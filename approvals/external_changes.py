"""State changes of actions asked for through the actions API: each queues a webhook delivery
(when the action has a `callback_url`) in the transaction of the change, and after the commit
this process's listeners (the long-polls waiting) are told which actions moved.
`approvals.machine` calls `changed` for every move of such an action."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from core.ids import new_id
from core.models import Action, WebhookDelivery
from core.states import ActionState

S = ActionState
_MOVED = "countersign.external.moved"
_listeners: list[Callable[[set[str]], None]] = []
_listeners_lock = threading.Lock()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def changed(session: Session, action: Action, from_state: str, to_state: str, now: datetime, note: str | None) -> None:
    """Called by `approvals.machine` for every move of an API action (in its transaction)."""
    session.info.setdefault(_MOVED, set()).add(action.public_id)
    if not action.callback_url:
        return
    payload: dict[str, Any] = {
        "action_id": action.public_id,
        "state": to_state,
        "from_state": from_state,
        "at": now.isoformat(),
        "params_hash": action.params_hash,
        "decided_by": action.decided_by,
        "decided_at": _iso(action.decided_at),
    }
    if to_state in (S.APPROVED, S.SCHEDULED, S.EXECUTING):
        payload["params"] = action.params
    if note is not None and to_state in (S.REJECTED, S.VETOED, S.EXPIRED, S.FAILED, S.UNKNOWN):
        payload["reason"] = note
    session.add(
        WebhookDelivery(
            delivery_id=new_id("dlv"),
            action_id=action.id,
            url=action.callback_url,
            payload=payload,
            created_at=now,
            available_at=now,
            attempts=0,
        )
    )


def listen(callback: Callable[[set[str]], None]) -> Callable[[], None]:
    """Call `callback` with the public ids of the API actions each commit in this process moved;
    returns a function that stops it."""
    with _listeners_lock:
        _listeners.append(callback)

    def stop() -> None:
        with _listeners_lock:
            if callback in _listeners:
                _listeners.remove(callback)

    return stop


@event.listens_for(Session, "after_commit")
def _tell_listeners(session: Session) -> None:
    moved: set[str] | None = session.info.pop(_MOVED, None)
    if not moved:
        return
    with _listeners_lock:
        listeners: Sequence[Callable[[set[str]], None]] = list(_listeners)
    for callback in listeners:
        callback(moved)


@event.listens_for(Session, "after_soft_rollback")
def _forget_moved(session: Session, _previous: Any) -> None:
    session.info.pop(_MOVED, None)
