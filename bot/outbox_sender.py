"""Delivers outbox rows to Slack: cards, card updates, thread replies, task messages.

Rows are claimed with a short lease (never holding a transaction open across an HTTP
call), oldest first, and only the oldest undelivered row of each ordering key (one card, one
task) is eligible, so each card's messages arrive in order. slack_sdk's retry handlers
absorb short 429/5xx/connection blips; a longer outage leaves the row for a later attempt
with backoff (or Slack's `Retry-After`). Messages are never lost.

A call Slack never answered (a timeout, a dropped connection) may still land later. Such a row
waits `verify_after_s` before its retry, so the unanswered call has landed or never will; then
every post of the row first looks for itself in the channel (each post carries the row's marker
as message metadata, and chat.postMessage has no idempotency key), and every card is re-rendered
from the action's current state, so neither a duplicate nor a stale card is left behind.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.metadata import Metadata
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from agent.connect import DM_LINK_TTL
from bot.blocks.card import approval_card, card_text, credential_notice, result_reply
from bot.blocks.connect import connect_blocks, requester_connect
from bot.blocks.ping import expired_notice, reminded_note, reminder, stall_alert
from bot.blocks.proposal import level_changed, proposal_card, review_card
from bot.blocks.task import task_message
from bot.blocks.views import ConnectLinkView
from bot.installations import NotInstalled
from bot.presenter import card_view, proposal_view, task_view
from bot.services import Services
from core import metrics, outbox
from core.db import reading
from core.models import Action, OutboxMessage, Proposal, SlackMessage, Task

log = logging.getLogger(__name__)
CARD_KINDS = frozenset(
    {
        "action.card",
        "action.updated",
        "action.decided",
        "action.acknowledged",
        "action.succeeded",
        "action.failed",
        "action.unknown",
        "action.expired",
    }
)
EVENT_STATES = {
    "task.resumed": "running",
    "task.stalled": "stalled",
    "task.paused": "paused",
    "task.choose_type": "paused",
}
RESULT_KINDS = frozenset({"action.succeeded", "action.failed", "action.unknown"})
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


class Undeliverable(Exception):
    """Slack refused the message for good."""


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


class OutboxSender:
    def __init__(
        self,
        services: Services,
        *,
        lease_s: float = 60.0,
        channel_pace_s: float = 1.0,
        max_backoff_s: float = 300.0,
        verify_after_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.services = services
        self.lease = timedelta(seconds=lease_s)
        self.channel_pace_s, self.max_backoff_s, self.verify_after_s = channel_pace_s, max_backoff_s, verify_after_s
        self.rng = rng or random.Random()
        self._pace_lock = threading.Lock()  # several sender threads share the per-channel pace
        self._next_post: dict[str, float] = {}  # channel → monotonic time its next post may go

    def run_once(self) -> bool:
        message = self._claim()
        if message is None:
            return False
        delivery = Delivery(message.id, message.attempts > 1, self.services.client)
        try:
            delivery.client = self.services.client_for(self._workspace(message))
            result = self._deliver(message, delivery)
        except (Undeliverable, NotInstalled) as exc:
            metrics.OUTBOX_DELIVERED.labels(message.kind, "gave_up").inc()
            log.warning("outbox row %s (%s) is undeliverable: %s", message.id, message.kind, exc)
            self._finish(message.id, error=f"gave up: {exc}")
        except SlackApiError as exc:
            method = exc.response.api_url.rsplit("/", 1)[-1] if exc.response.api_url else "unknown"
            metrics.SLACK_API_ERRORS.labels(method, str(exc.response.get("error") or exc.response.status_code)).inc()
            self._retry(message, exc)
        except UNANSWERED as exc:
            metrics.SLACK_API_ERRORS.labels(delivery.method or "unknown", "no_answer").inc()
            log.warning("outbox row %s: %s got no answer (%r); checking again in %.0f s", message.id,
                        delivery.method, exc, self.verify_after_s)  # fmt: skip
            self._retry(message, exc, at_least_s=self.verify_after_s)
        except Exception as exc:
            log.exception("delivering outbox row %s failed", message.id)
            self._retry(message, exc)
        else:
            metrics.OUTBOX_DELIVERED.labels(message.kind, "delivered").inc()
            self._finish(message.id, result=result)
        return True

    def run_until_idle(self, max_messages: int = 1000) -> int:
        done = 0
        while done < max_messages and self.run_once():
            done += 1
        return done

    # -- claim and finish ---------------------------------------------------------------

    def _claim(self) -> OutboxMessage | None:
        now = self.services.clock.now()
        older = aliased(OutboxMessage)
        earlier_undelivered = exists().where(
            and_(
                older.ordering_key == OutboxMessage.ordering_key,
                older.delivered_at.is_(None),
                older.id < OutboxMessage.id,
            )
        )
        due = (
            select(OutboxMessage)
            .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.available_at <= now, ~earlier_undelivered)
            .order_by(OutboxMessage.id)
            .limit(1)
        )
        with reading(self.services.sessions) as session:
            if session.scalar(due.with_only_columns(OutboxMessage.id)) is None:
                return None
        with self.services.sessions.begin() as session:
            message = session.scalars(due.with_for_update(skip_locked=True)).first()
            if message is None:
                return None
            message.attempts += 1
            message.available_at = now + self.lease  # a lease: if we die mid-call, it is retried
            return message

    def _finish(self, message_id: int, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self.services.sessions.begin() as session:
            message = session.get(OutboxMessage, message_id)
            if message is not None:
                message.delivered_at = self.services.clock.now()
                message.result, message.last_error = result, error

    def _workspace(self, message: OutboxMessage) -> str | None:
        """The Slack workspace of the row's task or action (None: the configured one)."""
        if self.services.installations is None:
            return None
        with self.services.sessions() as session:
            return outbox.workspace_of(session, message.payload)

    def _retry(self, message: OutboxMessage, exc: Exception, *, at_least_s: float = 0.0) -> None:
        retry_after = _retry_after(exc)
        delay = (
            retry_after
            if retry_after is not None
            else min(self.max_backoff_s, 2.0 ** min(message.attempts, 12)) * self.rng.uniform(0.5, 1.5)
        )
        delay = max(delay, at_least_s)
        with self.services.sessions.begin() as session:
            row = session.get(OutboxMessage, message.id)
            if row is not None:
                row.available_at = self.services.clock.now() + timedelta(seconds=delay)
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]

    # -- delivery -----------------------------------------------------------------------

    def _deliver(self, message: OutboxMessage, d: Delivery) -> dict[str, Any] | None:
        payload = message.payload
        if message.kind in CARD_KINDS:
            return self._card(d, payload["action_id"], message.kind, payload.get("tell"))
        if message.kind == "escalation.notify":
            return self._remind(d, payload)
        if message.kind == "task.stall":
            return self._stall(d, payload)
        if message.kind.startswith("task."):
            return self._task(d, payload["task_id"], message.kind, payload)
        if message.kind in ("autonomy.proposal", "autonomy.proposal_decided"):
            return self._proposal(d, payload["proposal_id"])
        if message.kind == "autonomy.changed":
            text = level_changed(payload["task_type"], payload["from"], payload["to"], payload["by"], payload["reason"])
            return self._post(d, self.services.config.channel_for(payload["task_type"]), text, None, None)
        if message.kind == "credential.connect":
            return self._connect(d, payload["action_id"], payload["user"])
        if message.kind == "action.review":
            return self._review(d, payload["action_id"])
        if message.kind == "ops.alert":
            channel = self.services.config.proposals_channel
            if channel is None:
                raise Undeliverable("no admin or approvals channel configured for alerts")
            return self._post(d, channel, payload["message"], None, None)
        if message.kind == "audit.head":
            channel = self.services.config.proposals_channel or self.services.config.slack.approvals_channel
            if channel is None:
                raise Undeliverable("no admin or approvals channel configured for audit heads")
            text = f"Audit ledger head: `{payload['seq']}:{payload['hash']}` at {payload['at']}"
            return self._post(d, channel, text, None, None)
        raise Undeliverable(f"unknown outbox kind {message.kind!r}")

    def _card(self, d: Delivery, action_id: str, kind: str, tell: str | None = None) -> dict[str, Any] | None:
        config, registry = self.services.config, self.services.registry
        with self.services.sessions() as session:
            action = session.scalars(select(Action).where(Action.public_id == action_id)).one()
            card = card_view(session, config, registry, action)
            posted = session.get(SlackMessage, f"card:{action_id}")
            posted_at = (posted.channel, posted.ts) if posted else None
        blocks, text = approval_card(card), card_text(card)
        if posted_at is None:
            result = self._post(d, config.channel_for(card.task_type), text, blocks, None, key=f"card:{action_id}")
            posted_at = (result["channel"], result["ts"])
        else:
            self._update(d, posted_at[0], posted_at[1], text, blocks)
            result = {"channel": posted_at[0], "ts": posted_at[1], "updated": True}
        if kind in RESULT_KINDS:
            reply_text, reply_blocks = result_reply(card)
            self._post(d, posted_at[0], reply_text, reply_blocks, posted_at[1])
            if tell:  # their own credential failed: they are the one who can fix it
                notice = credential_notice(card)
                links = self._links(tell, action_id, card.task_type, card.tool)
                buttons = connect_blocks(notice, links, lasts=DM_LINK_TTL) if links else None
                self._post(d, self._dm(d, tell), notice, buttons, None)
        elif kind == "action.acknowledged" and card.acknowledged_by:
            self._post(d, posted_at[0], f"<@{card.acknowledged_by}> is on it.", None, posted_at[1])
        elif kind == "action.expired":
            self._post(d, posted_at[0], "Expired: nobody decided in time, so it did not run.", None, posted_at[1])
            if card.requester:
                self._post(d, self._dm(d, card.requester), expired_notice(card), None, None)
        return result

    def _connect(self, d: Delivery, action_id: str, user: str) -> dict[str, Any]:
        """A direct message with the requester's own connect links, while the action waits and
        they have not connected what it runs with; one per action (the row's)."""
        with self.services.sessions() as session:
            action = session.scalars(select(Action).where(Action.public_id == action_id)).one()
            card = card_view(session, self.services.config, self.services.registry, action)
            names = self.services.delegation.unconnected(
                session, user, self.services.delegation.names(action.task_type, action.tool), action.tool
            )
        if action.state not in ("pending", "scheduled"):
            return {"skipped": f"decided before the link went out ({action.state})"}
        if not names:
            return {"skipped": "already connected"}
        links = self._links(user, action_id, action.task_type, action.tool, names)
        if not links:
            return {"skipped": "connected with the CLI only (no provider with authorize_url)"}
        text, blocks = requester_connect(card, links, lasts=DM_LINK_TTL)
        self._post(d, self._dm(d, user), text, blocks, None)
        return {"sent": user, "secrets": names}

    def _links(
        self, user: str, action_id: str, task_type: str, tool: str, names: list[str] | None = None
    ) -> list[ConnectLinkView]:
        """Fresh personal connect links for `user` (for `names`, else every secret the action's tool
        takes from a person), when a provider's sign-in connects them all; [] when only the CLI does."""
        delegation = self.services.delegation
        wanted = names if names is not None else list(delegation.names(task_type, tool))
        if self.services.connect is None or not delegation.web(wanted):
            return []
        with self.services.sessions() as session:
            team = outbox.workspace_of(session, {"action_id": action_id})
        issued = self.services.connect.links(user, team, wanted, tool, action_id=action_id, ttl=DM_LINK_TTL)
        return [ConnectLinkView(name=link.name, provider=link.provider, url=link.url) for link in issued]

    def _remind(self, d: Delivery, payload: dict[str, Any]) -> dict[str, Any]:
        """A DM to each target (with Acknowledge), then a note in the card's thread."""
        with self.services.sessions() as session:
            action = session.scalars(select(Action).where(Action.public_id == payload["action_id"])).one()
            if action.state not in ("pending", "scheduled"):
                return {"skipped": f"decided before the reminder went out ({action.state})"}
            card = card_view(session, self.services.config, self.services.registry, action)
            posted = session.get(SlackMessage, f"card:{action.public_id}")
            thread = (posted.channel, posted.ts) if posted else None
        text, blocks = reminder(card, payload.get("reason", "reminder"), bool(payload.get("late")))
        for user in payload["targets"]:
            self._post(d, self._dm(d, user), text, blocks, None)
        if thread is not None:
            note = reminded_note(payload["targets"], payload.get("reason", "reminder"), bool(payload.get("late")))
            self._post(d, thread[0], note, None, thread[1])
        return {"reminded": payload["targets"]}

    def _stall(self, d: Delivery, payload: dict[str, Any]) -> dict[str, Any]:
        with self.services.sessions() as session:
            task = session.scalars(select(Task).where(Task.public_id == payload["task_id"])).one()
            view = task_view(task)
            channel, thread_ts = self._task_home(session, task)
        text, blocks = stall_alert(view, payload["what"], payload.get("targets", []))
        return self._post(d, channel, text, blocks, thread_ts)

    def _proposal(self, d: Delivery, proposal_id: str) -> dict[str, Any]:
        """Post the proposal to the admins, or update it in place once decided or signed."""
        with self.services.sessions() as session:
            proposal = session.scalars(select(Proposal).where(Proposal.public_id == proposal_id)).one()
            text, blocks = proposal_card(proposal_view(session, proposal))
            posted = session.get(SlackMessage, f"proposal:{proposal_id}")
            where = (posted.channel, posted.ts) if posted else None
        if where is None:
            channel = self.services.config.proposals_channel
            if channel is None:
                raise Undeliverable("no admin or approvals channel configured for proposals")
            return self._post(d, channel, text, blocks, None, key=f"proposal:{proposal_id}")
        self._update(d, where[0], where[1], text, blocks)
        return {"channel": where[0], "ts": where[1], "updated": True}

    def _review(self, d: Delivery, action_id: str) -> dict[str, Any]:
        """A spot check of a run nobody approved, in the thread of its card (or its channel)."""
        with self.services.sessions() as session:
            action = session.scalars(select(Action).where(Action.public_id == action_id)).one()
            card = card_view(session, self.services.config, self.services.registry, action)
            posted = session.get(SlackMessage, f"card:{action_id}")
            where = (
                (posted.channel, posted.ts) if posted else (self.services.config.channel_for(action.task_type), None)
            )
        text, blocks = review_card(card)
        return self._post(d, where[0], text, blocks, where[1])

    def _dm(self, d: Delivery, user: str) -> str:
        d.method = "conversations.open"
        channel = d.client.conversations_open(users=user)["channel"]["id"]
        return str(channel)

    def _task(self, d: Delivery, task_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        with self.services.sessions() as session:
            task = session.scalars(select(Task).where(Task.public_id == task_id)).one()
            candidates = tuple(payload.get("candidates") or ())
            view = task_view(task, kind=payload.get("kind"), candidates=candidates)
            channel, thread_ts = self._task_home(session, task)
        # A task message tells of its event, even when delivered after the task moved on: a
        # "resumed" sent after the task finished must not repeat the final answer.
        if kind in EVENT_STATES:
            view = replace(view, state=EVENT_STATES[kind], reason=payload.get("reason", view.reason))
        if kind == "task.started":
            return self._post(d, channel, f"Working on it: `{task_id}`.", None, thread_ts)
        text, blocks = task_message(view)
        return self._post(d, channel, text, blocks, thread_ts)

    def _task_home(self, session: Session, task: Task) -> tuple[str, str | None]:
        """A task reports in the thread it was asked in, else its task type's channel."""
        if task.channel and task.thread_ts:
            return task.channel, task.thread_ts
        if task.task_type in self.services.config.task_types:
            return self.services.config.channel_for(task.task_type), None
        channel = self.services.config.slack.approvals_channel or task.channel
        if channel is None:
            raise Undeliverable(f"task {task.public_id!r} has nowhere to report")
        return channel, None

    def _update(self, d: Delivery, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        d.method = "chat.update"
        d.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    def _post(
        self,
        d: Delivery,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        thread_ts: str | None,
        *,
        key: str | None = None,
    ) -> dict[str, Any]:
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
                session.merge(
                    SlackMessage(
                        key=key, channel=result["channel"], ts=result["ts"], posted_at=self.services.clock.now()
                    )
                )
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


def _retry_after(exc: Exception) -> float | None:
    if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
        value = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        try:
            return float(value) if value is not None else 1.0
        except (TypeError, ValueError):
            return 1.0
    return None
