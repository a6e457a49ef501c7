"""Tasks that stopped moving: no progress (task or any of its actions) for the task type's
`stall_after` is escalated to its approvers and the admins, once per stall, saying what it is
stuck on. Waiting for a person's decision is not a stall: the action's chain handles that."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from approvals import machine
from core.config import Config
from core.ids import SYSTEM
from core.messages import StallEscalated
from core.models import Action, Task
from core.states import MOVING, WITH_EXECUTOR, ActionState, TaskState

BATCH = 100


def sweep(session: Session, config: Config, now: datetime) -> int:
    """Escalate every stalled task found; returns how many were escalated."""
    escalated = 0
    for name, task_type in config.task_types.items():
        cutoff = now - task_type.stall_after
        candidates = session.scalars(
            select(Task)
            .where(
                Task.task_type == name,
                Task.state.in_(MOVING),
                Task.updated_at <= cutoff,
                or_(Task.stall_escalated_at.is_(None), Task.stall_escalated_at < Task.updated_at),
            )
            .order_by(Task.updated_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        for task in candidates:
            last_action = session.scalar(select(func.max(Action.updated_at)).where(Action.task_id == task.id))
            if last_action is not None and last_action > cutoff:
                continue  # its actions are moving
            task.stall_escalated_at = now  # once per stall, whatever we find
            what = stuck_on(session, task)
            if what is None:
                continue
            targets = [*task_type.approvers, *(p for p in config.slack.admins if p not in task_type.approvers)]
            machine.record(
                session,
                task,
                "task.stall_escalated",
                actor=SYSTEM,
                now=now,
                note=what,
                data={"targets": targets},
                messages=[StallEscalated(task.public_id, what, targets)],
            )
            escalated += 1
    return escalated


def stuck_on(session: Session, task: Task) -> str | None:
    if task.state == TaskState.STALLED:
        since = task.unavailable_since.isoformat(timespec="seconds") if task.unavailable_since else "a while"
        return f"the model has been unavailable since {since}"
    actions = session.scalars(select(Action).where(Action.task_id == task.id, Action.turn == task.turn)).all()
    for action in actions:
        if action.state == ActionState.UNKNOWN:
            return (
                f"action {action.public_id} ({action.tool}) crashed mid-run and was not re-run: "
                "a person must check whether it took effect"
            )
    for action in actions:
        if action.state in WITH_EXECUTOR:
            return (
                f"action {action.public_id} ({action.tool}) has been {action.state} since "
                f"{action.updated_at.isoformat(timespec='seconds')}: is the executor running?"
            )
    if task.state == TaskState.RUNNING:
        return f"the next model step has not happened since {task.updated_at.isoformat(timespec='seconds')}"
    return None
