"""People's decisions about autonomy: admins promote (one level, with enough signatures) or
dismiss a proposal; anyone who saw a run can report it as wrong (an incident, within the
task type's `incident_window`), which demotes the type to `hitl` and freezes promotion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import autonomy, machine
from approvals.decisions import locked_action
from approvals.errors import DecisionRefused
from approvals.graduation import INCIDENT
from approvals.ports import Directory, is_listed_approver
from core.config import AutonomyLevel, TaskTypeConfig
from core.messages import CardUpdated, ProposalChanged
from core.models import Action, Decision, Proposal
from core.states import ActionState, ProposalState


class ProposalRefused(DecisionRefused):
    code = "proposal_refused"


class NotAnAdmin(DecisionRefused):
    code = "not_an_admin"

    def __init__(self, subject: str, actor: str) -> None:
        self.actor = actor
        super().__init__(subject, f"{actor} is not an admin: only admins change autonomy levels")


def _open_proposal(session: Session, proposal_public_id: str) -> Proposal:
    proposal = session.scalars(
        select(Proposal)
        .where(Proposal.public_id == proposal_public_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if proposal is None:
        raise ProposalRefused(proposal_public_id, f"no proposal {proposal_public_id!r}")
    if proposal.state != ProposalState.OPEN:
        by = f" by {proposal.decided_by}" if proposal.decided_by else ""
        raise ProposalRefused(proposal_public_id, f"proposal {proposal_public_id!r} is already {proposal.state}{by}")
    return proposal


def _admins_proposal(
    session: Session, proposal_public_id: str, actor: str, admins: Sequence[str], directory: Directory
) -> Proposal:
    """The open proposal `actor` may decide: only admins decide proposals."""
    if not is_listed_approver(actor, list(admins), directory):
        raise NotAnAdmin(proposal_public_id, actor)
    return _open_proposal(session, proposal_public_id)


def promote(
    session: Session,
    proposal_public_id: str,
    actor: str,
    *,
    task_type: TaskTypeConfig,
    admins: Sequence[str],
    directory: Directory,
    now: datetime,
) -> Proposal:
    """Sign a proposal; with enough distinct admins' signatures the level goes up one step."""
    proposal = _admins_proposal(session, proposal_public_id, actor, admins, directory)
    if actor in proposal.signatures:
        raise ProposalRefused(proposal_public_id, f"{actor} already signed; it needs {proposal.needed} distinct admins")
    proposal.signatures = [*proposal.signatures, actor]
    signed = [ProposalChanged(proposal.public_id)]  # its card shows the signatures, or the outcome
    short = len(proposal.signatures) < proposal.needed
    machine.record(
        session,
        proposal,
        "autonomy.signed",
        actor=actor,
        now=now,
        from_state=proposal.from_level,
        to_state=proposal.to_level,
        data={"proposal": proposal.public_id, "signatures": proposal.signatures},
        messages=signed if short else (),
    )
    if short:
        return proposal
    state = autonomy.state_for(session, proposal.task_type, task_type, now)
    if state.level != proposal.from_level:
        raise ProposalRefused(proposal_public_id, f"the level changed to {state.level} since this was proposed")
    # Not audited on its own: the level change's `autonomy.changed` event names the proposal.
    decided = {"decided_by": actor, "decided_at": now}
    machine.move(session, proposal, ProposalState.PROMOTED, actor=actor, now=now, audited=False, values=decided)
    signers = " and ".join(proposal.signatures)
    autonomy.change_level(
        session,
        state,
        AutonomyLevel(proposal.to_level),
        actor=actor,
        now=now,
        task_type=task_type,
        admins=admins,
        reason=f"promoted by {signers} on proposal {proposal.public_id}",
        probation=task_type.graduation.probation,
    )
    machine.enqueue(session, signed, now)
    return proposal


