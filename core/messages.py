"""The outbox's messages: one frozen dataclass per kind, the facts a state change tells people.

A message is stored as its `KIND` (the `outbox.kind` column) and `to_payload()` (the JSON
`outbox.payload`); `decode` turns a stored row back into its dataclass and raises
`MalformedMessage` when the payload does not match its kind, so a bad row fails loudly
instead of being half delivered. The kind strings and payload keys are the ones rows were
written with before these types existed: old rows stay readable, so no migration.

Each message also names its ordering key: the sender delivers one key's rows in order (one
card, one task, one proposal). Domain packages build these; `bot/` renders and delivers them
(`bot.deliveries` maps each type to one delivery function). To add a kind: one dataclass here
and one delivery function there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, TypeAdapter, ValidationError

from core.errors import MalformedMessage

OPS_ORDERING_KEY = "ops"  # every alert, in order: a resolution never overtakes its alert
AUDIT_ORDERING_KEY = "audit"


@dataclass(frozen=True)
class Message:
    """Base of every outbox message. Fields whose default is None are left out of the payload
    while None, as the rows before these types were written."""

    KIND: ClassVar[str]
    # Field name → payload key, where the stored key is not a Python name ("from", "to").
    KEYS: ClassVar[dict[str, str]] = {}
    # Payload keys older rows may hold that no field reads any more.
    RETIRED: ClassVar[frozenset[str]] = frozenset()
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    @property
    def ordering_key(self) -> str:
        raise NotImplementedError

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None and field.default is None:
                continue
            payload[self.KEYS.get(field.name, field.name)] = value
        return payload

    @classmethod
    def from_payload(cls, payload: Any) -> Self:
        if not isinstance(payload, dict):
            raise MalformedMessage(cls.KIND, f"the payload is {type(payload).__name__}, not an object")
        names = {key: name for name, key in cls.KEYS.items()}
        values = {names.get(key, key): value for key, value in payload.items() if key not in cls.RETIRED}
        try:
            message: Self = _adapter(cls).validate_python(values)
        except ValidationError as exc:
            problems = "; ".join(f"{cls._where(e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors())
            raise MalformedMessage(cls.KIND, problems) from None
        return message

    @classmethod
    def _where(cls, loc: tuple[int | str, ...]) -> str:
        """The error's place named by the payload's key (`action_id`), not the field's name."""
        parts = [str(part) for part in loc]
        if parts:
            parts[0] = cls.KEYS.get(parts[0], parts[0])
        return ".".join(parts)


_ADAPTERS: dict[type[Message], TypeAdapter[Any]] = {}


def _adapter(cls: type[Message]) -> TypeAdapter[Any]:
    """The validator of a message type, built once (a dict: a class is not `Hashable` to mypy)."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


# -- actions (ordered by the action's public id: one card) -------------------------------------


@dataclass(frozen=True)
class ActionMessage(Message):
    KEYS = {"action_public_id": "action_id"}  # the payload key rows were written with
    action_public_id: str

    @property
    def ordering_key(self) -> str:
        return self.action_public_id


@dataclass(frozen=True)
class CardPosted(ActionMessage):
    """Post the action's card (or re-render it: it went back to pending)."""

    KIND = "action.card"
    low_confidence: bool | None = None


@dataclass(frozen=True)
class CardUpdated(ActionMessage):
    """Re-render the card: an approval short of quorum, a credential connected, an incident."""

    KIND = "action.updated"
    approvals: int | None = None
    quorum: int | None = None


@dataclass(frozen=True)
class ActionDecided(ActionMessage):
    KIND = "action.decided"
    decision: str  # approve, edit, reject, veto, cancel
    by: str


@dataclass(frozen=True)
class ActionAcknowledged(ActionMessage):
    KIND = "action.acknowledged"
    by: str


@dataclass(frozen=True)
class ActionEnded(ActionMessage):
    """The run ended: the card is updated and its result replied in the thread."""

    KIND = "action.ended"  # never stored: each ending below has its own kind
    tell: str | None = None  # a person to DM: the failure is theirs to fix (their credential)


@dataclass(frozen=True)
class ActionSucceeded(ActionEnded):
    KIND = "action.succeeded"


@dataclass(frozen=True)
class ActionFailed(ActionEnded):
    KIND = "action.failed"


@dataclass(frozen=True)
class ActionUnknown(ActionEnded):
    KIND = "action.unknown"


