"""The state of one emulated Slack workspace: people, groups, channels, messages and their
threads and edits, ephemeral messages, modals, App Home tabs, trigger ids and response_urls.

Every method takes the workspace lock, and every query returns a deep copy, so the HTTP
threads, the tests and the sandbox page can read and write at the same time. Methods raise
`SlackError` with the error code Slack would answer (`slack_rules.py`, with the checks of what
a message or view may hold); its records are the dataclasses of `records.py`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

from bot.sandbox.records import Channel, Ephemeral, Message, ResponseUrl, Trigger, User, UserGroup, Version, View
from bot.sandbox.slack_rules import JsonDict, SlackError, parse_blocks, parse_view, truthy

# Where the sandbox's modules (and tests) have always found these names.
__all__ = [
    "Channel",
    "Ephemeral",
    "JsonDict",
    "Message",
    "ResponseUrl",
    "SlackError",
    "User",
    "UserGroup",
    "Version",
    "View",
    "Workspace",
    "parse_blocks",
    "parse_view",
    "truthy",
]

TRIGGER_TTL = 3.0  # seconds; Slack's limit for exchanging a trigger_id
RESPONSE_URL_TTL = 30 * 60.0  # a response_url works for 30 minutes...
RESPONSE_URL_USES = 5  # ...and at most five times


class Workspace:
    def __init__(
        self, *, now: Callable[[], float], bot_user_id: str, bot_id: str, team_id: str, strict_ids: bool = True
    ) -> None:
        self.now, self.bot_user_id, self.bot_id, self.team_id = now, bot_user_id, bot_id, team_id
        self.strict_ids = strict_ids
        self.lock = threading.RLock()
        self._users: dict[str, User] = {}
        self._groups: dict[str, UserGroup] = {}
        self._channels: dict[str, Channel] = {}
        self._messages: dict[str, list[Message]] = {}
        self._ephemerals: list[Ephemeral] = []
        self._views: dict[str, View] = {}
        self._homes: dict[str, View] = {}
        self._triggers: dict[str, Trigger] = {}
        self._response_urls: dict[str, ResponseUrl] = {}
        self._last_ts = 0
        self._serial = 0

    # -- seeding -------------------------------------------------------------------------
    def add_user(self, id: str, name: str, real_name: str = "") -> None:
        with self.lock:
            self._users[id] = User(id, name, real_name or name)

    def add_usergroup(self, id: str, handle: str, users: list[str], name: str = "") -> None:
        with self.lock:
            self._groups[id] = UserGroup(id, handle.lstrip("@"), list(users), name or handle.lstrip("@"))

    def add_channel(self, id: str, name: str) -> None:
        with self.lock:
            self._channels[id] = Channel(id, name.lstrip("#"))
            self._messages.setdefault(id, [])

    # -- ids -----------------------------------------------------------------------------
    def _next(self) -> int:
        self._serial += 1
        return self._serial

    def next_ts(self) -> str:
        """A message ts: microseconds of the clock, strictly increasing (by 100 µs on ties)."""
        with self.lock:
            micros = max(round(self.now() * 1_000_000), self._last_ts + 100)
            self._last_ts = micros
            return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # -- people --------------------------------------------------------------------------
    def user(self, user_id: str) -> User:
        with self.lock:
            if user_id not in self._users:
                if self.strict_ids or not user_id:
                    raise SlackError("user_not_found")
                self._users[user_id] = User(user_id, user_id.lower(), user_id)
            return copy.deepcopy(self._users[user_id])

    def usergroups(self) -> list[UserGroup]:
        with self.lock:
            return copy.deepcopy(list(self._groups.values()))

    def usergroup(self, group_id: str) -> UserGroup:
        with self.lock:
            if group_id not in self._groups:
                raise SlackError("no_such_subteam")
            return copy.deepcopy(self._groups[group_id])

    # -- channels ------------------------------------------------------------------------
    def open_dm(self, user_id: str) -> Channel:
        with self.lock:
            self.user(user_id)
            dm_id = "D" + user_id[1:]
            if dm_id not in self._channels:
                self._channels[dm_id] = Channel(dm_id, user_id, user=user_id)
                self._messages[dm_id] = []
            return copy.deepcopy(self._channels[dm_id])

    def channel(self, channel_id: str, *, post: bool = False) -> Channel:
        """The channel; posting to a user id (`U…`/`W…`) posts to the DM with them, as Slack does."""
        with self.lock:
            if post and channel_id[:1] in ("U", "W"):
                return self.open_dm(channel_id)
            if channel_id not in self._channels:
                if self.strict_ids or not channel_id:
                    raise SlackError("channel_not_found")
                self.add_channel(channel_id, channel_id.lower())
            return copy.deepcopy(self._channels[channel_id])

    def channels(self) -> list[Channel]:
        with self.lock:
            return copy.deepcopy(list(self._channels.values()))

    # -- messages ------------------------------------------------------------------------
    def _find(self, channel_id: str, ts: str) -> Message:
        for message in self._messages.get(channel_id, []):
            if message.ts == ts:
                return message
        raise SlackError("message_not_found")

    def post(
        self,
        channel_id: str,
        text: str,
        blocks: list[JsonDict],
        *,
        thread_ts: str | None = None,
        broadcast: bool = False,
        via: str = "chat.postMessage",
        metadata: JsonDict | None = None,
    ) -> Message:
        with self.lock:
            channel = self.channel(channel_id, post=True)
            if thread_ts:
                try:
                    parent = self._find(channel.id, thread_ts)
                except SlackError:
                    raise SlackError("invalid_thread_ts") from None
                thread_ts = parent.thread_ts or parent.ts
            version = Version(text, blocks, via, self.now())
            message = Message(channel.id, self.next_ts(), self.bot_user_id, [version], thread_ts, broadcast, metadata)
            self._messages[channel.id].append(message)
            return copy.deepcopy(message)

    def update(self, channel_id: str, ts: str, text: str, blocks: list[JsonDict], *, via: str) -> Message:
        with self.lock:
            self.channel(channel_id)
            message = self._find(channel_id, ts)
            message.versions.append(Version(text, blocks, via, self.now()))
            return copy.deepcopy(message)

    def delete(self, channel_id: str, ts: str) -> None:
        with self.lock:
            self.channel(channel_id)
            self._messages[channel_id].remove(self._find(channel_id, ts))

    def post_ephemeral(
        self,
        channel_id: str,
        user_id: str,
        text: str,
        blocks: list[JsonDict],
        *,
        thread_ts: str | None = None,
        via: str = "chat.postEphemeral",
    ) -> Ephemeral:
        with self.lock:
            channel = self.channel(channel_id, post=True)
            self.user(user_id)
            ephemeral = Ephemeral(channel.id, user_id, self.next_ts(), text, blocks, thread_ts, via)
            self._ephemerals.append(ephemeral)
            return copy.deepcopy(ephemeral)

    def messages(self, channel_id: str) -> list[Message]:
        """Every message of the channel, thread replies included, oldest first."""
        with self.lock:
            return copy.deepcopy(self._messages.get(channel_id, []))

    def message(self, channel_id: str, ts: str) -> Message:
        with self.lock:
            return copy.deepcopy(self._find(channel_id, ts))

    def history(self, channel_id: str) -> list[Message]:
        """Top-level messages (and broadcast replies), newest first, as conversations.history."""
        with self.lock:
            self.channel(channel_id)
            top = [m for m in self._messages[channel_id] if m.thread_ts in (None, m.ts) or m.broadcast]
            return copy.deepcopy(top[::-1])

    def thread(self, channel_id: str, ts: str) -> list[Message]:
        """The parent and its replies, oldest first, as conversations.replies."""
        with self.lock:
            self.channel(channel_id)
            try:
                parent = self._find(channel_id, ts)
            except SlackError:
                raise SlackError("thread_not_found") from None
            root = parent.thread_ts or parent.ts
            return copy.deepcopy([m for m in self._messages[channel_id] if root in (m.ts, m.thread_ts)])

    def to_slack(self, message: Message, *, metadata: bool = False) -> JsonDict:
        """A message as the Web API shows it, with its thread summary (and its metadata, when
        asked with `include_all_metadata`)."""
        data: JsonDict = {
            "type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "team": self.team_id,
            "ts": message.ts, "text": message.text,
        }  # fmt: skip
        if message.blocks:
            data["blocks"] = message.blocks
        if message.edits:
            data["edited"] = {"user": self.bot_user_id, "ts": f"{message.edits[-1].at:.6f}"}
        if message.thread_ts:
            data["thread_ts"] = message.thread_ts
        if metadata and message.metadata is not None:
            data["metadata"] = message.metadata
        with self.lock:
            replies = [m for m in self._messages.get(message.channel, []) if m.thread_ts == message.ts != m.ts]
        if replies:
            data.update(thread_ts=message.ts, reply_count=len(replies), latest_reply=replies[-1].ts)
            data["reply_users"] = sorted({m.user for m in replies})
        return data

    def ephemerals(self, user: str | None = None, channel: str | None = None) -> list[Ephemeral]:
        with self.lock:
            found = [e for e in self._ephemerals if user in (None, e.user) and channel in (None, e.channel)]
            return copy.deepcopy(found)

    # -- modals and App Home ---------------------------------------------------------------
    def new_trigger_id(self, user: str | None = None) -> str:
        with self.lock:
            serial = self._next()
            trigger_id = f"{int(self.now())}.{serial}.{serial * 2654435761 % 2**32:08x}"
            self._triggers[trigger_id] = Trigger(self.now(), user)
            return trigger_id

    def _exchange(self, trigger_id: str, strict: bool) -> Trigger | None:
        trigger = self._triggers.get(trigger_id)
        if not strict:
            return trigger
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if self.now() - trigger.issued > TRIGGER_TTL:
            raise SlackError("expired_trigger_id")
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        trigger.used = True
        return trigger

    def _new_view(self, payload: JsonDict, trigger_id: str | None, user: str | None) -> View:
        serial = self._next()
        view_id = f"V{serial:08d}"
        view = View(view_id, payload, f"{int(self.now())}.{serial}", user, trigger_id, view_id)
        self._views[view_id] = view
        return view

    def open_view(self, trigger_id: str, payload: JsonDict, *, strict: bool) -> View:
        with self.lock:
            trigger = self._exchange(trigger_id, strict)
            return copy.deepcopy(self._new_view(payload, trigger_id, trigger.user if trigger else None))

    def push_view(self, trigger_id: str, payload: JsonDict, *, strict: bool) -> View:
        with self.lock:
            trigger = self._exchange(trigger_id, strict)
            below = next((v for v in reversed(self._views.values()) if v.payload.get("type") == "modal"), None)
            view = self._new_view(payload, trigger_id, trigger.user if trigger else None)
            if below is not None:
                view.root_view_id, view.previous_view_id = below.root_view_id, below.id
            return copy.deepcopy(view)

    def update_view(self, view_id: str | None, external_id: str | None, hash_: str | None, payload: JsonDict) -> View:
        with self.lock:
            views = [*self._views.values(), *self._homes.values()]
            view = next((v for v in views if v.id == view_id), None) if view_id else None
            if external_id and view is None:
                view = next((v for v in views if v.payload.get("external_id") == external_id), None)
            if view is None:
                raise SlackError("not_found")
            if hash_ and hash_ != view.hash:
                raise SlackError("hash_conflict")
            view.payload, view.hash = payload, f"{int(self.now())}.{self._next()}"
            return copy.deepcopy(view)

    def publish_home(self, user_id: str, payload: JsonDict, hash_: str | None = None) -> View:
        with self.lock:
            self.user(user_id)
            home = self._homes.get(user_id)
            if home is not None and hash_ and hash_ != home.hash:
                raise SlackError("hash_conflict")
            serial = self._next()
            view_id = home.id if home else f"V{serial:08d}"
            self._homes[user_id] = View(view_id, payload, f"{int(self.now())}.{serial}", user_id, None, view_id)
            return copy.deepcopy(self._homes[user_id])

    def views(self) -> list[View]:
        with self.lock:
            return copy.deepcopy(list(self._views.values()))

    def home(self, user_id: str) -> View | None:
        with self.lock:
            return copy.deepcopy(self._homes.get(user_id))

    def view_to_slack(self, view: View) -> JsonDict:
        return {
            "state": {"values": {}}, "external_id": "", "private_metadata": "", "callback_id": "",
            "clear_on_close": False, "notify_on_close": False, **view.payload, "id": view.id, "team_id": self.team_id,
            "hash": view.hash, "root_view_id": view.root_view_id, "previous_view_id": view.previous_view_id,
            "app_id": "A0SANDBOX", "bot_id": self.bot_id,
        }  # fmt: skip

    # -- response_url ----------------------------------------------------------------------
    def new_response_url(self, channel: str | None, ts: str | None, user: str | None) -> str:
        with self.lock:
            url_id = f"R{self._next():08d}"
            self._response_urls[url_id] = ResponseUrl(url_id, self.now(), channel, ts, user)
            return url_id

    def respond(self, url_id: str, payload: JsonDict) -> None:
        """Apply a POST to a response_url the way Slack does: replace or delete the original
        message, post in the channel, or (the default) show an ephemeral message to the user."""
        with self.lock:
            hook = self._response_urls.get(url_id)
            if hook is None:
                raise SlackError("invalid_response_url")
            if self.now() - hook.created > RESPONSE_URL_TTL:
                raise SlackError("expired_url")
            if len(hook.posts) >= RESPONSE_URL_USES:
                raise SlackError("used_url")
            text, blocks = str(payload.get("text") or ""), parse_blocks(payload.get("blocks"))
            delete, replace = truthy(payload.get("delete_original")), truthy(payload.get("replace_original"))
            if not (text or blocks or delete):
                raise SlackError("no_text")
            if hook.channel and hook.ts and delete:
                self.delete(hook.channel, hook.ts)
            elif hook.channel and hook.ts and replace:
                self.update(hook.channel, hook.ts, text, blocks, via="response_url")
            elif hook.channel and payload.get("response_type") == "in_channel":
                self.post(hook.channel, text, blocks, thread_ts=payload.get("thread_ts"), via="response_url")
            elif hook.channel and hook.user and not (delete or replace):
                self.post_ephemeral(hook.channel, hook.user, text, blocks, via="response_url")
            hook.posts.append(copy.deepcopy(payload))

    def response_urls(self) -> list[ResponseUrl]:
        with self.lock:
            return copy.deepcopy(list(self._response_urls.values()))
