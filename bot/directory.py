"""Who is in a Slack user group: the approvals `Directory` port, implemented with
`usergroups.list` / `usergroups.users.list` and a short-lived cache (Tier 2 methods); and what a
person is called (`users.info`), for pages that name them."""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.installations import NotInstalled

if TYPE_CHECKING:
    from bot.services import Services

_NAME_LIMIT = 80


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


def person_name(services: Services, user: str, team_id: str | None) -> str | None:
    """How Slack shows `user` of workspace `team_id` (display name, else real name), or None
    when Slack cannot say: the page that names them then shows their id alone."""
    try:
        found = services.client_for(team_id).users_info(user=user).get("user") or {}
    except (NotInstalled, SlackClientError, OSError):
        return None
    profile = found.get("profile") or {}
    for name in (profile.get("display_name"), profile.get("real_name"), found.get("real_name")):
        if isinstance(name, str):
            # People choose their names: drop control and bidi-override characters, which could
            # make a name look like someone else's id.
            shown = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
            if shown:
                return shown[:_NAME_LIMIT]
    return None
