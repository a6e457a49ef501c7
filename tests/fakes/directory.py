"""A directory of user groups held in memory, standing in for Slack's usergroups API."""

from __future__ import annotations


class FakeDirectory:
    def __init__(self, groups: dict[str, set[str]] | None = None) -> None:
        self.groups = {handle.lstrip("@"): set(members) for handle, members in (groups or {}).items()}
        self.lookups: list[str] = []

    def members(self, handle: str) -> frozenset[str]:
        self.lookups.append(handle)
        return frozenset(self.groups.get(handle.lstrip("@"), set()))
