"""Posting one outbox row's messages to Slack, each at most once as far as Slack can tell.

Every post carries its row's marker (`row.part`) as message metadata: chat.postMessage has no
idempotency key, so a retry of a row whose earlier call got no answer first looks for each
post in the channel (or thread) and posts only what is not there. Posts are paced to about
one a second per channel, as Slack asks; a post Slack refuses for good is `Undeliverable`.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.metadata import Metadata

from bot.services import Services
from core.models import SlackMessage

log = logging.getLogger(__name__)
# Slack errors that no retry will fix: the message is dropped, with the reason recorded.
PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "msg_too_long",
        "no_text",
        "invalid_arguments",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
    }
)
# The request may have reached Slack although no answer came back: its outcome is unknown.
UNANSWERED = (TimeoutError, ConnectionError, http.client.HTTPException)
# Why a channel's history can't be read; the post is then sent again, at least once.
UNREADABLE = frozenset({"missing_scope", "not_in_channel", "channel_not_found", "thread_not_found"})
MARKER = "countersign_outbox"  # the metadata event_type of every post
Result = dict[str, Any]


class Undeliverable(Exception):
    """Slack refused the message for good (or there is nowhere to send it)."""


@dataclass
class Delivery:
    """One attempt at one outbox row. Its posts are numbered, each marked `row.part`; a retry
    looks for each in the channel before posting it again."""

    row: int
    retry: bool
    client: WebClient  # speaks to the row's workspace
    method: str = ""  # the Slack method in flight, for the logs when no answer comes
    part: int = 0

    def next_marker(self) -> str:
        self.part += 1
        return f"{self.row}.{self.part}"


class Poster:
    """Slack calls for deliveries, shared by the sender's threads (they share the pace)."""

    def __init__(self, services: Services, *, channel_pace_s: float = 1.0) -> None:
        self.services, self.channel_pace_s = services, channel_pace_s
        self._pace_lock = threading.Lock()
        self._next_post: dict[str, float] = {}  # channel → monotonic time its next post may go

    def update(self, d: Delivery, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        d.method = "chat.update"
        d.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    def permalink(self, d: Delivery, channel: str, ts: str) -> str | None:
        """A link to a posted message (a card, for a reminder to point at); None if Slack has none
        to give: the reminder then names the card by its id alone."""
        d.method = "chat.getPermalink"
        try:
            link = d.client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
        except SlackApiError as exc:
            log.warning("no permalink for %s/%s: %s", channel, ts, exc.response.get("error"))
            return None
        return link if isinstance(link, str) else None

    def dm(self, d: Delivery, user: str) -> str:
        d.method = "conversations.open"
        channel = d.client.conversations_open(users=user)["channel"]["id"]
        return str(channel)

    def post(
        self,
        d: Delivery,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        thread_ts: str | None,
        *,
        key: str | None = None,
    ) -> Result:
        """Post once; with `key`, remember where (`slack_messages`), for updating it later."""
        marker = d.next_marker()
        found = self._posted_before(d, channel, thread_ts, marker) if d.retry else None
        if found is not None:
            result = {"channel": channel, "ts": found, "found": True}
        else:
            self._pace(channel)
            d.method = "chat.postMessage"
            try:
                response = d.client.chat_postMessage(
                    channel=channel,
                    text=text,
                    blocks=blocks,
                    thread_ts=thread_ts,
                    metadata=Metadata(event_type=MARKER, event_payload={"outbox": marker}),
                )
            except SlackApiError as exc:
                if exc.response.get("error") in PERMANENT:
                    raise Undeliverable(f"{exc.response.get('error')} (channel {channel})") from exc
                raise
            result = {"channel": response["channel"], "ts": response["ts"]}
        if key is not None:
            with self.services.sessions.begin() as session:
                posted = SlackMessage(
                    key=key, channel=result["channel"], ts=result["ts"], posted_at=self.services.clock.now()
                )
                session.merge(posted)
        return result

    def _posted_before(self, d: Delivery, channel: str, thread_ts: str | None, marker: str) -> str | None:
        """The ts of this post if an earlier attempt of the row made it, found by its marker."""
        client = d.client
        try:
            if thread_ts is None:
                d.method = "conversations.history"
                response = client.conversations_history(channel=channel, include_all_metadata=True, limit=100)
            else:
                d.method = "conversations.replies"
                response = client.conversations_replies(
                    channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
                )
        except SlackApiError as exc:
            if exc.response.get("error") not in UNREADABLE:
                raise
            log.warning("cannot look for an earlier post in %s (%s): posting again", channel, exc.response["error"])
            return None
        for message in response.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == MARKER and (metadata.get("event_payload") or {}).get("outbox") == marker:
                return str(message["ts"])
        return None

    def _pace(self, channel: str) -> None:
        """Slack allows about one message per second per channel: wait for this post's slot."""
        with self._pace_lock:
            now = time.monotonic()
            slot = max(now, self._next_post.get(channel, 0.0))
            self._next_post[channel] = slot + self.channel_pace_s
        if slot > now:
            time.sleep(slot - now)
