"""A person resolves an action in `unknown`: its tool was not idempotent and its call may or may
not have taken effect (the process running it died, the call timed out, or an API client's claim
expired without a result). Nobody but a person can know, so an approver says which:

- **it ran** (`resolve_ran`): unknown → succeeded; the agent is told a person says it ran;
- **it did not run** (`resolve_not_run`): unknown → failed; the agent is told it did not run;
- **run it again** (`run_again`): a new decision, counted like an approval: the approvers of its
  task type, never its requester, `quorum` distinct people on the same params hash; at quorum
  unknown → approved, and it runs again (an API action goes back to its client to claim).

Who may resolve is who may approve (`approvals.decisions`: workspace-scoped, the requester
never); a refusal is a `DecisionRefused`, audited by `decisions.decide` like any other. The
turn that waited on the action goes back to the agent when it ends (the runner's resume).
Graduation labels every action that was ever `unknown` as such: never clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, union_all
from sqlalchemy.orm import Session

from approvals import machine
from approvals.decisions import Outcome, locked_action
from approvals.errors import (
    AlreadyApprovedByYou,
    AlreadyDecided,
    DecisionRefused,
    NotAnApprover,
    SelfApproval,
    StaleParams,
)
from approvals.graduation import NOT_RUN, RAN, RESOLVING_KINDS, RUN_AGAIN
from approvals.ports import Directory, is_listed_approver
from core import metrics
from core.clock import Clock
from core.messages import ActionDecided, CardUpdated
from core.models import Action, AuditEvent, Decision, UnchainedAuditEvent
from core.states import ActionState

Verdict = Literal["ran", "not_run", "run_again"]
KIND_OF: dict[Verdict, str] = {"ran": RAN, "not_run": NOT_RUN, "run_again": RUN_AGAIN}
# Audit kinds of the events that start a call: its claim by an executor or an API client.
CLAIM_KINDS = ("action.executing", "execution.attempt", "execution.recovered")


@dataclass(frozen=True)
class Claim:
    """What is known of the call whose outcome is unknown: when it was claimed, and by whom."""

    at: datetime
    owner: str | None


class Resolutions:
    def __init__(self, directory: Directory, clock: Clock) -> None:
        self.directory, self.clock = directory, clock

    def resolve(
        self,
        session: Session,
        action_public_id: str,
        actor: str,
        verdict: Verdict,
        seen_hash: str,
        *,
        team_id: str | None = None,
        note: str | None = None,
    ) -> Outcome:
        """Record `actor`'s verdict on an `unknown` action (in the caller's transaction)."""
        kind = KIND_OF[verdict]
        try:
            action = self._unknown_action(session, action_public_id, team_id)
            self._authorize(action, actor, seen_hash)
            if verdict == "run_again":
                return self._run_again(session, action, actor, team_id, note)
            decision = self._decide(session, action, kind, actor, team_id, note)
            target = ActionState.SUCCEEDED if verdict == "ran" else ActionState.FAILED
            said = "ran" if verdict == "ran" else "did not run"
            error = f"outcome was unknown ({action.error or 'no error recorded'}); {actor} says it {said}"
            if note:
                error += f": {note}"
            machine.move(
                session,
                action,
                target,
                actor=actor,
                now=decision.at,
                kind=f"action.resolved_{verdict}",
                note=note,
                data={"verdict": verdict, "unknown_because": action.error},
                values={"error": error if verdict == "not_run" else action.error},
                messages=[ActionDecided(action.public_id, kind, actor)],
            )
            return Outcome(action, decision, target, 0, action.quorum)
        except DecisionRefused as refusal:
            refusal.attempted, refusal.actor = kind, refusal.actor or actor  # for its audit event
            raise

    # -- steps ------------------------------------------------------------------------------

    def _unknown_action(self, session: Session, action_public_id: str, team_id: str | None) -> Action:
        action = locked_action(session, action_public_id, team_id)
        if action.state != ActionState.UNKNOWN:
            resolver = session.scalars(
                select(Decision)
                .where(Decision.action_id == action.id, Decision.kind.in_(RESOLVING_KINDS))
                .order_by(Decision.id.desc())
                .limit(1)
            ).first()
            by, at = (resolver.actor, resolver.at) if resolver else (action.decided_by, action.decided_at)
            raise AlreadyDecided(action.public_id, action.state, by, at)
        return action

    def _authorize(self, action: Action, actor: str, seen_hash: str) -> None:
        if action.requester is not None and actor == action.requester:
            raise SelfApproval(action.public_id, actor)
        if not is_listed_approver(actor, action.approvers, self.directory):
            raise NotAnApprover(action.public_id, actor)
        if seen_hash != action.params_hash:
            raise StaleParams(action.public_id, seen_hash, action.params_hash)

    def _run_again(
        self, session: Session, action: Action, actor: str, team_id: str | None, note: str | None
    ) -> Outcome:
        earlier = session.scalar(
            select(func.count()).where(
                Decision.action_id == action.id,
                Decision.actor == actor,
                Decision.kind == RUN_AGAIN,
                Decision.params_hash == action.params_hash,
                Decision.at >= action.updated_at,
            )
        )
        if earlier:
            raise AlreadyApprovedByYou(action.public_id, actor)
        decision = self._decide(session, action, RUN_AGAIN, actor, team_id, note)
        votes = run_again_votes(session, action)
        if votes < action.quorum:
            machine.record(
                session,
                action,
                "action.awaiting_quorum",
                actor=actor,
                now=decision.at,
                note=f"{votes} of {action.quorum} to run it again",
                messages=[CardUpdated(action.public_id, votes, action.quorum)],
            )
            return Outcome(action, decision, ActionState.UNKNOWN, votes, action.quorum)
        # Approved again: the executor (or, for an API action, its client) runs it once more.
        machine.move(
            session,
            action,
            ActionState.APPROVED,
            actor=actor,
            now=decision.at,
            kind="action.run_again",
            note=note,
            data={"unknown_because": action.error, "attempts_so_far": action.attempts},
            values={"decided_by": actor, "decided_at": decision.at},
            messages=[ActionDecided(action.public_id, RUN_AGAIN, actor)],
        )
        return Outcome(action, decision, ActionState.APPROVED, votes, action.quorum)

    def _decide(
        self, session: Session, action: Action, kind: str, actor: str, team_id: str | None, note: str | None
    ) -> Decision:
        now = self.clock.now()
        decision = Decision(
            action_id=action.id, kind=kind, actor=actor, team_id=team_id, params_hash=action.params_hash,
            tool_hash=action.tool_hash, note=note, at=now,
        )  # fmt: skip
        session.add(decision)
        session.flush()
        metrics.DECISIONS.labels(action.task_type, kind).inc()
        machine.record(session, action, f"decision.{kind}", actor=actor, now=now, note=note)
        return decision


def run_again_votes(session: Session, action: Action) -> int:
    """Distinct people who asked to run it again since it became `unknown`, on its params."""
    return (
        session.scalar(
            select(func.count(func.distinct(Decision.actor))).where(
                Decision.action_id == action.id,
                Decision.kind == RUN_AGAIN,
                Decision.params_hash == action.params_hash,
                Decision.at >= action.updated_at,
            )
        )
        or 0
    )


def last_claim(session: Session, action_public_id: str) -> Claim | None:
    """The newest claim of the action's call (chained or not yet chained in the ledger)."""
    parts = [
        select(table.at, table.data).where(table.action_public_id == action_public_id, table.kind.in_(CLAIM_KINDS))
        for table in (AuditEvent, UnchainedAuditEvent)
    ]
    rows = union_all(*parts).subquery()
    row = session.execute(select(rows.c.at, rows.c.data).order_by(rows.c.at.desc()).limit(1)).first()
    if row is None:
        return None
    data: dict[str, Any] = row.data or {}
    owner = data.get("lease_owner")
    return Claim(row.at, owner if isinstance(owner, str) else None)
