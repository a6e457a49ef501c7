"""A tool's definition changed while actions of it waited: their approvers are asked again.

An approval binds to the params hash and to the tool's definition (`actions.tool_hash`, the
sha256 of its name, params schema and description: `core.canonical.tool_hash`), because what a
person approves is "this call of this tool", and a tool whose schema or description changed is
not the tool they read about. A `@tool`'s definition is in code and an external tool's in the
config, so it changes only across a restart or a deploy: `recheck` runs when a serving process
starts, with the registry it loaded, and for every action still open for a decision whose tool
is now defined otherwise:

- a pending one keeps waiting under the new definition (`tool_hash` moves to it,
  `tool_changed_at` is set): approvals given before stop counting (decisions count on the
  action's current definition), a card drawn before refuses its clicks (`ToolChanged`), and
  the card, updated in place, says "tool changed since drafted";
- one in its veto window goes back to pending, as a demotion re-gates it: nobody approved the
  new definition, so it must not run on the old window;

each with an `action.tool_changed` audit event naming both hashes. An open tool's definition
came with its action (its client's schema, `actions.params_schema`): it cannot change while the
action waits, so it is never rechecked. Rows from before definitions were recorded ('') are left
alone. A tool no longer defined at all is logged and left: its action cannot run either way.

Only a start rechecks, never a running process: during a rolling deploy, replicas on the old
and the new code would otherwise move the hash back and forth.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from approvals import chains, machine
from approvals.decisions import APPROVING_KINDS
from approvals.ports import ToolCatalog
from core.config import Config
from core.db import compare_and_set
from core.errors import StaleState
from core.ids import SYSTEM
from core.messages import CardPosted, CardUpdated
from core.models import Action, Decision
from core.states import ACTION, OPEN_FOR_DECISION, ActionState

log = logging.getLogger(__name__)
CHANGED = "action.tool_changed"


def recheck(session: Session, catalog: ToolCatalog, config: Config, now: datetime) -> list[str]:
    """Re-ask every open action whose tool is now defined otherwise than it waits under (in the
    caller's transaction); the public ids of those re-asked."""
    waiting = session.scalars(
        select(Action)
        .where(Action.state.in_(OPEN_FOR_DECISION), Action.tool_hash != "", Action.params_schema.is_(None))
        .order_by(Action.id)
        .with_for_update()
    ).all()
    asked: list[str] = []
    for action in waiting:
        try:
            current = catalog.definition_hash(action.tool)
        except LookupError:
            log.warning("action %s waits for tool %r, which is no longer defined", action.public_id, action.tool)
            continue
        if current != action.tool_hash:
            _reask(session, action, current, config, now)
            asked.append(action.public_id)
    return asked


def _reask(session: Session, action: Action, current: str, config: Config, now: datetime) -> None:
    before = action.tool_hash
    dropped = (
        session.scalar(
            select(func.count(func.distinct(Decision.actor))).where(
                Decision.action_id == action.id,
                Decision.kind.in_(APPROVING_KINDS),
                Decision.params_hash == action.params_hash,
                Decision.tool_hash == before,
            )
        )
        or 0
    )
    data = {"from": before, "to": current, "approvals_dropped": dropped}
    note = "the tool's definition changed since it was drafted: approvers are asked again"
    values = {"tool_hash": current, "tool_changed_at": now}
    if action.state == ActionState.SCHEDULED:
        task_type = config.task_types.get(action.task_type)
        machine.move(
            session,
            action,
            ActionState.PENDING,
            actor=SYSTEM,
            now=now,
            kind=CHANGED,
            note=note + "; its veto window no longer applies",
            data=data,
            values={**values, "run_at": None},
            messages=[CardPosted(action.public_id)],
        )
        if task_type is not None:
            snapshot = chains.snapshot(task_type, list(config.slack.admins), low_confidence=False)
            chains.start(session, action, snapshot, now)
        return
    fence = (Action.state == action.state, Action.tool_hash == before)
    if not compare_and_set(session, Action, action.id, *fence, **values, updated_at=now):
        raise StaleState(ACTION.name, action.public_id, action.state)
    for name, value in values.items():
        set_committed_value(action, name, value)
    machine.record(
        session, action, CHANGED, actor=SYSTEM, now=now, note=note, data=data, messages=[CardUpdated(action.public_id)]
    )
