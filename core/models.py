"""The schema: every table countersign keeps, as SQLAlchemy 2 typed models.

One module so that Alembic sees one metadata; behaviour lives in the packages that own
each concept (approvals: actions, decisions, audit; agent: tasks; bot: outbox delivery).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.clock import utc


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: countersign stores aware UTC times only")
        value = utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Task(Base):
    """One piece of work for one agent: the request, the conversation so far (so it resumes
    after an approval or a restart), usage and budget, state."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_state_next_step_at", "state", "next_step_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    task_type: Mapped[str] = mapped_column(String(64), index=True)
    requester: Mapped[str | None] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(32))
    # Where the task was asked for (a Slack channel and thread), to report back there.
    channel: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    request_text: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="running")
    # The Messages API conversation, appended to as it happens (the checkpoint).
    messages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    turn: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    budget_extensions: Mapped[int] = mapped_column(Integer, default=0)
    next_step_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(96))
    lease_until: Mapped[datetime | None]
    model_failures: Mapped[int] = mapped_column(Integer, default=0)
    unavailable_since: Mapped[datetime | None]
    paused_reason: Mapped[str | None] = mapped_column(Text)
    stall_escalated_at: Mapped[datetime | None]
    final_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Action(Base):
    """One drafted tool call; it runs at most once."""

    __tablename__ = "actions"
    __table_args__ = (
        Index("ix_actions_state_run_at", "state", "run_at"),
        Index("ix_actions_type_outcome", "task_type", "outcome_at"),
        UniqueConstraint("api_client_id", "external_id", name="uq_actions_client_external_id"),
        # One compensating action per original, however many click Undo at once.
        UniqueConstraint("undo_of", name="uq_actions_undo_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    task_type: Mapped[str] = mapped_column(String(64))
    # Which model reply drafted it: the task's turn and the `tool_use` block's id.
    turn: Mapped[int] = mapped_column(Integer, default=0)
    tool_use_id: Mapped[str | None] = mapped_column(String(64))
    # The model that drafted it (None: asked for through the actions API), and whether that was
    # the fallback while the primary failed: such a draft needs a person and is no evidence.
    model: Mapped[str | None] = mapped_column(String(64))
    fallback: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    tool: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]]
    params_hash: Mapped[str] = mapped_column(String(64))
    rationale: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    risk: Mapped[str] = mapped_column(String(8))
    idempotent: Mapped[bool] = mapped_column(Boolean)
    mode: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    requester: Mapped[str | None] = mapped_column(String(32))
    # Snapshots taken at draft time: a config change must not move a running action.
    approvers: Mapped[list[Any]]
    quorum: Mapped[int] = mapped_column(Integer, default=1)
    timeout_s: Mapped[float] = mapped_column(Float)
    # When the action may next run: a veto deadline while scheduled, the next attempt
    # while executing and waiting for a retry.
    run_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(96))
    lease_until: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None]
    # Graduation evidence: clean, edited, rejected, vetoed, failed, expired, incident, rubber_stamp.
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_at: Mapped[datetime | None]
    # Asked for through the actions API (an external tool): by which client, under which of the
    # client's own ids, and where its state changes are POSTed. None: drafted by an agent.
    api_client_id: Mapped[int | None] = mapped_column(ForeignKey("api_clients.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(128))
    callback_url: Mapped[str | None] = mapped_column(Text)
    # An open tool's params schema (`open_tools`), as its client sent it: it checks an edit too.
    # None: the tool is declared (`@tool` or `external_tools`) and the registry holds its schema.
    params_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # False: its client runs the call with the params it asked for and never reads edited ones
    # (a HumanLayer SDK), so an edit could not reach it: the card offers none and none is taken.
    editable: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # The tool's definition (name, params schema, description) approvals bind to, as
    # `core.canonical.tool_hash`; '' on rows from before it was recorded. A start that finds
    # the definition changed while the action waited re-asks (`approvals.tool_definitions`),
    # moving this to the new one and setting `tool_changed_at`.
    tool_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    tool_changed_at: Mapped[datetime | None]
    # The standing rule that let it run one level more autonomously than its type (None: none
    # did); its receipt names the rule, and graduation counts it apart from people's approvals.
    standing_rule_id: Mapped[int | None] = mapped_column(ForeignKey("standing_rules.id"))
    # The action this one compensates (its tool is the original's declared undo; `approvals.undo`).
    undo_of: Mapped[int | None] = mapped_column(ForeignKey("actions.id", name="fk_actions_undo_of"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StandingRule(Base):
    """ "Approve, and allow similar": drafts of one task type and tool whose params meet the
    constraints (`approvals.rules`) run one level more autonomously, until it expires, is used
    up or revoked. Made by an admin from a card; revoked by an admin, or by an incident on the type."""

    __tablename__ = "standing_rules"
    __table_args__ = (Index("ix_standing_rules_type_tool", "task_type", "tool"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    team_id: Mapped[str | None] = mapped_column(String(32))  # the workspace whose tasks it applies to
    task_type: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(128))
    constraints: Mapped[dict[str, Any]]  # {param: constraint}, one per parameter of the tool
    created_by: Mapped[str] = mapped_column(String(32))
    created_from: Mapped[str | None] = mapped_column(String(32))  # the action approved as it was made
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    max_uses: Mapped[int | None] = mapped_column(Integer)  # None: no count limit
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(32))
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class ApiClient(Base):
    """A client of the actions API: its bearer token (only a sha256 kept), its webhook secret
    (sealed by the vault) and the task types it may ask for (None: all)."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    webhook_secret: Mapped[str | None] = mapped_column(Text)  # sealed; None: no webhooks (env token)
    task_types: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Question(Base):
    """A question an API client asks people in Slack (a HumanLayer contact request): posted
    with an Answer button to the task type's channel or a DM; the approvers of its task type
    (snapshotted, and narrowed to `responders` when the client named some) may answer once."""

    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    task_type: Mapped[str] = mapped_column(String(64))
    api_client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), index=True)
    subject: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    # Where it is posted: a channel (C…/G…/D…) or a person (U…/W…), told by direct message.
    channel: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    approvers: Mapped[list[Any]]
    responders: Mapped[list[Any] | None] = mapped_column(JSON)
    # [{"name", "title"?, "description"?}] the person may pick one of, beside their answer.
    options: Mapped[list[Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    answer: Mapped[str | None] = mapped_column(Text)  # word for word, as typed
    option: Mapped[str | None] = mapped_column(String(128))
    answered_by: Mapped[str | None] = mapped_column(String(32))
    answered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class HumanLayerCall(Base):
    """A function call or contact request as a HumanLayer SDK sent it to `/humanlayer/v1`: the
    client's own `call_id` (one per client and kind: a second POST finds the first), its
    `run_id` and `spec` as sent (every answer repeats them), and the action or question made of it."""

    __tablename__ = "humanlayer_calls"
    __table_args__ = (UniqueConstraint("api_client_id", "kind", "call_id", name="uq_humanlayer_calls_client_call"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"))
    kind: Mapped[str] = mapped_column(String(16))  # function_call | contact
    call_id: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]]
    action_id: Mapped[int | None] = mapped_column(ForeignKey("actions.id"), unique=True)
    question_id: Mapped[int | None] = mapped_column(ForeignKey("questions.id"), unique=True)
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """A state change of an API action to POST to its client's callback URL, written in the
    transaction of the change; sent in `id` order per action until the receiver answers 2xx."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_undelivered", "delivered_at", "available_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(40), unique=True)  # X-Countersign-Delivery
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    available_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class Decision(Base):
    """Who decided what on which params hash and tool definition, and when. Immutable."""

    __tablename__ = "decisions"
    __table_args__ = (
        # A person's approval counts once per params hash and tool definition, whatever the clicks.
        UniqueConstraint("action_id", "kind", "actor", "params_hash", "tool_hash", name="uq_decisions_once"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(32))
    params_hash: Mapped[str] = mapped_column(String(64))
    tool_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")  # the action's, then
    note: Mapped[str | None] = mapped_column(Text)
    diff: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime]


class AuditEvent(Base):
    """One link of the append-only, hash-chained ledger."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(32))
    # Public ids (`tsk_…`, `act_…`), not keys: the columns keep their old names.
    task_public_id: Mapped[str | None] = mapped_column("task_id", String(32))
    action_public_id: Mapped[str | None] = mapped_column("action_id", String(32), index=True)
    task_type: Mapped[str | None] = mapped_column(String(64))
    params_hash: Mapped[str | None] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class UnchainedAuditEvent(Base):
    """An audit event committed by the transaction that caused it, not yet linked into the
    chain. Writers only insert here (one row per event, no lock, no head read); the chainer
    (`approvals.audit.chain`) moves rows into `audit_events` in `id` order, in batches, and
    deletes them here in the same transaction."""

    __tablename__ = "audit_unchained"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # PostgreSQL: the writing transaction's id (a server default), so the chainer keeps one
    # transaction's events together even when concurrent inserts interleave their ids.
    # SQLite: NULL (one writer at a time; ids are already grouped).
    xact: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(32))
    task_public_id: Mapped[str | None] = mapped_column(String(32))
    action_public_id: Mapped[str | None] = mapped_column(String(32))
    task_type: Mapped[str | None] = mapped_column(String(64))
    params_hash: Mapped[str | None] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class OutboxMessage(Base):
    """A message to people, written in the transaction of the change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_undelivered", "delivered_at", "available_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(48))
    # Messages with the same key (e.g. one action's card) are delivered in id order.
    ordering_key: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    available_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class TraceEvent(Base):
    """One step of a task's timeline: a model call, a draft, a decision, an execution."""

    __tablename__ = "trace_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    task_type: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Timer(Base):
    """A deadline as a row: an escalation chain's next step, an acknowledgement's timeout.

    The sweeper claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL), re-checks the
    action, performs one step and moves `due_at` on, all in one transaction; `fence` counts
    the steps taken. The chain is a snapshot taken when the action became pending, so a later
    config change does not move a running chain."""

    __tablename__ = "timers"
    __table_args__ = (
        # Only pending rows are indexed: a sweep's cost follows the due rows, not the history.
        Index(
            "ix_timers_pending_due",
            "due_at",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), index=True)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    due_at: Mapped[datetime]
    anchor: Mapped[datetime]  # offsets count from here: the moment the action became pending
    step: Mapped[int] = mapped_column(Integer, default=0)
    fence: Mapped[int] = mapped_column(Integer, default=0)
    chain: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AutonomyState(Base):
    """A task type's current autonomy level; config gives only the start and the ceiling."""

    __tablename__ = "autonomy_levels"

    task_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[str] = mapped_column(String(8))
    start_level: Mapped[str | None] = mapped_column(String(8))  # config's `autonomy` when last seen
    frozen_until: Mapped[datetime | None]  # no promotion before (after an incident)
    cooldown_until: Mapped[datetime | None]  # no new proposal before (after a dismissal)
    evidence_since: Mapped[datetime | None]  # outcomes before this do not count (level or config changed)
    probation_left: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # sha256 of the task type's instructions, tools and model when the level was earned.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    unconfirmed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    updated_by: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime]


class Proposal(Base):
    """A promotion the evidence supports, waiting for admins to sign or dismiss it."""

    __tablename__ = "proposals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    task_type: Mapped[str] = mapped_column(String(64), index=True)
    from_level: Mapped[str] = mapped_column(String(8))
    to_level: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(12), default="open")  # open, promoted, dismissed, stale
    evidence: Mapped[dict[str, Any]]
    signatures: Mapped[list[Any]]  # admins who pressed Promote
    needed: Mapped[int] = mapped_column(Integer, default=1)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]


class SlackEvent(Base):
    """An Events API `event_id` already handled: Slack's retries must not act twice."""

    __tablename__ = "slack_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime]


class SeenRequestSignature(Base):
    """A signed HTTP request already taken (`core.replays`): the same signature again within
    Slack's five-minute window is a replay, refused before it reaches a listener."""

    __tablename__ = "seen_request_signatures"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of `v0=…`
    request_at: Mapped[datetime] = mapped_column(index=True)  # the signed `X-Slack-Request-Timestamp`


class SlackMessage(Base):
    """A message the app posted and may update later (a card: `card:act_…`), by its `ts`."""

    __tablename__ = "slack_messages"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    posted_at: Mapped[datetime]


class Secret(Base):
    """A tool secret, encrypted; the ciphertext binds the value to name, scope, owner and team."""

    __tablename__ = "secrets"
    __table_args__ = (
        # One secret per name, scope, owner and workspace. NULLs never clash in a unique
        # constraint, so the rows without a workspace get a partial unique index of their own.
        UniqueConstraint("name", "scope", "owner", "team_id", name="uq_secrets_identity"),
        Index(
            "uq_secrets_identity_no_team",
            "name",
            "scope",
            "owner",
            unique=True,
            postgresql_where=text("team_id IS NULL"),
            sqlite_where=text("team_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(128))  # the tool that may use it, or "*" for any tool
    owner: Mapped[str] = mapped_column(String(32))  # "team", or the Slack user it belongs to
    team_id: Mapped[str | None] = mapped_column(String(32))
    ciphertext: Mapped[str] = mapped_column(Text)
    # Raised by one on every write of a value and sealed into the ciphertext, so an older
    # ciphertext written back over the row is refused. 0: sealed before versions existed.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # A fingerprint of the key that encrypted the row: rotation picks the rows not under the
    # newest key, and `secrets list` shows which rows still need an old one.
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]  # when the value was last replaced (re-keying does not count)


# -- Slack installations (multi-workspace mode) ---------------------------------------------------
# slack_sdk's SQLAlchemy installation and OAuth state stores read and write these tables (bot/
# installations.py hands them over); the schema is slack_sdk's, declared here so that Alembic
# owns it. Two departures: token columns are Text, because they hold Fernet ciphertexts (longer
# than slack_sdk's String(200)); times are naive UTC, as slack_sdk writes them.

slack_installations = Table(
    "slack_installations",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(32), nullable=False),
    Column("app_id", String(32), nullable=False),
    Column("enterprise_id", String(32)),
    Column("enterprise_name", String(200)),
    Column("enterprise_url", String(200)),
    Column("team_id", String(32)),
    Column("team_name", String(200)),
    Column("bot_token", Text),
    Column("bot_id", String(32)),
    Column("bot_user_id", String(32)),
    Column("bot_scopes", String(1000)),
    Column("bot_refresh_token", Text),
    Column("bot_token_expires_at", DateTime),
    Column("user_id", String(32), nullable=False),
    Column("user_token", Text),
    Column("user_scopes", String(1000)),
    Column("user_refresh_token", Text),
    Column("user_token_expires_at", DateTime),
    Column("incoming_webhook_url", Text),
    Column("incoming_webhook_channel", String(200)),
    Column("incoming_webhook_channel_id", String(200)),
    Column("incoming_webhook_configuration_url", String(200)),
    Column("is_enterprise_install", Boolean, default=False, nullable=False),
    Column("token_type", String(32)),
    Column("installed_at", DateTime, nullable=False, default=func.now()),
    Index("slack_installations_idx", "client_id", "enterprise_id", "team_id", "user_id", "installed_at"),
)

slack_bots = Table(
    "slack_bots",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(32), nullable=False),
    Column("app_id", String(32), nullable=False),
    Column("enterprise_id", String(32)),
    Column("enterprise_name", String(200)),
    Column("team_id", String(32)),
    Column("team_name", String(200)),
    Column("bot_token", Text),
    Column("bot_id", String(32)),
    Column("bot_user_id", String(32)),
    Column("bot_scopes", String(1000)),
    Column("bot_refresh_token", Text),
    Column("bot_token_expires_at", DateTime),
    Column("is_enterprise_install", Boolean, default=False, nullable=False),
    Column("installed_at", DateTime, nullable=False, default=func.now()),
    Index("slack_bots_idx", "client_id", "enterprise_id", "team_id", "installed_at"),
)


class ConnectState(Base):
    """A person's link to connect their own credential through a provider's sign-in (OAuth 2
    authorization code flow): only a hash of the `state` it carries is kept. Bound to the
    person, workspace, provider and secret; expires; `used_at` makes it single-use;
    `browser_hash` ties it to the one browser that confirmed it (a planted link connects nothing)."""

    __tablename__ = "connect_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the state
    user_id: Mapped[str] = mapped_column(String(32))  # the Slack user whose credential it connects
    team_id: Mapped[str | None] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(64))  # a key of the config's oauth_providers
    secret_name: Mapped[str] = mapped_column(String(128))
    tool: Mapped[str] = mapped_column(String(128))  # whose client secret scope the exchange reads
    # the public id of the action that asked for it (the column keeps its old name)
    action_public_id: Mapped[str | None] = mapped_column("action_id", String(40))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    # sha256 hex of the nonce in the cookie of the browser that confirmed it; set once
    browser_hash: Mapped[str | None] = mapped_column(String(64))


slack_oauth_states = Table(
    "slack_oauth_states",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(200), nullable=False),
    Column("expire_at", DateTime, nullable=False),
)
