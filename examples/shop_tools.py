"""Tools for the demo: a small shop kept in a local SQLite file, created and seeded on first use.

`COUNTERSIGN_SHOP_DB` names the file (default `countersign-shop.db` in the working directory).
Orders 1001 to 1006 exist; the feature flags are `new-checkout`, `dark-mode` and `fast-shipping`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from agent import tool

ORDERS = [
    ("1001", "Maya Chen", "Ceramic mug, set of 4", 2400),
    ("1002", "Tom Okafor", "Espresso grinder", 18900),
    ("1003", "Ines Duarte", "Linen apron", 3200),
    ("1004", "Lars Berg", "Pour-over kettle", 6500),
    ("1005", "Ana Souza", "Coffee beans, 1 kg", 2900),
    ("1006", "Sam Patel", "Milk frother", 4500),
]
FLAGS = [("new-checkout", False), ("dark-mode", True), ("fast-shipping", False)]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, customer TEXT NOT NULL, item TEXT NOT NULL,
    total_cents INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'delivered'
);
CREATE TABLE IF NOT EXISTS refunds (
    idempotency_key TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id),
    amount_cents INTEGER NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, enabled INTEGER NOT NULL, updated_at TEXT NOT NULL);
"""


def shop_path() -> str:
    return os.environ.get("COUNTERSIGN_SHOP_DB", "countersign-shop.db")


@contextmanager
def shop() -> Iterator[sqlite3.Connection]:
    """One transaction on the shop database (created and seeded the first time)."""
    connection = sqlite3.connect(shop_path(), timeout=10)
    try:
        # Cheap enough to do every time, and a deleted file comes back seeded.
        connection.executescript(_SCHEMA)
        with connection:
            connection.executemany(
                "INSERT OR IGNORE INTO orders (id, customer, item, total_cents) VALUES (?, ?, ?, ?)", ORDERS
            )
            connection.executemany(
                "INSERT OR IGNORE INTO flags (name, enabled, updated_at) VALUES (?, ?, ?)",
                [(name, int(enabled), _now()) for name, enabled in FLAGS],
            )
        with connection:
            yield connection
    finally:
        connection.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _order(connection: sqlite3.Connection, order_id: str) -> dict[str, Any]:
    row = connection.execute(
        "SELECT id, customer, item, total_cents, status FROM orders WHERE id = ?", (order_id.strip(),)
    ).fetchone()
    if row is None:
        known = ", ".join(order for order, *_ in ORDERS)
        raise ValueError(f"no order {order_id!r} (the demo shop has {known})")
    refunded = connection.execute(
        "SELECT COALESCE(SUM(amount_cents), 0) FROM refunds WHERE order_id = ?", (row[0],)
    ).fetchone()[0]
    return {
        "order_id": row[0],
        "customer": row[1],
        "item": row[2],
        "total_cents": row[3],
        "status": row[4],
        "refunded_cents": refunded,
    }


@tool(risk="low", idempotent=True, summary="the lookup of order {order_id}")
def lookup_order(order_id: str) -> dict[str, Any]:
    """Look up a shop order: customer, item, total, delivery status and how much was refunded. Read-only."""
    with shop() as connection:
        return _order(connection, order_id)


@tool(
    risk="high", idempotent=True, max_autonomy="hitl", summary="the refund of order {order_id}", undo="reverse_refund"
)
def issue_refund(order_id: str, amount_cents: int, *, idempotency_key: str) -> dict[str, Any]:
    """Refund part or all of an order, in cents. Never more than what is left to refund."""
    with shop() as connection:
        done = connection.execute(
            "SELECT order_id, amount_cents, at FROM refunds WHERE idempotency_key = ?", (idempotency_key,)
        ).fetchone()
        if done is not None:  # this action already refunded: say so, don't pay twice
            return {"order_id": done[0], "refunded_cents": done[1], "at": done[2], "already_done": True}
        order = _order(connection, order_id)
        left = order["total_cents"] - order["refunded_cents"]
        if amount_cents <= 0 or amount_cents > left:
            raise ValueError(f"amount_cents must be between 1 and {left} for order {order['order_id']}: {amount_cents}")
        at = _now()
        connection.execute(
            "INSERT INTO refunds (idempotency_key, order_id, amount_cents, at) VALUES (?, ?, ?, ?)",
            (idempotency_key, order["order_id"], amount_cents, at),
        )
        return {"order_id": order["order_id"], "refunded_cents": amount_cents, "customer": order["customer"], "at": at}


@tool(risk="medium", idempotent=True, summary="the switch of feature flag {flag}")
def toggle_feature_flag(flag: str, enabled: bool) -> dict[str, Any]:
    """Turn a feature flag of the shop on or off (setting it twice to the same value changes nothing)."""
    with shop() as connection:
        row = connection.execute("SELECT enabled FROM flags WHERE name = ?", (flag.strip(),)).fetchone()
        if row is None:
            known = ", ".join(name for name, _ in FLAGS)
            raise ValueError(f"no feature flag {flag!r} (known: {known})")
        connection.execute(
            "UPDATE flags SET enabled = ?, updated_at = ? WHERE name = ?", (int(enabled), _now(), flag.strip())
        )
        return {"flag": flag.strip(), "was": bool(row[0]), "now": enabled}


@tool(risk="high", idempotent=True, max_autonomy="hitl", summary="the reversal of a refund")
def reverse_refund(
    original_params: dict[str, Any], original_result: dict[str, Any], *, idempotency_key: str
) -> dict[str, Any]:
    """Take back a refund issue_refund made (its Undo): the order's refunded total goes down by its amount."""
    order_id = str(original_result.get("order_id") or original_params.get("order_id") or "")
    amount = original_result.get("refunded_cents")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"the refund to reverse names no amount in cents: {amount!r}")
    with shop() as connection:
        done = connection.execute(
            "SELECT order_id, amount_cents, at FROM refunds WHERE idempotency_key = ?", (idempotency_key,)
        ).fetchone()
        if done is not None:  # this undo already ran: say so, don't take it back twice
            return {"order_id": done[0], "reversed_cents": -done[1], "at": done[2], "already_done": True}
        order = _order(connection, order_id)
        if amount > order["refunded_cents"]:
            raise ValueError(f"order {order['order_id']} has {order['refunded_cents']} cents refunded, not {amount}")
        at = _now()
        connection.execute(
            "INSERT INTO refunds (idempotency_key, order_id, amount_cents, at) VALUES (?, ?, ?, ?)",
            (idempotency_key, order["order_id"], -amount, at),
        )
        left = order["refunded_cents"] - amount
        return {"order_id": order["order_id"], "reversed_cents": amount, "refunded_cents_now": left, "at": at}
