"""Tools for the gate's tests; each records its calls so tests can count executions."""

from __future__ import annotations

import threading
from collections import Counter

from agent import tool

CALLS: Counter[str] = Counter()
_LOCK = threading.Lock()


def _count(key: str) -> None:
    with _LOCK:
        CALLS[key] += 1


@tool(risk="low", idempotent=True)
def lookup_order(order_id: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id, "status": "delivered"}


@tool(risk="high", idempotent=True, max_autonomy="hitl", summary="the refund of order {order_id}")
def issue_refund(order_id: str, amount_cents: int, *, idempotency_key: str) -> dict[str, object]:
    """Refund part or all of an order."""
    _count(idempotency_key)
    return {"refunded": amount_cents, "order_id": order_id}


@tool(risk="medium", idempotent=True)
def toggle_flag(flag: str, enabled: bool, *, idempotency_key: str) -> dict[str, object]:
    """Turn a feature flag on or off."""
    _count(idempotency_key)
    return {"flag": flag, "enabled": enabled}


@tool(risk="low", idempotent=False)
def send_note(to: str, text: str) -> None:
    """Send a note to a customer."""
