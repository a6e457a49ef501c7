"""Audit appends per second, on SQLite and PostgreSQL, with 1, 4 and 16 concurrent writers.

Each writer commits transactions that record one audit event each; every append reads and
extends the chain head under the ledger's lock (`BEGIN IMMEDIATE` on SQLite, an advisory
lock on PostgreSQL), so appends are serialized and more writers mostly add queueing.
Prints one line per configuration, a summary with ratios, then verifies each ledger
(`approvals.ledger.verify`) and prints its result.

    .venv/bin/python bench/audit_appends.py [--events 2000] [--writers 1,4,16]

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

from approvals import audit
from approvals.audit import AuditEntry
from approvals.ledger import verify
from bench.databases import postgres_database, sqlite_database
from core.canonical import params_hash
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade


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
            f"({self.events} events in {self.seconds:.2f} s)"
        )


def run(url: str, backend: str, writers: int, events: int) -> Result:
    engine = make_engine(url, pool_size=writers, max_overflow=0)
    sessions = make_sessionmaker(engine)
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
                            action_public_id=f"act_{writer:02d}{number:06d}",
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
    seconds = time.perf_counter() - began
    engine.dispose()
    if errors:
        raise errors[0]
    return Result(backend, writers, events, seconds, [ms for per_writer in latencies for ms in per_writer])


def check(url: str, backend: str) -> str:
    engine = make_engine(url)
    try:
        began = time.perf_counter()
        with make_sessionmaker(engine)() as session:
            report = verify(session)
        seconds = time.perf_counter() - began
    finally:
        engine.dispose()
    return f"verify {backend:<8} {report.summary()}   ({report.events / seconds:.0f} events/s)"


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


def summary(results: list[Result]) -> str:
    parts = []
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
    parser.add_argument("--writers", default="1,4,16", help="comma-separated writer counts (default 1,4,16)")
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
        for backend, url in databases.items():
            results += bench_backend(url, backend, writer_counts, args.events)
        print(summary(results), flush=True)
        for backend, url in databases.items():
            print(check(url, backend), flush=True)
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
