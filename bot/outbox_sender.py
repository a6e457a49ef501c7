"""The outbox queue: claims rows, hands each to its delivery, records the outcome.

Rows are claimed a few at a time with a short lease (never holding a transaction open across
an HTTP call), oldest first, and only the oldest undelivered row of each ordering key (one
card, one task) is eligible, so each card's messages arrive in order; a task's row also waits
for the earlier rows of the task's actions (its closing answer comes after their results). The batch's outcomes
are written together; a row whose lease ran short while the ones before it were delivered is
renewed before its own delivery, or left alone if another sender claimed it meanwhile. slack_sdk's retry handlers
absorb short 429/5xx/connection blips; a longer outage leaves the row for a later attempt
with backoff (or Slack's `Retry-After`). Messages are never lost.

A call Slack never answered (a timeout, a dropped connection) may still land later. Such a row
waits `verify_after_s` before its retry, so the unanswered call has landed or never will; then
every post of the row first looks for itself in the channel (`bot.slack_posts`), and every card
is re-rendered from the action's current state, so neither a duplicate nor a stale card is left
behind. What each row becomes in Slack is `bot.deliveries`; a row whose payload does not match
its kind (`MalformedMessage`) is given up at once, loudly, like one Slack refuses for good.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import aliased

from bot.deliveries import deliver
from bot.installations import NotInstalled
from bot.services import Services
from bot.slack_posts import UNANSWERED, Delivery, Poster, Undeliverable
from core import metrics, outbox
from core.db import compare_and_set, reading
from core.durations import seconds_from_peer
from core.errors import MalformedMessage
from core.messages import Message, decode
from core.models import Action, OutboxMessage, Task

log = logging.getLogger(__name__)
# Rows per claim: each delivery is an HTTP call paced per channel, so a sender holding many rows
# would keep them from the other sender threads; a few already spare most claim transactions.
DEFAULT_BATCH = 4


@dataclass(frozen=True)
class _Claimed:
    """A claimed row, copied out of the claim transaction; `attempts` fences what is written back."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_until: datetime


@dataclass(frozen=True)
class _Settlement:
    """What a delivery made of its row, written back with others in one transaction."""

    id: int
    attempts: int
    values: dict[str, Any]
    at: datetime


