"""Reading the audit ledger: verify its hash chain, export it, publish its head.

`approvals.audit` appends; this module only reads, except `publish_head`, which writes an
outbox row (never an audit event: auditing the publication would move the head it names).
Everything streams in keyset-paginated batches by `seq`, so a ledger of millions of
events is checked and exported in constant memory.

A published head (`SEQ:HASH`, sent to people outside the database) is what makes a
consistent rewrite detectable: whoever rewrites the whole chain can make it verify, but
cannot put the published hash back into it. `verify` checks the chain against the newest head
the database recorded publishing (and any head given to it), and counts the events after
it: those are not anchored yet, and a rewrite or deletion of them cannot be told apart from
a ledger that never had them.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, TextIO

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from approvals.audit import GENESIS_HASH, backlog, compute_hash, event_body, head
from approvals.errors import ApprovalsError
from core import outbox
from core.canonical import canonical_json
from core.clock import utc
from core.messages import AUDIT_ORDERING_KEY, AuditHead
from core.models import AuditEvent, OutboxMessage

BATCH_SIZE = 1000
HEAD_KIND, HEAD_ORDERING_KEY = AuditHead.KIND, AUDIT_ORDERING_KEY
# Serializes publishers on PostgreSQL without blocking appends (they take "cs-audit").
PUBLISH_LOCK_KEY = int.from_bytes(b"cs-ahead", "big", signed=True)
EXPORT_FIELDS = (
    "seq", "at", "kind", "actor", "task_id", "action_id", "task_type", "params_hash",
    "from_state", "to_state", "note", "data", "prev_hash", "hash",
)  # fmt: skip
ExportFormat = Literal["jsonl", "csv"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv")
_HASH = re.compile(r"[0-9a-f]{64}")
_SEQ = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes '²'


class InvalidPublishedHead(ApprovalsError, ValueError):
    """A published head that is neither `HASH` nor `SEQ:HASH`."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(f"not a published head: {value!r} (expected HASH or SEQ:HASH, HASH being 64 hex digits)")


@dataclass(frozen=True)
class PublishedHead:
    """A head announced outside the database; `seq` is None when only the hash was kept,
    `at` is when it was published (known for the heads this database recorded publishing)."""

    hash: str
    seq: int | None = None
    at: datetime | None = None

    @classmethod
    def parse(cls, value: str) -> PublishedHead:
        seq_text, _, hash_text = value.strip().rpartition(":")
        hash_text = hash_text.lower()
        if not _HASH.fullmatch(hash_text) or (seq_text and not _SEQ.fullmatch(seq_text)):
            raise InvalidPublishedHead(value)
        seq = int(seq_text) if seq_text else None
        if seq == 0:
            raise InvalidPublishedHead(value)
        return cls(hash=hash_text, seq=seq)

    def __str__(self) -> str:
        return self.hash if self.seq is None else f"{self.seq}:{self.hash}"


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found. `head` is the last event that checked out ((0, GENESIS) if none).

    `anchor` is the newest published head found in the chain (its `seq` filled in), and
    `unanchored` the number of events after it (all of them without an anchor).
    """

    ok: bool
    events: int
    head: tuple[int, str]
    broken_seq: int | None = None
    reason: str | None = None
    against: PublishedHead | None = None
    anchor: PublishedHead | None = None
    unanchored: int = 0
    unchained: int = 0  # events committed but not yet linked (the chainer's backlog)

    def summary(self) -> str:
        """One line for people: `ok: …; N events after the last published head …` or
        `broken at event N: …`."""
        if self.ok:
            line = f"ok: {self.events} events, head {self.head[0]}:{self.head[1]}"
            line += f", published head {self.against} found" if self.against else ""
            line = f"{line}; {self.anchoring()}" if self.events else line
            return f"{line}; {self.unchained} not yet chained" if self.unchained else line
        if self.broken_seq is not None:
            return f"broken at event {self.broken_seq}: {self.reason}"
        return f"verify failed: {self.reason}"

    def anchoring(self) -> str:
        """How much of the chain a published head vouches for."""
        events = f"{self.unanchored} event{'' if self.unanchored == 1 else 's'}"
        if self.anchor is None:
            return f"no published head: {events} not yet anchored"
        # Only the heads this database recorded publishing carry their time.
        which = "the last published head" if self.anchor.at is not None else "the published head given"
        at = f" at {self.anchor.at.isoformat(timespec='seconds')}" if self.anchor.at is not None else ""
        return f"{events} after {which} (seq {self.anchor.seq}{at}): " + (
            "not yet anchored" if self.unanchored else "all anchored"
        )


def verify(session: Session, *, against: str | PublishedHead | None = None) -> VerifyReport:
    """Check the whole chain, in seq order, stopping at the first broken event.

    Every event must have the next seq (from 1), link to the previous event's hash
    (GENESIS for the first) and hash to its stored hash. The chain must also still contain
    the newest head this database recorded publishing, and `against` (a head published
    elsewhere, `HASH` or `SEQ:HASH`) if given: otherwise events up to it were rewritten or
    deleted since. Raises `InvalidPublishedHead` for a malformed `against`.
    """
    published = PublishedHead.parse(against) if isinstance(against, str) else against
    anchors = [given for given in (published, recorded_head(session)) if given is not None]
    expected_seq, prev_hash, events = 1, GENESIS_HASH, 0
    found: dict[PublishedHead, int] = {}  # anchor → the seq it was found at
    at_seq: dict[PublishedHead, tuple[int, str]] = {}  # anchor → what its seq holds now

    def broken(seq: int, reason: str) -> VerifyReport:
        return VerifyReport(False, events, (expected_seq - 1, prev_hash), seq, reason, published)

    for row in _stream(session):
        events += 1
        if row.seq > expected_seq:
            return broken(expected_seq, f"gap: seq {expected_seq} missing")
        if row.seq < expected_seq:
            return broken(row.seq, f"seq {row.seq} out of order (expected {expected_seq})")
        if row.prev_hash != prev_hash:
            linked = "genesis" if expected_seq == 1 else f"event {expected_seq - 1}"
            return broken(row.seq, f"prev_hash does not link to {linked}")
        if row.hash != compute_hash(row):
            return broken(row.seq, "hash mismatch: content altered")
        for anchor in anchors:
            if row.hash == anchor.hash and anchor.seq in (None, row.seq):
                found[anchor] = row.seq
            if anchor.seq == row.seq:
                at_seq[anchor] = (row.seq, row.hash)
        expected_seq, prev_hash = row.seq + 1, row.hash

    ledger_head = (expected_seq - 1, prev_hash)
    for anchor in anchors:
        if anchor not in found:
            reason = _missing(anchor, ledger_head, at_seq.get(anchor))
            return VerifyReport(False, events, ledger_head, None, reason, published)
    # The newest head found; of two at one seq, the recorded one (it knows when it was published).
    newest = max(found.items(), key=lambda item: (item[1], item[0].at is not None), default=None)
    unanchored = ledger_head[0] - (newest[1] if newest else 0)
    return VerifyReport(
        True,
        events,
        ledger_head,
        against=published,
        anchor=None if newest is None else replace(newest[0], seq=newest[1]),
        unanchored=unanchored,
        unchained=backlog(session)[0],
    )


def _missing(published: PublishedHead, ledger_head: tuple[int, str], at_seq: tuple[int, str] | None) -> str:
    which = f"published head {published}"
    if published.at is not None:
        which = f"last published head {published} (published {published.at.isoformat(timespec='seconds')})"
    reason = f"{which} is not in the ledger (history rewritten or truncated)"
    if at_seq is not None:
        return reason + f": event {at_seq[0]} now has hash {at_seq[1]}"
    if published.seq is not None and published.seq > ledger_head[0]:
        return reason + f": the ledger ends at event {ledger_head[0]}"
    return reason


def export(session: Session, out: TextIO, fmt: ExportFormat = "jsonl", since: datetime | None = None) -> int:
    """Write events (those at or after `since`, if given) in seq order; return how many.

    `jsonl`: one JSON object per line, exactly the hashed fields plus `hash`, so anyone
    can recompute each hash. `csv`: a header, then one row per event; `data` is compact
    JSON, and a missing value is an empty cell.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (use {' or '.join(EXPORT_FORMATS)})")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_FIELDS)
    count = 0
    for row in _stream(session, since=since):
        record = {**event_body(row), "hash": row.hash}
        if writer is None:
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            writer.writerow([_cell(record[field]) for field in EXPORT_FIELDS])
        count += 1
    return count


