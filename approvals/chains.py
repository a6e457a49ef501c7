"""Escalation chains: snapshotted onto a pending action as a timer row, in the transaction
that made it pending. `escalations.sweeper` performs the steps when they come due.

The snapshot is a flat schedule, offsets from the moment the action became pending:
`approvers`/`admins` are expanded to their entries (user ids and @groups; groups are
resolved when a step fires), `repeat` becomes one entry per repetition, and a draft under
the confidence threshold gets an immediate first ping to the chain's first targets. A chain
that ends in `expire` gets a warning before it (`TaskTypeConfig.expiry_warning`: a quarter of
its time unless a `before_expiry` step says otherwise), to that step's `notify` or else the
targets of the last notify entry before the warning (the approvers when none is): reason
`expiry_warning`, with the expiry's offset, so the message says how long is left. The warning
is urgent (business hours would hold it past the expiry, which they do not hold) and an
acknowledgement does not silence it (it does not stop the expiry either).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.business_hours import next_open
from core.config import EscalationStep, TaskTypeConfig
from core.models import Action, Timer
from core.states import TimerState

ESCALATION = "escalation"
ACK_TIMEOUT = "ack_timeout"
EXPIRY_WARNING = "expiry_warning"  # the reason of the step that warns before the expiry
MAX_ENTRIES = 50


def snapshot(task_type: TaskTypeConfig, admins: list[str], *, low_confidence: bool) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for step in task_type.escalation:
        if step.before_expiry is not None:
            continue  # placed by the expiry, below
        targets = _targets(step, task_type.approvers, admins)
        for repetition in range(step.repeat + 1):
            offset = step.offset + (step.every or timedelta()) * repetition
            entries.append(
                {
                    "at_s": offset.total_seconds(),
                    "notify": targets,
                    "then": step.then,
                    "urgent": step.urgent,
                    "reason": "reminder" if repetition == 0 else "repeat",
                }
            )
    entries.sort(key=lambda entry: entry["at_s"])
    expiry = next((i for i, entry in enumerate(entries) if entry["then"] == "expire"), None)
    if expiry is not None:
        entries = entries[: expiry + 1]  # nothing fires after the expiry
    first = next((entry["notify"] for entry in entries if entry["notify"]), None)
    if low_confidence and first:
        entries.insert(0, {"at_s": 0.0, "notify": first, "then": None, "urgent": True, "reason": "low_confidence"})
    warning = _expiry_warning(task_type, entries, admins)
    if warning is not None:
        entries.append(warning)
        entries.sort(key=lambda entry: entry["at_s"])  # stable; the expiry stays last (it is later)
    hours = task_type.business_hours
    return {
        "steps": entries[:MAX_ENTRIES],
        "business_hours": hours.model_dump() if hours else None,
        "ack_timeout_s": task_type.ack_timeout.total_seconds() if task_type.ack_timeout else None,
    }


def _expiry_warning(
    task_type: TaskTypeConfig, entries: list[dict[str, Any]], admins: list[str]
) -> dict[str, Any] | None:
    """The entry that warns before the expiry (the last of `entries`), or None."""
    found = task_type.expiry_warning()
    if found is None or not entries or entries[-1]["then"] != "expire":
        return None
    lead, step = found
    expires_s = entries[-1]["at_s"]
    at_s = expires_s - lead.total_seconds()
    targets = _targets(step, task_type.approvers, admins) if step is not None else None
    if targets is None:  # the current targets: the last notify entry before it, else the approvers
        earlier = [entry["notify"] for entry in entries if entry["notify"] and entry["at_s"] <= at_s]
        targets = earlier[-1] if earlier else list(task_type.approvers)
    if not targets:
        return None
    return {
        "at_s": at_s,
        "notify": targets,
        "then": None,
        "urgent": True,
        "reason": EXPIRY_WARNING,
        "expires_at_s": expires_s,
    }


def _targets(step: EscalationStep, approvers: list[str], admins: list[str]) -> list[str] | None:
    if step.notify is None:
        return None
    if step.notify == "approvers":
        return list(approvers)
    if step.notify == "admins":
        return list(admins)
    return list(step.notify)


def start(session: Session, action: Action, chain: dict[str, Any], now: datetime) -> Timer | None:
    """Arm the chain's first step for `action` (which just became pending); None if it has none."""
    if not chain["steps"]:
        return None
    timer = Timer(
        kind=ESCALATION,
        action_id=action.id,
        state=TimerState.PENDING.value,
        anchor=now,
        step=0,
        fence=0,
        chain=chain,
        due_at=due_at(chain, 0, now),
        created_at=now,
        updated_at=now,
    )
    session.add(timer)
    return timer


def due_at(chain: dict[str, Any], step: int, anchor: datetime) -> datetime:
    """When step `step` may fire: its offset from the anchor, held to business hours unless urgent."""
    entry = chain["steps"][step]
    when = anchor + timedelta(seconds=entry["at_s"])
    hours = chain.get("business_hours")
    if hours and not entry["urgent"] and entry["then"] is None:
        when = next_open(when, hours["timezone"], hours["start"], hours["end"], hours["days"])
    return when


def chain_targets(session: Session, action: Action) -> list[str]:
    """Every entry (user or @group) any step of the action's chain notifies."""
    targets: list[str] = []
    for chain in session.scalars(select(Timer.chain).where(Timer.action_id == action.id, Timer.kind == ESCALATION)):
        for entry in chain["steps"]:
            targets.extend(t for t in entry["notify"] or [] if t not in targets)
    return targets


def arm_ack_timeout(session: Session, action: Action, acknowledged_at: datetime) -> Timer | None:
    """After an acknowledgement, a timer that re-opens escalation if no decision follows."""
    chain = session.scalars(
        select(Timer.chain).where(Timer.action_id == action.id, Timer.kind == ESCALATION).limit(1)
    ).first()
    timeout = chain.get("ack_timeout_s") if chain else None
    if timeout is None:
        return None
    timer = Timer(
        kind=ACK_TIMEOUT,
        action_id=action.id,
        state=TimerState.PENDING.value,
        anchor=acknowledged_at,
        step=0,
        fence=0,
        chain={"steps": []},
        due_at=acknowledged_at + timedelta(seconds=timeout),
        created_at=acknowledged_at,
        updated_at=acknowledged_at,
    )
    session.add(timer)
    return timer
