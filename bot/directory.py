"""Who is in a Slack user group: the approvals `Directory` port, implemented with
`usergroups.list` / `usergroups.users.list` and a short-lived cache (Tier 2 methods)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError


class SlackDirectory:
    def __init__(self, client: WebClient, *, ttl_s: float = 60.0, now: Callable[[], float] = time.monotonic) -> None:
        self.client, self.ttl_s, self.now = client, ttl_s, now
        self._lock = threading.Lock()
        self._handles: tuple[float, dict[str, str]] | None = None  # handle → usergroup id
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    def members(self, handle: str) -> frozenset[str]:
        handle = handle.lstrip("@")
        with self._lock:
            cached = self._members.get(handle)
            if cached and self.now() - cached[0] < self.ttl_s:
                return cached[1]
        group_id = self._group_ids().get(handle)
        if group_id is None:
            members: frozenset[str] = frozenset()
        else:
            try:
                members = frozenset(self.client.usergroups_users_list(usergroup=group_id).get("users") or [])
            except SlackApiError:
                # Fail closed: nobody from an unreadable group is an approver.
                members = frozenset()
        with self._lock:
            self._members[handle] = (self.now(), members)
        return members

    def _group_ids(self) -> dict[str, str]:
        with self._lock:
            if self._handles and self.now() - self._handles[0] < self.ttl_s:
                return self._handles[1]
        try:
            groups = self.client.usergroups_list().get("usergroups") or []
        except SlackApiError:
            return {}
        handles = {group["handle"]: group["id"] for group in groups if "handle" in group and "id" in group}
        with self._lock:
            self._handles = (self.now(), handles)
        return handles
