"""Tasks: their states, how work starts, and what people can do to a running task
(extend its budget once, stop it).

Every state change is `approvals.machine.move`: the lifecycle is `core.states.TASK`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.errors import AgentError
from approvals import machine
from approvals.workspaces import visible_tasks
from core.config import Config
from core.errors import StaleState
from core.ids import SYSTEM, new_id
from core.messages import ActionDecided, Message, TaskFinished, TaskResumed
from core.models import Action, Task
from core.states import FINISHED, NOT_STARTED, ActionState, TaskState

UNROUTED = ""  # the task type of a task the router has not placed yet


class TaskError(AgentError):
    """A task operation that cannot be done, naming the task and why. `code` is stable, for the ledger."""

    code = "refused"


class TaskNotFound(TaskError):
    """No task has that id, or none that the asking workspace may see."""

    code = "not_found"

    def __init__(self, task_public_id: str, team_id: str | None = None) -> None:
        self.task_public_id = task_public_id
        where = " in your workspace" if team_id is not None else ""
        super().__init__(f"no task {task_public_id!r}{where}")


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
    if task_type is not None and not config.task_types[task_type].tools:
        # Its tools are the ones API clients bring (mcp-gate, the Claude Code hook): an agent has none.
        raise TaskError(f"task type {task_type!r} has only open tools: its actions come from API clients, not agents")
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
    machine.record(
        session, task, "task.submitted", actor=requester or SYSTEM, now=now, to_state=task.state, note=text[:500]
    )
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
    messages: Sequence[Message] = (),
    fence_owner: bool = False,
) -> None:
    """Move `task` to `target` (`approvals.machine.move`, fenced on this process's lease if
    asked). A lost compare-and-set is a `TaskError`, for the person whose click lost it."""
    fence = [Task.lease_owner == task.lease_owner] if fence_owner else []
    try:
        machine.move(
            session, task, target, actor=actor, now=now, note=note, values=values, fence=fence, messages=messages
        )
    except StaleState as exc:
        raise TaskError(str(exc)) from None


def get_task(session: Session, task_public_id: str, *, lock: bool = False, team_id: str | None = None) -> Task:
    """The task `task_public_id`; with `team_id` (a request from Slack), only if that workspace may see it."""
    query = select(Task).where(Task.public_id == task_public_id, visible_tasks(team_id))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    task = session.scalars(query).first()
    if task is None:
        raise TaskNotFound(task_public_id, team_id)
    return task


def choose_task_type(
    session: Session,
    config: Config,
    task_public_id: str,
    task_type: str,
    actor: str,
    now: datetime,
    *,
    team_id: str | None = None,
) -> Task:
    """The requester answers "which kind of work is this?" for a task the router could not place."""
    task = get_task(session, task_public_id, lock=True, team_id=team_id)
    if task.task_type != UNROUTED or task.state != TaskState.PAUSED:
        raise TaskError(f"task {task_public_id!r} already has a task type ({task.task_type!r})")
    if task.requester is not None and actor != task.requester:
        raise TaskError(f"only the requester ({task.requester}) chooses the task type of {task_public_id!r}")
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


def extend_budget(session: Session, task_public_id: str, actor: str, now: datetime) -> Task:
    """Let a task paused by its budget run on, once, with its budget doubled."""
    return extend_locked(session, get_task(session, task_public_id, lock=True), actor, now)


def extend_locked(session: Session, task: Task, actor: str, now: datetime) -> Task:
    """`extend_budget` of a task the caller has read with `get_task(..., lock=True)`."""
    task_public_id = task.public_id
    if task.state != TaskState.PAUSED or not (task.paused_reason or "").startswith("budget"):
        raise TaskError(f"task {task_public_id!r} is {task.state}, not paused by its budget")
    if task.budget_extensions >= 1:
        raise TaskError(f"the budget of task {task_public_id!r} was already extended once; stop it or start a new task")
    move(
        session,
        task,
        TaskState.RUNNING,
        actor=actor,
        now=now,
        note="budget extended once",
        values={"budget_extensions": task.budget_extensions + 1, "paused_reason": None, "next_step_at": now},
        messages=[TaskResumed(task_public_id)],
    )
    return task


def stop_task(
    session: Session, task_public_id: str, actor: str, now: datetime, reason: str = "stopped by a person"
) -> Task:
    """Cancel a task and every action of it that has not started running."""
    return stop_locked(session, get_task(session, task_public_id, lock=True), actor, now, reason)


def stop_locked(session: Session, task: Task, actor: str, now: datetime, reason: str = "stopped by a person") -> Task:
    """`stop_task` of a task the caller has read with `get_task(..., lock=True)`."""
    task_public_id = task.public_id
    if task.state in FINISHED:
        raise TaskError(f"task {task_public_id!r} is already {task.state}")
    open_actions = session.scalars(
        select(Action)
        .where(
            Action.task_id == task.id,
            Action.state.in_(NOT_STARTED),
        )
        .with_for_update()
    ).all()
    for action in open_actions:
        machine.move(
            session,
            action,
            ActionState.CANCELLED,
            actor=actor,
            now=now,
            note=reason,
            messages=[ActionDecided(action.public_id, "cancel", actor)],
        )
    move(
        session,
        task,
        TaskState.CANCELLED,
        actor=actor,
        now=now,
        note=reason,
        values={"lease_owner": None, "next_step_at": None},
        messages=[TaskFinished(task_public_id)],
    )
    return task
