"""Audit events chained per second, on SQLite and PostgreSQL, with 1 and 8 concurrent writers,
beside raw single-row UPDATE commits per second on the same PostgreSQL in the same run.

Each writer commits transactions that record one audit event each, through sessions set up as
in `serve`: on PostgreSQL the commit inserts the event unchained and pokes the process's
`Chainer` thread, which links events into the hash chain in batches (`approvals.audit`); on
SQLite, whose writers take turns anyway, each transaction chains its own event. The rate is events
÷ the time from the start until the last one is chained (the chainer drained), so it is the
ledger's throughput, not only the writers'. The baseline is one `UPDATE ... WHERE id = $1` in
autocommit per operation, on its own psycopg connection per thread, at the same concurrency.
Goal: chained/s ÷ UPDATE commits/s ≥ 0.5 at 8 writers on PostgreSQL. Afterwards each ledger
is verified (`approvals.ledger.verify`) and the events found are compared with the events
written: none lost, none twice, none left unchained.

    .venv/bin/python bench/audit_appends.py [--events 2000] [--writers 1,8]

PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local
`postgres` superuser); it is skipped with a message if unreachable.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from approvals import audit
from approvals.audit import AFTER_COMMIT, AuditEntry
from approvals.chainer import Chainer
from approvals.ledger import verify
from bench.databases import postgres_database, sqlite_database
from core.canonical import params_hash
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import AuditEvent

GOAL_RATIO = 0.5


@dataclass(frozen=True)
class Result:
    backend: str
    writers: int
    events: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    def line(self) -> str:
        return (
            f"{self.backend:<8} writers={self.writers:<3} {self.rate:8.0f} appends/s   "
            f"p50 {self.percentile(0.50):7.2f} ms   p99 {self.percentile(0.99):7.2f} ms   "
            f"({self.events} events chained in {self.seconds:.2f} s; commit latencies)"
        )


def raw_updates(url: str, writers: int, count: int) -> float:
    """UPDATE commits per second: `writers` threads, each on its own autocommit connection."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_rows")
        conn.execute("CREATE TABLE bench_rows (id integer PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO bench_rows SELECT n, 0 FROM generate_series(0, %s) n", (count,))
    start = threading.Barrier(writers + 1)

    def update(rows: range) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            start.wait()
            for row in rows:
                conn.execute("UPDATE bench_rows SET n = n + 1 WHERE id = %s", (row,))

    threads = [threading.Thread(target=update, args=(range(index, count, writers),)) for index in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return count / (time.perf_counter() - began)


def run(url: str, backend: str, writers: int, events: int) -> Result:
    engine = make_engine(url, pool_size=writers + 1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    chainer = None
    if backend == "postgres":  # as `serve` does; on SQLite each transaction chains its own events
        chainer = Chainer(sessions)
        sessions.configure(info={AFTER_COMMIT: chainer.poke})
        chainer.start()
    start = threading.Barrier(writers + 1)
    latencies: list[list[float]] = [[] for _ in range(writers)]
    errors: list[BaseException] = []

    def write(writer: int, count: int) -> None:
        try:
            start.wait()
            for number in range(count):
                params = {"order_id": f"{writer}-{number}", "amount_cents": 500}
                began = time.perf_counter()
                with sessions.begin() as session:
                    audit.record(
                        session,
                        AuditEntry(
                            kind="action.approved",
                            actor="U0BENCH",
                            at=datetime.now(UTC),
                            action_public_id=f"act_{writers:02d}{writer:02d}{number:06d}",
                            task_type="refund",
                            params_hash=params_hash(params),
                            from_state="pending",
                            to_state="approved",
                            data=params,
                        ),
                    )
                latencies[writer].append((time.perf_counter() - began) * 1000)
        except BaseException as exc:
            errors.append(exc)

    shares = [events // writers + (1 if index < events % writers else 0) for index in range(writers)]
    threads = [threading.Thread(target=write, args=(index, share)) for index, share in enumerate(shares)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if chainer is not None:
        chainer.close()  # returns once everything committed is chained
    seconds = time.perf_counter() - began
    engine.dispose()
    if errors:
        raise errors[0]
    return Result(backend, writers, events, seconds, [ms for per_writer in latencies for ms in per_writer])


def check(url: str, backend: str, written: int) -> str:
    """The ledger verifies, and holds each event written exactly once (each has its own action id)."""
    engine = make_engine(url)
    try:
        began = time.perf_counter()
        with make_sessionmaker(engine)() as session:
            report = verify(session)
            seconds = time.perf_counter() - began
            found, distinct = session.execute(
                select(func.count(), func.count(func.distinct(AuditEvent.action_public_id)))
            ).one()
    finally:
        engine.dispose()
    lost, duplicate = written - distinct, found - distinct
    return (
        f"verify {backend:<8} {report.summary()}   ({report.events / seconds:.0f} events/s); "
        f"{written} written, {found} found: lost {lost}, duplicate {duplicate}, unchained {report.unchained}"
    )


def bench_backend(url: str, backend: str, writer_counts: list[int], events: int) -> list[Result]:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    results = []
    for writers in writer_counts:
        result = run(url, backend, writers, events)
        print(result.line(), flush=True)
        results.append(result)
    return results


def summary(results: list[Result], raw: dict[int, float]) -> str:
    parts = [
        f"postgres {writers}w {result.rate:.0f} chained/s ÷ {raw[writers]:.0f} UPDATEs/s = "
        f"{result.rate / raw[writers]:.2f} {'PASS' if result.rate / raw[writers] >= GOAL_RATIO else 'MISS'}"
        for result in results
        if result.backend == "postgres" and (writers := result.writers) in raw
    ]
    for backend in dict.fromkeys(result.backend for result in results):
        mine = [result for result in results if result.backend == backend]
        base, best = mine[0], max(mine, key=lambda result: result.rate)
        ratios = ", ".join(f"{result.writers}w x{result.rate / base.rate:.2f}" for result in mine[1:])
        parts.append(
            f"{backend} peak {best.rate:.0f}/s at {best.writers} writers"
            + (f" (vs {base.writers}w: {ratios})" if ratios else "")
        )
    sqlite = [result for result in results if result.backend == "sqlite"]
    postgres = [result for result in results if result.backend == "postgres"]
    if sqlite and postgres:
        best_ratio = max(r.rate for r in postgres) / max(r.rate for r in sqlite)
        parts.append(f"postgres/sqlite peak x{best_ratio:.2f}")
    return "summary: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000, help="events per configuration (default 2000)")
    parser.add_argument("--writers", default="1,8", help="comma-separated writer counts (default 1,8)")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    writer_counts = [int(part) for part in args.writers.split(",")]
    began = time.perf_counter()
    results: list[Result] = []
    with ExitStack() as stack:
        databases = {"sqlite": stack.enter_context(sqlite_database())}
        if not args.skip_postgres:
            pg_url = stack.enter_context(postgres_database("appends"))
            if pg_url is not None:
                databases["postgres"] = pg_url
        raw: dict[int, float] = {}
        for backend, url in databases.items():
            results += bench_backend(url, backend, writer_counts, args.events)
            if backend == "postgres":
                for writers in writer_counts:  # the same server, in the same run, right after
                    raw[writers] = raw_updates(url, writers, args.events)
                    print(f"UPDATE   writers={writers:<3} {raw[writers]:8.0f} commits/s", flush=True)
        print(summary(results, raw) + f" (goal ≥ {GOAL_RATIO} at 8 writers)", flush=True)
        for backend, url in databases.items():
            print(check(url, backend, args.events * len(writer_counts)), flush=True)
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
