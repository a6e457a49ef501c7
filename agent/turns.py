"""The end of a tool turn: once none of the actions a model reply drafted is in flight, their
outcomes go back into the task's conversation as `tool_result`s and the model is asked next.

The executor does it in the transaction that ends a turn's last action; the runner's resume
does it for turns that ended otherwise (a rejection, a veto, an expiry, another process's
executor, a crash between the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.conversation import tool_result
from agent.tasks import move
from core.ids import SYSTEM
from core.models import Action, Decision, Task
from core.states import IN_FLIGHT, TaskState


def hand_back(session: Session, task: Task, now: datetime, actions: Sequence[Action] | None = None) -> bool:
    """If `task` (locked by the caller) waits for its turn and none of the turn's actions is in
    flight any more, append their `tool_result`s as the next user message and set it running;
    whether it did. `actions`: the turn's, if the caller has read them in this transaction (an
    ended action never moves again, so a read showing none in flight is final; one showing some
    may be older than the task's lock, and they are read again)."""
    if task.state != TaskState.WAITING:
        return False
    if actions is None or any(action.state in IN_FLIGHT for action in actions):
        query = select(Action).where(Action.task_id == task.id, Action.turn == task.turn).order_by(Action.id)
        actions = session.scalars(query.execution_options(populate_existing=True)).all()
    if any(action.state in IN_FLIGHT for action in actions):
        return False
    message = {"role": "user", "content": tool_results(session, actions)}
    values = {"messages": [*task.messages, message], "next_step_at": now}
    move(session, task, TaskState.RUNNING, actor=SYSTEM, now=now, values=values)
    return True


def tool_results(session: Session, actions: Sequence[Action]) -> list[dict[str, Any]]:
    """The `tool_result` of each action, in order. The decisions people made on them are read in
    one query, and not at all for a turn of autonomous actions that ran without an error (nobody
    decides those; one whose outcome was unknown keeps its error and may have been resolved)."""
    decided = [action.id for action in actions if action.mode != "auto" or action.error is not None]
    decisions: dict[int, list[Decision]] = {action_id: [] for action_id in decided}
    if decided:
        query = select(Decision).where(Decision.action_id.in_(decided)).order_by(Decision.id)
        for decision in session.scalars(query):
            decisions[decision.action_id].append(decision)
    return [tool_result(action, decisions.get(action.id, [])) for action in actions]
