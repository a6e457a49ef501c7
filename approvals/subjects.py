"""What a click names: the action or proposal behind a public id, read for the adapter that
shows or routes it. Reads only; who may decide is `decisions.py`'s and `proposals.py`'s to say.
Another workspace's action is treated as missing (`workspaces.py`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals.errors import ActionNotFound, NotEditable
from approvals.workspaces import visible_tasks
from core.models import Action, Proposal, Task


def editable(
    session: Session, action_public_id: str, team: str | None
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """The tool, drafted params and (for an open tool) params schema an edit form starts from;
    `ActionNotFound` when no action with that public id is visible to `team` (so not even its
    params are shown); `NotEditable` when its client would never see an edit."""
    action = session.scalars(
        select(Action)
        .join(Task, Task.id == Action.task_id)
        .where(Action.public_id == action_public_id, visible_tasks(team))
    ).first()
    if action is None:
        raise ActionNotFound(action_public_id)
    if not action.editable:
        raise NotEditable(action_public_id)
    return action.tool, dict(action.params), action.params_schema


def quorum_of(session: Session, action_public_id: str, team: str | None) -> int:
    """How many approvers an action needs (its resolve form says so for running it again);
    `ActionNotFound` when no action with that public id is visible to `team`."""
    quorum = session.scalar(
        select(Action.quorum)
        .join(Task, Task.id == Action.task_id)
        .where(Action.public_id == action_public_id, visible_tasks(team))
    )
    if quorum is None:
        raise ActionNotFound(action_public_id)
    return quorum


def tool_of(session: Session, action_public_id: str) -> str | None:
    """The tool an action calls, or None when there is no such action."""
    return session.scalar(select(Action.tool).where(Action.public_id == action_public_id))


def task_type_of(session: Session, subject: type[Proposal] | type[Action], public_id: str) -> str | None:
    """The task type a proposal or an action belongs to, or None when there is none by that id."""
    return session.scalars(select(subject.task_type).where(subject.public_id == public_id)).first()
