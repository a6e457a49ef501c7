"""Tools for the Undo tests: a refund that declares its compensation, and the compensation;
each records its calls (the compensation, what it was given)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from agent import tool

PAID: Counter[str] = Counter()
TAKEN_BACK: list[dict[str, Any]] = []
_LOCK = threading.Lock()


@tool(risk="medium", idempotent=True, summary="the payout of order {order_id}", undo="take_back_payout")
def pay_out(order_id: str, amount_cents: int, *, idempotency_key: str) -> dict[str, Any]:
    """Pay a customer back for an order."""
    with _LOCK:
        PAID[idempotency_key] += 1
    return {"order_id": order_id, "paid_cents": amount_cents}


@tool(risk="medium", idempotent=True, summary="the take-back of a payout")
def take_back_payout(
    original_params: dict[str, Any], original_result: dict[str, Any], *, idempotency_key: str
) -> dict[str, Any]:
    """Take back a payout pay_out made."""
    with _LOCK:
        TAKEN_BACK.append({"key": idempotency_key, "params": original_params, "result": original_result})
    return {"order_id": original_result["order_id"], "taken_back_cents": original_result["paid_cents"]}
