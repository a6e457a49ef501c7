"""Actions asked for through the actions API (external tools): submitted through the same gate
as an agent's drafts, claimed by their client once runnable, and ended by the client's report.

Each such action has a task row of its own in state `external` (no agent works on it; it holds
the requester and the request for the card, the audit and `status`). Every state change of one
queues a webhook delivery (with a `callback_url`) in the transaction of the change, and after
the commit tells this process's listeners (the long-polls waiting on it) which actions moved
(`approvals.external_changes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import gate, machine
from approvals.ports import ToolCatalog
from core.config import Config
from core.errors import InvalidTransition, StaleState
from core.ids import new_id
from core.messages import ActionFailed, ActionSucceeded
from core.models import Action, Decision, Task
from core.states import ActionState, TaskState

S = ActionState
# Where a client waits no longer: the action is decided, or it ended without running.
SETTLED = frozenset(S) - {S.DRAFTED, S.PENDING, S.SCHEDULED}
# The result of an action its client took over to run itself, outside countersign's sight.
HANDED_TO = "handed_to"


class ExternalRefused(Exception):
    """A claim or a report the action's state does not allow (HTTP 409)."""


@dataclass(frozen=True)
class Request:
    task_type: str
    tool: str
    params: dict[str, Any]
    rationale: str = ""
    confidence: float = 1.0
    requester: str | None = None
    external_id: str | None = None
    callback_url: str | None = None
    # An open tool of the task type (`open_tools`): the schema its client sent (or `{"type":
    # "object"}`), kept with the action; `read_only`: the config lists it as read-only.
    params_schema: dict[str, Any] | None = None
    read_only: bool = False
    # What the card shows as the request (None: the tool and the client); whether an approver
    # may edit its params (False: the client runs what it asked for, whatever the edit).
    request_text: str | None = None
    editable: bool = True


def submit(
    session: Session,
    config: Config,
    catalog: ToolCatalog,
    client_id: int,
    request: Request,
    now: datetime,
    *,
    client_name: str = "",
) -> tuple[Action, bool]:
    """The action for `request` and whether it is new: the same `external_id` from the same
    client again returns the first one. The caller has checked the task type, tool and params
    (a refusal here would be recorded, not answered)."""
    if request.external_id is not None:
        earlier = session.scalars(
            select(Action).where(Action.api_client_id == client_id, Action.external_id == request.external_id)
        ).first()
        if earlier is not None:
            return earlier, False
    asker = client_name or client_id
    task = external_task(
        session,
        task_type=request.task_type,
        requester=request.requester,
        # What the card shows as the request: who asked, through which client.
        request_text=(
            (request.request_text or f"{request.tool}, asked for through the actions API by client {asker!r}")
            + (" (read-only: approved without asking)" if request.read_only else "")
        ),
        now=now,
    )
    draft = gate.Draft(request.tool, request.params, request.rationale, request.confidence)
    external = {
        "api_client_id": client_id,
        "external_id": request.external_id,
        "callback_url": request.callback_url,
        "params_schema": request.params_schema,
        "editable": request.editable,
    }
    action = gate.submit(
        session,
        task,
        draft,
        task_type=config.task_types[request.task_type],
        catalog=catalog,
        now=now,
        admins=config.slack.admins,
        external=external,
        open_tool=request.params_schema is not None,
        read_only=request.read_only,
    )
    return action, True


def runnable(action: Action, now: datetime) -> bool:
    """Whether its client may claim it now: approved, or scheduled with its veto window passed
    (a long-poll answers then too: nobody vetoed, so it is decided)."""
    return action.state == S.APPROVED or (
        action.state == S.SCHEDULED and action.run_at is not None and action.run_at <= now
    )


def claim(session: Session, action: Action, owner: str, lease: timedelta, now: datetime) -> Action:
    """Move a runnable action (approved, or scheduled with its veto window passed) to
    `executing` under `owner`'s lease; `ExternalRefused` for any other state or a lost race."""
    if not runnable(action, now):
        raise ExternalRefused(_not_runnable(action, now))
    fence = [Action.run_at <= now] if action.state == S.SCHEDULED else []
    lease_until = now + lease
    values = {"lease_owner": owner, "lease_until": lease_until, "attempts": action.attempts + 1}
    data = {"lease_owner": owner, "lease_until": lease_until.isoformat()}
    try:
        machine.move(session, action, S.EXECUTING, actor=owner, now=now, values=values, data=data, fence=fence)
    except (StaleState, InvalidTransition):
        raise ExternalRefused(f"action {action.public_id} was claimed or decided meanwhile") from None
    return action


