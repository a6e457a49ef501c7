"""Standing rules in the database: made by an admin from a card ("Approve, and allow
similar…"), applied by the gate, listed, revoked by an admin or by an incident on the type.

A draft of the rule's workspace, task type and tool whose params the rule's constraints allow
(`approvals.rules`) runs as if its type were one level more autonomous (`hitl → hotl`,
`hotl → auto`), never past the tool's caps or the type's ceiling, while the rule is live: not
expired, not revoked, used fewer than `max_uses` times. A use is counted by one conditional
UPDATE, so two drafts at once cannot overrun the limit. Made, used and revoked are audited
(`rule.created`, `rule.used`, `rule.revoked`), each naming the rule's id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from approvals import audit, machine, rules
from approvals.errors import ApprovalsError, DecisionRefused
from approvals.graduation import one_up
from approvals.policy import route
from approvals.ports import Directory, ToolPolicy, is_listed_approver
from core.config import AutonomyLevel, TaskTypeConfig
from core.ids import SYSTEM, new_id
from core.messages import CardUpdated
from core.models import Action, StandingRule, Task
from core.states import ActionState

if TYPE_CHECKING:  # the decisions bring their metrics: `approvals.autonomy` (and the CLI) need none of it
    from approvals.decisions import Decisions, Outcome

DEFAULT_EXPIRY = timedelta(days=7)
MAX_EXPIRY = timedelta(days=90)
ATTEMPTED = "allow_similar"


class RuleRefused(DecisionRefused):
    """A person may not make this rule (not an admin, rules forbidden for the type, …)."""

    code = "rule_refused"
    attempted = ATTEMPTED


class RuleNotFound(ApprovalsError):
    def __init__(self, rule_public_id: str) -> None:
        self.rule_public_id = rule_public_id
        super().__init__(f"no standing rule {rule_public_id!r}")


class RuleAlreadyRevoked(ApprovalsError):
    def __init__(self, rule: StandingRule) -> None:
        self.rule_public_id = rule.public_id
        at = rule.revoked_at.isoformat(timespec="minutes") if rule.revoked_at else "?"
        super().__init__(f"standing rule {rule.public_id!r} was already revoked by {rule.revoked_by} at {at}")


def boosted(level: AutonomyLevel, task_type: TaskTypeConfig) -> AutonomyLevel | None:
    """The level a rule lets a draft run at: one above `level`, within the type's ceiling; None
    when there is none."""
    up = one_up(level)
    return up if up is not None and up <= task_type.graduation.ceiling else None


def could_apply(policy: ToolPolicy, task_type: TaskTypeConfig) -> bool:
    """Whether a rule could ever let this tool run sooner in this type: the type allows rules, and
    at its ceiling, with full confidence, the tool's own caps still allow more than `hitl`."""
    if not task_type.rules:
        return False
    best = route(task_type.graduation.ceiling, policy, 1.0, 0.0, credentials=task_type.credentials)
    return best.mode > AutonomyLevel.HITL


def live(now: datetime) -> Any:
    """A filter on `StandingRule` for the rules that may still be used at `now`."""
    return (
        StandingRule.revoked_at.is_(None),
        StandingRule.expires_at > now,
        or_(StandingRule.max_uses.is_(None), StandingRule.uses < StandingRule.max_uses),
    )


def candidates(session: Session, task: Task, tool: str, params: Mapping[str, Any], now: datetime) -> list[StandingRule]:
    """The live rules of the task's workspace, type and tool that allow `params`, oldest first."""
    team = StandingRule.team_id.is_(None) if task.team_id is None else StandingRule.team_id == task.team_id
    found = session.scalars(
        select(StandingRule)
        .where(StandingRule.task_type == task.task_type, StandingRule.tool == tool, team, *live(now))
        .order_by(StandingRule.id)
    ).all()
    return [rule for rule in found if rules.matches(rule.constraints, params)]


def use(session: Session, found: Sequence[StandingRule], now: datetime) -> StandingRule | None:
    """Count one use of the first of `found` still live, in one conditional UPDATE each (a rule
    used up or revoked meanwhile is skipped); None when none is."""
    for rule in found:
        counted = session.execute(
            update(StandingRule)
            .where(StandingRule.id == rule.id, *live(now))
            .values(uses=StandingRule.uses + 1)
            .execution_options(synchronize_session=False)
        )
        if counted.rowcount == 1:  # type: ignore[attr-defined]
            session.refresh(rule)
            return rule
    return None


def record_use(session: Session, action: Action, rule: StandingRule, now: datetime) -> None:
    action.standing_rule_id = rule.id
    data = {"rule": rule.public_id, "uses": rule.uses, "max_uses": rule.max_uses, "mode": action.mode}
    machine.record(session, action, "rule.used", actor=SYSTEM, now=now, data=data)


