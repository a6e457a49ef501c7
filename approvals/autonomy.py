"""A task type's autonomy level in the database: earned from its own outcomes, granted one
level at a time by admins, taken back automatically. Config gives the start and the ceiling.

`settle()` is the heartbeat, run by the periodic job (and by the gate when it must): it labels
finished actions with their outcome, applies demotions (re-gating work still in its veto
window), and proposes a promotion when the evidence meets the rule. It locks the task type's
row first, so replicas settle one at a time.

The gate asks `gate_level()`: one statement reads the level and whether an outcome waits that
could demote the type (anything but a clean success: a rejection, veto, failure or expiry, or
an approved action's edit or rubber stamp); only then does it settle before routing. Clean
successes are labelled by the periodic job within a tick: the only demotion one can cause is
a clean-rate window's first fill, applied then (`docs/architecture.md`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from approvals import audit, chains, machine, standing
from approvals.graduation import (
    BY_RULE,
    CLEAN,
    EDITED,
    EXPIRED,
    FAILED,
    INCIDENT,
    REJECTED,
    RESOLVING_KINDS,
    RUBBER_STAMP,
    UNDONE,
    UNKNOWN,
    VETOED,
    Demotion,
    Evidence,
    demotion,
    promotion,
)
from core import outbox
from core.config import AutonomyLevel, TaskTypeConfig
from core.ids import SYSTEM, new_id
from core.messages import CardPosted, CardUpdated, LevelChanged, ProposalChanged, ProposalPosted, ReviewRequested
from core.models import Action, AutonomyState, Decision, Proposal
from core.states import ActionState, ProposalState

LABELS = {"rejected": REJECTED, "vetoed": VETOED, "failed": FAILED, "expired": EXPIRED, "unknown": UNKNOWN}
RECENT = 200  # outcomes kept in view for the demotion rules
# Evidence is of what the type drafts: a compensation a person asked for (Undo) is none.
_DRAFTED = Action.undo_of.is_(None)
_UNLABELLED = (Action.outcome.is_(None), Action.state.in_(["succeeded", *LABELS]))  # finished, not yet labelled


def unlabelled_types(session: Session) -> set[str]:
    """The task types with finished actions waiting for their outcome label: one query for all."""
    return set(session.scalars(select(Action.task_type).where(*_UNLABELLED).distinct()))


def fingerprint(task_type: TaskTypeConfig) -> str:
    """What the evidence was earned with: a change to any of these restarts it."""
    material = "\x00".join([task_type.instructions, ",".join(task_type.tools), task_type.model or ""])
    return hashlib.sha256(material.encode()).hexdigest()


def current_level(session: Session, task_type: str, start: AutonomyLevel) -> AutonomyLevel:
    state = session.get(AutonomyState, task_type)
    if state is None:
        return start
    return _level(state)


def _level(state: AutonomyState) -> AutonomyLevel:
    return AutonomyLevel.HITL if state.unconfirmed else AutonomyLevel(state.level)


def effective_level(session: Session, name: str, task_type: TaskTypeConfig) -> AutonomyLevel:
    """The level the gate uses: the earned one, capped by the ceiling."""
    return min(current_level(session, name, task_type.autonomy), task_type.graduation.ceiling)


# A finished, unlabelled action whose outcome could demote its type: all but a clean success
# (one that ran without a person's approval). `outcome_at` is null with `outcome`: the
# (task_type, outcome_at) index finds them.
_MAY_DEMOTE = and_(
    Action.outcome.is_(None),
    Action.outcome_at.is_(None),
    or_(Action.state.in_(list(LABELS)), and_(Action.state == ActionState.SUCCEEDED, Action.mode == "hitl")),
)


# The type's row and whether an outcome that could demote it waits: one statement, built once.
_GATE_READ = select(
    AutonomyState, exists().where(Action.task_type == bindparam("name"), _MAY_DEMOTE).label("may_demote")
).where(AutonomyState.task_type == bindparam("name"))


def gate_level(
    session: Session, name: str, task_type: TaskTypeConfig, now: datetime, admins: Sequence[str] = ()
) -> tuple[AutonomyLevel, bool]:
    """The level the gate routes a draft at (capped by the ceiling), with demotions applied
    first, and whether the type's row is now locked (it is when it had to be settled).

    One statement, unlocked, when nothing waits that could demote the type and the config
    matches the row: a demotion is then only ever caused by an outcome labelled elsewhere, and
    routing to `auto` or `hitl` does not race one (a demotion re-gates only actions in a veto
    window). A draft bound for a veto window takes `locked_level` before it is written."""
    row = session.execute(_GATE_READ, {"name": name}).first()
    if row is not None and not row.may_demote and _matches(row[0], task_type):
        return min(_level(row[0]), task_type.graduation.ceiling), False
    state = settle(session, name, task_type, now, admins)
    return min(_level(state), task_type.graduation.ceiling), True


def locked_level(session: Session, name: str, task_type: TaskTypeConfig) -> AutonomyLevel:
    """The level read again under a share lock, for a draft bound for a veto window: a demotion
    (which locks the row for update and then re-gates the scheduled actions) either waits for
    this draft to commit and re-gates it, or commits first and is read here. Drafts do not
    wait for one another."""
    state = session.scalars(
        select(AutonomyState)
        .where(AutonomyState.task_type == name)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).one()
    return min(_level(state), task_type.graduation.ceiling)


def _matches(state: AutonomyState, task_type: TaskTypeConfig) -> bool:
    """Whether the row is settled for this config (else `settle` records the change first)."""
    return state.start_level == task_type.autonomy.value and state.fingerprint == fingerprint(task_type)


def state_for(session: Session, name: str, task_type: TaskTypeConfig, now: datetime) -> AutonomyState:
    """The task type's row, locked; created at its start level on first use."""
    locked = (
        select(AutonomyState)
        .where(AutonomyState.task_type == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    state = session.scalars(locked).first()
    if state is None:
        session.execute(_insert_ignore(session, name, task_type, now))
        state = session.scalars(locked).one()
    return state


def _insert_ignore(session: Session, name: str, task_type: TaskTypeConfig, now: datetime) -> Any:
    values = {
        "task_type": name,
        "level": task_type.autonomy.value,
        "start_level": task_type.autonomy.value,
        "updated_by": SYSTEM,
        "updated_at": now,
        "fingerprint": fingerprint(task_type),
        "probation_left": 0,
        "unconfirmed": False,
    }
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return dialect_insert(AutonomyState).values(**values).on_conflict_do_nothing(index_elements=["task_type"])


def settle(
    session: Session, name: str, task_type: TaskTypeConfig, now: datetime, admins: Sequence[str] = ()
) -> AutonomyState:
    """Label the type's new outcomes, apply demotions, propose a promotion; returns its row (locked)."""
    state = state_for(session, name, task_type, now)
    rule = task_type.graduation
    if state.start_level != task_type.autonomy.value:
        # Whoever edits the config decides the start level; the change is on the record.
        state.start_level = task_type.autonomy.value
        change_level(
            session,
            state,
            task_type.autonomy,
            actor="config",
            now=now,
            task_type=task_type,
            admins=admins,
            reason=f"the configured start level is now {task_type.autonomy.value}",
        )
    if state.fingerprint != fingerprint(task_type):
        _config_changed(session, state, task_type, now)
    fresh = list(
        session.scalars(
            select(Action).where(Action.task_type == name, *_UNLABELLED).order_by(Action.updated_at, Action.id)
        )
    )
    undone = _undone(session, fresh)
    for original in undone.values():
        if original.outcome is not None:  # labelled when it ran: a new outcome now, undone
            original.outcome, original.outcome_at = None, None
            fresh.append(original)
    history = _outcomes(session, state) if fresh else []
    was_unknown = _resolved(session, fresh)
    for action in fresh:
        if action.id in undone:
            action.outcome = UNDONE
        elif action.id in was_unknown:
            action.outcome = UNKNOWN
        else:
            action.outcome = _label(session, action, rule.min_read_time)
        action.outcome_at = now
        if action.outcome == CLEAN and action.mode != "hitl" and _sampled(action.public_id, rule.review_share):
            outbox.enqueue(session, ReviewRequested(action.public_id), now)
        if action.undo_of is not None:
            _compensation_ended(session, action, undone.get(action.undo_of), now)
            continue  # a compensation a person asked for: the original's `undone` is the evidence
        if state.evidence_since is not None and action.created_at < state.evidence_since:
            continue  # drafted under the previous level or config: not evidence for this one
        if action.fallback:
            continue  # drafted by the fallback model: says nothing of this type's own version
        if action.outcome == BY_RULE:
            continue  # a standing rule let it run: evidence apart, not a person's approval
        history.append(action.outcome)
        in_probation = state.probation_left > 0 and action.mode == state.level
        if in_probation:
            state.probation_left -= 1
        drop = demotion(AutonomyLevel(state.level), history, rule, in_probation=in_probation)
        if drop is not None and (drop.to != AutonomyLevel(state.level) or drop.freeze):
            freeze = rule.freeze if drop.freeze else None
            change_level(
                session,
                state,
                drop.to,
                actor=SYSTEM,
                reason=drop.reason,
                now=now,
                task_type=task_type,
                admins=admins,
                freeze=freeze,
            )
            history = []
    _maybe_propose(session, state, task_type, now)
    return state


def _compensation_ended(session: Session, compensation: Action, undone: Action | None, now: datetime) -> None:
    """The original's receipt says how its undo ended; the ledger, when it undid it."""
    original = undone or session.get(Action, compensation.undo_of)
    if original is None:
        return
    if undone is not None:
        note = f"undone by {compensation.public_id}: evidence against the type, as a veto"
        data = {"compensation": compensation.public_id}
        machine.record(session, original, "action.undone", actor=SYSTEM, now=now, note=note, data=data)
    outbox.enqueue(session, CardUpdated(original.public_id), now)


def _undone(session: Session, actions: Sequence[Action]) -> dict[int, Action]:
    """The originals whose compensation (`approvals.undo`) is among `actions` and succeeded, by id,
    in one query; an incident stays an incident."""
    originals = [action.undo_of for action in actions if action.undo_of is not None and action.state == "succeeded"]
    if not originals:
        return {}
    query = select(Action).where(Action.id.in_(originals), or_(Action.outcome.is_(None), Action.outcome != INCIDENT))
    return {action.id: action for action in session.scalars(query)}


def _resolved(session: Session, actions: Sequence[Action]) -> set[int]:
    """Those of `actions` a person resolved from `unknown` (labelled unknown: never clean), in one query."""
    if not actions:
        return set()
    query = select(Decision.action_id).where(
        Decision.action_id.in_([action.id for action in actions]), Decision.kind.in_(RESOLVING_KINDS)
    )
    return set(session.scalars(query))


def _label(session: Session, action: Action, min_read_time: timedelta) -> str:
    if action.state in LABELS:
        return LABELS[action.state]
    if action.mode != "hitl":
        # Ran after its veto window, or autonomously, and nobody objected; a rule's run apart.
        return BY_RULE if action.standing_rule_id is not None else CLEAN
    kinds = session.execute(
        select(Decision.kind, Decision.at).where(Decision.action_id == action.id).order_by(Decision.id)
    ).all()
    if any(kind == "edit" for kind, _ in kinds):
        return EDITED
    first = next((at for kind, at in kinds if kind == "approve"), None)
    if first is not None and first - action.created_at < min_read_time:
        return RUBBER_STAMP  # counts toward the sample, not as clean
    return CLEAN


def _sampled(action_id: str, share: float) -> bool:
    bucket = int(hashlib.sha256(action_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < share


def _outcomes(session: Session, state: AutonomyState) -> list[str]:
    query = select(Action.outcome).where(
        Action.task_type == state.task_type,
        Action.outcome.is_not(None),
        Action.outcome != BY_RULE,
        Action.fallback.is_(False),
        _DRAFTED,
    )
    if state.evidence_since is not None:
        query = query.where(Action.outcome_at >= state.evidence_since, Action.created_at >= state.evidence_since)
    rows = session.scalars(query.order_by(Action.outcome_at.desc(), Action.id.desc()).limit(RECENT)).all()
    return [str(outcome) for outcome in reversed(rows)]


def evidence(session: Session, state: AutonomyState, now: datetime) -> Evidence:
    outcomes = _outcomes(session, state)
    query = select(func.min(Action.outcome_at)).where(
        Action.task_type == state.task_type,
        Action.outcome.is_not(None),
        Action.outcome != BY_RULE,
        Action.fallback.is_(False),
        _DRAFTED,
    )
    people = (
        select(func.count(func.distinct(Decision.actor)))
        .join(Action, Decision.action_id == Action.id)
        .where(
            Action.task_type == state.task_type,
            Action.fallback.is_(False),
            _DRAFTED,
            Decision.kind.in_(["approve", "edit", "reject"]),
        )
    )
    if state.evidence_since is not None:
        query = query.where(Action.created_at >= state.evidence_since)
        people = people.where(Action.created_at >= state.evidence_since)
    by_rule = select(func.count()).where(
        Action.task_type == state.task_type, Action.outcome == BY_RULE, Action.fallback.is_(False)
    )
    if state.evidence_since is not None:
        by_rule = by_rule.where(Action.outcome_at >= state.evidence_since, Action.created_at >= state.evidence_since)
    first = session.scalar(query)
    days = (now - first).total_seconds() / 86400 if first else 0.0
    return Evidence(tuple(outcomes), session.scalar(people) or 0, days, session.scalar(by_rule) or 0)


def _maybe_propose(session: Session, state: AutonomyState, task_type: TaskTypeConfig, now: datetime) -> None:
    if state.unconfirmed or any(
        until is not None and now < until for until in (state.frozen_until, state.cooldown_until)
    ):
        return
    if session.scalars(
        select(Proposal.id).where(Proposal.task_type == state.task_type, Proposal.state == ProposalState.OPEN)
    ).first():
        return
    level = AutonomyLevel(state.level)
    verdict = promotion(level, task_type.graduation.ceiling, evidence(session, state, now), task_type.graduation)
    if verdict.target is None:
        return
    needed = task_type.graduation.auto_signatures if verdict.target == AutonomyLevel.AUTO else 1
    proposal = Proposal(
        public_id=new_id("prp"),
        task_type=state.task_type,
        from_level=level.value,
        to_level=verdict.target.value,
        state=ProposalState.OPEN.value,
        evidence=dict(verdict.stats),
        signatures=[],
        needed=needed,
        created_at=now,
    )
    session.add(proposal)
    session.flush()
    audit.record(
        session,
        audit.AuditEntry(
            kind="autonomy.proposed",
            actor=SYSTEM,
            at=now,
            task_type=state.task_type,
            from_state=level.value,
            to_state=verdict.target.value,
            data={"proposal": proposal.public_id, **verdict.stats},
        ),
    )
    outbox.enqueue(session, ProposalPosted(proposal.public_id), now)


def change_level(
    session: Session,
    state: AutonomyState,
    level: AutonomyLevel,
    *,
    actor: str,
    reason: str,
    now: datetime,
    task_type: TaskTypeConfig,
    admins: Sequence[str] = (),
    freeze: timedelta | None = None,
    probation: int = 0,
) -> None:
    """Set the level, restart the evidence, audit who/why/evidence, announce it, and re-gate
    work still in a veto window if the new level no longer allows it."""
    before = state.level
    stats = promotion(
        AutonomyLevel(before), task_type.graduation.ceiling, evidence(session, state, now), task_type.graduation
    ).stats
    state.level, state.updated_by, state.updated_at = level.value, actor, now
    state.evidence_since, state.probation_left = now, probation
    if freeze is not None:
        state.frozen_until = now + freeze
    for proposal in session.scalars(
        select(Proposal).where(Proposal.task_type == state.task_type, Proposal.state == ProposalState.OPEN)
    ).all():
        # Not audited on its own: the level change's `autonomy.changed` event below is why.
        machine.move(
            session,
            proposal,
            ProposalState.STALE,
            actor=actor,
            now=now,
            audited=False,
            values={"decided_at": now},
            messages=[ProposalChanged(proposal.public_id)],
        )
    audit.record(
        session,
        audit.AuditEntry(
            kind="autonomy.changed",
            actor=actor,
            at=now,
            task_type=state.task_type,
            from_state=before,
            to_state=level.value,
            note=reason,
            data={"evidence": stats, "frozen_until": state.frozen_until.isoformat() if state.frozen_until else None},
        ),
    )
    outbox.enqueue(session, LevelChanged(state.task_type, before, level.value, actor, reason), now)
    if level < AutonomyLevel.HOTL:
        _regate(session, state.task_type, task_type, admins, now)


def _regate(session: Session, name: str, task_type: TaskTypeConfig, admins: Sequence[str], now: datetime) -> None:
    waiting = session.scalars(
        select(Action).where(Action.task_type == name, Action.state == ActionState.SCHEDULED).with_for_update()
    ).all()
    for action in waiting:
        machine.move(
            session,
            action,
            ActionState.PENDING,
            actor=SYSTEM,
            now=now,
            note="re-gated: its task type was demoted to hitl",
            values={"run_at": None},
            messages=[CardPosted(action.public_id)],
        )
        chains.start(session, action, chains.snapshot(task_type, list(admins), low_confidence=False), now)


def _config_changed(session: Session, state: AutonomyState, task_type: TaskTypeConfig, now: datetime) -> None:
    state.fingerprint, state.evidence_since = fingerprint(task_type), now
    state.unconfirmed = state.level != AutonomyLevel.HITL
    audit.record(
        session,
        audit.AuditEntry(
            kind="autonomy.config_changed",
            actor=SYSTEM,
            at=now,
            task_type=state.task_type,
            from_state=state.level,
            to_state=AutonomyLevel.HITL.value if state.unconfirmed else state.level,
            note="instructions, tools or model changed: evidence restarts"
            + ("; capped at hitl until an admin confirms" if state.unconfirmed else ""),
        ),
    )
    if state.unconfirmed:
        reason = "its instructions, tools or model changed; an admin must confirm its level"
        outbox.enqueue(
            session, LevelChanged(state.task_type, state.level, AutonomyLevel.HITL.value, SYSTEM, reason), now
        )


def demote_for_incident(
    session: Session, name: str, task_type: TaskTypeConfig, now: datetime, admins: Sequence[str] = ()
) -> None:
    state = state_for(session, name, task_type, now)
    drop = Demotion(AutonomyLevel.HITL, "an incident: someone reported a run as wrong", freeze=True)
    # Its standing rules rested on the evidence the incident just took back.
    standing.revoke_for_type(session, name, now, f"an incident on {name}: someone reported a run as wrong")
    change_level(
        session,
        state,
        drop.to,
        actor=SYSTEM,
        reason=drop.reason,
        now=now,
        task_type=task_type,
        admins=admins,
        freeze=task_type.graduation.freeze,
    )


def earned(session: Session, name: str, level: str) -> dict[str, Any] | None:
    """The promotion that earned `level` (the newest proposal promoted to it), with the evidence
    the admins saw: after a promotion the evidence starts again from nothing, and people must
    still see why the type is where it is."""
    proposal = session.scalars(
        select(Proposal)
        .where(Proposal.task_type == name, Proposal.to_level == level, Proposal.state == ProposalState.PROMOTED)
        .order_by(Proposal.id.desc())
        .limit(1)
    ).first()
    if proposal is None:
        return None
    return {
        "proposal_id": proposal.public_id,
        "from_level": proposal.from_level,
        "to_level": proposal.to_level,
        "stats": dict(proposal.evidence),
        "by": list(proposal.signatures) or ([proposal.decided_by] if proposal.decided_by else []),
        "at": proposal.decided_at,
    }


def describe(session: Session, name: str, task_type: TaskTypeConfig, now: datetime) -> dict[str, Any]:
    """A task type's level, ceiling, evidence and what the next level still needs; `earned`: the
    promotion (and its evidence) that brought it to its level, if one did."""
    state = session.get(AutonomyState, name)
    level = effective_level(session, name, task_type)
    ceiling = task_type.graduation.ceiling
    if state is None:
        verdict = promotion(level, ceiling, Evidence((), 0, 0.0), task_type.graduation)
        return {
            "task_type": name,
            "level": level.value,
            "ceiling": ceiling.value,
            "unmet": list(verdict.unmet),
            "stats": verdict.stats,
            "frozen_until": None,
            "unconfirmed": False,
            "probation_left": 0,
            "earned": None,
        }
    verdict = promotion(AutonomyLevel(state.level), ceiling, evidence(session, state, now), task_type.graduation)
    return {
        "task_type": name,
        "level": level.value,
        "ceiling": ceiling.value,
        "stats": verdict.stats,
        "unmet": list(verdict.unmet),
        "frozen_until": state.frozen_until.isoformat(timespec="minutes") if state.frozen_until else None,
        "unconfirmed": state.unconfirmed,
        "probation_left": state.probation_left,
        "earned": earned(session, name, state.level) if state.level == level.value else None,
    }


def set_level(
    session: Session,
    name: str,
    task_type: TaskTypeConfig,
    level: AutonomyLevel,
    *,
    actor: str,
    reason: str,
    now: datetime,
    admins: Sequence[str],
) -> AutonomyState:
    """An admin sets a level (also confirming one capped after a config change); audited."""
    if level > task_type.graduation.ceiling:
        raise ValueError(f"{level.value} is above the ceiling of {name!r} ({task_type.graduation.ceiling.value})")
    state = state_for(session, name, task_type, now)
    state.unconfirmed = False
    change_level(session, state, level, actor=actor, reason=reason, now=now, task_type=task_type, admins=admins)
    return state
