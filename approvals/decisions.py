"""People's decisions on actions, and who may make them.

Rules, enforced here and nowhere else: only listed approvers decide; the requester never
approves their own action; `quorum: N` needs N distinct approvers on the same params
hash and tool definition (`actions.tool_hash`); an edit makes a new hash, so approvals of the
old params stop counting, and so does a change of the tool's definition while the action
waits (`approvals.tool_definitions`); a click binds to both as the person saw them; a decision on
an action that is no longer open is refused, naming who decided it and when; an action whose
tools run with a person's own credential (`credentials: requester | approver`) is approved
only once that person has connected it (the `Credentials` port says who and what).

Every method locks the action's row first (`FOR UPDATE` on PostgreSQL; SQLite's
`BEGIN IMMEDIATE` serializes writers), so concurrent clicks are decided one at a time and
each sees the previous one's result.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from approvals import audit, chains, decision_statement, machine
from approvals.errors import (
    ActionNotFound,
    AlreadyAcknowledged,
    AlreadyApprovedByYou,
    AlreadyDecided,
    CredentialMissing,
    DecisionRefused,
    InvalidEdit,
    NotAnApprover,
    NotApplicable,
    NotEditable,
    OtherWorkspace,
    ReasonRequired,
    SelfApproval,
    StaleParams,
    ToolChanged,
)
from approvals.ports import Credentials, Directory, ToolCatalog, is_listed_approver
from approvals.workspaces import same_workspace
from core import metrics
from core.canonical import params_hash
from core.clock import Clock
from core.db import compare_and_set
from core.errors import StaleState
from core.json_params import checked
from core.messages import ActionAcknowledged, ActionDecided, CardUpdated, Message
from core.models import Action, Decision, Task
from core.states import ACTION, OPEN_FOR_DECISION, ActionState

APPROVING_KINDS = ("approve", "edit")
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    action: Action
    decision: Decision
    state: ActionState  # the action's state after the decision
    approvals: int  # distinct approvals on the current params hash
    quorum: int


class Decisions:
    def __init__(
        self, directory: Directory, catalog: ToolCatalog, clock: Clock, *, credentials: Credentials | None = None
    ) -> None:
        self.directory = directory
        self.catalog = catalog
        self.clock = clock
        self.credentials = credentials
        # Approver groups seen on actions: the one-statement path checks the clicker's membership
        # of these (a group first seen decides on the ORM path once, then joins them).
        self._groups: set[str] = set()

    def approve(
        self,
        session: Session,
        action_public_id: str,
        actor: str,
        seen_hash: str,
        *,
        team_id: str | None = None,
        note: str | None = None,
        seen_tool: str | None = None,
    ) -> Outcome:
        """`seen_tool`: the tool definition the clicker saw (None: a card drawn before it was
        shown, which may approve only while the definition is the drafted one)."""
        with _attempt("approve", actor):
            fast = self._in_one_statement(
                session, "approve", action_public_id, actor, team_id, note, ActionState.PENDING,
                ActionState.APPROVED, seen_hash, seen_tool,
            )  # fmt: skip
            if fast is not None:
                return fast
            action = self._open_action(session, action_public_id, "approve", {ActionState.PENDING}, team_id)
            self._authorize_approval(session, action, actor, seen_hash, seen_tool)
            decision = self._decide(session, action, "approve", actor, team_id, note)
            return self._count_towards_quorum(session, action, decision)

    def approve_with_edits(
        self,
        session: Session,
        action_public_id: str,
        actor: str,
        seen_hash: str,
        new_params: dict[str, Any],
        *,
        team_id: str | None = None,
        note: str | None = None,
        seen_tool: str | None = None,
    ) -> Outcome:
        with _attempt("edit", actor):
            action = self.may_edit(session, action_public_id, actor, seen_hash, team_id=team_id, seen_tool=seen_tool)
            try:
                canonical = (
                    self.catalog.validate(action.tool, new_params)
                    if action.params_schema is None
                    else checked(action.params_schema, new_params)  # an open tool: its own schema
                )
            except ValueError as exc:
                raise InvalidEdit(action.public_id, getattr(exc, "problems", {"params": str(exc)})) from exc
            new_hash = params_hash(canonical)
            if new_hash == action.params_hash:
                decision = self._decide(session, action, "approve", actor, team_id, note)
                return self._count_towards_quorum(session, action, decision)
            diff = params_diff(action.params, canonical)
            self._replace_params(session, action, canonical, new_hash)
            decision = self._decide(session, action, "edit", actor, team_id, note, diff=diff)
            return self._count_towards_quorum(session, action, decision)

    def may_edit(
        self,
        session: Session,
        action_public_id: str,
        actor: str,
        seen_hash: str,
        *,
        team_id: str | None = None,
        seen_tool: str | None = None,
    ) -> Action:
        """The action `actor` is about to approve with edits, if they may (as `approve_with_edits`
        checks; a `DecisionRefused` otherwise). Asked before the edit form's values are read, so
        a submission nobody may make costs no parsing; it changes nothing."""
        with _attempt("edit", actor):
            action = self._open_action(session, action_public_id, "edit", {ActionState.PENDING}, team_id)
            self._authorize_approval(session, action, actor, seen_hash, seen_tool)
            if not action.editable:
                raise NotEditable(action.public_id)
            return action

    def approve_shown(
        self,
        session: Session,
        action_public_id: str,
        actor: str,
        shown: str,
        *,
        shown_at: datetime | None = None,
        team_id: str | None = None,
    ) -> Outcome:
        """Approve the action as a review of many showed it at `shown_at`: `shown` is its
        `shown_binding` then (params hash and tool definition in one digest, as a form's metadata
        has room for). Anything changed since (an edit, a new tool definition) is refused, naming
        which; else it is `approve` on the params and definition shown, with every rule of a click."""
        with _attempt("approve", actor):
            action = locked_action(session, action_public_id, team_id)
            changed = not hmac.compare_digest(shown_binding(action.params_hash, action.tool_hash), shown)
            if changed and action.state in OPEN_FOR_DECISION:  # a decided one is refused as decided, below
                moved = action.tool_changed_at
                if moved is not None and (shown_at is None or moved >= shown_at):
                    raise ToolChanged(action.public_id)
                raise StaleParams(action.public_id, "(as shown)", action.params_hash)
        return self.approve(
            session, action_public_id, actor, action.params_hash, team_id=team_id, seen_tool=action.tool_hash
        )

    def reject(
        self, session: Session, action_public_id: str, actor: str, reason: str, *, team_id: str | None = None
    ) -> Outcome:
        with _attempt("reject", actor):
            if reason.strip():  # a blank reason is refused below, in the order of the checks
                fast = self._in_one_statement(
                    session, "reject", action_public_id, actor, team_id, reason.strip(), ActionState.PENDING,
                    ActionState.REJECTED,
                )  # fmt: skip
                if fast is not None:
                    return fast
            action = self._open_action(session, action_public_id, "reject", {ActionState.PENDING}, team_id)
            self._authorize(action, actor)
            if not reason.strip():
                raise ReasonRequired(action.public_id, "rejection")
            decision = self._decide(session, action, "reject", actor, team_id, reason.strip())
            return self._close(session, action, decision, ActionState.REJECTED)

    def veto(
        self, session: Session, action_public_id: str, actor: str, reason: str = "", *, team_id: str | None = None
    ) -> Outcome:
        with _attempt("veto", actor):
            fast = self._in_one_statement(
                session, "veto", action_public_id, actor, team_id, reason.strip() or None, ActionState.SCHEDULED,
                ActionState.VETOED,
            )  # fmt: skip
            if fast is not None:
                return fast
            action = self._open_action(session, action_public_id, "veto", {ActionState.SCHEDULED}, team_id)
            self._authorize(action, actor)
            decision = self._decide(session, action, "veto", actor, team_id, reason.strip() or None)
            return self._close(session, action, decision, ActionState.VETOED)

    def acknowledge(
        self, session: Session, action_public_id: str, actor: str, *, team_id: str | None = None
    ) -> Outcome:
        with _attempt("acknowledge", actor):
            action = self._open_action(
                session, action_public_id, "acknowledge", {ActionState.PENDING, ActionState.SCHEDULED}, team_id
            )
            # Whoever the chain pings may take it, not only the approvers.
            if not is_listed_approver(
                actor, [*action.approvers, *chains.chain_targets(session, action)], self.directory
            ):
                raise NotAnApprover(action.public_id, actor)
            earlier = session.scalars(
                select(Decision).where(Decision.action_id == action.id, Decision.kind == "acknowledge").limit(1)
            ).first()
            if earlier is not None:
                raise AlreadyAcknowledged(action.public_id, earlier.actor, earlier.at)
            decision = self._decide(
                session,
                action,
                "acknowledge",
                actor,
                team_id,
                None,
                messages=[ActionAcknowledged(action.public_id, actor)],
            )
            chains.arm_ack_timeout(session, action, decision.at)
            return Outcome(action, decision, ActionState(action.state), self._approvals(session, action), action.quorum)

    # -- the one-statement path (PostgreSQL) ---------------------------------------------

    def _in_one_statement(
        self,
        session: Session,
        kind: str,
        action_public_id: str,
        actor: str,
        team_id: str | None,
        note: str | None,
        open_state: ActionState,
        target: ActionState,
        seen_hash: str | None = None,
        seen_tool: str | None = None,
    ) -> Outcome | None:
        """The decision made and written by one statement (`approvals.decision_statement`), or
        None when it wrote nothing and the ORM path below is to decide or explain."""
        if session.get_bind().dialect.name != "postgresql":
            return None
        identities = [actor, *(group for group in tuple(self._groups) if actor in self.directory.members(group))]
        delegated = sorted(self.credentials.delegated_task_types()) if self.credentials else []
        now = self.clock.now()
        attempt = decision_statement.Attempt(
            kind, action_public_id, actor, identities, delegated, team_id, note, now, open_state, target, seen_hash,
            seen_tool,
        )  # fmt: skip
        row = decision_statement.run(session, attempt)
        if row is None:
            return None
        state = target if row.moved else ActionState(row.state)
        action = Action(
            id=row.id, public_id=row.public_id, task_type=row.task_type, tool=row.tool, params_hash=row.params_hash,
            state=state.value, requester=row.requester, approvers=row.approvers, quorum=row.quorum,
            decided_by=actor if row.moved else row.decided_by, decided_at=now if row.moved else row.decided_at,
            created_at=row.created_at, tool_hash=row.tool_hash, tool_changed_at=row.tool_changed_at,
        )  # fmt: skip
        decision = Decision(
            id=row.decision_id, action_id=row.id, kind=kind, actor=actor, team_id=team_id,
            params_hash=row.params_hash, tool_hash=row.tool_hash, note=note, at=now,
        )  # fmt: skip
        metrics.DECISIONS.labels(row.task_type, kind).inc()
        if row.moved and target in (ActionState.APPROVED, ActionState.REJECTED):
            metrics.TIME_TO_DECISION.labels(row.task_type).observe(max((now - row.created_at).total_seconds(), 0.0))
        return Outcome(action, decision, state, row.approvals, row.quorum)

    # -- steps -------------------------------------------------------------------------

    def _open_action(
        self,
        session: Session,
        action_public_id: str,
        kind: str,
        open_states: set[ActionState],
        team_id: str | None = None,
    ) -> Action:
        action = locked_action(session, action_public_id, team_id)
        if action.state not in OPEN_FOR_DECISION:
            raise AlreadyDecided(action.public_id, action.state, action.decided_by, action.decided_at)
        if action.state not in open_states:
            raise NotApplicable(action.public_id, action.state, kind)
        return action

    def _authorize(self, action: Action, actor: str) -> None:
        self._groups.update(entry for entry in action.approvers if entry.startswith("@"))
        if not is_listed_approver(actor, action.approvers, self.directory):
            raise NotAnApprover(action.public_id, actor)

    def _authorize_approval(
        self, session: Session, action: Action, actor: str, seen_hash: str, seen_tool: str | None
    ) -> None:
        if action.requester is not None and actor == action.requester:
            raise SelfApproval(action.public_id, actor)
        self._authorize(action, actor)
        if seen_hash != action.params_hash:
            raise StaleParams(action.public_id, seen_hash, action.params_hash)
        if not tool_seen(action, seen_tool):
            raise ToolChanged(action.public_id)
        already = session.scalar(
            select(func.count())
            .select_from(Decision)
            .where(
                Decision.action_id == action.id,
                Decision.actor == actor,
                Decision.kind.in_(APPROVING_KINDS),
                Decision.params_hash == action.params_hash,
                Decision.tool_hash == action.tool_hash,
            )
        )
        if already:
            raise AlreadyApprovedByYou(action.public_id, actor)
        # Checked at every approval, not only the last: whoever approves may be the one it runs as.
        missing = self.credentials.missing(session, action, actor) if self.credentials else None
        if missing is not None:
            raise CredentialMissing(action.public_id, actor, missing.owner, missing.names, missing.how)

    def _decide(
        self,
        session: Session,
        action: Action,
        kind: str,
        actor: str,
        team_id: str | None,
        note: str | None,
        *,
        diff: dict[str, Any] | None = None,
        messages: tuple[Message, ...] | list[Message] = (),
    ) -> Decision:
        now = self.clock.now()
        decision = Decision(
            action_id=action.id,
            kind=kind,
            actor=actor,
            team_id=team_id,
            params_hash=action.params_hash,
            tool_hash=action.tool_hash,
            note=note,
            diff=diff,
            at=now,
        )
        session.add(decision)
        session.flush()
        metrics.DECISIONS.labels(action.task_type, kind).inc()
        machine.record(
            session,
            action,
            f"decision.{kind}",
            actor=actor,
            now=now,
            note=note,
            data={"diff": diff} if diff else None,
            messages=messages,
        )
        return decision

    def _count_towards_quorum(self, session: Session, action: Action, decision: Decision) -> Outcome:
        approvals = self._approvals(session, action)
        if approvals < action.quorum:
            machine.record(
                session,
                action,
                "action.awaiting_quorum",
                actor=decision.actor,
                now=decision.at,
                note=f"{approvals} of {action.quorum} approvals",
                messages=[CardUpdated(action.public_id, approvals, action.quorum)],
            )
            return Outcome(action, decision, ActionState(action.state), approvals, action.quorum)
        return self._close(session, action, decision, ActionState.APPROVED, approvals)

    def _close(
        self, session: Session, action: Action, decision: Decision, target: ActionState, approvals: int | None = None
    ) -> Outcome:
        machine.move(
            session,
            action,
            target,
            actor=decision.actor,
            now=decision.at,
            note=decision.note,
            values={"decided_by": decision.actor, "decided_at": decision.at},
            messages=[ActionDecided(action.public_id, decision.kind, decision.actor)],
        )
        if target in (ActionState.APPROVED, ActionState.REJECTED):
            waited = (decision.at - action.created_at).total_seconds()
            metrics.TIME_TO_DECISION.labels(action.task_type).observe(max(waited, 0.0))
        counted = self._approvals(session, action) if approvals is None else approvals
        return Outcome(action, decision, target, counted, action.quorum)

    def _approvals(self, session: Session, action: Action) -> int:
        return (
            session.scalar(
                select(func.count(func.distinct(Decision.actor))).where(
                    Decision.action_id == action.id,
                    Decision.kind.in_(APPROVING_KINDS),
                    Decision.params_hash == action.params_hash,
                    Decision.tool_hash == action.tool_hash,
                )
            )
            or 0
        )

    def _replace_params(self, session: Session, action: Action, canonical: dict[str, Any], new_hash: str) -> None:
        fence = (Action.state == action.state, Action.params_hash == action.params_hash)
        changes = {"params": canonical, "params_hash": new_hash, "updated_at": self.clock.now()}
        if not compare_and_set(session, Action, action.id, *fence, **changes):
            raise StaleState(ACTION.name, action.public_id, action.state)
        set_committed_value(action, "params", canonical)
        set_committed_value(action, "params_hash", new_hash)


def tool_seen(action: Action, seen_tool: str | None) -> bool:
    """Whether a click that saw the tool definition `seen_tool` may approve `action`: the
    definition it waits under, or (None: a card drawn before definitions were shown on it, the
    command line) the one it was drafted under, unchanged since."""
    if seen_tool is None:
        return action.tool_changed_at is None
    return hmac.compare_digest(seen_tool, action.tool_hash)


def shown_binding(params_hash: str, tool_hash: str) -> str:
    """One short digest of the params hash and tool definition an item was shown with, for a
    form that lists many (`approve_shown`): 128 bits, base64url, 22 characters."""
    digest = hashlib.sha256(f"{params_hash}:{tool_hash}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def params_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """{field: {"from": …, "to": …}} for every field whose value changed."""
    return {
        key: {"from": old.get(key), "to": new.get(key)}
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    }


@contextmanager
def _attempt(kind: str, actor: str) -> Iterator[None]:
    """Label a refusal with what was attempted and by whom, for its audit event."""
    try:
        yield
    except DecisionRefused as refusal:
        refusal.attempted = kind
        refusal.actor = actor
        raise


def decide(
    sessions: sessionmaker[Session], clock: Clock, call: Callable[[Session], T], *, actor: str | None = None
) -> T:
    """Run one decision in its own transaction. A refusal is recorded in the audit ledger
    (its only write), attributed to `actor` when the refusal does not name one, and then
    re-raised for the caller to show the person."""
    with sessions() as session:
        try:
            with session.begin():
                return call(session)
        except DecisionRefused as refusal:
            refusal.actor = refusal.actor or actor
            with session.begin():
                record_refusal(session, refusal, clock)
            raise


def record_refusal(session: Session, refusal: DecisionRefused, clock: Clock) -> None:
    action = session.scalars(select(Action).where(Action.public_id == refusal.action_public_id)).first()
    data = {"attempted": refusal.attempted, "code": refusal.code}
    actor = refusal.actor or "unknown"
    metrics.DECISIONS.labels(action.task_type if action else "unknown", "refused").inc()
    if action is None:
        audit.record(
            session,
            audit.AuditEntry(
                kind="decision.refused",
                actor=actor,
                at=clock.now(),
                action_public_id=refusal.action_public_id,
                note=str(refusal),
                data=data,
            ),
        )
        return
    machine.record(session, action, "decision.refused", actor=actor, now=clock.now(), note=str(refusal), data=data)


def locked_action(session: Session, action_public_id: str, team_id: str | None) -> Action:
    """The action, locked for this transaction and read afresh; `ActionNotFound`, or
    `OtherWorkspace` for another workspace's (say no more than that it is not found)."""
    action = session.scalars(
        select(Action)
        .where(Action.public_id == action_public_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if action is None:
        raise ActionNotFound(action_public_id)
    if team_id is not None:  # a request from no particular workspace sees every action
        task = session.get(Task, action.task_id)
        if task is not None and not same_workspace(task.team_id, team_id):
            raise OtherWorkspace(action_public_id)
    return action