def dismiss(
    session: Session,
    proposal_public_id: str,
    actor: str,
    *,
    task_type: TaskTypeConfig,
    admins: Sequence[str],
    directory: Directory,
    now: datetime,
) -> Proposal:
    proposal = _admins_proposal(session, proposal_public_id, actor, admins, directory)
    decided = {"decided_by": actor, "decided_at": now}
    machine.move(session, proposal, ProposalState.DISMISSED, actor=actor, now=now, audited=False, values=decided)
    state = autonomy.state_for(session, proposal.task_type, task_type, now)
    state.cooldown_until = now + task_type.graduation.cooldown
    # The ledger tells of levels: the level stays where it was, and why for how long.
    machine.record(
        session,
        proposal,
        "autonomy.dismissed",
        actor=actor,
        now=now,
        from_state=proposal.from_level,
        to_state=proposal.from_level,
        note=f"no new proposal before {state.cooldown_until.isoformat()}",
        messages=[ProposalChanged(proposal.public_id)],
    )
    return proposal


def _witnessed_run(
    session: Session,
    action_public_id: str,
    actor: str,
    *,
    task_type: TaskTypeConfig,
    admins: Sequence[str],
    directory: Directory,
    now: datetime,
) -> Action:
    """The run `actor` may vouch for or report: a succeeded action, recent enough, seen by an
    approver, an admin or its requester."""
    action = locked_action(session, action_public_id, None)
    people = [*action.approvers, *admins, *([action.requester] if action.requester else [])]
    if not is_listed_approver(actor, people, directory):
        raise ProposalRefused(
            action_public_id,
            f"{actor} may not review action {action_public_id!r}: approvers, admins and the requester may",
        )
    if action.state != ActionState.SUCCEEDED:
        raise ProposalRefused(
            action_public_id, f"action {action_public_id!r} is {action.state}: only a run can be reviewed"
        )
    if action.outcome == INCIDENT:
        raise ProposalRefused(action_public_id, f"action {action_public_id!r} was already reported as wrong")
    ran_at = action.outcome_at or action.updated_at
    if now - ran_at > task_type.graduation.incident_window:
        raise ProposalRefused(
            action_public_id,
            f"action {action_public_id!r} ran at {ran_at.isoformat(timespec='minutes')}, too long ago to review",
        )
    return action


def report_incident(
    session: Session,
    action_public_id: str,
    actor: str,
    *,
    task_type: TaskTypeConfig,
    admins: Sequence[str],
    directory: Directory,
    now: datetime,
    note: str | None = None,
) -> Action:
    """ "This was wrong": the run becomes an incident; its task type drops to hitl, frozen."""
    action = _witnessed_run(
        session, action_public_id, actor, task_type=task_type, admins=admins, directory=directory, now=now
    )
    session.add(
        Decision(action_id=action.id, kind="incident", actor=actor, params_hash=action.params_hash, note=note, at=now)
    )
    action.outcome, action.outcome_at = INCIDENT, now
    machine.record(
        session, action, "action.incident", actor=actor, now=now, note=note, messages=[CardUpdated(action.public_id)]
    )
    autonomy.demote_for_incident(session, action.task_type, task_type, now, admins)
    return action


def looks_right(
    session: Session,
    action_public_id: str,
    actor: str,
    *,
    task_type: TaskTypeConfig,
    admins: Sequence[str],
    directory: Directory,
    now: datetime,
) -> Action:
    """A spot check came back fine: on the record, once per person."""
    action = _witnessed_run(
        session, action_public_id, actor, task_type=task_type, admins=admins, directory=directory, now=now
    )
    already = session.scalars(
        select(Decision.id).where(
            Decision.action_id == action.id, Decision.actor == actor, Decision.kind == "review_ok"
        )
    ).first()
    if already is not None:
        raise ProposalRefused(action_public_id, f"{actor} already said action {action_public_id!r} looks right")
    session.add(Decision(action_id=action.id, kind="review_ok", actor=actor, params_hash=action.params_hash, at=now))
    machine.record(session, action, "action.reviewed", actor=actor, now=now, note="looks right")
    return action
