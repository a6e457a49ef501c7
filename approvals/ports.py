"""What the gate needs from outside, as small protocols that other packages implement:
the directory of people (bot: Slack user groups; tests: a fake), the tool catalog
(agent: the tool registry) and delegated credentials (agent: `agent.delegation`)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from core.models import Action


class Directory(Protocol):
    def members(self, handle: str) -> frozenset[str]:
        """User ids in the user group `handle` (with or without its leading `@`)."""
        ...


class ToolPolicy(Protocol):
    @property
    def risk(self) -> str: ...
    @property
    def idempotent(self) -> bool: ...
    @property
    def max_autonomy(self) -> str: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def secrets(self) -> tuple[str, ...]: ...
    @property
    def undo(self) -> str | None:
        """The tool that compensates a run of this one (`approvals.undo`); None: it cannot be undone."""
        ...


@dataclass(frozen=True)
class MissingCredential:
    """Whose own credential an action would run with (None: a requester it does not have),
    which of the tool's secrets they have not connected, and how they connect them."""

    owner: str | None
    names: list[str]
    how: str


class Credentials(Protocol):
    def missing(self, session: Session, action: Action, approver: str) -> MissingCredential | None:
        """What is not connected if `approver`'s approval made `action` run now; None if nothing."""
        ...

    def delegated_task_types(self) -> Collection[str]:
        """The task types whose tools run with a person's credential (`missing` may find one)."""
        ...


class ToolCatalog(Protocol):
    def policy(self, name: str) -> ToolPolicy:
        """The tool's policy; raises `LookupError` for an unknown tool."""
        ...

    def validate(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Canonical params, or raise `ValueError` with a `problems: dict[str, str]` attribute."""
        ...

    def definition_hash(self, name: str) -> str:
        """`core.canonical.tool_hash` of the tool's name, params schema and description: what an
        approval binds to besides the params; raises `LookupError` for an unknown tool."""
        ...


def is_listed_approver(actor: str, approvers: list[str], directory: Directory) -> bool:
    """Whether `actor` is one of `approvers`: named directly, or a member of a listed group."""
    if actor in approvers:
        return True
    return any(entry.startswith("@") and actor in directory.members(entry) for entry in approvers)
