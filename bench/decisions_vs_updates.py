"""Durable decisions per second beside raw single-row UPDATE commits per second, on one PostgreSQL.

A decision is the product's real approve path, as a click takes it: `approvals.decisions.decide`
around `Decisions.approve` on a pending action (quorum 1) — on PostgreSQL one statement that
locks, checks, writes the decision row, the state change, its (unchained) audit events and its
outbox row, and one commit; the sessions are set up as in `serve`, so a `Chainer` thread links
the events into the hash chain in batches (its lock time per batch is printed).
The baseline is the least a durable write can cost: one `UPDATE ... WHERE id = $1` in autocommit
on its own psycopg connection, i.e. one statement and one commit, each on a different row.
Beside them, for where the time goes: the same UPDATE through the product's session factory
(`session`: pool checkout, BEGIN, UPDATE, COMMIT), and the SQL statements each decision sends.

Both run at the same concurrency (threads), each thread with its own connection, in alternating
rounds in one run so that other work on the machine hits both alike; rate = operations / time
summed over the rounds. Pending actions are made up front through `approvals.gate.submit`.
Goal: decisions/s ÷ UPDATEs/s ≥ 0.5 at each concurrency; CPU per decision is this process's
(decisions and chainer). Above one thread, every thread also clicks the same action at once
(20 actions): one click wins, the rest are refused. Afterwards every action decided is
checked: approved once, one approve decision, one `action.decided` outbox row, every lost
click's refusal audited, ledger intact.

    .venv/bin/python bench/decisions_vs_updates.py [--ops 600] [--threads 1,4,16] [--rounds 3]

A temporary database is created and dropped on the server named by COUNTERSIGN_BENCH_POSTGRES_URL
(else COUNTERSIGN_TEST_POSTGRES_URL, else the local `postgres` superuser); skipped if unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import tool
from agent.tasks import move, submit_task
from agent.tools import load_tool_modules
from approvals import gate
from approvals.audit import AFTER_COMMIT
from approvals.chainer import Chainer
from approvals.decisions import Decisions, decide
from approvals.errors import DecisionRefused
from approvals.ledger import verify
from bench.databases import postgres_database
from core import metrics
from core.clock import SystemClock
from core.config import Config
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Action, AuditEvent, Decision, OutboxMessage, Task
from core.states import TaskState

GOAL_RATIO = 0.5
REQUESTER, APPROVERS = "U0REQUESTER", ("U0ALICE", "U0BOB")
CONFIG = {
    "slack": {"approvals_channel": "C0APPROVALS"},
    "tools": {"modules": [__name__]},  # `bench_refund` below
    "task_types": {"refund": {"tools": ["bench_refund"], "autonomy": "hitl", "approvers": APPROVERS, "quorum": 1}},
}
SAME_ACTION = 20  # actions clicked by every thread at once, per concurrency above 1
WARMUP = 2  # operations per thread and kind before each concurrency is measured (connections, caches)


@tool(risk="high")
def bench_refund(order_id: str, amount_cents: int) -> dict[str, str]:
    """Never runs here (no executor): it only gives the pending actions a tool."""
    return {"order_id": order_id}


class NoGroups:
    """The approvers are listed by user id, so no group is ever looked up."""

    def members(self, handle: str) -> frozenset[str]:
        return frozenset()


@dataclass
class Tally:
    kind: str
    threads: int
    ops: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statements: int = 0  # SQL statements sent through SQLAlchemy (decisions only)
    cpu_s: float = 0.0  # this process's CPU time while they ran (decisions only)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms) or [float("nan")]
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    def line(self) -> str:
        return (
            f"{self.kind:<9} threads={self.threads:<3} {self.rate:8.0f}/s   p50 {self.percentile(0.5):7.2f} ms   "
            f"p99 {self.percentile(0.99):7.2f} ms   ({self.ops} in {self.seconds:.2f} s"
            + (f"; {self.statements / self.ops:.1f} SQL statements and " if self.statements else "")
            + (f"{self.cpu_s / self.ops * 1000:.2f} ms of CPU each)" if self.cpu_s else ")")
        )


def run_threads(work: list[list[int]], setup: Callable[[], object], one: Callable[[object, int], None]) -> Tally:
    """Each thread takes its list of items; `setup()` gives it its own handle (e.g. a connection)
    before the start barrier. Returns the wall time from the barrier to the last thread's end."""
    start = threading.Barrier(len(work) + 1)
    latencies: list[list[float]] = [[] for _ in work]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            handle = setup()
        except BaseException as exc:
            errors.append(exc)
            start.abort()
            return
        try:
            start.wait()
            for item in work[index]:
                began = time.perf_counter()
                one(handle, item)
                latencies[index].append((time.perf_counter() - began) * 1000)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close = getattr(handle, "close", None)
            if close is not None:
                close()

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(work))]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if errors:
        raise errors[0]
    tally = Tally("", len(work), sum(len(items) for items in work), seconds)
    tally.latencies_ms = [ms for per_thread in latencies for ms in per_thread]
    return tally


