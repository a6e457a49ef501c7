"""What the renderers take: plain frozen snapshots, built by the caller from database rows.

States, modes and risks are plain strings (a `StrEnum` member is one), compared by value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class CredentialView:
    """Whose own credential the action's tool runs with (`credentials: requester | approver`)."""

    mode: str  # requester | approver
    names: tuple[str, ...]  # the secrets the tool declared
    owner: str | None  # the requester, or who approved; None while nobody in particular is known
    connected: bool | None  # None when `owner` is None
    how: str  # how they connect them: the CLI command (mrkdwn, with backticks), or the Slack way
    web: bool = False  # people connect them from Slack, through a provider's sign-in


@dataclass(frozen=True, kw_only=True)
class ConnectLinkView:
    """A person's own link to connect one credential through its provider's sign-in."""

    name: str  # the secret
    provider: str
    url: str


@dataclass(frozen=True, kw_only=True)
class ChangeView:
    """What an external action changes, read from its params by their shape (bot/blocks/changes.py):
    a shell command, or a file edit as a diff. Its lines are masked already (`approvals.masking`)."""

    kind: str  # command | edit | write
    tool: str
    lines: tuple[str, ...]  # a command's lines; a diff's, each starting with "-", "+", " " or "@@"
    path: str | None = None  # the file an edit or write changes
    shown: tuple[str, ...] = ()  # the params it shows, left out of the card's fields
    note: str = ""  # what else matters: "replace all", "3 edits"


@dataclass(frozen=True, kw_only=True)
class CardView:
    """One drafted action as its approval card shows it."""

    action_public_id: str  # every button's value
    task_public_id: str
    task_type: str
    tool: str
    summary: str = ""  # what it does, for people: "the refund of order 1001" (untrusted: from params)
    risk: str  # low | medium | high
    mode: str  # hitl | hotl | auto
    state: str  # the action's lifecycle state (core.states.ActionState)
    requester: str | None  # Slack user id; None for the API or the CLI
    request_text: str  # untrusted (user)
    rationale: str  # untrusted (model)
    confidence: float
    confidence_threshold: float
    params: dict[str, Any]  # as people may read them: secret-looking values masked
    params_hash: str  # sha256 hex of the canonical params (the real ones)
    masked: bool = False  # `params` (or the change) had values masked: the hash covers the real ones
    change: ChangeView | None = None  # a command or file edit, shown as code (external actions)
    tool_hash: str = ""  # the tool definition decisions bind to ("" on actions from before)
    tool_changed_at: datetime | None = None  # the definition changed while it waited: re-asked then
    param_schema: dict[str, Any] | None = None  # the tool's JSON schema: labels, descriptions, formats
    run_at: datetime | None = None  # veto deadline while scheduled (aware)
    rendered_at: datetime | None = None  # when the card is drawn: how long is left of the veto window
    approvals: int = 0
    quorum: int = 1
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None  # reject / veto reason (untrusted)
    diff: dict[str, dict[str, Any]] | None = None  # {field: {"from": old, "to": new}} of an edit
    edited_by: str | None = None
    acknowledged_by: str | None = None
    caps: tuple[str, ...] = ()  # why the mode is below the task type's level
    model: str | None = None  # the model that drafted it (None: asked for through the actions API)
    fallback: bool = False  # that model was the fallback, the primary failing
    result: dict[str, Any] | None = None
    error: str | None = None
    outcome: str | None = None  # graduation evidence label, once finished ("incident" after a report)
    credential: CredentialView | None = None  # set when it runs with a person's own credential
    # An action whose outcome was unknown: when its call was claimed and by which process, how
    # many asked to run it again, and who resolved it (resolve_ran | resolve_not_run | run_again).
    started_at: datetime | None = None
    lease_owner: str | None = None
    run_again_votes: int = 0
    resolution: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution_note: str | None = None  # untrusted
    editable: bool = True  # False: its client runs the params it asked for, so no Edit button
    allow_similar: bool = False  # offer "Approve, and allow similar…" (a rule could apply to it)
    rule_public_id: str | None = None  # the standing rule that let it run sooner
    rule_made: str | None = None  # the standing rule an admin made when approving it
    # Undo (`approvals.undo`): a run of a tool that declares one offers it until `undo_until`;
    # once asked, the compensating action, its state and who asked. `undoes`: on a compensation's
    # own card, the action it undoes and what that did (untrusted: from params).
    undo_until: datetime | None = None
    undo_action: str | None = None
    undo_state: str | None = None
    undo_asked_by: str | None = None
    undoes: str | None = None
    undoes_tool: str = ""
    undoes_summary: str = ""

    @property
    def handed_to(self) -> str | None:
        """Who took it over to run it themselves ("the HumanLayer client"), when its result says
        only that (untrusted: an API client reported it)."""
        result = self.result
        if result is None or set(result) != {"handed_to"} or not isinstance(result["handed_to"], str):
            return None
        return result["handed_to"]


