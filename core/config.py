"""The configuration: the `countersign.yml` model, its loader (YAML + `COUNTERSIGN__…` overrides,
errors naming key path, line and value), and the `AutonomyLevel` scale. The process environment
is `core.settings`. Imports nothing from the other countersign packages.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Collection, Mapping
from datetime import time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.durations import Duration, format_duration, parse_duration
from core.errors import ConfigError

__all__ = [
    "AlertsConfig",
    "AuditConfig",
    "AutonomyLevel",
    "Budget",
    "Config",
    "Duration",
    "EscalationStep",
    "GraduationConfig",
    "ModelConfig",
    "OAuthProvider",
    "SlackConfig",
    "TaskTypeConfig",
    "ToolsConfig",
    "check_tool_names",
    "dotted",
    "highest",
    "is_user_id",
    "load_config",
    "lowest",
    "parse_duration",
]

KeyPath = tuple[str | int, ...]
ENV_PREFIX = "COUNTERSIGN__"
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_GROUP = re.compile(r"@[a-z0-9][a-z0-9._-]*")
_TASK_TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# Our validators' messages already name the bad value; pydantic's own ones get it appended.
_OWN_ERRORS = {"duration", "person", "notify", "name", "rules", "zone", "clock", "url"}
_SECRET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")  # as agent.tools.SECRET_NAME
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class AutonomyLevel(StrEnum):
    """How much a task type may do alone, from least (`hitl`) to most (`auto`); compares by that."""

    HITL = "hitl"
    HOTL = "hotl"
    AUTO = "auto"

    @property
    def rank(self) -> int:
        return list(AutonomyLevel).index(self)

    def _other_rank(self, other: object) -> int | None:
        # A plain "hitl" string compares by rank too; str's alphabetical order would put auto first.
        return AutonomyLevel(other).rank if isinstance(other, str) else None

    def __lt__(self, other: object) -> bool:
        rank = self._other_rank(other)
        return NotImplemented if rank is None else self.rank < rank

    def __le__(self, other: object) -> bool:
        rank = self._other_rank(other)
        return NotImplemented if rank is None else self.rank <= rank

    def __gt__(self, other: object) -> bool:
        rank = self._other_rank(other)
        return NotImplemented if rank is None else self.rank > rank

    def __ge__(self, other: object) -> bool:
        rank = self._other_rank(other)
        return NotImplemented if rank is None else self.rank >= rank


def lowest(*levels: AutonomyLevel) -> AutonomyLevel:
    """The most restrictive of `levels` (e.g. a task type's level capped by a tool's)."""
    return min(levels, key=lambda level: level.rank)


def highest(*levels: AutonomyLevel) -> AutonomyLevel:
    return max(levels, key=lambda level: level.rank)


def is_user_id(entry: str) -> bool:
    """True for a Slack user id (`U…`/`W…`), False for a user-group handle (`@…`)."""
    return bool(_USER_ID.fullmatch(entry))


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{message}", {"message": message})


def _rules(problems: list[tuple[KeyPath, str]]) -> PydanticCustomError:
    """One error carrying several cross-field problems, each at its own sub-path."""
    summary = "; ".join(f"{dotted(path) or '.'}: {message}" for path, message in problems)
    return PydanticCustomError("rules", "{message}", {"message": summary, "problems": problems})


def _person(value: str) -> str:
    if is_user_id(value) or _GROUP.fullmatch(value):
        return value
    raise _error("person", f"not a Slack user id (U…/W…) or user-group handle (@…): {value!r}")


def _task_type_name(value: str) -> str:
    if _TASK_TYPE_NAME.fullmatch(value):
        return value
    raise _error("name", f"not a task type name (lower case, digits, - and _, from a letter): {value!r}")


def _notify(value: object) -> str | list[str]:
    if value in ("approvers", "admins"):
        return str(value)
    entries = [value] if isinstance(value, str) and value.startswith("@") else value
    if isinstance(entries, list) and entries and all(isinstance(entry, str) for entry in entries):
        return [_person(entry) for entry in entries]
    raise _error("notify", f"notify must be 'approvers', 'admins' or a list of users/@groups: {value!r}")


Person = Annotated[str, AfterValidator(_person)]
TaskTypeName = Annotated[str, AfterValidator(_task_type_name)]
# A plain validator keeps union branch names ("list[str]") out of error paths.
Notify = Annotated[Literal["approvers", "admins"] | list[str] | None, PlainValidator(_notify)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackConfig(_Model):
    approvals_channel: str | None = None
    admin_channel: str | None = None
    admins: list[Person] = []


class ModelPrice(_Model):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class ModelConfig(_Model):
    default: str = "claude-sonnet-4-6"
    router: str = "claude-haiku-4-5"
    max_tokens: int = Field(default=4096, gt=0)  # per reply
    prices: dict[str, ModelPrice] = {}  # adds to or overrides the built-in price table
    # The model keeps failing (429/529/5xx/timeouts) this long → the task is stalled and escalated.
    outage_limit: Duration = parse_duration("5m")


class ToolsConfig(_Model):
    modules: list[str] = []

    @field_validator("modules")
    @classmethod
    def _module_names(cls, modules: list[str]) -> list[str]:
        bad = [name for name in modules if not _MODULE.fullmatch(name)]
        if bad:
            raise _error("name", f"not a Python module name: {bad[0]!r}")
        return modules


class Budget(_Model):
    max_steps: int = Field(default=8, gt=0)
    max_tokens: int = Field(default=50_000, gt=0)
    max_cost_usd: float = Field(default=0.5, gt=0)
    # Per task type and UTC day, over all its tasks; unset means no daily limit.
    daily_max_tokens: int | None = Field(default=None, gt=0)
    daily_max_cost_usd: float | None = Field(default=None, gt=0)


class AlertsConfig(_Model):
    """When the admins are told about cost and backlogs (see `escalations.alerts`)."""

    budget_share: float = Field(default=0.8, gt=0, le=1)  # of a task type's daily_max_tokens / daily_max_cost_usd
    pending_max: int = Field(default=50, ge=0)  # actions waiting for approval, all task types together
    outbox_max: int = Field(default=200, ge=0)  # Slack messages waiting to be sent


class AuditConfig(_Model):
    """How often the ledger's head is published (see `approvals.ledger.publish_head`)."""

    # Events after the last published head are not anchored: deleting or rewriting them is
    # not caught. Each publication posts to the admin channel (only when the head moved).
    publish_every: Duration = parse_duration("1m")

    @field_validator("publish_every")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise _error("duration", f"publish the head at most once a second: {format_duration(value)!r}")
        return value


