"""The `countersign.yml` model: one frozen pydantic model per section, each check naming the
key path and the bad value. Loaded by `core.config.load_config`, which is where callers get
these from."""

from __future__ import annotations

import fnmatch
import itertools
from datetime import time, timedelta
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]
from pydantic import AfterValidator, Field, PlainValidator, PrivateAttr, field_validator, model_validator

from core.config_values import (
    MODULE_NAME,
    AutonomyLevel,
    ConfigModel,
    KeyPath,
    Notify,
    Person,
    Share,
    TaskTypeName,
    check_secret_name,
    config_error,
    https_url,
    is_user_id,
    origin_of,
    rules_error,
)
from core.durations import Duration, format_duration, parse_duration


class SlackConfig(ConfigModel):
    approvals_channel: str | None = None
    admin_channel: str | None = None
    admins: list[Person] = []


class ModelPrice(ConfigModel):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)  # default: 10% of input
    cache_write: float | None = Field(default=None, ge=0)  # default: 125% of input (5-minute cache)


class ModelConfig(ConfigModel):
    default: str = "claude-sonnet-4-6"
    router: str = "claude-haiku-4-5"
    max_tokens: int = Field(default=4096, gt=0)  # per reply
    prices: dict[str, ModelPrice] = {}  # adds to or overrides the built-in price table
    # The model keeps failing (429/529/5xx/timeouts) this long → the task is stalled and escalated.
    outage_limit: Duration = parse_duration("5m")
    # Mark the stable prefix of each request (tools, instructions, the conversation so far) for
    # Anthropic's prompt cache (`agent.caching`); off for an endpoint that refuses `cache_control`.
    prompt_caching: bool = True
    # While the primary model has failed (529/5xx/connection errors) for `fallback_after`, steps
    # are drafted by `fallback` (a task type's own `fallback` wins); each such draft needs a person.
    # Meanwhile the primary is tried first again at most once per `fallback_probe`.
    fallback: str | None = None
    fallback_after: Duration = parse_duration("2m")
    fallback_probe: Duration = parse_duration("30s")

    @model_validator(mode="after")
    def _fallback_not_the_default(self) -> Self:
        if self.fallback is not None and self.fallback == self.default:
            raise rules_error([(("fallback",), f"is the default model itself: {self.fallback!r}")])
        return self


class ToolsConfig(ConfigModel):
    modules: list[str] = []

    @field_validator("modules")
    @classmethod
    def _module_names(cls, modules: list[str]) -> list[str]:
        bad = [name for name in modules if not MODULE_NAME.fullmatch(name)]
        if bad:
            raise config_error("name", f"not a Python module name: {bad[0]!r}")
        return modules


class Budget(ConfigModel):
    max_steps: int = Field(default=8, gt=0)
    max_tokens: int = Field(default=50_000, gt=0)
    max_cost_usd: float = Field(default=0.5, gt=0)
    # Per task type and UTC day, over all its tasks; unset means no daily limit.
    daily_max_tokens: int | None = Field(default=None, gt=0)
    daily_max_cost_usd: float | None = Field(default=None, gt=0)


class AlertsConfig(ConfigModel):
    """When the admins are told about cost and backlogs (see `escalations.alerts`)."""

    budget_share: float = Field(default=0.8, gt=0, le=1)  # of a task type's daily_max_tokens / daily_max_cost_usd
    pending_max: int = Field(default=50, ge=0)  # actions waiting for approval, all task types together
    outbox_max: int = Field(default=200, ge=0)  # Slack messages waiting to be sent
    # A person's share of approvals faster than their task type's min_read_time, over the last
    # fast_approval_window, once they made at least fast_approval_min approvals: above it, the
    # admins are told (1 turns it off: no share is above 1).
    fast_approval_share: Share = 0.5
    fast_approval_min: int = Field(default=10, ge=1)
    fast_approval_window: Duration = parse_duration("7d")


class AuditConfig(ConfigModel):
    """How often the ledger's head is published (see `approvals.ledger.publish_head`)."""

    # Events after the last published head are not anchored: deleting or rewriting them is
    # not caught. Each publication posts to the admin channel (only when the head moved).
    publish_every: Duration = parse_duration("1m")

    @field_validator("publish_every")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise config_error("duration", f"publish the head at most once a second: {format_duration(value)!r}")
        return value


