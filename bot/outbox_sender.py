"""Delivers outbox rows to Slack: cards, card updates, thread replies, task messages.

Rows are claimed with a short lease (never holding a transaction open across an HTTP
call), oldest first, and only the oldest undelivered row of each ordering key (one card, one
task) is eligible, so each card's messages arrive in order. slack_sdk's retry handlers
absorb short 429/5xx/connection blips; a longer outage leaves the row for a later attempt
with backoff (or Slack's `Retry-After`). Messages are never lost; a post whose success Slack
reported but we could not record may be repeated (chat.postMessage has no idempotency key).
Every card is rendered from the action's current state, so a late update is never stale.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from bot.blocks.card import approval_card, card_text, credential_notice, result_reply
from bot.blocks.ping import expired_notice, reminded_note, reminder, stall_alert
from bot.blocks.proposal import level_changed, proposal_card, review_card
from bot.blocks.task import task_message
from bot.presenter import card_view, proposal_view, task_view
from bot.services import Services
from core import metrics
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


class Undeliverable(Exception):
    """Slack refused the message for good."""


class OutboxSender:
    def __init__(
        self,
        services: Services,
        *,
        lease_s: float = 60.0,
        channel_pace_s: float = 1.0,
        max_backoff_s: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.services = services
        self.lease = timedelta(seconds=lease_s)
        self.channel_pace_s, self.max_backoff_s = channel_pace_s, max_backoff_s
        self.rng = rng or random.Random()
        self._next_post: dict[str, float] = {}  # channel → monotonic time its next post may go

    def run_once(self) -> bool:
        message = self._claim()
        if message is None:
            return False
        try:
            result = self._deliver(message)
        except Undeliverable as exc:
            metrics.OUTBOX_DELIVERED.labels(message.kind, "gave_up").inc()
            log.warning("outbox row %s (%s) is undeliverable: %s", message.id, message.kind, exc)
            self._finish(message.id, error=f"gave up: {exc}")
        except SlackApiError as exc:
            method = exc.response.api_url.rsplit("/", 1)[-1] if exc.response.api_url else "unknown"
            metrics.SLACK_API_ERRORS.labels(method, str(exc.response.get("error") or exc.response.status_code)).inc()
            self._retry(message, exc)
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
        with self.services.sessions.begin() as session:
            message = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.available_at <= now, ~earlier_undelivered)
                .order_by(OutboxMessage.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
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

    def _retry(self, message: OutboxMessage, exc: Exception) -> None:
        retry_after = _retry_after(exc)
        delay = (
            retry_after
            if retry_after is not None
            else min(self.max_backoff_s, 2.0 ** min(message.attempts, 12)) * self.rng.uniform(0.5, 1.5)
        )
        with self.services.sessions.begin() as session:
            row = session.get(OutboxMessage, message.id)
            if row is not None:
                row.available_at = self.services.clock.now() + timedelta(seconds=delay)
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]

    # -- delivery -----------------------------------------------------------------------

    def _deliver(self, message: OutboxMessage) -> dict[str, Any] | None:
        payload = message.payload
        if message.kind in CARD_KINDS:
            return self._card(payload["action_id"], message.kind, payload.get("tell"))
        if message.kind == "escalation.notify":
            return self._remind(payload)
        if message.kind == "task.stall":
            return self._stall(payload)
        if message.kind.startswith("task."):
            return self._task(payload["task_id"], message.kind, payload)
        if message.kind in ("autonomy.proposal", "autonomy.proposal_decided"):
            return self._proposal(payload["proposal_id"])
        if message.kind == "autonomy.changed":
            text = level_changed(payload["task_type"], payload["from"], payload["to"], payload["by"], payload["reason"])
            return self._post(self.services.config.channel_for(payload["task_type"]), text, None, None)
        if message.kind == "action.review":
            return self._review(payload["action_id"])
        if message.kind == "ops.alert":
            channel = self.services.config.proposals_channel
            if channel is None:
                raise Undeliverable("no admin or approvals channel configured for alerts")
            return self._post(channel, payload["message"], None, None)
        if message.kind == "audit.head":
            channel = self.services.config.proposals_channel or self.services.config.slack.approvals_channel
            if channel is None:
                raise Undeliverable("no admin or approvals channel configured for audit heads")
            text = f"Audit ledger head: `{payload['seq']}:{payload['hash']}` at {payload['at']}"
            return self._post(channel, text, None, None)
        raise Undeliverable(f"unknown outbox kind {message.kind!r}")

    def _card(self, action_id: str, kind: str, tell: str | None = None) -> dict[str, Any] | None:
        config, registry = self.services.config, self.services.registry
        with self.services.sessions() as session:
            action = session.scalars(select(Action).where(Action.public_id == action_id)).one()
            card = card_view(session, config, registry, action)
            posted = session.get(SlackMessage, f"card:{action_id}")
            posted_at = (posted.channel, posted.ts) if posted else None
        blocks, text = approval_card(card), card_text(card)
        if posted_at is None:
            result = self._post(config.channel_for(card.task_type), text, blocks, None, key=f"card:{action_id}")
            posted_at = (result["channel"], result["ts"])
        else:
            self.services.client.chat_update(channel=posted_at[0], ts=posted_at[1], text=text, blocks=blocks)
            result = {"channel": posted_at[0], "ts": posted_at[1], "updated": True}
        if kind in RESULT_KINDS:
            reply_text, reply_blocks = result_reply(card)
            self._post(posted_at[0], reply_text, reply_blocks, posted_at[1])
            if tell:  # their own credential failed: they are the one who can fix it
                self._post(self._dm(tell), credential_notice(card), None, None)
        elif kind == "action.acknowledged" and card.acknowledged_by:
            self._post(posted_at[0], f"<@{card.acknowledged_by}> is on it.", None, posted_at[1])
        elif kind == "action.expired":
            self._post(posted_at[0], "Expired: nobody decided in time, so it did not run.", None, posted_at[1])
            if card.requester:
                self._post(self._dm(card.requester), expired_notice(card), None, None)
        return result

    def _remind(self, payload: dict[str, Any]) -> dict[str, Any]:
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
            self._post(self._dm(user), text, blocks, None)
        if thread is not None:
            note = reminded_note(payload["targets"], payload.get("reason", "reminder"), bool(payload.get("late")))
            self._post(thread[0], note, None, thread[1])
        return {"reminded": payload["targets"]}

    def _stall(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.services.sessions() as session:
            task = session.scalars(select(Task).where(Task.public_id == payload["task_id"])).one()
            view = task_view(task)
            channel, thread_ts = self._task_home(session, task)
        text, blocks = stall_alert(view, payload["what"], payload.get("targets", []))
        return self._post(channel, text, blocks, thread_ts)

    def _proposal(self, proposal_id: str) -> dict[str, Any]:
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
            return self._post(channel, text, blocks, None, key=f"proposal:{proposal_id}")
        self.services.client.chat_update(channel=where[0], ts=where[1], text=text, blocks=blocks)
        return {"channel": where[0], "ts": where[1], "updated": True}

    def _review(self, action_id: str) -> dict[str, Any]:
        """A spot check of a run nobody approved, in the thread of its card (or its channel)."""
        with self.services.sessions() as session:
            action = session.scalars(select(Action).where(Action.public_id == action_id)).one()
            card = card_view(session, self.services.config, self.services.registry, action)
            posted = session.get(SlackMessage, f"card:{action_id}")
            where = (
                (posted.channel, posted.ts) if posted else (self.services.config.channel_for(action.task_type), None)
            )
        text, blocks = review_card(card)
        return self._post(where[0], text, blocks, where[1])

    def _dm(self, user: str) -> str:
        channel = self.services.client.conversations_open(users=user)["channel"]["id"]
        return str(channel)

    def _task(self, task_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
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
            return self._post(channel, f"Working on it: `{task_id}`.", None, thread_ts)
        text, blocks = task_message(view)
        return self._post(channel, text, blocks, thread_ts)

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

    def _post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        thread_ts: str | None,
        *,
        key: str | None = None,
    ) -> dict[str, Any]:
        wait = self._next_post.get(channel, 0.0) - time.monotonic()
        if wait > 0:  # Slack allows about one message per second per channel
            time.sleep(min(wait, self.channel_pace_s))
        try:
            response = self.services.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            if exc.response.get("error") in PERMANENT:
                raise Undeliverable(f"{exc.response.get('error')} (channel {channel})") from exc
            raise
        finally:
            self._next_post[channel] = time.monotonic() + self.channel_pace_s
        result = {"channel": response["channel"], "ts": response["ts"]}
        if key is not None:
            with self.services.sessions.begin() as session:
                session.merge(
                    SlackMessage(
                        key=key, channel=result["channel"], ts=result["ts"], posted_at=self.services.clock.now()
                    )
                )
        return result


def _retry_after(exc: Exception) -> float | None:
    if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
        value = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        try:
            return float(value) if value is not None else 1.0
        except (TypeError, ValueError):
            return 1.0
    return None
