"""The audit ledger: append-only and hash-chained, chained in batches off the commit path.

Each event stores the previous event's hash and its own, computed over a canonical JSON
form of its fields. A transaction records its events into the session; when it commits they
are inserted into `audit_unchained` (plain inserts: no lock, no head read, so writers never
queue behind one another for the ledger). The chainer (`chain`) then links them into
`audit_events` in batches: one lock (an advisory lock on PostgreSQL; SQLite's write turn),
one head read, N hashes, N inserts and the N unchained rows deleted, in one transaction, so
a crash mid-batch leaves the batch unchained, never half-chained or lost.

Order is the order in which events became visible to the chainer (commit order between
batches; within a batch, by writing transaction, then insert order), so one transaction's
events stay together and an event never precedes one its transaction could see.

By default (CLI commands, tests) a transaction chains its own events before it commits,
holding the chain lock until then; a serving process's sessions leave them to its chainer
thread, which the commit pokes (`approvals.chainer`), so the lock is held once per batch instead of
through every writer's commit. Until chained (normally milliseconds; at most the chainer's
poll interval after a crash) an event is in the database but not yet hash-protected.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, insert, select, text
from sqlalchemy.orm import Session

from approvals import masking
from core.canonical import canonical_json, sha256_hex
from core.clock import utc
from core.models import AuditEvent, UnchainedAuditEvent

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key: the bytes of "cs-audit" as a signed 64-bit integer.
ADVISORY_LOCK_KEY = int.from_bytes(b"cs-audit", "big", signed=True)
_PENDING = "countersign.audit.pending"
_INSERTED = "countersign.audit.inserted"
_WROTE = "countersign.audit.wrote"
# A sessionmaker's `info` may name what to call after a commit that wrote events (a serving
# process's `Chainer.poke`); without it, each transaction chains its own events.
AFTER_COMMIT = "countersign.audit.after_commit"
BATCH = 1000


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


@dataclass
class Link:
    """An event as the chainer links it: `AuditEvent`'s fields, without the ORM's cost per object."""

    seq: int
    at: datetime
    kind: str
    actor: str
    task_public_id: str | None
    action_public_id: str | None
    task_type: str | None
    params_hash: str | None
    from_state: str | None
    to_state: str | None
    note: str | None
    data: dict[str, Any] | None
    prev_hash: str
    hash: str


_LINK_FIELDS = [field.name for field in fields(Link)]
_COLUMN_OF = {attribute.key: attribute.columns[0] for attribute in AuditEvent.__mapper__.column_attrs}
_SQL_TYPE = {"seq": "bigint", "at": "timestamptz", "data": "json"}
_COLUMNS = ", ".join(_COLUMN_OF[name].name for name in _LINK_FIELDS)
_ARRAYS = ", ".join(f"CAST(:{name} AS {_SQL_TYPE.get(name, 'text')}[])" for name in _LINK_FIELDS)
_INSERT_LINKS = text(f"INSERT INTO audit_events ({_COLUMNS}) SELECT * FROM unnest({_ARRAYS})")  # noqa: S608 - constants


def record(session: Session, entry: AuditEntry) -> None:
    """Add an event to the ledger when (and only if) the session's transaction commits; what
    looks like a secret in its note or data is masked (`approvals.masking`, by shape: the keys
    of `data` are the ledger's own, like the name of a vault secret)."""
    masked = replace(entry, note=masking.mask_text(entry.note) if entry.note else entry.note)
    if entry.data is not None:
        masked = replace(masked, data=masking.mask_value(entry.data, by_name=False))
    session.info.setdefault(_PENDING, []).append(masked)


def event_body(event_row: AuditEvent | Link) -> dict[str, Any]:
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


def compute_hash(event_row: AuditEvent | Link) -> str:
    return sha256_hex(canonical_json(event_body(event_row)))


def head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest event, or (0, GENESIS_HASH) for an empty ledger."""
    row = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else (0, GENESIS_HASH)


def chain(session: Session, limit: int | None = BATCH, *, then: Sequence[AuditEntry] = ()) -> int:
    """Link up to `limit` unchained events (all with None), oldest first, into the ledger, and
    after them `then` (the caller's own events, never stored unchained); return how many.

    Holds the chain lock until the caller commits: exactly one chainer at a time, across
    processes. The unchained rows are deleted by id (never by range: a row with a lower id
    committed after this read must stay for the next batch). A batch never splits a
    transaction's events (on PostgreSQL it takes whole transactions, which may pass `limit`):
    one that committed meanwhile with a lower `xact` would otherwise be chained between them."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    table = UnchainedAuditEvent.__table__
    oldest = select(table).order_by(table.c.xact, table.c.id)
    if postgres and limit is not None:
        first = select(table.c.xact).order_by(table.c.xact, table.c.id).limit(limit)
        oldest = oldest.where(table.c.xact.in_(first))
    elif limit is not None:  # SQLite: one writer at a time, so ids are in commit order
        oldest = oldest.limit(limit)
    rows = session.execute(oldest).all()
    if not rows and not then:
        return 0
    seq, prev_hash = head(session)
    links = []
    for values in [*(row._asdict() for row in rows), *(asdict(entry) for entry in then)]:
        values.pop("id", None), values.pop("xact", None)
        seq += 1
        link = Link(seq=seq, prev_hash=prev_hash, hash="", **values)
        link.hash = prev_hash = compute_hash(link)
        links.append(link)
    ids = [row.id for row in rows]
    if postgres:
        # One statement for the batch (an executemany would be a round trip per event).
        columns = {name: [getattr(link, name) for link in links] for name in _LINK_FIELDS}
        columns["data"] = [None if data is None else json.dumps(data) for data in columns["data"]]
        session.execute(_INSERT_LINKS, columns)
        if ids:
            session.execute(text("DELETE FROM audit_unchained WHERE id = ANY(:ids)"), {"ids": ids})
    else:
        session.execute(insert(AuditEvent), [asdict(link) for link in links])
        if ids:
            session.execute(delete(UnchainedAuditEvent).where(UnchainedAuditEvent.id.in_(ids)))
    return len(links)


def backlog(session: Session) -> tuple[int, datetime | None]:
    """How many events wait to be chained, and when the oldest of them happened."""
    count, oldest = session.execute(select(func.count(), func.min(UnchainedAuditEvent.at))).one()
    return int(count), oldest


def inserted(session: Session) -> None:
    """Say that a statement of this transaction inserted events into `audit_unchained` itself
    (`approvals.decision_statement`), so that they are chained like those recorded here."""
    session.info[_INSERTED] = True


@event.listens_for(Session, "before_commit")
def _insert_on_commit(session: Session) -> None:
    entries: list[AuditEntry] = session.info.pop(_PENDING, [])
    if not (session.info.pop(_INSERTED, False) or entries):
        return
    if AFTER_COMMIT in session.info:
        if entries:
            session.execute(insert(UnchainedAuditEvent), [asdict(entry) for entry in entries])
        session.info[_WROTE] = True
    else:
        # Chained in this transaction, after any events still unchained, under the chain lock
        # until it commits.
        chain(session, None, then=entries)


@event.listens_for(Session, "after_commit")
def _poke_after_commit(session: Session) -> None:
    if session.info.pop(_WROTE, False):
        session.info[AFTER_COMMIT]()


@event.listens_for(Session, "after_soft_rollback")
def _forget_on_rollback(session: Session, _previous: Any) -> None:
    for key in (_PENDING, _INSERTED, _WROTE):
        session.info.pop(key, None)
