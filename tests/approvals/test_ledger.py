"""The audit ledger: verify, export and published heads, on SQLite and PostgreSQL, and the
`countersign audit` commands driven in-process."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection, Engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from approvals import audit, ledger
from approvals.audit import GENESIS_HASH, AuditEntry, compute_hash
from approvals.ledger import EXPORT_FIELDS, InvalidPublishedHead, export, last_published_head, publish_head, verify
from bot.cli import main
from core.canonical import canonical_json, sha256_hex
from core.models import AuditEvent, OutboxMessage

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BROKEN_CHAIN = "is not in the ledger (history rewritten or truncated)"


def entry(number: int, *, at: datetime | None = None, note: str | None = None) -> AuditEntry:
    return AuditEntry(
        kind="action.approved",
        actor="U0ALICE" if number % 2 else "system",
        at=at or T0 + timedelta(hours=number),
        task_public_id=f"tsk_{number:04d}",
        action_public_id=f"act_{number:04d}",
        task_type="refund",
        params_hash=sha256_hex(str(number)),
        from_state="pending",
        to_state="approved",
        note=note if note is not None else f"event {number}",
        data={"amount_cents": number * 100, "reason": "café ✓", "tags": ["a", "b"]} if number % 3 else None,
    )


def fill(sessions: sessionmaker[Session], count: int) -> None:
    """`count` events, one transaction each, at T0 + 1h, T0 + 2h, …"""
    for number in range(1, count + 1):
        with sessions.begin() as session:
            audit.record(session, entry(number))


def event_hash(sessions: sessionmaker[Session], seq: int) -> str:
    with sessions() as session:
        return session.execute(select(AuditEvent.hash).where(AuditEvent.seq == seq)).scalar_one()


def check(sessions: sessionmaker[Session], against: str | None = None) -> ledger.VerifyReport:
    with sessions() as session:
        return verify(session, against=against)


@contextmanager
def append_only_suspended(conn: Connection) -> Iterator[None]:
    """Bypass the ledger's append-only triggers for the rest of `conn`'s transaction, as an
    attacker with full database access can: on PostgreSQL a superuser's replica mode; on
    SQLite, whoever can write the file drops the triggers (and here puts them back)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        yield
        return
    triggers = conn.execute(
        text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'")
    ).all()
    assert triggers, "the SQLite ledger has no append-only triggers"
    for name, _ in triggers:
        conn.execute(text(f'DROP TRIGGER "{name}"'))
    yield
    for _, sql in triggers:
        conn.execute(text(sql))


@contextmanager
def as_superuser(engine: Engine) -> Iterator[Connection]:
    """A transaction that bypasses the ledger's append-only triggers."""
    with engine.begin() as conn, append_only_suspended(conn):
        yield conn


