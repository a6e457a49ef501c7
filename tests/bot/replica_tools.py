"""The tool of the replica test: every call is counted in `replica_calls` (one row per call,
with the calling process), and its effect is recorded once per idempotency key in
`sample_effects`. An idempotent tool hides a double run from the effects table; the call
rows still show it. The database is the serving process's own (`DATABASE_URL`)."""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, text

from agent import tool
from core.db import make_engine

CALLS_DDL = (
    "CREATE TABLE IF NOT EXISTS replica_calls "
    "(id SERIAL PRIMARY KEY, key VARCHAR(64) NOT NULL, ref VARCHAR(64) NOT NULL, pid INTEGER NOT NULL)"
)
EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS sample_effects "
    "(key VARCHAR(64) PRIMARY KEY, ref VARCHAR(64) NOT NULL, tool VARCHAR(64) NOT NULL)"
)
_lock = threading.Lock()
_engine: Engine | None = None


def create_tables(engine: Engine) -> None:
    """Create (and empty) the two tables; the test does this before any process starts."""
    with engine.begin() as conn:
        conn.execute(text(CALLS_DDL))
        conn.execute(text(EFFECTS_DDL))
        conn.execute(text("DELETE FROM replica_calls"))
        conn.execute(text("DELETE FROM sample_effects"))


def _database() -> Engine:
    global _engine
    with _lock:
        if _engine is None:
            _engine = make_engine(os.environ["DATABASE_URL"])
        return _engine


@tool(idempotent=True, risk="medium")
def replica_effect(ref: str, *, idempotency_key: str) -> dict[str, object]:
    """Count this call, then record one effect per idempotency key."""
    with _database().begin() as conn:
        conn.execute(
            text("INSERT INTO replica_calls (key, ref, pid) VALUES (:key, :ref, :pid)"),
            {"key": idempotency_key, "ref": ref, "pid": os.getpid()},
        )
    with _database().begin() as conn:
        seen = conn.execute(text("SELECT 1 FROM sample_effects WHERE key = :key"), {"key": idempotency_key}).first()
        if seen is None:
            conn.execute(
                text("INSERT INTO sample_effects (key, ref, tool) VALUES (:key, :ref, 'replica_effect')"),
                {"key": idempotency_key, "ref": ref},
            )
    return {"ref": ref, "first": seen is None}