class EscalationStep(_Model):
    after: Duration
    notify: Notify = None
    then: Literal["expire"] | None = None
    urgent: bool = False  # fires even outside business hours
    repeat: int = Field(default=0, ge=0, le=10)  # notify again this many times...
    every: Duration | None = None  # ...this far apart

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        if (self.notify is None) == (self.then is None):
            given = "both" if self.then else "neither"
            raise _rules([((), f"a step needs exactly one of 'notify' or 'then', got {given}")])
        if not self.after:
            raise _rules([(("after",), "must be later than the moment the action became pending: '0s'")])
        if self.repeat and (self.every is None or not self.every or self.then is not None):
            raise _rules([(("every",), f"a step that repeats ({self.repeat}x) needs 'every' and 'notify'")])
        return self


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class BusinessHours(_Model):
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
            raise _error("zone", f"not an IANA time zone: {value!r} (e.g. Europe/Berlin)") from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise _error("clock", f"not a time of day like 09:00: {value!r}") from None
        return value

    @model_validator(mode="after")
    def _order(self) -> Self:
        if time.fromisoformat(self.end) <= time.fromisoformat(self.start):
            raise _rules([(("end",), f"must be after start ({self.start}): {self.end!r}")])
        if not self.days:
            raise _rules([(("days",), "at least one day: []")])
        return self


class GraduationConfig(_Model):
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


def https_url(value: str) -> str:
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    host = host if host.startswith("[") else host.split(":", 1)[0]
    if (scheme == "https" and host) or (scheme == "http" and host in _LOCAL_HOSTS):
        return value
    raise _error("url", f"not an https:// URL (http:// only for localhost): {value!r}")


def _secret_name(value: str) -> str:
    if _SECRET_NAME.fullmatch(value):
        return value
    raise _error("name", f"not a secret name (letters, digits, '_', '.', '-'; a letter first): {value!r}")