@dataclass(frozen=True)
class ActionExpired(ActionMessage):
    KIND = "action.expired"
    requester: str | None  # told by DM; stored even when None


@dataclass(frozen=True)
class ReviewRequested(ActionMessage):
    """A spot check of a run nobody approved."""

    KIND = "action.review"


@dataclass(frozen=True)
class ConnectRequested(ActionMessage):
    """DM the requester their own connect links while the action waits."""

    KIND = "credential.connect"
    user: str


@dataclass(frozen=True)
class Reminded(ActionMessage):
    """An escalation step: DM each target, note it in the card's thread."""

    KIND = "escalation.notify"
    targets: list[str]
    reason: str  # reminder, repeat, low_confidence, ack_timeout, expiry_warning
    step: int | str  # the chain's step, or "ack_timeout"
    late: bool
    due_at: str | None = None
    lateness_s: float | None = None
    expires_at: str | None = None  # the warning before the expiry: when it expires (ISO)


# -- tasks (ordered by the task's public id) -----------------------------------------------------


@dataclass(frozen=True)
class TaskMessage(Message):
    KEYS = {"task_public_id": "task_id"}  # the payload key rows were written with
    task_public_id: str

    @property
    def ordering_key(self) -> str:
        return self.task_public_id


@dataclass(frozen=True)
class TaskStarted(TaskMessage):
    KIND = "task.started"


@dataclass(frozen=True)
class TaskEvent(TaskMessage):
    """A task message that tells of one event, even when delivered after the task moved on."""

    KIND = "task.event"  # never stored: each event below has its own kind
    STATE: ClassVar[str]  # the state the message shows


@dataclass(frozen=True)
class TaskResumed(TaskEvent):
    KIND = "task.resumed"
    STATE = "running"
    kind: str | None = None  # model_available, or None: its budget was extended


@dataclass(frozen=True)
class TaskPaused(TaskEvent):
    KIND = "task.paused"
    STATE = "paused"
    reason: str
    kind: Literal["budget", "loop"]


@dataclass(frozen=True)
class TaskStalled(TaskEvent):
    KIND = "task.stalled"
    STATE = "stalled"
    reason: str
    kind: str  # model_unavailable


@dataclass(frozen=True)
class TypeChoiceAsked(TaskEvent):
    """The router could not place the task: the requester picks its type."""

    KIND = "task.choose_type"
    STATE = "paused"
    candidates: list[str]
    requester: str | None


@dataclass(frozen=True)
class TaskFinished(TaskMessage):
    KIND = "task.finished"
    text: str | None = None  # the final answer
    error: str | None = None


@dataclass(frozen=True)
class StallEscalated(TaskMessage):
    """The task stopped moving: its approvers and the admins are told what it is stuck on."""

    KIND = "task.stall"
    what: str
    targets: list[str]


# -- autonomy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalMessage(Message):
    KEYS = {"proposal_public_id": "proposal_id"}  # the payload key rows were written with
    proposal_public_id: str

    @property
    def ordering_key(self) -> str:
        return self.proposal_public_id


@dataclass(frozen=True)
class ProposalPosted(ProposalMessage):
    KIND = "autonomy.proposal"


@dataclass(frozen=True)
class ProposalChanged(ProposalMessage):
    """Signed, promoted, dismissed or gone stale: its card is updated in place."""

    KIND = "autonomy.proposal_decided"


@dataclass(frozen=True)
class LevelChanged(Message):
    KIND = "autonomy.changed"
    KEYS = {"from_level": "from", "to_level": "to"}
    task_type: str
    from_level: str
    to_level: str
    by: str
    reason: str

    @property
    def ordering_key(self) -> str:
        return f"autonomy:{self.task_type}"


# -- operations --------------------------------------------------------------------------------

BudgetKind = Literal["budget_tokens", "budget_cost"]
BacklogKind = Literal["pending_approvals", "outbox_backlog"]
FatigueKind = Literal["fast_approvals"]
AlertState = Literal["firing", "resolved"]


@dataclass(frozen=True)
class BudgetAlert(Message):
    """A task type's model calls since midnight UTC passed a share of a daily limit."""

    KIND = "ops.alert"
    KEYS = {"top_task_public_id": "top_task_id"}
    RETIRED = frozenset({"message"})  # the text, which rows held before bot rendered it
    kind: BudgetKind
    state: Literal["firing"]
    task_type: str
    day: str  # ISO date, UTC
    used: float
    limit: float
    share: float  # used / limit
    alert_share: float  # the configured share that fires
    top_task_public_id: str | None = None  # the task that used the most today
    top_task_used: float | None = None

    @property
    def ordering_key(self) -> str:
        return OPS_ORDERING_KEY


