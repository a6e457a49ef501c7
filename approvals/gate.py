"""The gate: a drafted tool call becomes an action, and the policy decides its mode.

`hitl` → pending (a card asks for approval), `hotl` → scheduled (runs when the veto window
ends unless vetoed), `auto` → executing (the executor picks it up and reports). An
out-of-scope tool or invalid params are refused and recorded, and never reach a person.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from approvals import autonomy, chains, machine, standing
from approvals.policy import Routing, route
from approvals.ports import ToolCatalog, ToolPolicy
from approvals.standing import boosted
from core.canonical import params_hash
from core.config import AutonomyLevel, TaskTypeConfig
from core.ids import SYSTEM, new_id
from core.messages import CardPosted, ConnectRequested, Message
from core.models import Action, StandingRule, Task
from core.states import ACTION, ActionState

DRAFTED = ActionState.DRAFTED.value


@dataclass(frozen=True)
class Draft:
    tool: str
    params: dict[str, Any]
    rationale: str
    confidence: float
    model: str | None = None  # which model drafted it
    fallback: bool = False  # that model was the fallback (the primary failed): a person decides


def submit(
    session: Session,
    task: Task,
    draft: Draft,
    *,
    task_type: TaskTypeConfig,
    catalog: ToolCatalog,
    now: datetime,
    turn: int = 0,
    tool_use_id: str | None = None,
    admins: Sequence[str] = (),
    claim: Callable[[Action], Mapping[str, Any] | None] | None = None,
    external: Mapping[str, Any] | None = None,
    open_tool: bool = False,
    read_only: bool = False,
    undo_of: Action | None = None,
) -> Action:
    """Record the draft as an action and route it; returns the action in its new state
    (`refused` with `error` set when the draft is out of scope or invalid). `claim`: asked for
    the lease of an action routed to `executing`, to insert it with (an executor of the
    drafting process takes it at once; None leaves it to any executor).

    The action is inserted once, in the state it is routed to: its `action.drafted` event and
    the event of its move out of `drafted` are written as `machine.move` would write them, but
    no UPDATE follows the INSERT of a row nobody else can see yet.

    `external`: the action's `api_client_id`, `external_id` and `callback_url`, for one asked
    for through the actions API; routed `auto`, it is then `approved` (its client claims it).

    `undo_of`: the action this draft compensates (`approvals.undo`): its tool, the original's
    declared undo, is allowed whatever the type's list, and a person approves it first."""
    action = _new_action(task, draft, now)
    action.undo_of = undo_of.id if undo_of is not None else None
    for name, value in (external or {}).items():
        setattr(action, name, value)
    action.turn, action.tool_use_id = turn, tool_use_id
    data: dict[str, Any] = {"rationale": draft.rationale, "confidence": action.confidence}
    if undo_of is not None:
        data["undo_of"] = undo_of.public_id  # the ledger links the compensation to what it undoes
    machine.record(session, action, "action.drafted", actor=SYSTEM, now=now, to_state=DRAFTED, data=data)

    undo = undo_of is not None
    problem = _refusal(draft, task_type, catalog, open_tool=open_tool and external is not None, undo=undo)
    if problem is not None:
        _enter(session, action, ActionState.REFUSED, now=now, note=problem, values={"error": problem})
        return action

    policy = catalog.policy(draft.tool)
    canonical = catalog.validate(draft.tool, draft.params)
    # Demotions apply before routing (`autonomy.gate_level` settles the type when one may wait).
    if undo_of is not None:
        # Routed hitl whatever the level, so read without settling: settling labels actions, and
        # the caller holds the original's row lock (a settle waiting for it would deadlock).
        level, locked = autonomy.effective_level(session, task.task_type, task_type), False
    else:
        level, locked = autonomy.gate_level(session, task.task_type, task_type, now, admins)
    routing = _route(level, policy, action, task_type)
    rule = None
    if read_only and open_tool and external is not None:
        routing = Routing(mode=AutonomyLevel.AUTO, reasons=("read-only tool",), low_confidence=False)
    elif undo_of is not None:  # never more autonomous than a person's approval first
        routing = Routing(mode=AutonomyLevel.HITL, reasons=(f"it undoes {undo_of.public_id}",), low_confidence=False)
    else:
        level, locked, routing, rule = _by_rule(
            session, task, action, canonical, level, locked, routing, now, policy=policy, task_type=task_type
        )
    if routing.mode == AutonomyLevel.HOTL and not locked:
        level = autonomy.locked_level(session, task.task_type, task_type)
        routing = _route(level, policy, action, task_type)
    _apply(action, canonical, policy.risk, policy.idempotent, policy.timeout_s, routing.mode, task_type)
    # The definition approvals bind to with the params: a change while it waits re-asks.
    action.tool_hash = catalog.definition_hash(draft.tool)
    data = {
        "mode": routing.mode.value,
        "level": level.value,
        "caps": list(routing.reasons),
        "low_confidence": routing.low_confidence,
        "tool_hash": action.tool_hash,
        **({"model": draft.model} if draft.model else {}),
        **({"fallback": True} if draft.fallback else {}),
        **({"credentials": task_type.credentials} if task_type.credentials and policy.secrets else {}),
        **({"rule": rule.public_id} if rule is not None else {}),
    }
    # It runs with the requester's own credential: they may have to connect it (the sender
    # checks at delivery, and asks them only if they have not and can do it from Slack).
    connect = (
        [ConnectRequested(action.public_id, action.requester)]
        if task_type.credentials == "requester" and policy.secrets and action.requester
        else []
    )
    if routing.mode == AutonomyLevel.HITL:
        messages = [CardPosted(action.public_id, routing.low_confidence), *connect]
        _enter(session, action, ActionState.PENDING, now=now, data=data, messages=messages)
        chains.start(
            session, action, chains.snapshot(task_type, list(admins), low_confidence=routing.low_confidence), now
        )
    elif routing.mode == AutonomyLevel.HOTL:
        deadline = now + task_type.veto_window
        messages = [CardPosted(action.public_id), *connect]
        _enter(
            session, action, ActionState.SCHEDULED, now=now, data=data, values={"run_at": deadline}, messages=messages
        )
    elif external is not None:
        _enter(session, action, ActionState.APPROVED, now=now, data=data)
    else:
        # Without a lease, any executor claims it like an action waiting for its next attempt.
        lease = claim(action) if claim is not None else None
        _enter(session, action, ActionState.EXECUTING, now=now, data=data, values={"run_at": now, **(lease or {})})
    if rule is not None:
        standing.record_use(session, action, rule, now)
    return action