def report(
    session: Session,
    action: Action,
    owner: str,
    *,
    succeeded: bool,
    result: dict[str, Any] | None,
    error: str | None,
    now: datetime,
) -> Action:
    """End an executing action its client claimed with the client's outcome, once."""
    if action.state != S.EXECUTING or action.lease_owner != owner:
        raise ExternalRefused(f"action {action.public_id} is {action.state}, not executing under your claim")
    target = S.SUCCEEDED if succeeded else S.FAILED
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "error": error}
    if succeeded:
        values["result"] = result
    message = ActionSucceeded(action.public_id) if succeeded else ActionFailed(action.public_id)
    try:
        machine.move(
            session,
            action,
            target,
            actor=owner,
            now=now,
            note=error,
            data={"attempt": action.attempts, **({"result": result} if result is not None else {})},
            values=values,
            fence=[Action.lease_owner == owner],
            messages=[message],
        )
    except (StaleState, InvalidTransition):
        raise ExternalRefused(f"action {action.public_id} was ended meanwhile") from None
    return action


def hand_over(session: Session, action: Action, owner: str, to: str, now: datetime) -> Action:
    """Claim a runnable action and report it `succeeded` as handed to `to`, in one transaction:
    for a client that runs the call itself the moment it reads the approval and never reports
    (a HumanLayer SDK). No lease is left behind, so it can never lapse to `unknown`.
    `ExternalRefused` when it is not runnable, or was claimed meanwhile."""
    claim(session, action, owner, timedelta(0), now)
    return report(session, action, owner, succeeded=True, result={HANDED_TO: to}, error=None, now=now)


def _not_runnable(action: Action, now: datetime) -> str:
    if action.state == S.SCHEDULED and action.run_at is not None:
        left = max((action.run_at - now).total_seconds(), 0.0)
        return f"action {action.public_id} is in its veto window for {left:.0f}s more; claim it after"
    if action.state == S.PENDING:
        return f"action {action.public_id} is pending: it waits for approval"
    if action.state == S.EXECUTING:
        return f"action {action.public_id} is already claimed"
    return f"action {action.public_id} is {action.state}: it will not run"


def view(session: Session, action: Action, now: datetime) -> dict[str, Any]:
    """The action as the API shows it; `runnable`: whether a claim would be taken now, `run_at`:
    the end of its veto window while it is `scheduled`."""
    reason = None
    if action.state in (S.REJECTED, S.VETOED):
        reason = closing_note(session, action)
    elif action.state in (S.FAILED, S.UNKNOWN, S.EXPIRED):
        reason = action.error
    return {
        "action_id": action.public_id,
        "state": action.state,
        "task_type": action.task_type,
        "tool": action.tool,
        "params": action.params,
        "params_hash": action.params_hash,
        "decided_by": action.decided_by,
        "decided_at": _iso(action.decided_at),
        "reason": reason,
        "external_id": action.external_id,
        "result": action.result,
        "lease_until": _iso(action.lease_until),
        "run_at": _iso(action.run_at) if action.state == S.SCHEDULED else None,
        "runnable": runnable(action, now),
    }


def closing_note(session: Session, action: Action) -> str | None:
    """The reason its rejecter or vetoer gave, word for word (None: no reason, or neither happened)."""
    return session.scalar(
        select(Decision.note)
        .where(Decision.action_id == action.id, Decision.kind.in_(["reject", "veto"]))
        .order_by(Decision.id.desc())
        .limit(1)
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def external_task(
    session: Session,
    *,
    task_type: str,
    requester: str | None,
    request_text: str,
    now: datetime,
    team_id: str | None = None,
) -> Task:
    """The task an action no agent drafted belongs to (state `external`: no agent works on it);
    it holds who asked and what for, as the card shows it."""
    task = Task(
        public_id=new_id("tsk"),
        task_type=task_type,
        requester=requester,
        team_id=team_id,
        request_text=request_text,
        state=TaskState.EXTERNAL.value,
        messages=[],
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    session.flush()
    return task
