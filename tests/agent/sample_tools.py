"""Tools for the executor's tests. Each records what it did so tests can count executions:
in memory (`CALLS`, keyed by `ref` or idempotency key) or, across processes, in a real
`sample_effects` table of the test database (`use_database`)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

from sqlalchemy import Engine, text

from agent import RetryableError, tool
from core.db import make_engine

CALLS: Counter[str] = Counter()
_LOCK = threading.Lock()
# Gates a test opens to let a blocked tool return; a gate never opened blocks for good.
GATES: dict[str, threading.Event] = {}
_NEVER = threading.Event()
_effects: Engine | None = None

EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS sample_effects "
    "(key VARCHAR(64) PRIMARY KEY, ref VARCHAR(64) NOT NULL, tool VARCHAR(64) NOT NULL)"
)


def count(key: str) -> int:
    with _LOCK:
        CALLS[key] += 1
        return CALLS[key]


def new_gate() -> str:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    GATES[name] = threading.Event()
    return name


def use_database(url: str | None) -> None:
    """Point the effect-recording tools at a database (creating `sample_effects`), or at none."""
    global _effects
    if _effects is not None:
        _effects.dispose()
        _effects = None
    if url is not None:
        _effects = make_engine(url)
        with _effects.begin() as conn:
            conn.execute(text(EFFECTS_DDL))


def effects(ref: str) -> int:
    """How many effects the tools recorded for `ref`."""
    with _engine().begin() as conn:
        found = conn.execute(text("SELECT COUNT(*) FROM sample_effects WHERE ref = :ref"), {"ref": ref}).scalar_one()
    return int(found)


def _engine() -> Engine:
    if _effects is None:
        raise RuntimeError("call sample_tools.use_database(url) first")
    return _effects


def _record_effect(key: str, ref: str, tool_name: str) -> bool:
    """Record an effect under `key`; False if one is already there (a replay)."""
    with _engine().begin() as conn:
        existing = conn.execute(text("SELECT 1 FROM sample_effects WHERE key = :key"), {"key": key}).first()
        if existing is not None:
            return False
        conn.execute(
            text("INSERT INTO sample_effects (key, ref, tool) VALUES (:key, :ref, :tool)"),
            {"key": key, "ref": ref, "tool": tool_name},
        )
    return True


@tool(idempotent=True)
def record_call(ref: str, *, idempotency_key: str) -> dict[str, object]:
    """Count one call per idempotency key."""
    return {"ref": ref, "calls": count(idempotency_key)}


@tool(idempotent=True)
def flaky(ref: str, failures: int, *, idempotency_key: str) -> dict[str, object]:
    """Fail with a transient error `failures` times, then succeed."""
    calls = count(ref)
    if calls <= failures:
        raise RetryableError(f"upstream busy (call {calls})")
    return {"ref": ref, "calls": calls, "key": idempotency_key}


@tool
def explode(ref: str) -> None:
    """Fail with a plain bug."""
    count(ref)
    raise ValueError(f"no such order {ref!r}")


@tool
def answer(ref: str) -> int:
    """Return a bare value, not a dict."""
    count(ref)
    return 42


@tool(idempotent=True)
def wait_for_gate(gate: str, *, idempotency_key: str) -> str:
    """Block until the test opens `gate`."""
    count(gate)
    GATES[gate].wait()
    return "opened"


@tool(idempotent=False)
def wait_for_gate_once(gate: str) -> str:
    """Block until the test opens `gate`; not idempotent."""
    count(gate)
    GATES[gate].wait()
    return "opened"


@tool(idempotent=True)
def steal_lease(ref: str, *, idempotency_key: str) -> str:
    """Hand this action's lease to another executor while running, as a takeover would."""
    count(ref)
    with _engine().begin() as conn:
        conn.execute(text("UPDATE actions SET lease_owner = 'thief' WHERE public_id = :id"), {"id": idempotency_key})
    return "done"


@tool(idempotent=True, timeout="10m")
def record_then_hang(ref: str, *, idempotency_key: str) -> dict[str, object]:
    """Record the effect under the idempotency key, then block for good; a replay returns at once."""
    if not _record_effect(idempotency_key, ref, "record_then_hang"):
        return {"ref": ref, "replayed": True}
    _NEVER.wait()
    return {"ref": ref, "replayed": False}


@tool(idempotent=False, timeout="10m")
def record_then_hang_once(ref: str) -> None:
    """Record an effect, then block for good. Not idempotent: every call is a new effect."""
    _record_effect(uuid.uuid4().hex, ref, "record_then_hang_once")
    _NEVER.wait()


@tool(idempotent=True, risk="medium")
def record_effect(ref: str, *, idempotency_key: str) -> dict[str, object]:
    """Record one effect per idempotency key, across processes."""
    return {"ref": ref, "first": _record_effect(idempotency_key, ref, "record_effect")}