def _by_rule(
    session: Session,
    task: Task,
    action: Action,
    params: dict[str, Any],
    level: AutonomyLevel,
    locked: bool,
    routing: Routing,
    now: datetime,
    *,
    policy: ToolPolicy,
    task_type: TaskTypeConfig,
) -> tuple[AutonomyLevel, bool, Routing, StandingRule | None]:
    """The routing one level up when a live standing rule allows the draft and the tool's caps
    let that level count; the rule's use is counted here. The level is first read under the
    share lock (as a draft bound for a veto window reads it), so a demotion cannot slip between
    the read and the use; without a matching rule nothing changes and nothing is locked."""
    if not task_type.rules or boosted(level, task_type) is None:
        return level, locked, routing, None
    found = standing.candidates(session, task, action.tool, params, now)
    if not found:
        return level, locked, routing, None
    if not locked:
        level, locked = autonomy.locked_level(session, task.task_type, task_type), True
        routing = _route(level, policy, action, task_type)
    up = boosted(level, task_type)
    lifted = _route(up, policy, action, task_type) if up is not None else routing
    if lifted.mode <= routing.mode:
        return level, locked, routing, None  # the tool's caps or low confidence hold it anyway
    rule = standing.use(session, found, now)
    return (level, locked, lifted, rule) if rule is not None else (level, locked, routing, None)


def _route(level: AutonomyLevel, policy: ToolPolicy, action: Action, task_type: TaskTypeConfig) -> Routing:
    fallback_model = (action.model or "?") if action.fallback else None
    return route(
        level,
        policy,
        action.confidence,
        task_type.confidence_threshold,
        credentials=task_type.credentials,
        fallback_model=fallback_model,
    )


def _enter(
    session: Session,
    action: Action,
    target: ActionState,
    *,
    now: datetime,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    messages: Sequence[Message] = (),
) -> None:
    """Move the new action from `drafted` to `target` and insert it: the lifecycle checked and
    the move audited (with its messages) as `machine.move` does it."""
    ACTION.check(action.public_id, DRAFTED, target)
    action.state = target.value
    for name, value in (values or {}).items():
        setattr(action, name, value)
    session.add(action)
    session.flush()  # its id: the timers of its chain and a claim name it
    machine.record(
        session,
        action,
        f"{ACTION.name}.{target.value}",
        actor=SYSTEM,
        now=now,
        from_state=DRAFTED,
        to_state=target.value,
        note=note,
        data=data,
        messages=messages,
    )


def _new_action(task: Task, draft: Draft, now: datetime) -> Action:
    return Action(
        public_id=new_id("act"),
        task_id=task.id,
        task_type=task.task_type,
        tool=draft.tool,
        params=draft.params,
        params_hash=params_hash(draft.params),
        model=draft.model,
        fallback=draft.fallback,
        rationale=draft.rationale,
        confidence=_clamp(draft.confidence),
        risk="high",
        idempotent=False,
        mode=AutonomyLevel.HITL.value,
        state=ActionState.DRAFTED.value,
        requester=task.requester,
        approvers=[],
        quorum=1,
        timeout_s=0.0,
        created_at=now,
        updated_at=now,
    )


def _clamp(confidence: float) -> float:
    # DESIGN: a missing or malformed confidence counts as 0.
    if not isinstance(confidence, int | float) or confidence != confidence:  # NaN
        return 0.0
    return min(max(float(confidence), 0.0), 1.0)


def _refusal(
    draft: Draft, task_type: TaskTypeConfig, catalog: ToolCatalog, *, open_tool: bool, undo: bool = False
) -> str | None:
    allowed = draft.tool in task_type.tools or undo  # an undo's tool is its original's declared one
    if not allowed and not (open_tool and task_type.open_tools is not None):
        return f"tool {draft.tool!r} is not allowed for this task type (allowed: {', '.join(task_type.tools)})"
    try:
        catalog.policy(draft.tool)
        catalog.validate(draft.tool, draft.params)
    except LookupError:
        return f"tool {draft.tool!r} is not registered"
    except ValueError as exc:
        problems: dict[str, str] = getattr(exc, "problems", {})
        listed = "; ".join(f"{field}: {problem}" for field, problem in problems.items()) or str(exc)
        return f"invalid parameters for {draft.tool!r}: {listed}"
    return None


def _apply(
    action: Action,
    canonical: dict[str, Any],
    risk: str,
    idempotent: bool,
    timeout_s: float,
    mode: AutonomyLevel,
    task_type: TaskTypeConfig,
) -> None:
    action.params = canonical
    action.params_hash = params_hash(canonical)
    action.risk = risk
    action.idempotent = idempotent
    action.timeout_s = timeout_s
    action.mode = mode.value
    # Snapshots: a config change later must not move this action's approvers or quorum.
    action.approvers = list(task_type.approvers)
    action.quorum = task_type.quorum
