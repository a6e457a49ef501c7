"""The refund tool after a deploy: the same name and parameters, a new description (it now
also refunds shipping), so approvals given under refund_tools_v1.py no longer count."""

from __future__ import annotations

from agent import tool


@tool(risk="high", idempotent=True, max_autonomy="hitl", summary="the refund of order {order_id}")
def issue_refund(order_id: str, amount_cents: int, *, idempotency_key: str) -> dict[str, object]:
    """Refund part or all of an order, shipping included."""
    return {"refunded": amount_cents, "order_id": order_id, "shipping": True}
