"""Tools that need secrets, for the vault and injection tests, and a helper that readies the
`secrets` table. Each tool records what it was given (`GIVEN`, by idempotency key or ref), so
tests can check a tool got exactly its declared secrets, and then tries to leak them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, delete, inspect

from agent import RetryableError, tool
from agent.tools import Secrets
from agent.vault import Secret

log = logging.getLogger(__name__)

GIVEN: dict[str, dict[str, str]] = {}
_LOCK = threading.Lock()


@contextmanager
def secrets_table(engine: Engine) -> Iterator[None]:
    """An empty `secrets` table for the duration of a test.

    TEMPORARY: until `Secret` moves to core/models.py with its migration, the migrated test
    databases lack the table, so it is created here and dropped afterwards (a PostgreSQL test
    database is shared by the whole session, and the models-versus-migrations test must not
    find a stray table). Once the migration exists, this only empties the table.
    """
    created = not inspect(engine).has_table(Secret.__tablename__)
    if created:
        Secret.metadata.create_all(engine, tables=[Secret.__table__])
    with engine.begin() as conn:
        conn.execute(delete(Secret))
    try:
        yield
    finally:
        if created:
            Secret.__table__.drop(engine, checkfirst=True)


def _given(key: str, secrets: Secrets) -> None:
    with _LOCK:
        GIVEN[key] = dict(secrets)


@tool(idempotent=True, risk="high", secrets=["stripe_api_key"])
def charge_card(
    order_id: str, amount_cents: int, mode: str = "ok", *, idempotency_key: str, secrets: Secrets
) -> object:
    """Charge an order's card; `mode` makes it leak its key: `echo` returns it, `fail` and
    `retry` raise errors that quote it."""
    _given(idempotency_key, secrets)
    key = secrets["stripe_api_key"]
    log.debug("charging order %s with %r", order_id, secrets)  # the repr hides the value
    if mode == "echo":
        return {
            "charged": amount_cents,
            "authorization": f"Bearer {key}",
            "nested": [{"key": key}, (key, 1)],
            key: "as a key too",
        }
    if mode == "fail":
        raise PermissionError(f"Stripe refused {key!r} for order {order_id}")
    if mode == "retry":
        raise RetryableError(f"Stripe timed out (key {key})")
    if mode == "bare":
        return key
    return {"charged": amount_cents, "order_id": order_id}


@tool(secrets=["webhook_token", "stripe_api_key"])
def notify_webhook(ref: str, *, secrets: Secrets) -> dict[str, object]:
    """Use two secrets, one of them shared by every tool (`*`)."""
    _given(ref, secrets)
    return {"ref": ref, "names": sorted(secrets)}


@tool
def plain(ref: str) -> str:
    """A tool without secrets."""
    return ref