def split(items: list[int], threads: int) -> list[list[int]]:
    return [items[index::threads] for index in range(threads)]


def make_pending(url: str, count: int) -> list[tuple[str, str]]:
    """`count` pending actions on one waiting task, through the gate: [(public id, params hash)]."""
    engine = make_engine(url)
    config, now = Config.model_validate(CONFIG), SystemClock().now()
    registry, task_type = load_tool_modules(config.tools.modules), config.task_types["refund"]
    made: list[tuple[str, str]] = []
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        task = submit_task(session, config, "refund", "bench refunds", now=now, requester=REQUESTER)
        move(session, task, TaskState.WAITING, actor="system", now=now)  # as after a turn that drafted actions
        task_id = task.id
    for first in range(0, count, 500):  # a few transactions, so no one commit holds thousands of audit events
        with sessions.begin() as session:
            task = session.get_one(Task, task_id)
            for number in range(first, min(count, first + 500)):
                draft = gate.Draft("bench_refund", {"order_id": str(number), "amount_cents": 500}, "-", 0.9)
                action = gate.submit(session, task, draft, task_type=task_type, catalog=registry, now=now)
                assert action.state == "pending", f"the gate made {action.public_id} {action.state}"
                made.append((action.public_id, action.params_hash))
    engine.dispose()
    return made


