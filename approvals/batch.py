"""Reviewing many waiting actions at once, without approving anything nobody saw.

`waiting_for` is what waits for one person: pending actions of their workspace that they may
approve (a listed approver, directly or through a group, never the requester) and have not
approved yet on their current params and tool definition; oldest first. A review shows some of
them, each with the digest of what it showed (`decisions.shown_binding`); approving the checked
ones is `approve_checked`: one `Decisions.approve_shown` per item, each in its own transaction
(`decisions.decide`), so each is its own decision on its own params hash with every rule of a
single click (quorum, self-approval, workspace, the tool's definition), its own audit events,
and a refusal of one (audited as `decision.refused`) stops no other. An item changed since it
was shown (edited, re-asked for a new tool definition, decided) is refused with its reason;
nothing is approved that the review did not show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from approvals.decisions import APPROVING_KINDS, Decisions, Outcome, decide
from approvals.errors import ActionNotFound, DecisionRefused, NotShown
from approvals.ports import Directory, is_listed_approver
from approvals.workspaces import visible_tasks
from core.clock import Clock
from core.models import Action, Decision, Task
from core.states import ActionState

# Pending actions read to find what waits for one person (oldest first); more are not counted.
SCAN_LIMIT = 2000


def waiting_for(
    session: Session,
    user: str,
    directory: Directory,
    *,
    team_id: str | None = None,
    task_type: str | None = None,
) -> list[Action]:
    """The pending actions `user` may approve and has not approved yet, oldest first."""
    query = (
        select(Action)
        .join(Task, Task.id == Action.task_id)
        .where(Action.state == ActionState.PENDING, visible_tasks(team_id))
        .order_by(Action.id)
        .limit(SCAN_LIMIT)
    )
    if task_type:
        query = query.where(Action.task_type == task_type)
    mine = [
        action
        for action in session.scalars(query)
        if action.requester != user and is_listed_approver(user, action.approvers, directory)
    ]
    if not mine:
        return []
    done = {
        (row[0], row[1], row[2])
        for row in session.execute(
            select(Decision.action_id, Decision.params_hash, Decision.tool_hash).where(
                Decision.action_id.in_([action.id for action in mine]),
                Decision.actor == user,
                Decision.kind.in_(APPROVING_KINDS),
            )
        )
    }
    return [action for action in mine if (action.id, action.params_hash, action.tool_hash) not in done]


@dataclass
class Checked:
    """What became of a review's checked items, filled in as each is decided: approved (each its
    decision's outcome), or refused with the refusal that says why."""

    approved: dict[str, Outcome] = field(default_factory=dict)
    refused: dict[str, Exception] = field(default_factory=dict)

    def unreached(self, checked: Sequence[str]) -> list[str]:
        """Those of `checked` not decided either way (the review ran out of time before them)."""
        return [item for item in dict.fromkeys(checked) if item not in self.approved and item not in self.refused]


def approve_checked(
    sessions: sessionmaker[Session],
    clock: Clock,
    decisions: Decisions,
    actor: str,
    checked: Sequence[str],
    shown: Mapping[str, str],
    *,
    shown_at: datetime | None = None,
    team_id: str | None = None,
    bound: Callable[[Callable[[Session], Outcome]], Callable[[Session], Outcome]] = lambda call: call,
    into: Checked | None = None,
) -> Checked:
    """Approve each checked action the review showed (`shown`: public id → its binding then), one
    decision and transaction each; an id the review did not show is refused (`NotShown`) without
    reading it. `bound` wraps each transaction's call (the request's time budget). The result is
    filled in item by item (`into`, if given), so a caller cut short still knows what was decided."""
    result = into if into is not None else Checked()
    for public_id in dict.fromkeys(checked):

        def approve(session: Session, public_id: str = public_id) -> Outcome:
            if public_id not in shown:
                raise NotShown(public_id)
            return decisions.approve_shown(
                session, public_id, actor, shown[public_id], shown_at=shown_at, team_id=team_id
            )

        try:
            result.approved[public_id] = decide(sessions, clock, bound(approve), actor=actor)
        except (DecisionRefused, ActionNotFound) as refusal:
            result.refused[public_id] = refusal
    return result
