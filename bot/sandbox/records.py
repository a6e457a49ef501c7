"""The emulated workspace's records: people, user groups, channels, messages and their
versions, ephemeral messages, views, response_urls and trigger ids, as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.sandbox.slack_rules import JsonDict


@dataclass(slots=True)
class User:
    id: str
    name: str
    real_name: str = ""


@dataclass(slots=True)
class UserGroup:
    id: str
    handle: str
    users: list[str]
    name: str = ""


@dataclass(slots=True)
class Channel:
    id: str
    name: str
    user: str | None = None  # the other person of a DM


@dataclass(slots=True)
class Version:
    """What a message looked like after a post or an update."""

    text: str
    blocks: list[JsonDict]
    via: str  # "chat.postMessage", "chat.update", "response_url"
    at: float


@dataclass(slots=True)
class Message:
    channel: str
    ts: str
    user: str
    versions: list[Version]
    thread_ts: str | None = None
    broadcast: bool = False
    metadata: JsonDict | None = None  # message metadata: {"event_type": …, "event_payload": {…}}

    @property
    def text(self) -> str:
        return self.versions[-1].text

    @property
    def blocks(self) -> list[JsonDict]:
        return self.versions[-1].blocks

    @property
    def edits(self) -> list[Version]:
        """The updates applied after the post, oldest first."""
        return self.versions[1:]


@dataclass(slots=True)
class Ephemeral:
    channel: str
    user: str
    ts: str
    text: str
    blocks: list[JsonDict]
    thread_ts: str | None = None
    via: str = "chat.postEphemeral"


@dataclass(slots=True)
class View:
    id: str
    payload: JsonDict  # the view as the app sent it
    hash: str
    user: str | None = None
    trigger_id: str | None = None
    root_view_id: str | None = None
    previous_view_id: str | None = None


@dataclass(slots=True)
class ResponseUrl:
    id: str
    created: float
    channel: str | None = None
    ts: str | None = None
    user: str | None = None
    posts: list[JsonDict] = field(default_factory=list)


@dataclass(slots=True)
class Trigger:
    issued: float
    user: str | None
    used: bool = False