def cli(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["audit", *args], env={"DATABASE_URL": db_url})


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 7 rows, so a few dozen events cross many page boundaries."""
    monkeypatch.setattr(ledger, "BATCH_SIZE", 7)


# --- verify -----------------------------------------------------------------------------


@pytest.mark.usefixtures("small_batches")
def test_a_busy_ledger_is_contiguous_and_verifies(sessions: sessionmaker[Session]) -> None:
    writers, transactions = 4, 30
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for number in range(transactions):
                with sessions.begin() as session:
                    # Every third transaction records two events: they must stay adjacent.
                    for part in range(2 if number % 3 == 0 else 1):
                        audit.record(session, entry(number, note=f"w{writer}-t{number}-p{part}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    expected = {
        f"w{w}-t{t}-p{p}" for w in range(writers) for t in range(transactions) for p in range(2 if t % 3 == 0 else 1)
    }
    with sessions() as session:
        rows = session.execute(select(AuditEvent.seq, AuditEvent.note).order_by(AuditEvent.seq)).all()
    assert [seq for seq, _ in rows] == list(range(1, len(expected) + 1))
    notes = Counter(note for _, note in rows)
    assert set(notes) == expected
    assert max(notes.values()) == 1
    by_note = {note: seq for seq, note in rows}
    for w in range(writers):
        for t in range(0, transactions, 3):
            assert by_note[f"w{w}-t{t}-p1"] == by_note[f"w{w}-t{t}-p0"] + 1

    report = check(sessions)
    assert report.ok, report.summary()
    assert report.events == len(expected)
    assert report.head == (len(expected), event_hash(sessions, len(expected)))
    assert report.broken_seq is None
    assert report.reason is None


def test_an_empty_ledger_verifies(db_url: str, sessions: sessionmaker[Session]) -> None:
    report = check(sessions)
    assert (report.ok, report.events, report.head) == (True, 0, (0, GENESIS_HASH))
    result = cli(db_url, "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: 0 events, head 0:{GENESIS_HASH}\n"


def test_verify_cli_prints_the_head(db_url: str, sessions: sessionmaker[Session]) -> None:
    fill(sessions, 12)
    result = cli(db_url, "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"ok: 12 events, head 12:{event_hash(sessions, 12)}; no published head: 12 events not yet anchored\n"
    )
    assert result.stderr == ""


@pytest.mark.usefixtures("small_batches")
def test_an_altered_row_breaks_the_chain_at_that_event(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    fill(sessions, 30)
    with as_superuser(engine) as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 17).values(note="nothing to see here"))

    report = check(sessions)
    assert not report.ok
    assert report.broken_seq == 17
    assert report.reason == "hash mismatch: content altered"
    assert report.head == (16, event_hash(sessions, 16))

    result = cli(db_url, "verify")
    assert result.exit_code == 1
    assert result.stderr == "broken at event 17: hash mismatch: content altered\n"
    assert result.stdout == ""


def test_an_altered_row_with_a_recomputed_hash_breaks_the_next_link(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    fill(sessions, 20)
    with sessions() as session:
        event = session.get_one(AuditEvent, 12)
        session.expunge(event)
    event.to_state = "rejected"
    with as_superuser(engine) as conn:
        conn.execute(
            update(AuditEvent).where(AuditEvent.seq == 12).values(to_state="rejected", hash=compute_hash(event))
        )

    report = check(sessions)
    assert (report.ok, report.broken_seq, report.reason) == (False, 13, "prev_hash does not link to event 12")


def test_a_first_event_not_linked_to_genesis_is_broken(engine: Engine, sessions: sessionmaker[Session]) -> None:
    fill(sessions, 3)
    with as_superuser(engine) as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 1).values(prev_hash="f" * 64))
    report = check(sessions)
    assert (report.broken_seq, report.reason) == (1, "prev_hash does not link to genesis")


@pytest.mark.usefixtures("small_batches")
def test_a_deleted_middle_row_is_a_gap(db_url: str, engine: Engine, sessions: sessionmaker[Session]) -> None:
    fill(sessions, 20)
    with as_superuser(engine) as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.seq == 14))

    report = check(sessions)
    assert (report.ok, report.broken_seq, report.reason) == (False, 14, "gap: seq 14 missing")
    assert report.head == (13, event_hash(sessions, 13))
    result = cli(db_url, "verify")
    assert result.exit_code == 1
    assert result.stderr == "broken at event 14: gap: seq 14 missing\n"


@pytest.mark.parametrize(
    ("operation", "statement"),
    [
        ("UPDATE", update(AuditEvent).where(AuditEvent.seq == 2).values(note="edited")),
        ("DELETE", delete(AuditEvent).where(AuditEvent.seq == 2)),
        ("DELETE", delete(AuditEvent).where(AuditEvent.seq > 1)),  # the newest events
        ("DELETE", delete(AuditEvent)),  # SQLite would otherwise truncate without a row check
        ("TRUNCATE", text("TRUNCATE audit_events")),
    ],
)
def test_the_database_refuses_changes_to_the_ledger(
    engine: Engine, sessions: sessionmaker[Session], operation: str, statement: Any
) -> None:
    if operation == "TRUNCATE" and engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no TRUNCATE")
    fill(sessions, 3)
    with (
        pytest.raises(DBAPIError, match=rf"audit_events is append-only \({operation} refused\)"),
        engine.begin() as conn,
    ):
        conn.execute(statement)
    report = check(sessions)
    assert (report.ok, report.events) == (True, 3)


# --- published heads --------------------------------------------------------------------


def test_verify_against_a_published_head(db_url: str, sessions: sessionmaker[Session]) -> None:
    fill(sessions, 10)
    fifth = event_hash(sessions, 5)
    for against in (f"5:{fifth}", fifth, f"  5:{fifth.upper()} "):
        report = check(sessions, against)
        assert report.ok, report.summary()
        assert report.events == 10
    result = cli(db_url, "verify", "--against", f"5:{fifth}")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"ok: 10 events, head 10:{event_hash(sessions, 10)}, published head 5:{fifth} found; "
        "5 events after the published head given (seq 5): not yet anchored\n"
    )

    wrong_seq = check(sessions, f"6:{fifth}")
    assert not wrong_seq.ok
    assert wrong_seq.broken_seq is None
    assert f"published head 6:{fifth} {BROKEN_CHAIN}" in (wrong_seq.reason or "")


def test_a_consistently_rewritten_chain_verifies_but_not_against_the_published_head(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    fill(sessions, 20)
    with sessions.begin() as session:
        published = publish_head(session, T0)
    assert published == (20, event_hash(sessions, 20))
    seq, old_hash = published

    # Rewrite history from event 5 on and re-chain every later event, as an attacker with
    # full database access would.
    prev_hash = event_hash(sessions, 4)
    with sessions.begin() as session, append_only_suspended(session.connection()):
        events = session.scalars(select(AuditEvent).where(AuditEvent.seq >= 5).order_by(AuditEvent.seq)).all()
        for event in events:
            if event.seq == 5:
                event.to_state, event.note = "rejected", "never approved"
            event.prev_hash = prev_hash
            event.hash = prev_hash = compute_hash(event)
            session.flush()

    # The chain itself is consistent again, but the head the database recorded publishing
    # (event 20's old hash) is gone from it: plain `verify` fails too, naming the event.
    report = check(sessions)
    assert (report.ok, report.broken_seq) == (False, None)
    assert report.reason == (
        f"last published head 20:{old_hash} (published 2026-01-05T09:00:00+00:00) {BROKEN_CHAIN}: "
        f"event 20 now has hash {event_hash(sessions, 20)}"
    )
    result = cli(db_url, "verify")
    assert result.exit_code == 1
    assert result.stderr == f"verify failed: {report.reason}\n"
    for against in (f"{seq}:{old_hash}", old_hash):
        report = check(sessions, against)
        assert not report.ok
        assert report.broken_seq is None
        assert BROKEN_CHAIN in (report.reason or "")
    assert f": event 20 now has hash {event_hash(sessions, 20)}" in (check(sessions, f"20:{old_hash}").reason or "")

    result = cli(db_url, "verify", "--against", f"{seq}:{old_hash}")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"verify failed: published head {seq}:{old_hash} {BROKEN_CHAIN}")


def test_a_truncated_ledger_fails_against_the_published_head(engine: Engine, sessions: sessionmaker[Session]) -> None:
    fill(sessions, 10)
    head_hash = event_hash(sessions, 10)
    with as_superuser(engine) as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.seq > 8))

    assert check(sessions).ok
    report = check(sessions, f"10:{head_hash}")
    assert not report.ok
    assert report.reason == f"published head 10:{head_hash} {BROKEN_CHAIN}: the ledger ends at event 8"


def publish(sessions: sessionmaker[Session], at: datetime = T0) -> tuple[int, str]:
    with sessions.begin() as session:
        published = publish_head(session, at)
    assert published is not None
    return published


def test_deleting_the_newest_events_after_a_publication_fails_verify(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    fill(sessions, 10)
    seq, head_hash = publish(sessions)
    with as_superuser(engine) as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.seq > 7))

    report = check(sessions)
    assert not report.ok
    reason = (
        f"last published head {seq}:{head_hash} (published 2026-01-05T09:00:00+00:00) {BROKEN_CHAIN}: "
        "the ledger ends at event 7"
    )
    assert report.reason == reason
    result = cli(db_url, "verify")
    assert result.exit_code == 1
    assert (result.stdout, result.stderr) == ("", f"verify failed: {reason}\n")


def test_verify_counts_the_events_after_the_last_published_head(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    fill(sessions, 10)
    publish(sessions, T0)
    for number in (11, 12, 13):
        with sessions.begin() as session:
            audit.record(session, entry(number))

    report = check(sessions)
    assert (report.ok, report.unanchored) == (True, 3)
    assert report.anchor is not None and (report.anchor.seq, report.anchor.at) == (10, T0)
    result = cli(db_url, "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"ok: 13 events, head 13:{event_hash(sessions, 13)}; "
        "3 events after the last published head (seq 10 at 2026-01-05T09:00:00+00:00): not yet anchored\n"
    )
    # An older head given by hand still has to be there, but the newest one anchors.
    assert check(sessions, event_hash(sessions, 4)).unanchored == 3

    # What the last head does not cover is not protected: its deletion goes unnoticed, which
    # is why heads are published every minute.
    with as_superuser(engine) as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.seq > 12))
    assert cli(db_url, "verify").stdout.endswith(
        "; 2 events after the last published head (seq 10 at 2026-01-05T09:00:00+00:00): not yet anchored\n"
    )

    publish(sessions, T0 + timedelta(minutes=1))
    assert cli(db_url, "verify").stdout.endswith(
        "; 0 events after the last published head (seq 12 at 2026-01-05T09:01:00+00:00): all anchored\n"
    )


def test_a_malformed_published_head_is_refused(db_url: str, sessions: sessionmaker[Session]) -> None:
    for bad in ("abc", "x:" + "a" * 64, "0:" + "a" * 64, "a" * 63, "-1:" + "a" * 64, "²³:" + "a" * 64):
        with pytest.raises(InvalidPublishedHead, match="not a published head"):
            check(sessions, bad)
    result = cli(db_url, "verify", "--against", "12:nothex")
    assert result.exit_code == 2
    assert "'12:nothex'" in result.output


def test_publish_head_enqueues_only_a_new_head(db_url: str, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert publish_head(session, T0) is None
        assert last_published_head(session) is None
    fill(sessions, 3)
    third = (3, event_hash(sessions, 3))
    with sessions.begin() as session:
        assert publish_head(session, T0) == third
    with sessions.begin() as session:
        assert publish_head(session, T0 + timedelta(minutes=5)) is None
        assert audit.head(session) == third  # publishing is not audited
    with sessions.begin() as session:
        audit.record(session, entry(4))
    fourth = (4, event_hash(sessions, 4))
    with sessions.begin() as session:
        assert publish_head(session, T0 + timedelta(minutes=10)) == fourth
        assert last_published_head(session) == fourth

    with sessions() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [(row.kind, row.ordering_key) for row in rows] == [("audit.head", "audit")] * 2
    assert rows[0].payload == {"seq": 3, "hash": third[1], "at": "2026-01-05T09:00:00.000000+00:00"}
    assert rows[1].payload["seq"] == 4

    result = cli(db_url, "publish-head")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"nothing to publish: head 4:{event_hash(sessions, 4)} was already published\n"
    with sessions.begin() as session:
        audit.record(session, entry(5))
    result = cli(db_url, "publish-head")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"published head 5:{event_hash(sessions, 5)}\n"
    fifth = (5, event_hash(sessions, 5))
    with sessions() as session:
        assert last_published_head(session) == fifth


def test_publish_head_on_an_empty_ledger_cli(db_url: str) -> None:
    result = cli(db_url, "publish-head")
    assert result.exit_code == 0, result.output
    assert result.stdout == "nothing to publish: the ledger is empty\n"


# --- export -----------------------------------------------------------------------------


@pytest.mark.usefixtures("small_batches")
def test_export_jsonl_round_trips(db_url: str, sessions: sessionmaker[Session]) -> None:
    fill(sessions, 25)
    result = cli(db_url, "export")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 25
    prev_hash = GENESIS_HASH
    for seq, line in enumerate(lines, start=1):
        record = json.loads(line)
        assert list(record) == list(EXPORT_FIELDS)
        assert record["seq"] == seq
        assert record["prev_hash"] == prev_hash
        body = {key: value for key, value in record.items() if key != "hash"}
        assert sha256_hex(canonical_json(body)) == record["hash"]
        prev_hash = record["hash"]
    first, third = json.loads(lines[0]), json.loads(lines[2])
    assert first["at"] == "2026-01-05T10:00:00.000000+00:00"
    assert (first["actor"], first["action_id"], first["task_type"]) == ("U0ALICE", "act_0001", "refund")
    assert (first["from_state"], first["to_state"], first["note"]) == ("pending", "approved", "event 1")
    assert first["data"] == {"amount_cents": 100, "reason": "café ✓", "tags": ["a", "b"]}
    assert third["data"] is None
    assert prev_hash == event_hash(sessions, 25)


@pytest.mark.usefixtures("small_batches")
def test_export_csv_has_a_header_and_one_row_per_event(db_url: str, sessions: sessionmaker[Session]) -> None:
    fill(sessions, 10)
    with sessions.begin() as session:
        audit.record(session, entry(11, note='multi-line,\n"quoted" note'))
    result = cli(db_url, "export", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(EXPORT_FIELDS)
    assert [row["seq"] for row in rows] == [str(seq) for seq in range(1, 12)]
    assert json.loads(rows[0]["data"]) == {"amount_cents": 100, "reason": "café ✓", "tags": ["a", "b"]}
    assert rows[0]["data"] == '{"amount_cents":100,"reason":"café ✓","tags":["a","b"]}'
    assert rows[2]["data"] == ""
    assert rows[10]["note"] == 'multi-line,\n"quoted" note'
    assert rows[10]["hash"] == event_hash(sessions, 11)


@pytest.mark.parametrize("since", ["2026-01-05T14:00:00+00:00", "2026-01-05T14:00:00Z", "2026-01-05T15:00:00+01:00"])
def test_export_since_filters_by_time(db_url: str, sessions: sessionmaker[Session], since: str) -> None:
    fill(sessions, 8)  # at 10:00, 11:00, … 17:00 UTC
    result = cli(db_url, "export", "--since", since)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [5, 6, 7, 8]

    result = cli(db_url, "export", "--format", "csv", "--since", "2026-01-05T16:30")  # naive means UTC
    assert [row["seq"] for row in csv.DictReader(io.StringIO(result.stdout))] == ["8"]


def test_export_since_a_duration_ago(db_url: str, sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    for number, age in enumerate([timedelta(days=3), timedelta(hours=5), timedelta(minutes=1)], start=1):
        with sessions.begin() as session:
            audit.record(session, entry(number, at=now - age))
    result = cli(db_url, "export", "--since", "1d")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [2, 3]


def test_export_refuses_a_bad_since(db_url: str) -> None:
    result = cli(db_url, "export", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "'last tuesday' is neither an ISO 8601 date or time" in result.output


def test_export_function_streams_to_any_text_stream(sessions: sessionmaker[Session]) -> None:
    fill(sessions, 4)
    out = io.StringIO()
    with sessions() as session:
        assert export(session, out, "jsonl", since=T0 + timedelta(hours=3)) == 2
        with pytest.raises(ValueError, match="unknown export format 'xml'"):
            export(session, out, "xml")  # type: ignore[arg-type]
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [3, 4]


# --- the CLI beside a running server ----------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_verify_and_export_do_not_wait_for_the_write_lock(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    fill(sessions, 5)
    with engine.connect() as writer:
        writer.begin()  # BEGIN IMMEDIATE: holds the write lock, like a serving process mid-transaction
        writer.execute(text("SELECT 1"))
        started = time.monotonic()
        verified = cli(db_url, "verify")
        exported = cli(db_url, "export")
        elapsed = time.monotonic() - started
        writer.rollback()
    assert verified.exit_code == 0, verified.output
    assert exported.exit_code == 0, exported.output
    assert len(exported.stdout.splitlines()) == 5
    assert elapsed < 5


def test_the_cli_asks_for_db_upgrade_on_an_unmigrated_database(tmp_path: Any) -> None:
    result = cli(f"sqlite:///{tmp_path / 'empty.db'}", "verify")
    assert result.exit_code == 1
    assert "run `countersign db upgrade`" in result.output
