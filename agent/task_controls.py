"""People acting on a running task from Slack: stopping it, extending its budget once.

Scoped and authorized like decisions on actions (`approvals.decisions`): a task of another
workspace is not found (`approvals.workspaces`); stopping is for the task's requester, an
approver of its task type or an admin; extending its budget is for an approver or an admin
only, since it lets the agent spend more than its requester was given. A refused try
changes nothing and is recorded in the ledger in its own transaction, like a refused
decision: a `decision.refused` event naming the task, what was attempted and a code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.tasks import TaskError, extend_locked, get_task, stop_locked
from approvals import audit, machine
from approvals.ports import Directory, is_listed_approver
from core import metrics
from core.clock import Clock
from core.config import Config
from core.models import Task

STOP, EXTEND = "stop_task", "extend_budget"
T = TypeVar("T")


class NotAllowedOnTask(TaskError):
    """The person may not do this to this task."""

    code = "not_allowed"

    def __init__(self, task_public_id: str, actor: str, attempted: str, who: str) -> None:
        self.task_public_id, self.actor, self.attempted = task_public_id, actor, attempted
        verb = "stop" if attempted == STOP else "extend the budget of"
        super().__init__(f"{actor} may not {verb} task {task_public_id!r}: only {who} may")


def stop(
    session: Session,
    config: Config,
    directory: Directory,
    task_public_id: str,
    actor: str,
    now: datetime,
    *,
    team_id: str | None,
) -> Task:
    task = get_task(session, task_public_id, lock=True, team_id=team_id)
    if actor != task.requester:
        _authorize(config, directory, task, actor, STOP, "its requester, an approver of its task type or an admin")
    return stop_locked(session, task, actor, now)


def extend(
    session: Session,
    config: Config,
    directory: Directory,
    task_public_id: str,
    actor: str,
    now: datetime,
    *,
    team_id: str | None,
) -> Task:
    task = get_task(session, task_public_id, lock=True, team_id=team_id)
    _authorize(config, directory, task, actor, EXTEND, "an approver of its task type or an admin")
    return extend_locked(session, task, actor, now)


def _authorize(config: Config, directory: Directory, task: Task, actor: str, attempted: str, who: str) -> None:
    task_type = config.task_types.get(task.task_type)
    people = [*(task_type.approvers if task_type else []), *config.slack.admins]
    if not is_listed_approver(actor, people, directory):
        raise NotAllowedOnTask(task.public_id, actor, attempted, who)


def controlled(
    sessions: sessionmaker[Session],
    clock: Clock,
    call: Callable[[Session], T],
    *,
    task_public_id: str,
    actor: str,
    attempted: str,
) -> T:
    """Run one person's action on a task in its own transaction. A refusal (`TaskError`) rolls it
    back, is recorded in the ledger in a transaction of its own, and is re-raised for the caller
    to tell the person."""
    with sessions() as session:
        try:
            with session.begin():
                return call(session)
        except TaskError as refusal:
            with session.begin():
                _record_refusal(session, refusal, task_public_id, actor, attempted, clock.now())
            raise


def _record_refusal(
    session: Session, refusal: TaskError, task_public_id: str, actor: str, attempted: str, now: datetime
) -> None:
    data = {"attempted": attempted, "code": refusal.code}
    # Another workspace's task is named too: the ledger is the operator's, and it is where a probe shows.
    task = session.scalars(select(Task).where(Task.public_id == task_public_id)).first()
    metrics.DECISIONS.labels(task.task_type if task else "unknown", "refused").inc()
    if task is None:  # the id someone sent is kept only in the note, never as a task id
        entry = audit.AuditEntry(kind="decision.refused", actor=actor, at=now, note=str(refusal), data=data)
        audit.record(session, entry)
        return
    machine.record(session, task, "decision.refused", actor=actor, now=now, note=str(refusal), data=data)