class OutboxSender:
    def __init__(
        self,
        services: Services,
        *,
        lease_s: float = 60.0,
        channel_pace_s: float = 1.0,
        max_backoff_s: float = 300.0,
        verify_after_s: float = 60.0,
        batch: int = DEFAULT_BATCH,
        settle_within_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        self.services = services
        self.lease = timedelta(seconds=lease_s)
        self.max_backoff_s, self.verify_after_s = max_backoff_s, verify_after_s
        self.batch, self.settle_within = batch, timedelta(seconds=settle_within_s)
        self.rng = rng or random.Random()
        self.poster = Poster(services, channel_pace_s=channel_pace_s)  # several threads share its pace

    def run_once(self) -> bool:
        """Claim a small batch of rows and deliver them; whether there was one."""
        return self._run_batch(self.batch) > 0

    def run_until_idle(self, max_messages: int = 1000) -> int:
        done = 0
        while done < max_messages:
            handled = self._run_batch(min(self.batch, max_messages - done))
            if not handled:
                break
            done += handled
        return done

    def _run_batch(self, limit: int) -> int:
        claimed = self._claim(limit)
        self._deliver_all(claimed)
        return len(claimed)

    def _deliver_all(self, claimed: list[_Claimed]) -> None:
        """Deliver the claimed rows one by one; their outcomes are written together, when the batch
        ends or once the oldest has waited `settle_within` (a row's next message in its ordering
        waits for it), and before a row whose lease ran short is renewed."""
        settled: list[_Settlement] = []
        try:
            for message in claimed:
                if settled and self.services.clock.now() - settled[0].at >= self.settle_within:
                    self._settle(settled)
                if self._still_leased(message, settled):
                    settled.append(self._deliver(message))
        finally:
            self._settle(settled)

    def _deliver(self, message: _Claimed) -> _Settlement:
        delivery = Delivery(message.id, message.attempts > 1, self.services.client)
        try:
            decoded = decode(message.kind, message.payload)
            delivery.client = self.services.client_for(self._workspace(decoded))
            result = deliver(self.poster, delivery, decoded)
        except MalformedMessage as exc:
            metrics.OUTBOX_DELIVERED.labels(message.kind, "gave_up").inc()
            log.error("outbox row %s cannot be delivered: %s", message.id, exc)
            return self._finished(message, error=f"gave up: {exc}")
        except (Undeliverable, NotInstalled) as exc:
            metrics.OUTBOX_DELIVERED.labels(message.kind, "gave_up").inc()
            log.warning("outbox row %s (%s) is undeliverable: %s", message.id, message.kind, exc)
            return self._finished(message, error=f"gave up: {exc}")
        except SlackApiError as exc:
            method = exc.response.api_url.rsplit("/", 1)[-1] if exc.response.api_url else "unknown"
            metrics.SLACK_API_ERRORS.labels(method, str(exc.response.get("error") or exc.response.status_code)).inc()
            return self._retry(message, exc)
        except UNANSWERED as exc:
            metrics.SLACK_API_ERRORS.labels(delivery.method or "unknown", "no_answer").inc()
            log.warning("outbox row %s: %s got no answer (%r); checking again in %.0f s", message.id,
                        delivery.method, exc, self.verify_after_s)  # fmt: skip
            return self._retry(message, exc, at_least_s=self.verify_after_s)
        except Exception as exc:
            log.exception("delivering outbox row %s failed", message.id)
            return self._retry(message, exc)
        metrics.OUTBOX_DELIVERED.labels(message.kind, "delivered").inc()
        return self._finished(message, result=result)

    # -- claim and settle ---------------------------------------------------------------

    def _claim(self, limit: int) -> list[_Claimed]:
        """Up to `limit` due rows, oldest first, each the oldest undelivered one of its ordering key,
        leased in one transaction (a row another sender is claiming is skipped)."""
        now = self.services.clock.now()
        older = aliased(OutboxMessage)
        earlier_undelivered = exists().where(
            and_(
                older.ordering_key == OutboxMessage.ordering_key,
                older.delivered_at.is_(None),
                older.id < OutboxMessage.id,
            )
        )
        # A task's message also waits for its actions' earlier ones: the answer that says "the
        # result is above, in this thread" comes after the result (each action has its own key).
        of_its_actions = aliased(OutboxMessage)
        earlier_of_its_actions = exists().where(
            and_(
                Task.public_id == OutboxMessage.ordering_key,
                Action.task_id == Task.id,
                of_its_actions.ordering_key == Action.public_id,
                of_its_actions.delivered_at.is_(None),
                of_its_actions.id < OutboxMessage.id,
            )
        )
        due = (
            select(OutboxMessage)
            .where(
                OutboxMessage.delivered_at.is_(None),
                OutboxMessage.available_at <= now,
                ~earlier_undelivered,
                ~earlier_of_its_actions,
            )
            .order_by(OutboxMessage.id)
        )
        with reading(self.services.sessions) as session:
            if session.scalar(due.with_only_columns(OutboxMessage.id).limit(1)) is None:
                return []
        lease_until = now + self.lease  # a lease: if we die mid-call, the row is retried
        with self.services.sessions.begin() as session:
            rows = session.scalars(due.limit(limit).with_for_update(skip_locked=True)).all()
            for row in rows:
                row.attempts += 1
                row.available_at = lease_until
            return [_Claimed(row.id, row.kind, dict(row.payload), row.attempts, lease_until) for row in rows]

    def _still_leased(self, message: _Claimed, settled: list[_Settlement]) -> bool:
        """Whether `message`'s lease has at least half its length left for its delivery; if not (the
        rows before it took that long), it is renewed, fenced on no other sender having claimed
        it since, in the transaction that writes the outcomes so far. A row another sender took
        over is left to it."""
        now = self.services.clock.now()
        if now + self.lease / 2 <= message.lease_until:
            return True
        renewed = self._settle(settled, renew=message)
        if not renewed:
            log.warning("outbox row %s: its lease was taken over while it waited its turn", message.id)
        return renewed

    def _settle(self, settled: list[_Settlement], *, renew: _Claimed | None = None) -> bool:
        """Write the outcomes in `settled` (and empty it), each fenced on its claim's attempt; with
        `renew`, also extend that row's lease. Whether `renew` was renewed."""
        if not settled and renew is None:
            return False
        renewed = False
        with self.services.sessions.begin() as session:
            for outcome in settled:
                compare_and_set(
                    session, OutboxMessage, outcome.id, OutboxMessage.attempts == outcome.attempts, **outcome.values
                )
            if renew is not None:
                fence = (OutboxMessage.attempts == renew.attempts, OutboxMessage.delivered_at.is_(None))
                lease_until = self.services.clock.now() + self.lease
                renewed = compare_and_set(session, OutboxMessage, renew.id, *fence, available_at=lease_until)
        settled.clear()
        return renewed

    def _finished(
        self, message: _Claimed, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> _Settlement:
        now = self.services.clock.now()
        return _Settlement(
            message.id, message.attempts, {"delivered_at": now, "result": result, "last_error": error}, now
        )

    def _workspace(self, message: Message) -> str | None:
        """The Slack workspace of the row's task or action (None: the configured one)."""
        if self.services.installations is None:
            return None
        with self.services.sessions() as session:
            return outbox.workspace_of(session, message)

    def _retry(self, message: _Claimed, exc: Exception, *, at_least_s: float = 0.0) -> _Settlement:
        retry_after = _retry_after(exc)
        delay = (
            retry_after
            if retry_after is not None
            else min(self.max_backoff_s, 2.0 ** min(message.attempts, 12)) * self.rng.uniform(0.5, 1.5)
        )
        delay = max(delay, at_least_s)
        now = self.services.clock.now()
        values = {"available_at": now + timedelta(seconds=delay), "last_error": f"{type(exc).__name__}: {exc}"[:2000]}
        return _Settlement(message.id, message.attempts, values, now)


# Slack asks for seconds to a minute; a larger value is a broken header, not a reason to wait a day.
MAX_RETRY_AFTER_S = 3600.0


def _retry_after(exc: Exception) -> float | None:
    if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
        value = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        seconds = seconds_from_peer(value, most=MAX_RETRY_AFTER_S)
        return 1.0 if seconds is None else seconds
    return None
