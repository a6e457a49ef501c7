"""Delivers the webhook rows (`core.models.WebhookDelivery`) that state changes of API actions
queued in their own transactions: at least once, in order per action, retried with backoff
until the receiver answers 2xx.

Each POST carries `X-Countersign-Timestamp`, `X-Countersign-Delivery` (the row's unique id, for
the receiver's dedupe) and `X-Countersign-Signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`
keyed by the client's webhook secret (its UTF-8 bytes). Only the oldest undelivered row of each
action is due, so a later state never overtakes an earlier one. A row is claimed by pushing its
`available_at` past the request's timeout, in a short transaction, before the POST is made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from agent.vault import Vault
from bot import api_clients
from core.clock import Clock
from core.models import Action, ApiClient, WebhookDelivery

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0
BATCH = 10
BACKOFF_BASE_S, BACKOFF_MAX_S = 1.0, 600.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed (it could lead off the allowlist): it fails the attempt."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


class WebhookSender:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, vault: Vault | None) -> None:
        self.sessions, self.clock, self.vault = sessions, clock, vault

    def run_once(self) -> bool:
        """Send a batch of due deliveries; whether there was one."""
        claimed = self._claim()
        for delivery_id, public, url, body, secret in claimed:
            self._send(delivery_id, public, url, body, secret)
        return bool(claimed)

    def run_until_idle(self, max_rounds: int = 100) -> int:
        sent = 0
        for _ in range(max_rounds):
            if not self.run_once():
                break
            sent += 1
        return sent

    def _claim(self) -> list[tuple[int, str, str, bytes, str | None]]:
        now = self.clock.now()
        first = (
            select(func.min(WebhookDelivery.id))
            .where(WebhookDelivery.delivered_at.is_(None))
            .group_by(WebhookDelivery.action_id)
            .scalar_subquery()
        )
        with self.sessions.begin() as session:
            query = (
                select(WebhookDelivery, ApiClient)
                .join(Action, Action.id == WebhookDelivery.action_id)
                .join(ApiClient, ApiClient.id == Action.api_client_id)
                .where(WebhookDelivery.id.in_(first), WebhookDelivery.available_at <= now)
                .order_by(WebhookDelivery.id)
                .limit(BATCH)
                .with_for_update(of=WebhookDelivery, skip_locked=True)
            )
            claimed = []
            for delivery, client in session.execute(query):
                delivery.attempts += 1
                delivery.available_at = now + timedelta(seconds=TIMEOUT_S + self._backoff(delivery.attempts))
                secret = api_clients.webhook_secret(self.vault, client) if self.vault is not None else None
                body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
                claimed.append((delivery.id, delivery.delivery_id, delivery.url, body, secret))
        return claimed

    def _send(self, delivery_id: int, public: str, url: str, body: bytes, secret: str | None) -> None:
        timestamp = str(int(self.clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "countersign-webhooks",
            "X-Countersign-Timestamp": timestamp,
            "X-Countersign-Delivery": public,
        }
        error: str | None = None
        if secret is None:
            error = "no webhook secret can be opened for this client (COUNTERSIGN_VAULT_KEYS)"
        else:
            headers["X-Countersign-Signature"] = signature(secret, timestamp, body)
            request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 - allowlisted
            try:
                with _OPENER.open(request, timeout=TIMEOUT_S) as reply:
                    reply.read(1024)
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        now = self.clock.now()
        with self.sessions.begin() as session:
            delivery = session.get_one(WebhookDelivery, delivery_id)
            if error is None:
                delivery.delivered_at, delivery.last_error = now, None
            else:
                delivery.last_error = error[:500]
                delivery.available_at = now + timedelta(seconds=self._backoff(delivery.attempts))
                log.warning("webhook %s to %s failed (attempt %d): %s", public, url, delivery.attempts, error)

    @staticmethod
    def _backoff(attempts: int) -> float:
        return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(attempts - 1, 20)))
