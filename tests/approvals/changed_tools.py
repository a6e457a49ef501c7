"""The gate's test tools after a deploy that changed two of them (tests/approvals/shop_tools.py
before): toggle_flag's description, issue_refund's schema. The others are as they were."""

from __future__ import annotations

from agent import tool


@tool(risk="low", idempotent=True)
def lookup_order(order_id: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id, "status": "delivered"}


@tool(risk="high", idempotent=True, max_autonomy="hitl", summary="the refund of order {order_id}")
def issue_refund(order_id: str, amount_cents: int, reason: str = "", *, idempotency_key: str) -> dict[str, object]:
    """Refund part or all of an order."""
    return {"refunded": amount_cents, "order_id": order_id}


@tool(risk="medium", idempotent=True)
def toggle_flag(flag: str, enabled: bool, *, idempotency_key: str) -> dict[str, object]:
    """Turn a feature flag on or off, for every customer at once."""
    return {"flag": flag, "enabled": enabled}