class Bench:
    def __init__(self, url: str, actions: list[tuple[str, str]]) -> None:
        self.url, self.actions = url, actions
        libpq = make_url(url).set(drivername="postgresql")
        self.conninfo = libpq.render_as_string(hide_password=False)
        self.clock = SystemClock()
        registry = load_tool_modules(Config.model_validate(CONFIG).tools.modules)
        self.decisions = Decisions(NoGroups(), registry, self.clock)
        self.next_action = 0
        self.next_row = 0
        self.decided: list[str] = []
        self.refusals = 0  # expected ones: the same-action clicks that lost

    def take_actions(self, count: int) -> list[int]:
        """The indexes of `count` fresh pending actions."""
        if self.next_action + count > len(self.actions):
            raise SystemExit(f"ran out of pending actions ({len(self.actions)} made)")
        self.next_action += count
        return list(range(self.next_action - count, self.next_action))

    def take_rows(self, count: int) -> list[int]:
        """The ids of `count` raw rows not updated yet (one per UPDATE, as one action per decision)."""
        self.next_row += count
        return list(range(self.next_row - count, self.next_row))

    def updates(self, rows: list[int], threads: int) -> Tally:
        def connect() -> psycopg.Connection:
            return psycopg.connect(self.conninfo, autocommit=True)

        def one(conn: object, row: int) -> None:
            assert isinstance(conn, psycopg.Connection)
            cursor = conn.execute("UPDATE bench_rows SET n = n + 1, at = now() WHERE id = %s", (row,))
            assert cursor.rowcount == 1

        return run_threads(split(rows, threads), connect, one)

    def session_updates(self, rows: list[int], threads: int, sessions: sessionmaker[Session]) -> Tally:
        """The same UPDATE through the product's session factory: pool checkout, BEGIN, UPDATE, COMMIT."""

        def one(_: object, row: int) -> None:
            with sessions.begin() as session:
                result = session.execute(
                    text("UPDATE bench_rows SET n = n + 1, at = now() WHERE id = :id"), {"id": row}
                )
                assert result.rowcount == 1  # type: ignore[attr-defined]

        return run_threads(split(rows, threads), lambda: None, one)

    def approvals(self, indexes: list[int], threads: int, sessions: sessionmaker[Session]) -> Tally:
        def one(handle: object, index: int) -> None:
            public_id, seen_hash = self.actions[index]
            actor = APPROVERS[index % 2]
            outcome = decide(
                sessions,
                self.clock,
                lambda session: self.decisions.approve(session, public_id, actor, seen_hash, team_id="T0BENCH"),
            )
            assert outcome.state == "approved", f"{public_id} is {outcome.state}"

        statements = [0]

        def count(*_: object) -> None:
            statements[0] += 1  # under the GIL; an approximate count is enough

        engine = sessions.kw["bind"]
        event.listen(engine, "before_cursor_execute", count)
        cpu = time.process_time()
        try:
            tally = run_threads(split(indexes, threads), lambda: None, one)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        tally.cpu_s = time.process_time() - cpu  # this process: the decisions and the chainer thread
        tally.statements = statements[0]
        self.decided += [self.actions[index][0] for index in indexes]
        return tally

    def same_action(self, indexes: list[int], threads: int, sessions: sessionmaker[Session]) -> tuple[int, int]:
        """Every thread clicks Approve on the same action at once, action after action: (approved
        by one click, refusals). Any other result is counted as a duplicate by `check`."""
        gate_ = threading.Barrier(threads)
        won, refused = [0], [0]

        def one(_: object, index: int) -> None:
            public_id, seen_hash = self.actions[index]
            gate_.wait()
            try:
                decide(sessions, self.clock, lambda s: self.decisions.approve(s, public_id, APPROVERS[0], seen_hash))
                won[0] += 1
            except DecisionRefused:
                refused[0] += 1

        run_threads([list(indexes) for _ in range(threads)], lambda: None, one)
        self.decided += [self.actions[index][0] for index in indexes]
        self.refusals += refused[0]
        return won[0], refused[0]

    def level(self, threads: int, ops: int, rounds: int) -> tuple[Tally, Tally, Tally]:
        engine = make_engine(self.url, pool_size=threads + 1, max_overflow=0)
        sessions = make_sessionmaker(engine)
        # As in `serve`: commits leave their audit events to the process's chainer thread.
        chainer = Chainer(sessions)
        sessions.configure(info={AFTER_COMMIT: chainer.poke})
        chainer.start()
        raw, orm, decisions = Tally("UPDATE", threads), Tally("session", threads), Tally("decision", threads)
        try:
            self.updates(self.take_rows(WARMUP * threads), threads)
            self.session_updates(self.take_rows(WARMUP * threads), threads, sessions)
            self.approvals(self.take_actions(WARMUP * threads), threads, sessions)
            for share in (ops // rounds + (1 if index < ops % rounds else 0) for index in range(rounds)):
                for total, part in (
                    (raw, self.updates(self.take_rows(share), threads)),
                    (orm, self.session_updates(self.take_rows(share), threads, sessions)),
                    (decisions, self.approvals(self.take_actions(share), threads, sessions)),
                ):
                    total.ops += part.ops
                    total.seconds += part.seconds
                    total.latencies_ms += part.latencies_ms
                    total.statements += part.statements
                    total.cpu_s += part.cpu_s
            if threads > 1:
                won, refused = self.same_action(self.take_actions(SAME_ACTION), threads, sessions)
                print(f"same action threads={threads:<3} {SAME_ACTION} actions, {threads} clicks each at once: "
                      f"{won} approved, {refused} refused (already decided)")  # fmt: skip
        finally:
            chainer.close()
            engine.dispose()
        return raw, orm, decisions


def check(url: str, decided: list[str], updates: int, expected_refusals: int) -> str:
    """Each decided action approved on exactly one approve decision, with one `action.decided`
    outbox row and its decision and transition audit events; the ledger verifies; every raw UPDATE landed."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            ids = select(Action.id).where(Action.public_id.in_(decided))
            approved = session.scalar(
                select(func.count()).where(Action.public_id.in_(decided), Action.state == "approved")
            )
            per_action = session.execute(
                select(Decision.action_id, func.count()).where(Decision.action_id.in_(ids)).group_by(Decision.action_id)
            ).all()
            outbox = session.execute(
                select(OutboxMessage.ordering_key, func.count())
                .where(OutboxMessage.kind == "action.decided", OutboxMessage.ordering_key.in_(decided))
                .group_by(OutboxMessage.ordering_key)
            ).all()
            events = dict(
                session.execute(
                    select(AuditEvent.kind, func.count())
                    .where(
                        AuditEvent.action_public_id.in_(decided),
                        AuditEvent.kind.in_(("decision.approve", "action.approved")),
                    )
                    .group_by(AuditEvent.kind)
                ).all()
            )
            refused = session.scalar(select(func.count()).where(AuditEvent.kind == "decision.refused"))
            report = verify(session)
            landed = session.scalar(text("SELECT coalesce(sum(n), 0) FROM bench_rows"))
    finally:
        engine.dispose()
    n = len(decided)
    one_decision = sum(1 for _, count in per_action if count == 1)
    one_outbox = sum(1 for _, count in outbox if count == 1)
    lost = n - min(approved or 0, one_decision, one_outbox)
    duplicate = sum(1 for _, count in per_action if count > 1) + sum(1 for _, count in outbox if count > 1)
    good = (
        not lost
        and not duplicate
        and refused == expected_refusals
        and events.get("decision.approve") == n
        and events.get("action.approved") == n
        and report.ok
        and landed == updates
    )
    return (
        f"verify: {n} decisions: {approved} approved, {one_decision} with one decision, {one_outbox} with one "
        f"action.decided outbox row, audit {events}, {refused} refusals audited (of {expected_refusals} lost "
        f"clicks); lost {lost}, duplicate {duplicate}; "
        f"ledger {report.summary()}; raw UPDATEs landed {landed}/{updates}: {'PASS' if good else 'FAIL'}"
    )


def _chainer() -> tuple[float, float, float]:
    """(batches, seconds holding the lock, events) of the chainer in this process, from its metrics."""
    samples = {
        sample.name: sample.value
        for metric in (metrics.AUDIT_CHAIN_BATCH, metrics.AUDIT_CHAINED)
        for family in metric.collect()
        for sample in family.samples
    }
    batch = "countersign_audit_chain_batch_seconds"
    return samples[f"{batch}_count"], samples[f"{batch}_sum"], samples["countersign_audit_chained_total"]


def server_settings(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "commit_delay")
            return ", ".join(f"{name}={conn.exec_driver_sql(f'SHOW {name}').scalar()}" for name in names)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=600, help="measured operations per kind and concurrency (600)")
    parser.add_argument("--threads", default="1,4,16", help="comma-separated concurrencies (default 1,4,16)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per concurrency (default 3)")
    args = parser.parse_args()
    levels = [int(part) for part in args.threads.split(",")]
    began = time.perf_counter()
    with postgres_database("decide") as url:
        if url is None:
            return
        engine = make_engine(url)
        upgrade(engine)
        needed = sum(args.ops + WARMUP * threads + SAME_ACTION for threads in levels)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_rows (id integer PRIMARY KEY, n bigint NOT NULL, at timestamptz)"))
            conn.execute(
                text("INSERT INTO bench_rows SELECT n, 0, now() FROM generate_series(0, :last) n"), {"last": 2 * needed}
            )
        engine.dispose()
        actions = make_pending(url, needed)
        print(
            f"postgres ({server_settings(url)}): {len(actions)} pending actions made in "
            f"{time.perf_counter() - began:.1f} s; {args.ops} ops per kind and concurrency in {args.rounds} "
            f"alternating rounds; {os.cpu_count()} CPUs",
            flush=True,
        )
        bench, results = Bench(url, actions), []
        for threads in levels:
            raw, orm, decisions = bench.level(threads, args.ops, args.rounds)
            ratio = decisions.rate / raw.rate
            print(raw.line(), orm.line(), decisions.line(), sep="\n")
            versus_session = decisions.rate / orm.rate
            print(f"ratio     threads={threads:<3} x{ratio:.2f} (decisions ÷ session UPDATEs x{versus_session:.2f})")
            results.append((threads, decisions.rate, raw.rate, ratio))
        print(
            "summary: "
            + "; ".join(
                f"{threads}t {decided:.0f} decisions/s ÷ {updated:.0f} UPDATEs/s = {ratio:.2f} "
                f"{'PASS' if ratio >= GOAL_RATIO else 'MISS'}"
                for threads, decided, updated, ratio in results
            )
            + f" (goal ≥ {GOAL_RATIO})",
            flush=True,
        )
        batches, held, chained = _chainer()
        if batches:
            print(f"chainer: {batches:.0f} batches, {chained / batches:.1f} events and "
                  f"{held / batches * 1000:.2f} ms with the chain lock each (lock to commit)")  # fmt: skip
        print(check(url, bench.decided, bench.next_row, bench.refusals), flush=True)
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
