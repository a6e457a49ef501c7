"""The ledger's chainer: events committed unchained are linked in batches, in order, once each;
a chainer killed mid-batch loses nothing; /metrics shows the backlog. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from approvals import audit
from approvals.chainer import Chainer, chain_all
from approvals.ledger import verify
from core.metrics import DatabaseCollector
from core.models import AuditEvent, UnchainedAuditEvent
from tests.approvals.test_ledger import entry

ROOT = Path(__file__).resolve().parents[2]


def deferred(sessions: sessionmaker[Session], chainer: Chainer | None = None) -> sessionmaker[Session]:
    """Sessions that leave their events to a chainer (`chainer.poke`, or nobody), as `serve`'s do."""
    poke = chainer.poke if chainer is not None else (lambda: None)
    return sessionmaker(sessions.kw["bind"], expire_on_commit=False, info={audit.AFTER_COMMIT: poke})


def counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as session:
        chained = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        unchained = session.scalar(select(func.count()).select_from(UnchainedAuditEvent)) or 0
    return chained, unchained


def test_a_deferred_commit_writes_its_events_unchained_and_the_chainer_links_them(
    sessions: sessionmaker[Session],
) -> None:
    writers = deferred(sessions)
    for number in range(1, 6):
        with writers.begin() as session:
            audit.record(session, entry(number))
    assert counts(sessions) == (0, 5)
    with sessions() as session:
        assert verify(session).summary() == "ok: 0 events, head 0:" + audit.GENESIS_HASH + "; 5 not yet chained"

    assert chain_all(sessions, limit=2) == 5  # three batches
    assert counts(sessions) == (5, 0)
    with sessions() as session:
        report = verify(session)
        notes = session.scalars(select(AuditEvent.note).order_by(AuditEvent.seq)).all()
    assert report.ok and report.events == 5 and report.unchained == 0
    assert notes == [f"event {number}" for number in range(1, 6)]


def test_a_batch_takes_a_transactions_events_whole(sessions: sessionmaker[Session]) -> None:
    """A batch cut inside a transaction's events would let a transaction that commits later with
    a lower `xact` (it began earlier) be chained between them (seen once under load)."""
    if sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("xact is PostgreSQL's; SQLite's one writer commits in id order")
    writers = deferred(sessions)

    def unchained(xact: int, *notes: str) -> None:
        """A committed transaction's events, given the transaction id `xact`."""
        with writers.begin() as session:
            for note in notes:
                audit.record(session, entry(1, note=note))
        with sessions.begin() as session:
            moved = update(UnchainedAuditEvent).where(UnchainedAuditEvent.note.in_(notes)).values(xact=xact)
            session.execute(moved)

    unchained(5, "x")
    unchained(10, "t-p0", "t-p1")
    with sessions.begin() as session:
        assert audit.chain(session, limit=2) == 3  # x and the whole of t
    unchained(7, "a")  # began before t, committed after the batch
    assert chain_all(sessions) == 1
    with sessions() as session:
        notes = session.scalars(select(AuditEvent.note).order_by(AuditEvent.seq)).all()
        assert verify(session).ok
    assert notes == ["x", "t-p0", "t-p1", "a"]


def test_busy_writers_and_one_chainer_thread_give_one_contiguous_chain(sessions: sessionmaker[Session]) -> None:
    chainer = Chainer(sessions, poll_s=0.05, limit=17)
    writers_sessions = deferred(sessions, chainer)
    writers, transactions = 4, 25
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for number in range(transactions):
                with writers_sessions.begin() as session:
                    for part in range(2 if number % 3 == 0 else 1):  # two events: they stay adjacent
                        audit.record(session, entry(number + 1, note=f"w{writer}-t{number}-p{part}"))
        except BaseException as exc:
            errors.append(exc)

    chainer.start()
    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chainer.close()  # chains what is left before it stops
    assert errors == []

    expected = {
        f"w{w}-t{t}-p{p}" for w in range(writers) for t in range(transactions) for p in range(2 if t % 3 == 0 else 1)
    }
    with sessions() as session:
        rows = session.execute(select(AuditEvent.seq, AuditEvent.note).order_by(AuditEvent.seq)).all()
        report = verify(session)
    assert report.ok, report.summary()
    assert [seq for seq, _ in rows] == list(range(1, len(expected) + 1))
    notes = Counter(note for _, note in rows)
    assert set(notes) == expected and max(notes.values()) == 1  # none lost, none twice
    by_note = {note: seq for seq, note in rows}
    for w in range(writers):
        for t in range(0, transactions, 3):
            assert by_note[f"w{w}-t{t}-p1"] == by_note[f"w{w}-t{t}-p0"] + 1
    assert counts(sessions)[1] == 0


def test_a_chainer_killed_mid_batch_loses_nothing_and_the_ledger_verifies(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    chain_all(sessions)
    with sessions.begin() as session:  # an earlier, chained stretch
        for number in range(1, 4):
            audit.record(session, entry(number))
    writers = deferred(sessions)
    for number in range(4, 204):
        with writers.begin() as session:
            audit.record(session, entry(number))
    assert counts(sessions) == (3, 200)

    victim = subprocess.run(
        [sys.executable, "tests/approvals/run_chainer.py", db_url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    assert "dying before commit" in victim.stderr
    assert counts(sessions) == (3, 200)  # the half-done batch rolled back with the process

    assert chain_all(sessions) == 200
    with sessions() as session:
        report = verify(session)
        notes = session.scalars(select(AuditEvent.note).order_by(AuditEvent.seq)).all()
    assert report.ok, report.summary()
    assert report.events == 203 and report.unchained == 0
    assert notes == [f"event {number}" for number in range(1, 204)]


def test_metrics_show_the_unchained_backlog(sessions: sessionmaker[Session]) -> None:
    with deferred(sessions).begin() as session:
        audit.record(session, entry(1))
        audit.record(session, entry(2))
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(sessions))
    scraped = generate_latest(registry).decode()
    assert "countersign_audit_unchained 2.0" in scraped
    age = next(line for line in scraped.splitlines() if line.startswith("countersign_audit_unchained_oldest_age"))
    assert float(age.split()[1]) > 0  # the entries are from 2026-01-05
    chain_all(sessions)
    assert "countersign_audit_unchained 0.0" in generate_latest(registry).decode()
