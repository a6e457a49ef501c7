"""Undo: an action that ran may be compensated, once, while its task type's `undo_window` lasts.

A tool declares its compensation (`@tool(undo="reverse_refund")`, an external tool's `undo:`).
The receipt of a run of it that succeeded (autonomous, after its veto window, or approved)
offers Undo until `undo_window` (default 1h) after it succeeded; a succeeded action never moves
again, so its `updated_at` is that moment. Undo drafts the compensating action:

- its tool is the declared undo tool, its params `{"original_params": …, "original_result": …}`
  (the original's canonical params and the result its run returned), checked against the
  undo tool's schema before anything is written;
- it goes through the gate as `hitl` whatever the type's level (a person approves it first),
  in a task of its own (state `external`: no agent works on it) whose requester is the person
  who clicked Undo, so they cannot approve it; its `undo_of` names the original;
- an external tool's compensation is an external tool's call too, asked of the client that ran
  the original (its `api_client_id` and `callback_url`), which claims it once approved.

Who may ask: the original's approvers (snapshotted on it) and its requester. Once per original:
the original's row is locked first (a second click waits, then finds the first compensation
and is refused naming it), and `actions.undo_of` is unique. The ledger links the two: the
original's `action.undo_requested` names the compensation, whose `action.drafted` names the
original. Once the compensation succeeds, `approvals.autonomy.settle` labels the original
`undone`, evidence against its type like a veto.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import gate, machine
from approvals.decisions import locked_action
from approvals.errors import AlreadyUndone, MayNotUndo, NotUndoable, UndoWindowPassed
from approvals.external import external_task
from approvals.ports import Directory, ToolCatalog, is_listed_approver
from core.config import Config
from core.messages import CardUpdated
from core.models import Action, Task
from core.states import ActionState

ORIGINAL_PARAMS, ORIGINAL_RESULT = "original_params", "original_result"


@dataclass(frozen=True)
class UndoStatus:
    """What a receipt says of Undo: until when it is offered and, once asked, the compensation."""

    until: datetime
    compensation: str | None = None  # its public id
    compensation_state: str | None = None
    asked_by: str | None = None


def undo_tool(catalog: ToolCatalog, tool: str) -> str | None:
    """The tool that compensates a run of `tool`; None when it declares none (or is unknown)."""
    try:
        return catalog.policy(tool).undo
    except LookupError:
        return None


def compensation_of(session: Session, original: Action) -> Action | None:
    return session.scalars(select(Action).where(Action.undo_of == original.id)).first()


def status(session: Session, config: Config, catalog: ToolCatalog, action: Action) -> UndoStatus | None:
    """Undo as `action`'s receipt shows it; None when it is not one that can be undone."""
    task_type = config.task_types.get(action.task_type)
    if action.state != ActionState.SUCCEEDED or task_type is None or undo_tool(catalog, action.tool) is None:
        return None
    until = action.updated_at + task_type.undo_window
    found = compensation_of(session, action)
    if found is None:
        return UndoStatus(until)
    return UndoStatus(until, found.public_id, found.state, found.requester)


def request(
    session: Session,
    config: Config,
    catalog: ToolCatalog,
    directory: Directory,
    action_public_id: str,
    actor: str,
    now: datetime,
    *,
    team_id: str | None = None,
) -> Action:
    """Draft the compensation of `action_public_id` asked for by `actor`, in the caller's
    transaction; returns it (pending). A `DecisionRefused` says why not: not an action that
    ran and can be undone, its window ended, already asked, not theirs to ask."""
    original = locked_action(session, action_public_id, team_id)
    tool = undo_tool(catalog, original.tool)
    if tool is None:
        raise NotUndoable(original.public_id, f"its tool {original.tool!r} declares no undo")
    if original.state != ActionState.SUCCEEDED:
        raise NotUndoable(original.public_id, f"it is {original.state}; only a run that succeeded is undone")
    earlier = compensation_of(session, original)
    if earlier is not None:
        raise AlreadyUndone(original.public_id, earlier.public_id, earlier.requester, earlier.state)
    task_type = config.task_types.get(original.task_type)
    if task_type is None:
        raise NotUndoable(original.public_id, f"its task type {original.task_type!r} is no longer configured")
    until = original.updated_at + task_type.undo_window
    if now >= until:
        raise UndoWindowPassed(original.public_id, until)
    if actor != original.requester and not is_listed_approver(actor, list(original.approvers), directory):
        raise MayNotUndo(original.public_id, actor)
    params: dict[str, Any] = {ORIGINAL_PARAMS: dict(original.params), ORIGINAL_RESULT: dict(original.result or {})}
    try:
        catalog.validate(tool, params)
    except (LookupError, ValueError) as exc:  # the registry changed since its load was checked
        raise NotUndoable(original.public_id, f"its undo tool {tool!r} does not take it: {exc}") from None
    compensation = gate.submit(
        session,
        _task_for(session, original, actor, now),
        gate.Draft(
            tool, params, f"Undo of action {original.public_id}: {original.tool} declares {tool} as its undo.", 1.0
        ),
        task_type=task_type,
        catalog=catalog,
        now=now,
        admins=config.slack.admins,
        external=_same_client(original),
        undo_of=original,
    )
    if compensation.state != ActionState.PENDING:  # a refusal: nothing to approve, so nothing asked
        raise NotUndoable(original.public_id, compensation.error or f"its undo was {compensation.state}")
    machine.record(
        session,
        original,
        "action.undo_requested",
        actor=actor,
        now=now,
        note=f"undo {compensation.public_id} drafted: {tool}",
        data={"compensation": compensation.public_id, "tool": tool, "until": until.isoformat()},
        messages=[CardUpdated(original.public_id)],
    )
    return compensation


def _task_for(session: Session, original: Action, actor: str, now: datetime) -> Task:
    """The compensation's own task: no agent works on it; it holds who asked and what for."""
    asked_in = session.get(Task, original.task_id)
    return external_task(
        session,
        task_type=original.task_type,
        requester=actor,
        team_id=asked_in.team_id if asked_in else None,
        request_text=f"Undo action {original.public_id} ({original.tool}), which ran and succeeded.",
        now=now,
    )


def _same_client(original: Action) -> dict[str, Any] | None:
    """An external tool's compensation goes to the client that ran the original."""
    if original.api_client_id is None:
        return None
    return {"api_client_id": original.api_client_id, "callback_url": original.callback_url}
