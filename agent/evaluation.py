"""An eval from the ledger: how a candidate model or set of instructions would have drafted what
people already decided for a task type.

The last N decided actions of the type (approved, approved with edits, rejected or vetoed by a
person; drafted by an agent, not asked for through the actions API) are replayed: the request
that drafted each one is rebuilt from its task's stored conversation (everything before the
reply of the action's turn) and sent to the candidate with the type's tools. Tools are never
run: the candidate's `tool_use` is validated (canonical parameters) and compared, nothing more.

Per item: an approved action agrees when the candidate proposes the same tool with the same
canonical parameters as those that ran (the edited ones, after an edit); a rejected one agrees
unless the candidate proposes exactly the rejected call again. Beside it, the current
version's own record on the same items: approved as drafted (no edit) is agreement.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.caching import Caching
from agent.conversation import model_request, split_input, tool_definitions
from agent.model import ModelClient, ModelReply
from agent.pricing import Price, cost_usd
from agent.tools import ToolRegistry
from approvals import audit
from approvals.autonomy import fingerprint
from approvals.graduation import wilson_lower, wilson_upper
from core.canonical import params_hash
from core.config import Config, TaskTypeConfig
from core.models import Action, AuditEvent, Decision, Task
from core.states import ActionState

Verdict = Literal["approved", "edited", "rejected"]
EVAL_RAN = "eval.ran"
APPROVED_STATES = {
    ActionState.APPROVED,
    ActionState.EXECUTING,
    ActionState.SUCCEEDED,
    ActionState.FAILED,
    ActionState.UNKNOWN,
}
CLOSED_BY_PEOPLE = {ActionState.REJECTED, ActionState.VETOED}


@dataclass(frozen=True)
class Rate:
    agreed: int
    of: int

    @property
    def lower(self) -> float:
        return round(wilson_lower(self.agreed, self.of), 4)

    @property
    def upper(self) -> float:
        return round(wilson_upper(self.agreed, self.of), 4) if self.of else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"agreed": self.agreed, "of": self.of, "lower": self.lower, "upper": self.upper}


@dataclass(frozen=True)
class Item:
    action_id: str
    task_id: str
    verdict: Verdict  # what people did with the current version's draft
    tool: str
    expected: dict[str, Any]  # the parameters that ran (approved, edited), or those rejected
    proposed_tool: str | None  # the candidate's call (None: it called no tool)
    proposed: dict[str, Any] | None
    error: str | None = None  # the candidate's call did not validate

    @property
    def same_tool(self) -> bool:
        return self.proposed_tool == self.tool

    @property
    def exact(self) -> bool:
        return self.same_tool and self.proposed is not None and params_hash(self.proposed) == params_hash(self.expected)

    @property
    def agrees(self) -> bool:
        return not self.exact if self.verdict == "rejected" else self.exact

    @property
    def diff(self) -> dict[str, Any]:
        """What the candidate proposed against what people approved (or, for a rejected draft,
        that it proposed it again)."""
        if self.verdict == "rejected":
            return {"rejected_again": {"tool": self.tool, "params": self.expected}} if self.exact else {}
        if not self.same_tool:
            return {"tool": {"people": self.tool, "candidate": self.proposed_tool}}
        proposed = self.proposed or {}
        return {
            key: {"people": self.expected.get(key), "candidate": proposed.get(key)}
            for key in sorted(set(self.expected) | set(proposed))
            if self.expected.get(key) != proposed.get(key)
        }


@dataclass(frozen=True)
class Candidate:
    model: str
    instructions: str

    def fingerprint(self, task_type: TaskTypeConfig) -> str:
        """The task type's fingerprint (`approvals.autonomy.fingerprint`) were the candidate adopted."""
        return fingerprint(task_type.model_copy(update={"model": self.model, "instructions": self.instructions}))


@dataclass(frozen=True)
class Report:
    task_type: str
    model: str
    instructions_sha256: str
    fingerprint: str  # of the task type with the candidate's model and instructions
    items: tuple[Item, ...]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def agreement(self) -> Rate:
        return Rate(sum(item.agrees for item in self.items), len(self.items))

    @property
    def exact(self) -> Rate:
        approved = [item for item in self.items if item.verdict != "rejected"]
        return Rate(sum(item.exact for item in approved), len(approved))

    @property
    def same_tool(self) -> Rate:
        approved = [item for item in self.items if item.verdict != "rejected"]
        return Rate(sum(item.same_tool for item in approved), len(approved))

    @property
    def rejected_again(self) -> Rate:
        rejected = [item for item in self.items if item.verdict == "rejected"]
        return Rate(sum(item.exact for item in rejected), len(rejected))

    @property
    def current(self) -> Rate:
        """The current version's own record on the same items: approved as drafted."""
        return Rate(sum(item.verdict == "approved" for item in self.items), len(self.items))

    @property
    def differing(self) -> list[Item]:
        return [item for item in self.items if not item.agrees]

    def summary(self) -> dict[str, Any]:
        """What the ledger keeps of the eval (its `eval.ran` event's data), and `--json`'s head."""
        return {
            "task_type": self.task_type,
            "model": self.model,
            "instructions_sha256": self.instructions_sha256,
            "fingerprint": self.fingerprint,
            "items": len(self.items),
            "agreement": self.agreement.as_dict(),
            "exact_params": self.exact.as_dict(),
            "same_tool": self.same_tool.as_dict(),
            "rejected_again": self.rejected_again.as_dict(),
            "current": self.current.as_dict(),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }

    def as_json(self) -> dict[str, Any]:
        differing = [{**asdict(item), "diff": item.diff} for item in self.differing]
        return {**self.summary(), "differing": differing, "notes": list(self.notes)}


