"""The values the configuration is made of, and their checks: the `AutonomyLevel` scale,
Slack people and user groups, task type and secret names, URLs, key paths and where in the
file (or the environment) each came from. Imports nothing from the other countersign packages."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator
from pydantic_core import PydanticCustomError

KeyPath = tuple[str | int, ...]
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_GROUP = re.compile(r"@[a-z0-9][a-z0-9._-]*")
_TASK_TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# Our validators' messages already name the bad value; pydantic's own ones get it appended.
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


def config_error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{message}", {"message": message})


def rules_error(problems: list[tuple[KeyPath, str]]) -> PydanticCustomError:
    """One error carrying several cross-field problems, each at its own sub-path."""
    summary = "; ".join(f"{dotted(path) or '.'}: {message}" for path, message in problems)
    return PydanticCustomError("rules", "{message}", {"message": summary, "problems": problems})


def _person(value: str) -> str:
    if is_user_id(value) or _GROUP.fullmatch(value):
        return value
    raise config_error("person", f"not a Slack user id (U…/W…) or user-group handle (@…): {value!r}")


def _task_type_name(value: str) -> str:
    if _TASK_TYPE_NAME.fullmatch(value):
        return value
    raise config_error("name", f"not a task type name (lower case, digits, - and _, from a letter): {value!r}")


def _notify(value: object) -> str | list[str]:
    if value in ("approvers", "admins"):
        return str(value)
    entries = [value] if isinstance(value, str) and value.startswith("@") else value
    if isinstance(entries, list) and entries and all(isinstance(entry, str) for entry in entries):
        return [_person(entry) for entry in entries]
    raise config_error("notify", f"notify must be 'approvers', 'admins' or a list of users/@groups: {value!r}")


Person = Annotated[str, AfterValidator(_person)]
TaskTypeName = Annotated[str, AfterValidator(_task_type_name)]
# A plain validator keeps union branch names ("list[str]") out of error paths.
Notify = Annotated[Literal["approvers", "admins"] | list[str] | None, PlainValidator(_notify)]
Share = Annotated[float, Field(ge=0, le=1)]


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def https_url(value: str) -> str:
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    host = host if host.startswith("[") else host.split(":", 1)[0]
    if (scheme == "https" and host) or (scheme == "http" and host in _LOCAL_HOSTS):
        return value
    raise config_error("url", f"not an https:// URL (http:// only for localhost): {value!r}")


def check_secret_name(value: str) -> str:
    if _SECRET_NAME.fullmatch(value):
        return value
    raise config_error("name", f"not a secret name (letters, digits, '_', '.', '-'; a letter first): {value!r}")


def dotted(path: KeyPath) -> str:
    """`('task_types', 'refund', 'tools', 1)` → `task_types.refund.tools[1]`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def origin_of(path: KeyPath, origins: dict[KeyPath, str]) -> str:
    for end in range(len(path), -1, -1):
        if path[:end] in origins:
            return f" ({origins[path[:end]]})"
    return ""