@dataclass(frozen=True, kw_only=True)
class ProposalView:
    """A promotion proposal as the admins see it."""

    proposal_public_id: str
    task_type: str
    from_level: str
    to_level: str
    state: str  # open, promoted, dismissed, stale
    stats: dict[str, Any]
    signatures: tuple[str, ...] = ()
    needed: int = 1
    decided_by: str | None = None
    # (action id, outcome, note, what it did) of edits and rejections, one per action
    recent: tuple[tuple[str, str, str | None, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class ActionOutcomeView:
    """How one of a task's actions ended, for the task's closing message."""

    tool: str
    state: str  # core.states.ActionState
    summary: str = ""  # what it does, for people (untrusted: from params)
    decided_by: str | None = None  # who rejected or vetoed it
    note: str | None = None  # their reason (untrusted)
    error: str | None = None  # why it failed or was refused (untrusted)
    resolution: str | None = None  # resolve_ran | resolve_not_run | run_again, for an unknown outcome
    resolved_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class TaskView:
    """One task, for the messages about its progress (pauses, stalls, the final answer)."""

    task_public_id: str
    task_type: str
    state: str  # agent.tasks.TaskState
    requester: str | None
    request_text: str  # untrusted
    reason: str | None = None  # pause / stall / failure reason
    kind: str | None = None  # budget | loop | model_unavailable
    final_text: str | None = None  # untrusted (model)
    candidates: tuple[str, ...] = ()  # task types to choose from
    steps: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    actions: tuple[ActionOutcomeView, ...] = ()  # how its actions ended (the closing message says)


@dataclass(frozen=True, kw_only=True)
class ReviewItemView:
    """One waiting action in a review of many: what it does, as its card says it."""

    action_public_id: str  # its checkbox's value
    task_type: str
    tool: str
    summary: str = ""  # untrusted: from params
    risk: str
    requester: str | None
    request_text: str = ""  # untrusted (user)
    rationale: str = ""  # untrusted (model)
    confidence: float
    confidence_threshold: float
    params: dict[str, Any]
    params_hash: str
    binding: str  # `approvals.decisions.shown_binding` of its params and tool definition, as shown
    drafted_at: datetime
    diff: dict[str, dict[str, Any]] | None = None  # an edit since the draft: {field: {from, to}}
    edited_by: str | None = None
    tool_changed: bool = False  # its tool's definition changed since it was drafted


@dataclass(frozen=True, kw_only=True)
class ReviewView:
    """A review of many: the waiting actions shown (oldest first, as many as a modal holds), how
    many wait in all, and of which task type (None: every type)."""

    user: str
    task_type: str | None
    items: tuple[ReviewItemView, ...]
    waiting: int  # all that wait for this person (of the type); more than `items` when some did not fit
    shown_at: datetime


@dataclass(frozen=True, kw_only=True)
class ApproverView:
    """One approver's signals over a window (`approvals.fatigue.Signals`), for the admins."""

    approver: str  # a Slack user id
    decisions: int
    approvals: int
    approval_rate: float
    median_read_s: float | None
    fast_share: float  # of approvals faster than their task type's min_read_time
    longest_fast_streak: int
    flagged: bool  # the fast share passes alerts.fast_approval_share


@dataclass(frozen=True, kw_only=True)
class HomeView:
    """One person's App Home."""

    user: str
    waiting: tuple[CardView, ...] = ()  # pending actions this person may approve
    recent: tuple[CardView, ...] = ()  # recently decided actions
    links: dict[str, str] = field(default_factory=dict)  # action public id → its card's permalink
    levels: tuple[tuple[str, str], ...] = field(default=())  # (task type, autonomy level)
    # Review many at once: how many pending actions wait for this person, in all and per task type.
    review_all: int = 0
    review_by_type: tuple[tuple[str, int], ...] = ()
    # Shown to admins only: each approver's signals of rubber-stamping, and over how many days.
    approvers: tuple[ApproverView, ...] | None = None
    approvers_days: int = 30
    rules: tuple[RuleView, ...] | None = None  # admins only: the standing rules, newest first


@dataclass(frozen=True, kw_only=True)
class RuleView:
    """A standing rule as App Home lists it."""

    rule_public_id: str
    task_type: str
    tool: str
    constraints: str  # `approvals.rules.summary`
    status: str  # live | expired | used up | revoked
    created_by: str
    expires_at: datetime
    uses: int
    max_uses: int | None


@dataclass(frozen=True, kw_only=True)
class QuestionView:
    """A question an API client asks people (a HumanLayer contact request), and its answer."""

    question_public_id: str  # the Answer button's value
    task_type: str
    asker: str  # the API client's name
    subject: str | None  # untrusted (the client's)
    text: str  # untrusted (the client's, often its model's)
    state: str  # core.states.QuestionState
    approvers: tuple[str, ...]  # who may answer: user ids, @group handles
    responders: tuple[str, ...] | None = None  # narrowed to these, when the asker named some
    options: tuple[tuple[str, str], ...] = ()  # (name, label) a person may pick beside their answer
    answer: str | None = None  # untrusted (a person's), word for word
    option: str | None = None
    answered_by: str | None = None
    answered_at: datetime | None = None
