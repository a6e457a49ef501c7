"""Tasks: their states, how work starts, and what people can do to a running task
(extend its budget once, stop it).

Every state change is a compare-and-set with its audit event and outbox rows, as for actions.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from agent.errors import AgentError
from approvals import audit, transitions
from approvals.states import ActionState
from approvals.workspaces import visible_tasks
from core import outbox
from core.config import Config
from core.ids import new_id
from core.models import Action, Task

SYSTEM = "system"
UNROUTED = ""  # the task type of a task the router has not placed yet


class TaskState(StrEnum):
    RUNNING = "running"  # the model is due to be asked (next_step_at)
    WAITING = "waiting"  # for the actions of the current turn to end
    PAUSED = "paused"  # a budget or loop stop: a person extends or stops it
    STALLED = "stalled"  # the model has been unavailable too long; still retried
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
# Actions still on their way; their task waits for them.
OPEN_ACTION_STATES = (
    ActionState.DRAFTED,
    ActionState.PENDING,
    ActionState.SCHEDULED,
    ActionState.APPROVED,
    ActionState.EXECUTING,
    ActionState.UNKNOWN,
)


class TaskError(AgentError):
    """A task operation that cannot be done, naming the task and why. `code` is stable, for the ledger."""

    code = "refused"


class TaskNotFound(TaskError):
    """No task has that id, or none that the asking workspace may see."""

    code = "not_found"

    def __init__(self, task_id: str, team_id: str | None = None) -> None:
        self.task_id = task_id
        where = " in your workspace" if team_id is not None else ""
        super().__init__(f"no task {task_id!r}{where}")


def submit_task(
    session: Session,
    config: Config,
    task_type: str | None,
    text: str,
    *,
    now: datetime,
    requester: str | None = None,
    team_id: str | None = None,
    channel: str | None = None,
    thread_ts: str | None = None,
) -> Task:
    """Start a task: it is picked up by the drafting loop at once. Without a task type, the
    router model picks one first (or the requester is asked)."""
    if task_type is not None and task_type not in config.task_types:
        known = ", ".join(sorted(config.task_types))
        raise TaskError(f"unknown task type {task_type!r} (known: {known})")
    if not text.strip():
        raise TaskError("a task needs a request text")
    task = Task(
        public_id=new_id("tsk"),
        task_type=task_type or UNROUTED,
        requester=requester,
        team_id=team_id,
        channel=channel,
        thread_ts=thread_ts,
        request_text=text,
        state=TaskState.RUNNING.value,
        # Slack text is untrusted: it only ever travels as the user's message content.
        messages=[{"role": "user", "content": text}],
        next_step_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    session.flush()
    record(session, task, "task.submitted", actor=requester or SYSTEM, now=now, to_state=task.state, note=text[:500])
    return task


def move(
    session: Session,
    task: Task,
    target: TaskState,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
    values: dict[str, Any] | None = None,
    message: str | None = None,
    payload: dict[str, Any] | None = None,
    fence_owner: bool = False,
) -> None:
    """Compare-and-set `task` to `target` (fenced on this process's lease if asked)."""
    current = task.state
    changes: dict[str, Any] = {"state": target.value, "updated_at": now, **(values or {})}
    where = [Task.id == task.id, Task.state == current]
    if fence_owner:
        where.append(Task.lease_owner == task.lease_owner)
    result = session.execute(update(Task).where(*where).values(**changes).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TaskError(f"task {task.public_id!r} is no longer {current!r}")
    for name, value in changes.items():
        set_committed_value(task, name, value)
    record(
        session,
        task,
        f"task.{target.value}",
        actor=actor,
        now=now,
        from_state=current,
        to_state=target.value,
        note=note,
        message=message,
        payload=payload,
    )


def record(
    session: Session,
    task: Task,
    kind: str,
    *,
    actor: str,
    now: datetime,
    from_state: str | None = None,
    to_state: str | None = None,
    note: str | None = None,
    message: str | None = None,
    payload: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        audit.AuditEntry(
            kind=kind,
            actor=actor,
            at=now,
            task_id=task.public_id,
            task_type=task.task_type,
            from_state=from_state,
            to_state=to_state,
            note=note,
            data=data,
        ),
    )
    if message:
        outbox.enqueue(session, message, task.public_id, {"task_id": task.public_id, **(payload or {})}, now)


def get_task(session: Session, task_id: str, *, lock: bool = False, team_id: str | None = None) -> Task:
    """The task `task_id`; with `team_id` (a request from Slack), only if that workspace may see it."""
    query = select(Task).where(Task.public_id == task_id, visible_tasks(team_id))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    task = session.scalars(query).first()
    if task is None:
        raise TaskNotFound(task_id, team_id)
    return task


def choose_task_type(
    session: Session,
    config: Config,
    task_id: str,
    task_type: str,
    actor: str,
    now: datetime,
    *,
    team_id: str | None = None,
) -> Task:
    """The requester answers "which kind of work is this?" for a task the router could not place."""
    task = get_task(session, task_id, lock=True, team_id=team_id)
    if task.task_type != UNROUTED or task.state != TaskState.PAUSED:
        raise TaskError(f"task {task_id!r} already has a task type ({task.task_type!r})")
    if task.requester is not None and actor != task.requester:
        raise TaskError(f"only the requester ({task.requester}) chooses the task type of {task_id!r}")
    if task_type not in config.task_types:
        raise TaskError(f"unknown task type {task_type!r} (known: {', '.join(sorted(config.task_types))})")
    move(
        session,
        task,
        TaskState.RUNNING,
        actor=actor,
        now=now,
        note=f"task type chosen: {task_type}",
        values={"task_type": task_type, "paused_reason": None, "next_step_at": now},
    )
    return task


def extend_budget(session: Session, task_id: str, actor: str, now: datetime) -> Task:
    """Let a task paused by its budget run on, once, with its budget doubled."""
    return extend_locked(session, get_task(session, task_id, lock=True), actor, now)


def extend_locked(session: Session, task: Task, actor: str, now: datetime) -> Task:
    """`extend_budget` of a task the caller has read with `get_task(..., lock=True)`."""
    task_id = task.public_id
    if task.state != TaskState.PAUSED or not (task.paused_reason or "").startswith("budget"):
        raise TaskError(f"task {task_id!r} is {task.state}, not paused by its budget")
    if task.budget_extensions >= 1:
        raise TaskError(f"the budget of task {task_id!r} was already extended once; stop it or start a new task")
    move(
        session,
        task,
        TaskState.RUNNING,
        actor=actor,
        now=now,
        note="budget extended once",
        values={"budget_extensions": task.budget_extensions + 1, "paused_reason": None, "next_step_at": now},
        message="task.resumed",
    )
    return task


def stop_task(session: Session, task_id: str, actor: str, now: datetime, reason: str = "stopped by a person") -> Task:
    """Cancel a task and every action of it that has not started running."""
    return stop_locked(session, get_task(session, task_id, lock=True), actor, now, reason)


def stop_locked(session: Session, task: Task, actor: str, now: datetime, reason: str = "stopped by a person") -> Task:
    """`stop_task` of a task the caller has read with `get_task(..., lock=True)`."""
    task_id = task.public_id
    if task.state in FINISHED:
        raise TaskError(f"task {task_id!r} is already {task.state}")
    open_actions = session.scalars(
        select(Action)
        .where(
            Action.task_id == task.id,
            Action.state.in_([ActionState.DRAFTED, ActionState.PENDING, ActionState.SCHEDULED, ActionState.APPROVED]),
        )
        .with_for_update()
    ).all()
    for action in open_actions:
        transitions.transition(
            session,
            action,
            ActionState.CANCELLED,
            actor=actor,
            now=now,
            note=reason,
            messages=[transitions.Message("action.decided", {"decision": "cancel", "by": actor})],
        )
    move(
        session,
        task,
        TaskState.CANCELLED,
        actor=actor,
        now=now,
        note=reason,
        values={"lease_owner": None, "next_step_at": None},
        message="task.finished",
    )
    return task