def _cell(value: object) -> object:
    if value is None:
        return ""
    return canonical_json(value) if isinstance(value, dict | list) else value


def recorded_head(session: Session) -> PublishedHead | None:
    """The newest head this database recorded publishing (its `audit.head` outbox row)."""
    payload = session.execute(
        select(OutboxMessage.payload)
        .where(OutboxMessage.ordering_key == HEAD_ORDERING_KEY, OutboxMessage.kind == HEAD_KIND)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if payload is None:
        return None
    return PublishedHead(hash=str(payload["hash"]), seq=int(payload["seq"]), at=datetime.fromisoformat(payload["at"]))


def last_published_head(session: Session) -> tuple[int, str] | None:
    """(seq, hash) of the newest `audit.head` outbox row, or None if none was published."""
    head_row = recorded_head(session)
    return None if head_row is None else (head_row.seq or 0, head_row.hash)


def publish_head(session: Session, now: datetime) -> tuple[int, str] | None:
    """Enqueue the ledger head for publication if it moved since the last one; return it.

    Returns None for an empty ledger or a head already published. The caller commits.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUBLISH_LOCK_KEY})
    seq, hash_ = head(session)
    last = last_published_head(session)
    if seq == 0 or (last is not None and seq <= last[0]):
        return None
    outbox.enqueue(session, AuditHead(seq, hash_, utc(now).isoformat(timespec="microseconds")), now)
    return seq, hash_


# Column name → attribute name: the public-id columns keep their old names (`task_id`, `action_id`).
_ATTRIBUTE_OF = {attribute.columns[0].name: attribute.key for attribute in AuditEvent.__mapper__.column_attrs}


def _stream(session: Session, *, since: datetime | None = None) -> Iterator[AuditEvent]:
    """Events in seq order, BATCH_SIZE rows per query, as transient (unsessioned) objects."""
    table = AuditEvent.__table__
    after: int | None = None
    while True:
        query = select(table).order_by(table.c.seq).limit(BATCH_SIZE)
        if after is not None:
            query = query.where(table.c.seq > after)
        if since is not None:
            query = query.where(table.c.at >= utc(since))
        rows = session.execute(query).all()
        for row in rows:
            yield AuditEvent(**{_ATTRIBUTE_OF[name]: value for name, value in row._mapping.items()})
        if len(rows) < BATCH_SIZE:
            return
        after = rows[-1].seq
