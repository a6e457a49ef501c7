"""What the gate needs from outside, as small protocols that other packages implement:
the directory of people (bot: Slack user groups; tests: a fake) and the tool catalog
(agent: the tool registry)."""

from __future__ import annotations

from typing import Any, Protocol


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


class ToolCatalog(Protocol):
    def policy(self, name: str) -> ToolPolicy:
        """The tool's policy; raises `LookupError` for an unknown tool."""
        ...

    def validate(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Canonical params, or raise `ValueError` with a `problems: dict[str, str]` attribute."""
        ...


def is_listed_approver(actor: str, approvers: list[str], directory: Directory) -> bool:
    """Whether `actor` is one of `approvers`: named directly, or a member of a listed group."""
    if actor in approvers:
        return True
    return any(entry.startswith("@") and actor in directory.members(entry) for entry in approvers)
