"""Escalation timers on PostgreSQL: sweep cost against pending rows, and lateness under a 1 s tick.

1. Sweep cost: N pending timers (1k, 100k, 1M; due in a day or more) plus 100 due now. The
   claim SELECT, captured from a real `Sweeper.run_once`, is timed (best of 5 medians of 200 runs,
   rolled back) and EXPLAINed. Goal: 1M/1k ratio near 1 (the partial index `ix_timers_pending_due`
   starts at the earliest due row). Filler timers copy one real pending action's timer (the claim
   reads no actions).
2. Lateness: 100,000 filler timers plus `--rate` real pending actions per second (`approvals.gate`)
   whose first notify step comes due over `--seconds`; the real `Ticker` runs the `Sweeper` every
   second. Lateness = commit time of the step's outbox row - due_at. Goals: p99 <= 1.5 s, and
   every step fires exactly once.
3. Burst: `--burst` (100,000) real pending actions whose escalation step is due at once, two
   `Sweeper`s in two processes (two replicas) draining them. Time until the last fired (both
   sweepers idle); goal <= 2 min. Exactly once is counted from the rows: each action's
   `escalation.notify` outbox rows and `escalation.notified` audit events (lost: none,
   duplicated: more than one). The actions are SQL copies of one real pending action. Sweepers
   still busy after `--burst-limit` seconds are stopped: the figure is then a MISS, with the
   share fired and the time all would take at that rate.

    .venv/bin/python bench/timers.py [--max-pending 1000000] [--rate 50] [--seconds 20] [--burst 100000]

Each part creates and drops a temporary database on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else the local `postgres` superuser); skipped if unreachable.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import tool
from agent.tasks import submit_task
from agent.tools import load_tool_modules
from approvals import gate
from core.clock import SystemClock
from core.config import Config
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Action, AuditEvent, OutboxMessage, Timer
from escalations.scheduler import SWEEP_JOB, Ticker
from escalations.sweeper import Sweeper

POSTGRES_ADMIN_URL = os.environ.get(
    "COUNTERSIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SIZES = (1_000, 100_000, 1_000_000)
ROUNDS = 6  # of RUNS claims each; the first round only warms caches and the connection up
DUE_NOW, RUNS, EXPLAINS, FILLER, GOAL_P99_S, NOTIFY = 100, 200, 20, 100_000, 1.5, "escalation.notify"
BURST, SWEEPERS, GOAL_BURST_S, BURST_LIMIT_S, NOTIFIED = 100_000, 2, 120.0, 180.0, "escalation.notified"
FUTURE = "now() + interval '1 day' + n * interval '10 ms'"  # SQL: when the n-th filler timer is due
CHAIN = [{"after": "1h", "notify": ["U0ALICE", "@oncall"]}, {"after": "2h", "then": "expire"}]
REFUND = {"tools": ["bench_refund"], "approvers": ["U0ALICE"], "escalation": CHAIN}
# Copies one action's timer :count times; copy n (from 1) is due at the SQL expression {due}.
COPY_TIMER = (
    "INSERT INTO timers (kind, action_id, state, due_at, anchor, step, fence, chain, created_at, updated_at)"
    " SELECT t.kind, t.action_id, 'pending', {due}, t.anchor, 0, 0, t.chain, now(), now() FROM timers t,"
    " generate_series(1, :count) AS n WHERE t.id = (SELECT min(id) FROM timers WHERE action_id = :action)"
)
# Moves the chains of the :stream actions in time, anchor and due_at together (the first step is 1h after
# the anchor), so that the n-th (from 0) comes due at :start + n * :gap seconds.
SPREAD = (
    "UPDATE timers t SET anchor = s.due - interval '1 hour', due_at = s.due FROM (SELECT t.id, a.public_id,"
    " :start + (row_number() OVER (ORDER BY t.id) - 1) * :gap * interval '1 second' AS due FROM timers t"
    " JOIN actions a ON a.id = t.action_id WHERE t.action_id = ANY(:stream)) s WHERE t.id = s.id"
    " RETURNING s.public_id, t.due_at"
)
# Copies one action :count times, each with a new public id (burst000000001, ...), in one statement.
COPY_ACTION = (
    "INSERT INTO actions ({columns}) SELECT {values} FROM actions a, generate_series(1, :count) AS n"
    " WHERE a.id = :action"
)
# Gives each copy a copy of the first action's timer, its first step due now (already past when the sweepers start).
COPY_TIMERS = (
    "INSERT INTO timers (kind, action_id, state, due_at, anchor, step, fence, chain, created_at, updated_at)"
    " SELECT t.kind, a.id, 'pending', now(), t.anchor, 0, 0, t.chain, now(), now() FROM timers t, actions a"
    " WHERE t.id = (SELECT min(id) FROM timers WHERE action_id = :action) AND a.public_id LIKE 'burst%'"
)
CONFIG = {"slack": {"approvals_channel": "C0"}, "tools": {"modules": [__name__]}, "task_types": {"refund": REFUND}}


@tool(risk="high")
def bench_refund(order_id: str, amount_cents: int) -> dict[str, str]:
    """Never runs here: it only gives the pending actions a tool."""
    return {"order_id": order_id}


class Oncall:
    def members(self, handle: str) -> frozenset[str]:
        return frozenset({"U0ONCALL"})


@contextmanager
def postgres_database(part: str) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"cs_bench_timers_{part}_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        upgrade(engine)
        yield engine, make_sessionmaker(engine)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pending_actions(sessions: sessionmaker[Session], count: int) -> list[int]:
    """`count` real pending actions, each with the escalation timer the gate armed: [action id]."""
    config, now = Config.model_validate(CONFIG), SystemClock().now()
    registry, task_type = load_tool_modules(config.tools.modules), config.task_types["refund"]
    with sessions.begin() as session:
        task = submit_task(session, config, "refund", "bench refunds", now=now, requester="U0REQUESTER")
        drafts = [gate.Draft("bench_refund", {"order_id": str(n), "amount_cents": 500}, "-", 0.9) for n in range(count)]
        actions = [gate.submit(session, task, d, task_type=task_type, catalog=registry, now=now) for d in drafts]
        assert {action.state for action in actions} == {"pending"}, "the gate did not make them pending"
        return [action.id for action in actions]


def add_timers(engine: Engine, action_id: int, count: int, due: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(COPY_TIMER.format(due=due)), {"action": action_id, "count": count})
        conn.execute(text("ANALYZE timers"))


def claim_query(engine: Engine, sessions: sessionmaker[Session]) -> tuple[str, dict[str, Any]]:
    """The claim SELECT exactly as `Sweeper.run_once` sends it, from a run that finds nothing due (yet)."""
    seen = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    assert not Sweeper(sessions, Oncall(), SystemClock()).run_once()
    event.remove(engine, "before_cursor_execute", capture)
    return next((sql, params) for sql, params in seen if "SKIP LOCKED" in sql)


def sweep_cost(max_pending: int) -> None:
    with postgres_database("sweep") as (engine, sessions):
        [action] = pending_actions(sessions, 1)
        sql, captured = claim_query(engine, sessions)
        add_timers(engine, action, DUE_NOW, "now() - n * interval '1 ms'")
        pending, wall_us, server_ms, scans = DUE_NOW + 1, {}, {}, []
        for size in [size for size in SIZES if size <= max_pending] or [SIZES[0]]:
            add_timers(engine, action, size - pending, FUTURE)
            pending = size
            params = {key: datetime.now(UTC) if isinstance(v, datetime) else v for key, v in captured.items()}
            with engine.connect() as conn, conn.begin() as tx:
                runs = []
                for _ in range(ROUNDS * RUNS):
                    began = time.perf_counter()
                    assert conn.exec_driver_sql(sql, params).first() is not None
                    runs.append((time.perf_counter() - began) * 1e6)
                explain = "EXPLAIN (ANALYZE, BUFFERS) " + sql
                plans = [[row[0] for row in conn.exec_driver_sql(explain, params)] for _ in range(EXPLAINS)]
                tx.rollback()
            # Best round's median, as timeit does: the machine is shared, so noise only ever adds time.
            wall_us[size] = min(statistics.median(runs[i : i + RUNS]) for i in range(RUNS, len(runs), RUNS))
            server_ms[size] = statistics.median(float(p[-1].split()[2]) for p in plans)
            scan = next(line.strip(" ->").split("  (")[0] for line in plans[-1] if "Scan" in line)
            buffers = next(line.strip() for line in plans[-1] if "Buffers" in line)
            scans.append(scan)
            print(
                f"sweep {size:>9,} pending: {wall_us[size]:4.0f} µs/query, server {server_ms[size]:.3f} ms, {buffers}"
            )
        small, large, index = min(wall_us), max(wall_us), all("ix_timers_pending_due" in scan for scan in scans)
        print(
            f"sweep ratio {large:,}/{small:,}: x{wall_us[large] / wall_us[small]:.2f} per query, "
            f"x{server_ms[large] / server_ms[small]:.2f} server time; partial index: {'yes' if index else 'NO'} "
            f"({scans[-1]})"
        )


class Observer:
    """When each notify outbox row committed (by action public id), and where the sweep's time goes."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session], tick_s: float) -> None:
        self.committed: dict[str, datetime] = {}
        self.sweeps: list[float] = []
        self.tick_s, self.steps, self.sql_s, self.statements = tick_s, 0, 0.0, 0
        self._lock = threading.Lock()
        event.listen(sessions, "after_flush", self._flushed)
        event.listen(sessions, "after_commit", self._committed)
        event.listen(engine, "before_cursor_execute", lambda conn, *_: conn.info.update(began=time.perf_counter()))
        event.listen(engine, "after_cursor_execute", self._executed)

    def _flushed(self, session: Session, _context: Any) -> None:
        keys = [row.ordering_key for row in session.new if isinstance(row, OutboxMessage) and row.kind == NOTIFY]
        session.info.setdefault("bench_notified", []).extend(keys)

    def _committed(self, session: Session) -> None:
        now = datetime.now(UTC)
        with self._lock:
            for key in session.info.pop("bench_notified", []):
                self.committed.setdefault(key, now)

    def _executed(self, conn: Any, *_: Any) -> None:
        with self._lock:
            self.statements += 1
            self.sql_s += time.perf_counter() - conn.info.pop("began")

    def timed(self, sweep: Callable[[], int]) -> Callable[[], None]:
        def run() -> None:
            began = time.perf_counter()
            steps = sweep()
            with self._lock:
                self.steps += steps
                self.sweeps.append(time.perf_counter() - began)

        return run

    def summary(self) -> str:
        if not self.steps:
            return "no steps taken"
        step_ms, sql_ms = sum(self.sweeps) / self.steps * 1000, self.sql_s / self.steps * 1000
        over = sum(1 for seconds in self.sweeps if seconds > self.tick_s)
        return (
            f"per step {step_ms:.2f} ms in the sweep job ({sql_ms:.2f} ms waiting on {self.statements / self.steps:.1f}"
            f" SQL statements; the rest ORM, commit, Python) -> at most {1000 / step_ms:.0f} steps/s per process; "
            f"{len(self.sweeps)} sweeps, longest {max(self.sweeps):.2f} s, {over} longer than the tick"
        )