@dataclass(frozen=True)
class BacklogAlert(Message):
    """Too many actions wait for approval, or outbox rows for delivery (or no longer do)."""

    KIND = "ops.alert"
    KEYS = {"oldest_action_public_id": "oldest_action_id"}
    RETIRED = frozenset({"message"})
    kind: BacklogKind
    state: AlertState
    count: int
    threshold: int
    oldest_at: str | None  # ISO time of the oldest waiting one
    by_task_type: dict[str, int] | None = None  # pending approvals only
    oldest_action_public_id: str | None = None
    last_error: str | None = None  # outbox backlog only

    @property
    def ordering_key(self) -> str:
        return OPS_ORDERING_KEY


@dataclass(frozen=True)
class FatigueAlert(Message):
    """A person approves faster than their task types' read time, too often (or no longer does)."""

    KIND = "ops.alert"
    kind: FatigueKind
    state: AlertState
    approver: str  # a Slack user id
    approvals: int  # in the window
    fast: int  # of them faster than min_read_time
    share: float  # fast / approvals
    threshold: float  # alerts.fast_approval_share
    window_days: float
    longest_streak: int
    median_read_s: float | None = None

    @property
    def ordering_key(self) -> str:
        return OPS_ORDERING_KEY


@dataclass(frozen=True)
class AuditHead(Message):
    """The ledger's head, published so a rewrite of the tail shows."""

    KIND = "audit.head"
    seq: int
    hash: str
    at: str  # ISO time, microseconds

    @property
    def ordering_key(self) -> str:
        return AUDIT_ORDERING_KEY


# -- questions (ordered by the question's public id: one message) ------------------------------


@dataclass(frozen=True)
class QuestionMessage(Message):
    question_public_id: str

    @property
    def ordering_key(self) -> str:
        return self.question_public_id


@dataclass(frozen=True)
class QuestionAsked(QuestionMessage):
    """Post the question with its Answer button (in its channel, or a DM)."""

    KIND = "question.asked"


@dataclass(frozen=True)
class QuestionAnswered(QuestionMessage):
    """The question's message says who answered, when, and what, in place of the button."""

    KIND = "question.answered"
    by: str


# Every stored kind → its type. `ops.alert` holds two shapes, told apart by the payload's `kind`.
ALERTS: dict[str, type[Message]] = {"budget_tokens": BudgetAlert, "budget_cost": BudgetAlert}
ALERTS |= {"pending_approvals": BacklogAlert, "outbox_backlog": BacklogAlert, "fast_approvals": FatigueAlert}
MESSAGES: tuple[type[Message], ...] = (
    CardPosted,
    CardUpdated,
    ActionDecided,
    ActionAcknowledged,
    ActionSucceeded,
    ActionFailed,
    ActionUnknown,
    ActionExpired,
    ReviewRequested,
    ConnectRequested,
    Reminded,
    TaskStarted,
    TaskResumed,
    TaskPaused,
    TaskStalled,
    TypeChoiceAsked,
    TaskFinished,
    StallEscalated,
    ProposalPosted,
    ProposalChanged,
    LevelChanged,
    BudgetAlert,
    BacklogAlert,
    FatigueAlert,
    AuditHead,
    QuestionAsked,
    QuestionAnswered,
)
_BY_KIND: dict[str, type[Message]] = {cls.KIND: cls for cls in MESSAGES if cls.KIND != "ops.alert"}


def decode(kind: str, payload: Any) -> Message:
    """The message a stored row holds; `MalformedMessage` if the kind is unknown or the
    payload does not match it."""
    if kind == "ops.alert":
        alert = payload.get("kind") if isinstance(payload, dict) else None
        if not isinstance(alert, str) or alert not in ALERTS:
            raise MalformedMessage(kind, f"unknown alert kind {alert!r} (known: {', '.join(sorted(ALERTS))})")
        return ALERTS[alert].from_payload(payload)
    cls = _BY_KIND.get(kind)
    if cls is None:
        raise MalformedMessage(kind, "no message type has this kind")
    return cls.from_payload(payload)