def decided_actions(session: Session, task_type: str, last: int) -> list[tuple[Action, Verdict]]:
    """The type's last `last` actions that people decided (newest first), each with the verdict."""
    rows = session.scalars(
        select(Action)
        .where(
            Action.task_type == task_type,
            Action.api_client_id.is_(None),
            Action.tool_use_id.is_not(None),
            Action.decided_by.is_not(None),
            Action.state.in_([state.value for state in APPROVED_STATES | CLOSED_BY_PEOPLE]),
        )
        .order_by(Action.decided_at.desc(), Action.id.desc())
        .limit(last)
    ).all()
    edited = set(
        session.scalars(
            select(Decision.action_id).where(Decision.action_id.in_([a.id for a in rows]), Decision.kind == "edit")
        )
    )
    chosen: list[tuple[Action, Verdict]] = []
    for action in rows:
        if action.state in CLOSED_BY_PEOPLE:
            chosen.append((action, "rejected"))
        else:
            chosen.append((action, "edited" if action.id in edited else "approved"))
    return chosen


def replay_messages(task: Task, turn: int) -> list[dict[str, Any]] | None:
    """The conversation as the model saw it when it drafted turn `turn`: every message before
    that turn's reply (None when the stored conversation has no such reply)."""
    replies = 0
    for index, message in enumerate(task.messages):
        if message.get("role") == "assistant":
            replies += 1
            if replies == turn:
                return list(task.messages[:index])
    return None


def run_eval(
    session: Session,
    config: Config,
    registry: ToolRegistry,
    model: ModelClient,
    task_type_name: str,
    candidate: Candidate,
    last: int,
) -> Report:
    """Replay and compare (the model is asked once per item; no tool runs, nothing is written)."""
    task_type = config.task_types[task_type_name]
    candidate_type = task_type.model_copy(update={"model": candidate.model, "instructions": candidate.instructions})
    tools = tool_definitions(candidate_type, registry)
    prices = {name: Price(p.input, p.output, p.cache_read, p.cache_write) for name, p in config.model.prices.items()}
    items: list[Item] = []
    notes: list[str] = []
    tokens_in = tokens_out = 0
    cost = 0.0
    for action, verdict in reversed(decided_actions(session, task_type_name, last)):  # oldest first
        task = session.get(Task, action.task_id)
        messages = replay_messages(task, action.turn) if task is not None else None
        if task is None or messages is None:
            notes.append(f"{action.public_id}: its request is no longer stored (pruned?); skipped")
            continue
        request = model_request(config, task, candidate_type, tools)
        caching: Caching = "prefix" if config.model.prompt_caching else "off"
        request = replace(request, messages=messages, task_type=task_type_name, caching=caching)
        reply = model.complete(request)
        tokens_in += reply.usage.input_tokens + reply.usage.cache_read_tokens + reply.usage.cache_creation_tokens
        tokens_out += reply.usage.output_tokens
        cost += cost_usd(reply.model, reply.usage, prices)
        items.append(_item(action, verdict, reply, registry, task.public_id))
    return Report(
        task_type=task_type_name,
        model=candidate.model,
        instructions_sha256=hashlib.sha256(candidate.instructions.encode()).hexdigest(),
        fingerprint=candidate.fingerprint(task_type),
        items=tuple(items),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=cost,
        notes=tuple(notes),
    )


def _item(action: Action, verdict: Verdict, reply: ModelReply, registry: ToolRegistry, task_id: str) -> Item:
    uses = reply.tool_uses
    use = next((u for u in uses if u.get("name") == action.tool), uses[0] if uses else None)
    base = Item(action.public_id, task_id, verdict, action.tool, dict(action.params), None, None)
    if use is None:
        return base
    name = str(use.get("name"))
    params, _, _ = split_input(use.get("input"))
    try:
        canonical = registry.validate(name, params)
    except (LookupError, ValueError) as exc:
        return replace(base, proposed_tool=name, proposed=params, error=str(exc))
    return replace(base, proposed_tool=name, proposed=canonical)


def record(session: Session, report: Report, actor: str, now: datetime) -> None:
    """On the ledger: that an eval ran, of what, by whom, and its numbers (not its items)."""
    agreement, current = report.agreement, report.current
    note = (
        f"{report.model}: {agreement.agreed}/{agreement.of} agree "
        f"(Wilson 95% {agreement.lower:.2f}-{agreement.upper:.2f}); current version {current.agreed}/{current.of}"
    )
    entry = audit.AuditEntry(
        kind=EVAL_RAN, actor=actor, at=now, task_type=report.task_type, note=note, data=report.summary()
    )
    audit.record(session, entry)


def latest(session: Session, task_type: str) -> AuditEvent | None:
    """The type's latest `eval.ran` event on the ledger."""
    query = select(AuditEvent).where(AuditEvent.kind == EVAL_RAN, AuditEvent.task_type == task_type)
    return session.scalars(query.order_by(AuditEvent.seq.desc()).limit(1)).first()