def _lead(value: object) -> float | timedelta:
    """`before_expiry`: a share of the time from pending to the expiry ("25%"), or a duration."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = value.strip()[:-1].strip()
        try:
            share = float(number)
        except ValueError:
            share = -1.0
        if not 0 <= share < 100:
            raise config_error("lead", f"a share from 0% to below 100%, or a duration like 1h: {value!r}")
        return share / 100
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise config_error("lead", f"{exc}; or a share like 25%") from None


# How long before the expiry a chain ending in `expire` warns, when it says nothing itself.
DEFAULT_EXPIRY_WARNING = 0.25
Lead = Annotated[float | timedelta, PlainValidator(_lead)]


class EscalationStep(ConfigModel):
    """A notify step (`after` + `notify`), the expiry (`after` + `then: expire`), or the warning
    before the expiry (`before_expiry`, optionally with `notify`; default: the targets of the
    last notify step before it, else the approvers). A chain ending in `expire` warns 25% of its
    time before the expiry unless it has a `before_expiry` step; `before_expiry: 0s` turns that off."""

    after: Duration | None = None
    before_expiry: Lead | None = None
    notify: Notify = None
    then: Literal["expire"] | None = None
    urgent: bool = False  # fires even outside business hours
    repeat: int = Field(default=0, ge=0, le=10)  # notify again this many times...
    every: Duration | None = None  # ...this far apart

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        if self.before_expiry is not None:
            if self.after is not None or self.then is not None or self.repeat:
                raise rules_error([(("before_expiry",), "a warning before the expiry takes no after, then or repeat")])
            return self
        if self.after is None:
            raise rules_error([(("after",), "a step needs 'after' (or 'before_expiry', for the expiry warning): None")])
        if (self.notify is None) == (self.then is None):
            given = "both" if self.then else "neither"
            raise rules_error([((), f"a step needs exactly one of 'notify' or 'then', got {given}")])
        if not self.after:
            raise rules_error([(("after",), "must be later than the moment the action became pending: '0s'")])
        if self.repeat and (self.every is None or not self.every or self.then is not None):
            raise rules_error([(("every",), f"a step that repeats ({self.repeat}x) needs 'every' and 'notify'")])
        return self

    @property
    def offset(self) -> timedelta:
        """`after`, for a step that has one (every step but the expiry warning)."""
        assert self.after is not None, "the expiry warning has no offset of its own"
        return self.after


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class BusinessHours(ConfigModel):
    """When notify steps may fire; steps due outside wait for the next window (urgent ones don't)."""

    timezone: str
    start: str = "09:00"
    end: str = "18:00"
    days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise config_error("zone", f"not an IANA time zone: {value!r} (e.g. Europe/Berlin)") from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise config_error("clock", f"not a time of day like 09:00: {value!r}") from None
        return value

    @model_validator(mode="after")
    def _order(self) -> Self:
        if time.fromisoformat(self.end) <= time.fromisoformat(self.start):
            raise rules_error([(("end",), f"must be after start ({self.start}): {self.end!r}")])
        if not self.days:
            raise rules_error([(("days",), "at least one day: []")])
        return self


class GraduationConfig(ConfigModel):
    ceiling: AutonomyLevel = AutonomyLevel.AUTO
    min_samples: int = Field(default=100, ge=1)
    min_days: int = Field(default=14, ge=0)
    min_approvers: int = Field(default=2, ge=1)
    target: Share = 0.90
    max_reject_rate: Share = 0.03
    min_read_time: Duration = parse_duration("5s")
    review_share: Share = 0.05
    cooldown: Duration = parse_duration("7d")
    probation: int = Field(default=10, ge=0)
    demote_window: int = Field(default=50, ge=1)
    demote_below: Share = 0.80
    # hotl → auto
    auto_min_samples: int = Field(default=150, ge=1)  # executions in the window
    auto_min_days: int = Field(default=30, ge=0)
    auto_max_veto_rate: Share = 0.05  # Wilson 95% upper bound of the veto rate
    auto_signatures: int = Field(default=2, ge=1)  # distinct admins who must sign
    freeze: Duration = parse_duration("14d")  # no promotion after an incident
    incident_window: Duration = parse_duration("7d")  # "this was wrong" counts this long after a run


class OAuthProvider(ConfigModel):
    """Where and how delegated OAuth tokens of one provider are refreshed (RFC 6749 section 6)
    and, with `authorize_url`, connected by people themselves from Slack (section 4.1)."""

    token_url: Annotated[str, AfterValidator(https_url)]
    client_id: str = Field(min_length=1)
    # The name of a vault secret (owner `team`) that holds the client secret: never the value.
    client_secret_name: Annotated[str, AfterValidator(check_secret_name)] | None = None
    timeout: Duration = parse_duration("10s")
    # The authorization-code flow: where people sign in, what is asked for, and which of the
    # tools' declared secrets the token it gives is stored as. Without it: the CLI only.
    authorize_url: Annotated[str, AfterValidator(https_url)] | None = None
    scopes: list[str] = []
    secrets: list[Annotated[str, AfterValidator(check_secret_name)]] = []

    @model_validator(mode="after")
    def _flow(self) -> Self:
        if self.authorize_url is not None and not self.secrets:
            raise rules_error([(("secrets",), "required with authorize_url: the secret names its tokens connect: []")])
        if self.secrets and self.authorize_url is None:
            raise rules_error([(("authorize_url",), f"required with secrets (people connect them there): {None!r}")])
        return self


class ExternalToolConfig(ConfigModel):
    """A tool that runs outside countersign: a client of the actions API asks for it (`POST
    /api/actions`), waits for the decision, claims and runs it, and reports the result. Its
    parameters are described by a JSON Schema (draft 2020-12), checked when the config loads."""

    description: str = ""
    params: dict[str, Any]
    risk: Literal["low", "medium", "high"] = "high"
    idempotent: bool = False
    max_autonomy: AutonomyLevel = AutonomyLevel.AUTO
    # The external tool that compensates a run of this one, asked of the same client (Undo).
    undo: str | None = None

    @field_validator("params")
    @classmethod
    def _json_schema(cls, params: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(params)
        except SchemaError as exc:
            where = ".".join(str(part) for part in exc.path) or "(top)"
            raise config_error("schema", f"not a valid JSON Schema at {where}: {exc.message}") from None
        if params.get("type") != "object":
            raise config_error("schema", f"the params schema must have type 'object': {params.get('type')!r}")
        return params


class OpenToolPolicy(ConfigModel):
    """What an `open_tools` override changes for the tools its pattern matches."""

    risk: Literal["low", "medium", "high"] | None = None
    idempotent: bool | None = None
    max_autonomy: AutonomyLevel | None = None


class OpenToolsConfig(ConfigModel):
    """Tools a task type takes from its API clients instead of declaring them: `countersign
    mcp-gate` (whatever the upstream MCP server lists) and `countersign hook claude-code` (what
    Claude Code is about to run). The client names the tool and may send its JSON Schema, which
    checks the params and any edit. Patterns are shell-style (`fnmatch`, case-sensitive)."""

    risk: Literal["low", "medium", "high"] = "high"
    idempotent: bool = False
    max_autonomy: AutonomyLevel = AutonomyLevel.AUTO
    # Approved at once whatever the task type's level, without a card; still recorded.
    read_only: list[str] = []
    # pattern → policy; the first pattern (in the file's order) that matches a tool applies.
    overrides: dict[str, OpenToolPolicy] = {}

    def is_read_only(self, tool: str) -> bool:
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.read_only)

    def policy_of(self, tool: str) -> tuple[Literal["low", "medium", "high"], bool, AutonomyLevel]:
        """(risk, idempotent, max_autonomy) of `tool`: its first matching override over the defaults."""
        override = next(
            (policy for pattern, policy in self.overrides.items() if fnmatch.fnmatchcase(tool, pattern)), None
        )
        if override is None:
            return self.risk, self.idempotent, self.max_autonomy
        return (
            override.risk or self.risk,
            self.idempotent if override.idempotent is None else override.idempotent,
            override.max_autonomy or self.max_autonomy,
        )


class ApiConfig(ConfigModel):
    """The actions API: the hosts webhook callbacks may go to (no requests to anywhere else)."""

    webhook_hosts: list[str] = []
    claim_lease: Duration = parse_duration("10m")  # a claimed action without a result by then is `unknown`


class TaskTypeConfig(ConfigModel):
    description: str = ""
    instructions: str = ""
    tools: list[str] = []
    # Tools its API clients bring (mcp-gate, the Claude Code hook); with it `tools` may be empty.
    open_tools: OpenToolsConfig | None = None
    autonomy: AutonomyLevel = AutonomyLevel.HITL
    channel: str | None = None
    approvers: list[Person] = []
    quorum: int = Field(default=1, ge=1)
    veto_window: Duration = parse_duration("10m")
    # How long after a run of a tool that declares `undo` its receipt offers Undo.
    undo_window: Duration = parse_duration("1h")
    confidence_threshold: Share = 0.7
    model: str | None = None  # else model.default
    fallback: str | None = None  # else model.fallback
    budget: Budget = Budget()
    escalation: list[EscalationStep] = []
    business_hours: BusinessHours | None = None
    ack_timeout: Duration | None = None  # an acknowledged action not decided by then escalates again
    stall_after: Duration = parse_duration("30m")  # a task without progress this long is escalated
    graduation: GraduationConfig = GraduationConfig()
    # Whose credentials the tools use: the workspace's own secrets (unset), or the person's
    # own, connected in the vault under the secret's name with that person as owner.
    credentials: Literal["requester", "approver"] | None = None
    # False: no standing rules for this type ("Approve, and allow similar" is not offered, and
    # a rule is never made or applied); they live in the database (`countersign rules`).
    rules: bool = True

    @field_validator("escalation")
    @classmethod
    def _chain_order(cls, steps: list[EscalationStep]) -> list[EscalationStep]:
        problems: list[tuple[KeyPath, str]] = []
        timed = [(index, step) for index, step in enumerate(steps) if step.before_expiry is None]
        for (_, before), (index, step) in itertools.pairwise(timed):
            if step.offset <= before.offset:
                problems.append(
                    (
                        (index, "after"),
                        f"must be later than the step before it "
                        f"({format_duration(before.offset)}), got {format_duration(step.offset)}",
                    )
                )
        for index, step in timed[:-1]:
            if step.then == "expire":
                problems.append(((index, "then"), "'expire' ends the chain, so it must be the last step"))
        warnings = [(index, step) for index, step in enumerate(steps) if step.before_expiry is not None]
        expiry = next((step.offset for _, step in timed if step.then == "expire"), None)
        for index, _ in warnings[1:]:
            problems.append(((index, "before_expiry"), "one warning before the expiry at most"))
        for index, step in warnings[:1]:
            lead = step.before_expiry
            if expiry is None:
                problems.append(((index, "before_expiry"), "warns before an expiry, but no step has 'then: expire'"))
            elif isinstance(lead, timedelta) and lead >= expiry:
                problems.append(
                    (
                        (index, "before_expiry"),
                        f"must be shorter than the expiry's after ({format_duration(expiry)}): "
                        f"{format_duration(lead)!r}",
                    )
                )
        if problems:
            raise rules_error(problems)
        return steps

    def expiry_warning(self) -> tuple[timedelta, EscalationStep | None] | None:
        """(how long before the expiry the chain warns, its own `before_expiry` step if any), or
        None: the chain does not expire, or its warning is turned off."""
        expiry = next((step.offset for step in self.escalation if step.then == "expire"), None)
        if expiry is None:
            return None
        step = next((step for step in self.escalation if step.before_expiry is not None), None)
        lead = DEFAULT_EXPIRY_WARNING if step is None else step.before_expiry
        span = expiry * lead if isinstance(lead, float) else lead
        return (span, step) if span and span < expiry else None

    @model_validator(mode="after")
    def _people(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if not self.tools and self.open_tools is None:
            problems.append((("tools",), "a task type needs tools (or open_tools, for tools its clients bring): []"))
        if self.autonomy in (AutonomyLevel.HITL, AutonomyLevel.HOTL) and not self.approvers:
            needs = f"a {self.autonomy.value!r} task type needs at least one approver"
            problems.append((("approvers",), f"{needs}: []"))
        if self.approvers and all(map(is_user_id, self.approvers)) and self.quorum > len(self.approvers):
            listed = f"more than the {len(self.approvers)} approver(s) listed"
            problems.append((("quorum",), f"{listed}: {self.quorum!r}"))
        if self.credentials == "approver" and not self.approvers:
            needs = "tools that run with the approver's own credential need at least one approver"
            problems.append((("approvers",), f"{needs}: []"))
        if self.graduation.ceiling < self.autonomy:
            problems.append(
                (
                    ("graduation", "ceiling"),
                    f"below the starting autonomy {self.autonomy.value!r}: {self.graduation.ceiling.value!r}",
                )
            )
        if problems:
            raise rules_error(problems)
        return self


class Config(ConfigModel):
    slack: SlackConfig = SlackConfig()
    model: ModelConfig = ModelConfig()
    tools: ToolsConfig = ToolsConfig()
    task_types: dict[TaskTypeName, TaskTypeConfig] = Field(min_length=1)
    alerts: AlertsConfig = AlertsConfig()
    audit: AuditConfig = AuditConfig()
    oauth_providers: dict[str, OAuthProvider] = {}
    external_tools: dict[str, ExternalToolConfig] = {}
    api: ApiConfig = ApiConfig()
    # Where each key came from ("line 14", "env COUNTERSIGN__…"), for later problem reports.
    _origins: dict[KeyPath, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _channels(self) -> Self:
        if self.slack.approvals_channel is None:
            missing = [name for name, task_type in self.task_types.items() if task_type.channel is None]
            if missing:
                raise rules_error(
                    [
                        (
                            ("task_types", name, "channel"),
                            "no channel, and no slack.approvals_channel to fall back on: None",
                        )
                        for name in missing
                    ]
                )
        return self

    @model_validator(mode="after")
    def _fallback_before_stall(self) -> Self:
        """Where a fallback model is configured (for all types or one), it must take over before
        the outage limit stalls the task; without one, `fallback_after` means nothing."""
        model = self.model
        fallbacks = model.fallback is not None or any(t.fallback is not None for t in self.task_types.values())
        if fallbacks and model.fallback_after >= model.outage_limit:
            problem = (
                f"must be shorter than outage_limit ({format_duration(model.outage_limit)}), or tasks stall"
                f" before the fallback is tried: {format_duration(model.fallback_after)!r}"
            )
            raise rules_error([(("model", "fallback_after"), problem)])
        return self

    @model_validator(mode="after")
    def _one_provider_per_secret(self) -> Self:
        first: dict[str, str] = {}
        problems: list[tuple[KeyPath, str]] = []
        for name, provider in self.oauth_providers.items():
            for index, secret in enumerate(provider.secrets):
                if secret in first:
                    where = ("oauth_providers", name, "secrets", index)
                    problems.append((where, f"already connected through provider {first[secret]!r}: {secret!r}"))
                first.setdefault(secret, name)
        if problems:
            raise rules_error(problems)
        return self

    def connect_provider(self, secret: str) -> str | None:
        """The `oauth_providers` entry whose sign-in connects `secret`; None: the CLI only."""
        return next((name for name, provider in self.oauth_providers.items() if secret in provider.secrets), None)

    def channel_for(self, task_type: str) -> str:
        """The channel a task type's cards go to."""
        channel = self.task_types[task_type].channel or self.slack.approvals_channel
        assert channel is not None  # the _channels validator guarantees one
        return channel

    @property
    def proposals_channel(self) -> str | None:
        """Where promotion proposals and alerts go: the admin channel, else the approvals channel."""
        return self.slack.admin_channel or self.slack.approvals_channel

    def where(self, path: KeyPath) -> str:
        """` (line 14)` or ` (env NAME)` for `path` or its nearest known parent; "" if unknown."""
        return origin_of(path, self._origins)
