"""The refund tool as one deploy defines it (see refund_tools_v2.py for the next)."""

from __future__ import annotations

from agent import tool


@tool(risk="high", idempotent=True, max_autonomy="hitl", summary="the refund of order {order_id}")
def issue_refund(order_id: str, amount_cents: int, *, idempotency_key: str) -> dict[str, object]:
    """Refund part or all of an order."""
    return {"refunded": amount_cents, "order_id": order_id}