def lateness(rate: int, seconds: int, tick_s: float) -> None:
    count = rate * seconds
    with postgres_database("lateness") as (engine, sessions):
        filler, *stream = pending_actions(sessions, 1 + count)
        add_timers(engine, filler, FILLER, FUTURE)
        observer = Observer(engine, sessions, tick_s)
        sweep = observer.timed(Sweeper(sessions, Oncall(), SystemClock()).run_until_idle)
        ticker = Ticker({SWEEP_JOB: (sweep, tick_s)}, SystemClock())
        start = datetime.now(UTC) + timedelta(seconds=2)
        with engine.begin() as conn:
            spread = conn.execute(text(SPREAD), {"start": start, "gap": 1 / rate, "stream": stream})
            due: dict[str, datetime] = {key: at for key, at in spread}
        ticker.start()
        deadline = max(due.values()) + timedelta(seconds=15)
        while datetime.now(UTC) < deadline and len(observer.committed) < count:
            time.sleep(0.25)
        ticker.shutdown()
        summary = observer.summary()
        with engine.connect() as conn:
            query = "SELECT ordering_key, count(*) FROM outbox WHERE kind = :kind GROUP BY ordering_key"
            rows: dict[str, int] = {key: n for key, n in conn.execute(text(query), {"kind": NOTIFY})}
    late = [(observer.committed[key] - due[key]).total_seconds() for key in due if key in observer.committed]
    once, more = sum(rows.get(key) == 1 for key in due), sum(rows.get(key, 0) > 1 for key in due)
    print(
        f"lateness: {count} steps due over {seconds} s at {rate}/s, {FILLER:,} other pending timers, tick {tick_s:g} s"
    )
    if len(late) > 1:
        p50, p99 = statistics.median(late), statistics.quantiles(late, n=100, method="inclusive")[98]
        print(f"lateness (commit - due): p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(late):.3f} s")
        print(f"goal p99 <= {GOAL_P99_S} s with a {tick_s:g} s tick: {'PASS' if p99 <= GOAL_P99_S else 'MISS'}")
        print(summary)
    print(
        f"exactly once: {once}/{count} actions have one {NOTIFY} row ({count - once - more} none, {more} several; "
        f"{len(set(rows) - set(due))} other actions notified)"
    )


