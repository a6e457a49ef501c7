"""The audit ledger: append-only and hash-chained.

Each event stores the previous event's hash and its own, computed over a canonical JSON
form of its fields. Events are recorded into the session and appended when it commits:
the chain head is read and extended inside the committing transaction, under a
transaction-scoped advisory lock on PostgreSQL (SQLite's `BEGIN IMMEDIATE` already
serializes writers). Appending last keeps that lock short and always taken after any row
locks, so appends cannot deadlock with state changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from core.canonical import canonical_json, sha256_hex
from core.clock import utc
from core.models import AuditEvent

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key: the bytes of "cs-audit" as a signed 64-bit integer.
ADVISORY_LOCK_KEY = int.from_bytes(b"cs-audit", "big", signed=True)
_PENDING = "countersign.audit.pending"


@dataclass(frozen=True)
class AuditEntry:
    kind: str
    actor: str
    at: datetime
    task_public_id: str | None = None
    action_public_id: str | None = None
    task_type: str | None = None
    params_hash: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    note: str | None = None
    data: dict[str, Any] | None = None


def record(session: Session, entry: AuditEntry) -> None:
    """Add an event to the ledger when (and only if) the session's transaction commits."""
    session.info.setdefault(_PENDING, []).append(entry)


def event_body(event_row: AuditEvent) -> dict[str, Any]:
    """The fields an event's hash covers, in the JSON form that `audit export` prints."""
    return {
        "seq": event_row.seq,
        "at": utc(event_row.at).isoformat(timespec="microseconds"),
        "kind": event_row.kind,
        "actor": event_row.actor,
        "task_id": event_row.task_public_id,
        "action_id": event_row.action_public_id,
        "task_type": event_row.task_type,
        "params_hash": event_row.params_hash,
        "from_state": event_row.from_state,
        "to_state": event_row.to_state,
        "note": event_row.note,
        "data": event_row.data,
        "prev_hash": event_row.prev_hash,
    }


def compute_hash(event_row: AuditEvent) -> str:
    return sha256_hex(canonical_json(event_body(event_row)))


def head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest event, or (0, GENESIS_HASH) for an empty ledger."""
    row = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else (0, GENESIS_HASH)


def _append(session: Session, entries: list[AuditEntry]) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    seq, prev_hash = head(session)
    for entry in entries:
        seq += 1
        row = AuditEvent(
            seq=seq,
            at=entry.at,
            kind=entry.kind,
            actor=entry.actor,
            task_public_id=entry.task_public_id,
            action_public_id=entry.action_public_id,
            task_type=entry.task_type,
            params_hash=entry.params_hash,
            from_state=entry.from_state,
            to_state=entry.to_state,
            note=entry.note,
            data=entry.data,
            prev_hash=prev_hash,
            hash="",
        )
        row.hash = prev_hash = compute_hash(row)
        session.add(row)


@event.listens_for(Session, "before_commit")
def _append_on_commit(session: Session) -> None:
    entries = session.info.pop(_PENDING, None)
    if entries:
        _append(session, entries)


@event.listens_for(Session, "after_soft_rollback")
def _forget_on_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)
