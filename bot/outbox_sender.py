"""The outbox queue: claims rows, hands each to its delivery, records the outcome.

Rows are claimed with a short lease (never holding a transaction open across an HTTP
call), oldest first, and only the oldest undelivered row of each ordering key (one card, one
task) is eligible, so each card's messages arrive in order. slack_sdk's retry handlers
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
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import aliased

from bot.deliveries import deliver
from bot.installations import NotInstalled
from bot.services import Services
from bot.slack_posts import UNANSWERED, Delivery, Poster, Undeliverable
from core import metrics, outbox
from core.db import reading
from core.durations import seconds_from_peer
from core.errors import MalformedMessage
from core.messages import Message, decode
from core.models import OutboxMessage

log = logging.getLogger(__name__)


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
        self.max_backoff_s, self.verify_after_s = max_backoff_s, verify_after_s
        self.rng = rng or random.Random()
        self.poster = Poster(services, channel_pace_s=channel_pace_s)  # several threads share its pace

    def run_once(self) -> bool:
        message = self._claim()
        if message is None:
            return False
        delivery = Delivery(message.id, message.attempts > 1, self.services.client)
        try:
            decoded = decode(message.kind, message.payload)
            delivery.client = self.services.client_for(self._workspace(decoded))
            result = deliver(self.poster, delivery, decoded)
        except MalformedMessage as exc:
            metrics.OUTBOX_DELIVERED.labels(message.kind, "gave_up").inc()
            log.error("outbox row %s cannot be delivered: %s", message.id, exc)
            self._finish(message.id, error=f"gave up: {exc}")
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

    def _workspace(self, message: Message) -> str | None:
        """The Slack workspace of the row's task or action (None: the configured one)."""
        if self.services.installations is None:
            return None
        with self.services.sessions() as session:
            return outbox.workspace_of(session, message)

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


# Slack asks for seconds to a minute; a larger value is a broken header, not a reason to wait a day.
MAX_RETRY_AFTER_S = 3600.0


def _retry_after(exc: Exception) -> float | None:
    if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
        value = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        seconds = seconds_from_peer(value, most=MAX_RETRY_AFTER_S)
        return 1.0 if seconds is None else seconds
    return None