def burst_actions(engine: Engine, action_id: int, count: int) -> None:
    """`count` copies of a real pending action, each with its escalation timer due now."""
    columns = [column.name for column in Action.__table__.columns if column.name != "id"]
    values = ["'burst' || lpad(n::text, 9, '0')" if name == "public_id" else f'a."{name}"' for name in columns]
    copy = COPY_ACTION.format(columns=", ".join(f'"{name}"' for name in columns), values=", ".join(values))
    with engine.begin() as conn:
        conn.execute(text(copy), {"action": action_id, "count": count})
        conn.execute(text(COPY_TIMERS), {"action": action_id})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE actions, timers"))


def sweeper_process(url: str, ready: Any, start: Any, stop: Any, results: Any) -> None:
    """One replica's sweeper: take due steps until none is left (or `stop`), then say how many
    and when it went idle."""
    engine = make_engine(url)
    sweeper = Sweeper(make_sessionmaker(engine), Oncall(), SystemClock())
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # connected before the clock starts
    ready.release()
    start.wait()
    steps = 0
    while not stop.is_set():
        taken = sweeper.run_until_idle(max_steps=100)
        steps += taken
        if not taken:
            break
    results.put((steps, time.time()))
    engine.dispose()


def collect(results: Any, workers: list[Any], stop: Any, deadline: float) -> tuple[int, float]:
    """The next sweeper's (steps, idle at); past `deadline` the sweepers are told to stop. Fails,
    rather than waiting for ever, if a sweeper died."""
    while True:
        try:
            steps, at = results.get(timeout=1.0)
            return int(steps), float(at)
        except queue.Empty:
            if time.time() > deadline:
                stop.set()
            if any(worker.exitcode not in (None, 0) for worker in workers):
                raise SystemExit(f"a sweeper died: exit codes {[worker.exitcode for worker in workers]}") from None


