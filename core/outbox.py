"""Writing outbox rows: the messages a state change causes, committed with it.

Domain packages describe *what* to tell people (`kind` + payload of ids and facts);
`bot/` renders and delivers it. Nothing here knows about Slack.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Action, OutboxMessage, Task


def enqueue(session: Session, kind: str, ordering_key: str, payload: dict[str, Any], now: datetime) -> OutboxMessage:
    message = OutboxMessage(kind=kind, ordering_key=ordering_key, payload=payload, created_at=now, available_at=now)
    session.add(message)
    return message


def workspace_of(session: Session, payload: dict[str, Any]) -> str | None:
    """The Slack workspace (team id) a message is for: that of its action's or task's task.
    None for messages of no task (promotion proposals, autonomy changes, alerts, audit heads)."""
    if isinstance(payload.get("action_id"), str):
        query = (
            select(Task.team_id).join(Action, Action.task_id == Task.id).where(Action.public_id == payload["action_id"])
        )
        return session.scalar(query)
    if isinstance(payload.get("task_id"), str):
        return session.scalar(select(Task.team_id).where(Task.public_id == payload["task_id"]))
    return None