class OAuthProvider(_Model):
    """Where and how delegated OAuth tokens of one provider are refreshed (RFC 6749 section 6)
    and, with `authorize_url`, connected by people themselves from Slack (section 4.1)."""

    token_url: Annotated[str, AfterValidator(https_url)]
    client_id: str = Field(min_length=1)
    # The name of a vault secret (owner `team`) that holds the client secret: never the value.
    client_secret_name: Annotated[str, AfterValidator(_secret_name)] | None = None
    timeout: Duration = parse_duration("10s")
    # The authorization-code flow: where people sign in, what is asked for, and which of the
    # tools' declared secrets the token it gives is stored as. Without it: the CLI only.
    authorize_url: Annotated[str, AfterValidator(https_url)] | None = None
    scopes: list[str] = []
    secrets: list[Annotated[str, AfterValidator(_secret_name)]] = []

    @model_validator(mode="after")
    def _flow(self) -> Self:
        if self.authorize_url is not None and not self.secrets:
            raise _rules([(("secrets",), "required with authorize_url: the secret names its tokens connect: []")])
        if self.secrets and self.authorize_url is None:
            raise _rules([(("authorize_url",), f"required with secrets (people connect them there): {None!r}")])
        return self


class TaskTypeConfig(_Model):
    description: str = ""
    instructions: str = ""
    tools: list[str] = Field(min_length=1)
    autonomy: AutonomyLevel = AutonomyLevel.HITL
    channel: str | None = None
    approvers: list[Person] = []
    quorum: int = Field(default=1, ge=1)
    veto_window: Duration = parse_duration("10m")
    confidence_threshold: Share = 0.7
    model: str | None = None  # else model.default
    budget: Budget = Budget()
    escalation: list[EscalationStep] = []
    business_hours: BusinessHours | None = None
    ack_timeout: Duration | None = None  # an acknowledged action not decided by then escalates again
    stall_after: Duration = parse_duration("30m")  # a task without progress this long is escalated
    graduation: GraduationConfig = GraduationConfig()
    # Whose credentials the tools use: the workspace's own secrets (unset), or the person's
    # own, connected in the vault under the secret's name with that person as owner.
    credentials: Literal["requester", "approver"] | None = None

    @field_validator("escalation")
    @classmethod
    def _chain_order(cls, steps: list[EscalationStep]) -> list[EscalationStep]:
        problems: list[tuple[KeyPath, str]] = []
        for index, (before, step) in enumerate(itertools.pairwise(steps), start=1):
            if step.after <= before.after:
                problems.append(
                    (
                        (index, "after"),
                        f"must be later than the step before it "
                        f"({format_duration(before.after)}), got {format_duration(step.after)}",
                    )
                )
        for index, step in enumerate(steps[:-1]):
            if step.then == "expire":
                problems.append(((index, "then"), "'expire' ends the chain, so it must be the last step"))
        if problems:
            raise _rules(problems)
        return steps

    @model_validator(mode="after")
    def _people(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
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
            raise _rules(problems)
        return self


class Config(_Model):
    slack: SlackConfig = SlackConfig()
    model: ModelConfig = ModelConfig()
    tools: ToolsConfig = ToolsConfig()
    task_types: dict[TaskTypeName, TaskTypeConfig] = Field(min_length=1)
    alerts: AlertsConfig = AlertsConfig()
    audit: AuditConfig = AuditConfig()
    oauth_providers: dict[str, OAuthProvider] = {}
    # Where each key came from ("line 14", "env COUNTERSIGN__…"), for later problem reports.
    _origins: dict[KeyPath, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _channels(self) -> Self:
        if self.slack.approvals_channel is None:
            missing = [name for name, task_type in self.task_types.items() if task_type.channel is None]
            if missing:
                raise _rules(
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
            raise _rules(problems)
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
        return _where(path, self._origins)


def dotted(path: KeyPath) -> str:
    """`('task_types', 'refund', 'tools', 1)` → `task_types.refund.tools[1]`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def check_tool_names(config: Config, known: Collection[str]) -> list[str]:
    """Problems for every task-type tool not in `known` (the registry's names)."""
    listing = ", ".join(sorted(known)) or "none"
    return [
        f"{dotted(path)}{config.where(path)}: unknown tool {tool!r} (known: {listing})"
        for name, task_type in config.task_types.items()
        for index, tool in enumerate(task_type.tools)
        if tool not in known
        for path in [("task_types", name, "tools", index)]
    ]


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] = os.environ) -> Config:
    """Read, override from `COUNTERSIGN__…` variables, and validate; ConfigError lists every problem."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ConfigError([f"{os.fspath(path)}: no such config file (set COUNTERSIGN_CONFIG)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{os.fspath(path)}: cannot read the config file: {exc}"]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" (line {mark.line + 1})" if mark else ""
        reason = exc.problem or exc.context
        raise ConfigError([f"{os.fspath(path)}{line}: not valid YAML: {reason}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{os.fspath(path)}: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if data is None:
        expected = "expected a mapping with slack, model, tools and task_types"
        raise ConfigError([f"{os.fspath(path)}: the config file is empty; {expected}"])
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{os.fspath(path)} (line 1): the top level must be a mapping of keys "
                f"(slack, task_types, …), got {type(data).__name__}: {_short(data)}"
            ]
        )
    assert node is not None
    origins: dict[KeyPath, str] = {}
    problems = _map_lines(node, (), origins, set())
    data, env_problems = _apply_env(data, environ, origins)
    problems += env_problems
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _describe_all(exc, origins)
    if problems:
        raise ConfigError(problems)
    config._origins.update(origins)
    return config


def _map_lines(node: yaml.Node, path: KeyPath, origins: dict[KeyPath, str], done: set[int]) -> list[str]:
    """Record `line N` for every key path under `node`; return duplicate-key problems."""
    if id(node) in done:  # an alias: walking it again would re-walk (and maybe loop) the anchor
        return []
    done.add(id(node))
    origins.setdefault(path, f"line {node.start_mark.line + 1}")
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in first:
                where = f"{dotted((*path, key))} (line {line})"
                problems.append(f"{where}: duplicate key (first at line {first[key]}): {key!r}")
            first.setdefault(key, line)
            origins[(*path, key)] = f"line {line}"
            problems += _map_lines(value_node, (*path, key), origins, done)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _map_lines(item, (*path, index), origins, done)
    return problems


def _apply_env(
    data: dict[Any, Any], environ: Mapping[str, str], origins: dict[KeyPath, str]
) -> tuple[dict[Any, Any], list[str]]:
    """Overlay `COUNTERSIGN__A__B=value` (value read as YAML) onto a copy of `data`."""
    problems: list[str] = []
    root = dict(data)
    # Sorted, so a whole-section variable applies before the finer ones inside it.
    for name in sorted(key for key in environ if key.upper().startswith(ENV_PREFIX)):
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            example = "COUNTERSIGN__SLACK__APPROVALS_CHANNEL"
            problems.append(f"{name}: not a config path (use COUNTERSIGN__SECTION__KEY, e.g. {example})")
            continue
        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            problems.append(f"{name}: not a YAML value: {environ[name]!r}")
            continue
        target, path = root, cast(KeyPath, ())
        for key in keys[:-1]:
            key = _same_key(target, key)
            path = (*path, key)
            child = target.get(key, {})
            if not isinstance(child, dict):
                not_mapping = f"{dotted(path)} is not a mapping, so it has no {keys[-1]!r}"
                problems.append(f"{name}: {not_mapping}: {_short(child)}")
                break
            # Copy on the way down: YAML anchors may share this dict with another key.
            target[key] = target = dict(child)
        else:
            path = (*path, _same_key(target, keys[-1]))
            target[path[-1]] = value
            for known in [known for known in origins if known[: len(path)] == path]:
                del origins[known]
            origins[path] = f"env {name}"
    return root, problems


def _same_key(mapping: dict[Any, Any], key: str) -> str:
    """The existing key an upper-cased env name means: `restart-service` for `RESTART_SERVICE`."""
    if key in mapping:
        return key
    return next((k for k in mapping if isinstance(k, str) and k.lower().replace("-", "_") == key), key)


def _describe_all(exc: ValidationError, origins: dict[KeyPath, str]) -> list[str]:
    problems: list[str] = []
    for error in exc.errors():
        loc: KeyPath = tuple(part for part in error["loc"] if part != "[key]")
        ctx = error.get("ctx") or {}
        if error["type"] == "rules":
            found = [((*loc, *sub), message) for sub, message in ctx["problems"]]
        elif error["type"] == "extra_forbidden":
            found = [(loc, "unknown key")]
        elif error["type"] == "missing":
            found = [(loc, "required key is missing")]
        elif error["type"] in _OWN_ERRORS:
            found = [(loc, error["msg"])]
        else:
            found = [(loc, f"{error['msg']}, got {_short(error['input'])}")]
        for path, message in found:
            problems.append(f"{dotted(path) or '(top level)'}{_where(path, origins)}: {message}")
    return problems


def _where(path: KeyPath, origins: dict[KeyPath, str]) -> str:
    for end in range(len(path), -1, -1):
        if path[:end] in origins:
            return f" ({origins[path[:end]]})"
    return ""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