def burst(count: int, limit_s: float) -> None:
    with postgres_database("burst") as (engine, sessions):
        [action] = pending_actions(sessions, 1)
        built = time.perf_counter()
        burst_actions(engine, action, count)
        setup_s = time.perf_counter() - built
        context = multiprocessing.get_context("spawn")
        ready, start, stop, results = context.Semaphore(0), context.Event(), context.Event(), context.Queue()
        url = engine.url.render_as_string(hide_password=False)
        args = (url, ready, start, stop, results)
        workers = [context.Process(target=sweeper_process, args=args) for _ in range(SWEEPERS)]
        for worker in workers:
            worker.start()
        for _ in workers:
            ready.acquire()
        began = time.time()
        start.set()
        done = [collect(results, workers, stop, began + limit_s) for _ in workers]
        for worker in workers:
            worker.join()
        elapsed = max(at for _, at in done) - began
        with engine.connect() as conn:
            outbox = select(OutboxMessage.ordering_key, func.count()).where(OutboxMessage.kind == NOTIFY)
            sent: dict[str, int] = {key: n for key, n in conn.execute(outbox.group_by(OutboxMessage.ordering_key))}
            about = AuditEvent.action_public_id
            audit = select(about, func.count()).where(AuditEvent.kind == NOTIFIED).group_by(about)
            audited: dict[str, int] = {key: n for key, n in conn.execute(audit) if key is not None}
            steps = select(Action.public_id, Timer.step).join(Timer, Timer.action_id == Action.id)
            moved: dict[str, int] = {key: n for key, n in conn.execute(steps.where(Action.public_id.like("burst%")))}
    fired = {key for key, step in moved.items() if step > 0}  # the timer says its step was taken
    once = sum(1 for key in moved if sent.get(key) == 1 and audited.get(key) == 1)
    lost = sum(1 for key in fired if not sent.get(key) or not audited.get(key))
    duplicated = sum(1 for key in moved if sent.get(key, 0) > 1 or audited.get(key, 0) > 1)
    stray = len((set(sent) | set(audited)) - fired)
    shares = " + ".join(f"{steps:,}" for steps, _ in done)
    print(f"burst: {count:,} steps due at once ({setup_s:.1f} s to set up), {SWEEPERS} sweepers (processes)")
    if len(fired) == count:
        verdict = "PASS" if elapsed <= GOAL_BURST_S else "MISS"
        print(
            f"burst drained: last fired after {elapsed:.1f} s ({count / elapsed:,.0f} steps/s; steps per sweeper "
            f"{shares}); goal <= {GOAL_BURST_S:g} s: {verdict}"
        )
    else:
        rate = len(fired) / elapsed
        print(
            f"burst NOT drained: {len(fired):,} of {count:,} fired in {elapsed:.1f} s ({rate:,.0f} steps/s, so about "
            f"{count / max(rate, 1e-9):,.0f} s for all; steps per sweeper {shares}); goal <= {GOAL_BURST_S:g} s: MISS"
        )
    print(
        f"burst exactly once: {once}/{count} actions have one {NOTIFY} row and one {NOTIFIED} event "
        f"(lost {lost}, duplicated {duplicated}; {count - len(fired)} not fired; {stray} other actions notified)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--max-pending", type=int, default=SIZES[-1], help="cap on part 1's sizes (default 1000000)")
    parser.add_argument("--rate", type=int, default=50, help="steps coming due per second in part 2 (default 50)")
    parser.add_argument("--seconds", type=int, default=20, help="length of part 2's due window (default 20)")
    parser.add_argument("--tick", type=float, default=1.0, help="sweep interval in seconds (default 1)")
    parser.add_argument(
        "--burst", type=int, default=BURST, help="steps due at once in part 3 (default 100000; 0: skip)"
    )
    parser.add_argument(
        "--burst-limit", type=float, default=BURST_LIMIT_S, help="seconds part 3's sweepers may take (default 180)"
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each line as it is measured
    # A sweep still draining when the next tick comes makes APScheduler skip that tick (max_instances=1): expected.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    try:
        create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3}).connect().close()
    except Exception as exc:
        print(f"postgres skipped: unreachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__})")
        return
    began = time.perf_counter()
    sweep_cost(args.max_pending)
    lateness(args.rate, args.seconds, args.tick)
    if args.burst > 0:
        burst(args.burst, args.burst_limit)
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