def may_allow(
    session: Session,
    action_public_id: str,
    actor: str,
    *,
    task_types: Mapping[str, TaskTypeConfig],
    policy_of: Any,
    admins: Sequence[str],
    directory: Directory,
    team_id: str | None,
) -> Action:
    """The pending action `actor` may approve with a rule: they are an admin, and its type allows
    rules that could apply to its tool (`policy_of(tool)`). The approval's own checks (approver,
    not the requester, params) come when the form is submitted."""
    from approvals.decisions import locked_action

    action = locked_action(session, action_public_id, team_id)
    if not is_listed_approver(actor, list(admins), directory):
        raise RuleRefused(action_public_id, f"{actor} is not an admin: only admins make standing rules")
    task_type = task_types.get(action.task_type)
    if task_type is None or not task_type.rules:
        raise RuleRefused(action_public_id, f"task type {action.task_type!r} does not allow standing rules")
    if not could_apply(policy_of(action.tool), task_type):
        raise RuleRefused(
            action_public_id,
            f"{action.tool!r} always needs a person's approval in {action.task_type!r}: a rule could not change that",
        )
    if action.state != ActionState.PENDING:
        raise RuleRefused(action_public_id, f"action {action_public_id!r} is {action.state}, not waiting for approval")
    return action


def allow_similar(
    session: Session,
    decisions: Decisions,
    action_public_id: str,
    actor: str,
    seen_hash: str,
    *,
    constraints: Mapping[str, Any],
    schema: Mapping[str, Any],
    expires_in: timedelta,
    max_uses: int | None,
    task_types: Mapping[str, TaskTypeConfig],
    admins: Sequence[str],
    now: datetime,
    team_id: str | None = None,
    seen_tool: str | None = None,
) -> tuple[Outcome, StandingRule]:
    """Approve the action (a normal approval by `actor`, with all its checks) and make the rule:
    both or neither. `rules.InvalidRule` names what is wrong with the constraints or limits."""
    action = may_allow(
        session,
        action_public_id,
        actor,
        task_types=task_types,
        policy_of=decisions.catalog.policy,
        admins=admins,
        directory=decisions.directory,
        team_id=team_id,
    )
    checked = rules.validate(constraints, schema)
    problems = {}
    if not timedelta(0) < expires_in <= MAX_EXPIRY:
        problems["expires"] = f"between a second and {MAX_EXPIRY.days} days, got {expires_in}"
    if max_uses is not None and max_uses < 1:
        problems["max_uses"] = f"at least 1 (or empty: no count limit), got {max_uses}"
    if problems:
        raise rules.InvalidRule(problems)
    task = session.get_one(Task, action.task_id)
    outcome = decisions.approve(session, action_public_id, actor, seen_hash, team_id=team_id, seen_tool=seen_tool)
    rule = StandingRule(
        public_id=new_id("rule"),
        team_id=task.team_id,
        task_type=action.task_type,
        tool=action.tool,
        constraints=checked,
        created_by=actor,
        created_from=action.public_id,
        created_at=now,
        expires_at=now + expires_in,
        max_uses=max_uses,
        uses=0,
    )
    session.add(rule)
    session.flush()
    data = {
        "rule": rule.public_id,
        "tool": rule.tool,
        "constraints": checked,
        "expires_at": rule.expires_at.isoformat(),
        "max_uses": max_uses,
    }
    machine.record(
        session, action, "rule.created", actor=actor, now=now, note=rules.summary(checked), data=data,
        messages=[CardUpdated(action.public_id)],
    )  # fmt: skip
    return outcome, rule


def revoke(session: Session, rule_public_id: str, actor: str, now: datetime, reason: str | None = None) -> StandingRule:
    rule = session.scalars(
        select(StandingRule)
        .where(StandingRule.public_id == rule_public_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if rule is None:
        raise RuleNotFound(rule_public_id)
    if rule.revoked_at is not None:
        raise RuleAlreadyRevoked(rule)
    _revoke(session, rule, actor, now, reason)
    return rule


def revoke_for_type(session: Session, task_type: str, now: datetime, reason: str) -> list[StandingRule]:
    """Revoke every rule of the type not revoked yet (an incident: its evidence no longer holds)."""
    found = session.scalars(
        select(StandingRule)
        .where(StandingRule.task_type == task_type, StandingRule.revoked_at.is_(None))
        .order_by(StandingRule.id)
        .with_for_update()
    ).all()
    for rule in found:
        _revoke(session, rule, SYSTEM, now, reason)
    return list(found)


def _revoke(session: Session, rule: StandingRule, actor: str, now: datetime, reason: str | None) -> None:
    rule.revoked_at, rule.revoked_by, rule.revoked_reason = now, actor, reason
    audit.record(
        session,
        audit.AuditEntry(
            kind="rule.revoked",
            actor=actor,
            at=now,
            task_type=rule.task_type,
            note=reason,
            data={"rule": rule.public_id, "uses": rule.uses},
        ),
    )


def listed(session: Session, task_type: str | None = None) -> list[StandingRule]:
    """Every rule (of `task_type`), newest first."""
    query = select(StandingRule).order_by(StandingRule.id.desc())
    if task_type is not None:
        query = query.where(StandingRule.task_type == task_type)
    return list(session.scalars(query))


def status(rule: StandingRule, now: datetime) -> str:
    """`live`, `revoked`, `expired` or `used up`."""
    if rule.revoked_at is not None:
        return "revoked"
    if rule.expires_at <= now:
        return "expired"
    if rule.max_uses is not None and rule.uses >= rule.max_uses:
        return "used up"
    return "live"


def public_id_of(session: Session, rule_id: int | None) -> str | None:
    return None if rule_id is None else session.scalar(select(StandingRule.public_id).where(StandingRule.id == rule_id))


def made_from(session: Session, action_public_id: str) -> str | None:
    """The rule made when this action was approved, if one was."""
    return session.scalar(select(StandingRule.public_id).where(StandingRule.created_from == action_public_id))
