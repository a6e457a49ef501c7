"""Writing outbox rows: the messages a state change causes, committed with it.

Domain packages describe *what* to tell people (a `core.messages` value of ids and facts);
`bot/` renders and delivers it. Nothing here knows about Slack.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.messages import ActionMessage, Message, TaskMessage
from core.models import Action, OutboxMessage, Task


def enqueue(session: Session, message: Message, now: datetime) -> OutboxMessage:
    row = OutboxMessage(
        kind=message.KIND,
        ordering_key=message.ordering_key,
        payload=message.to_payload(),
        created_at=now,
        available_at=now,
    )
    session.add(row)
    return row


def workspace_of(session: Session, message: Message) -> str | None:
    """The Slack workspace (team id) a message is for: that of its action's or task's task.
    None for messages of no task (promotion proposals, autonomy changes, alerts, audit heads)."""
    if isinstance(message, ActionMessage):
        return action_workspace(session, message.action_public_id)
    if isinstance(message, TaskMessage):
        return session.scalar(select(Task.team_id).where(Task.public_id == message.task_public_id))
    return None


def action_workspace(session: Session, action_public_id: str) -> str | None:
    """The team id of the task of the action whose public id is `action_public_id`."""
    query = select(Task.team_id).join(Action, Action.task_id == Task.id).where(Action.public_id == action_public_id)
    return session.scalar(query)
