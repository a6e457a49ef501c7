"""Decisions per second through a whole `countersign serve --workers N` on PostgreSQL, beside raw
single-row UPDATE commits per second, for each N asked (default 1 and 2).

For each N: a fresh database with `--actions` pending actions (through the gate, on one task),
a real `countersign serve --workers N` (scripted model, Slack emulator in this process,
background loops on: the executor runs each approved refund, the outbox updates its card), and
`--clients` closed-loop clients, each with its own keep-alive connection, each clicking a signed
Approve on its own pending actions one after another. In alternating rounds in the same run,
the same number of clients commit raw `UPDATE … WHERE id = $1` statements (autocommit, one row
each, their own psycopg connections) and send the same signed clicks to a bare Bolt app with a
no-op listener on the same server and worker count (`bench/bare_bolt.py`), so that whatever
else runs on the machine hits all three alike; before each round, serve's background work from
the last one is let finish. Goal: decisions/s ≥ 0.5 of the lower of the two baselines. Rates
are operations over the time summed across rounds; ack latencies are each click's
from its first byte sent to its answer read; the CPU the serve processes (master and workers)
spent during the click rounds says how many cores they kept busy and what a decision cost.
Afterwards every clicked action is checked: one approve decision each, none left pending.

    .venv/bin/python bench/serve_workers.py [--workers 1,2] [--clients 8] [--actions 600] [--rounds 3]

Lines `summary workers=N: …` carry the figures. A temporary database per N is created and
dropped on the server named by COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL,
else the local `postgres` superuser); the script says so and stops if it is unreachable.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.tasks import move, submit_task
from agent.tools import load_tool_modules
from approvals import gate
from bench.databases import postgres_database
from bench.idle_cpu import cpu_seconds
from bench.rss import CHANNEL, COUNTERSIGN, ROOT, SCRIPT, SECRET, TOKEN, click_body, free_port, tree, wait_healthy
from bot.sandbox import SlackEmulator
from bot.sandbox.signed import FORM, signed
from core.clock import SystemClock
from core.config import Config
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Action, Decision, Task
from core.states import TaskState

REQUESTER, APPROVERS = "U0REQUESTER", ["U0ALICE", "U0BOB"]
CONFIG = {
    "slack": {"approvals_channel": CHANNEL},
    # The tests' shop tools: serve imports them, and they import nothing of this script.
    "tools": {"modules": ["tests.approvals.shop_tools"]},
    "task_types": {
        "refund": {"tools": ["issue_refund"], "autonomy": "hitl", "approvers": APPROVERS, "quorum": 1},
    },
}
T = TypeVar("T")
GOAL_RATIO = 0.5
WARMUP = 3  # clicks and UPDATEs per client before the first round (connections, caches, imports)


def make_pending(url: str, count: int) -> list[tuple[str, str]]:
    """Migrate, then `count` pending refunds on one waiting task: [(public id, params hash)]."""
    engine = make_engine(url)
    upgrade(engine)
    config, now = Config.model_validate(CONFIG), SystemClock().now()
    registry, task_type = load_tool_modules(config.tools.modules), config.task_types["refund"]
    made: list[tuple[str, str]] = []
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        task = submit_task(session, config, "refund", "bench refunds", now=now, requester=REQUESTER)
        move(session, task, TaskState.WAITING, actor="system", now=now)  # as after a turn that drafted actions
        task_id = task.id
    for first in range(0, count, 500):
        with sessions.begin() as session:
            task = session.get_one(Task, task_id)
            for number in range(first, min(count, first + 500)):
                draft = gate.Draft("issue_refund", {"order_id": str(number), "amount_cents": 500}, "-", 0.9)
                action = gate.submit(session, task, draft, task_type=task_type, catalog=registry, now=now)
                assert action.state == "pending", action.state
                made.append((action.public_id, action.params_hash))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE bench_rows (id integer PRIMARY KEY, n integer NOT NULL)")
        connection.exec_driver_sql("INSERT INTO bench_rows SELECT g, 0 FROM generate_series(1, 100000) g")
    engine.dispose()
    return made


def start(directory: Path, url: str, slack: SlackEmulator, port: int, workers: int) -> subprocess.Popen[str]:
    (directory / "countersign.yml").write_text(yaml.safe_dump(CONFIG))
    (directory / "script.yml").write_text(yaml.safe_dump(SCRIPT))
    env = {
        **{name: value for name, value in os.environ.items() if name != "COUNTERSIGN_WORKERS"},
        "DATABASE_URL": url,
        "COUNTERSIGN_CONFIG": str(directory / "countersign.yml"),
        "COUNTERSIGN_MODEL_SCRIPT": str(directory / "script.yml"),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = (directory / "serve.log").open("w")
    command = [COUNTERSIGN, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def start_bare(directory: Path, slack: SlackEmulator, port: int, workers: int) -> subprocess.Popen[str]:
    """The baseline: a bare Bolt app with a no-op Approve listener on serve's server and worker count."""
    command = [sys.executable, "-m", "bench.bare_bolt", "--port", str(port), "--workers", str(workers)]
    command += ["--signing-secret", SECRET, "--token", TOKEN, "--slack-api-url", slack.api_url]
    log = (directory / "bare.log").open("w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_listening(process: subprocess.Popen[str], port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the bare Bolt app exited with status {process.returncode}")
        try:
            with closing(socket.create_connection(("127.0.0.1", port), timeout=0.5)):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the bare Bolt app did not listen in time")


def settle(pid: int, timeout_s: float = 15.0) -> None:
    """Wait until serve's background work after a round (executions, card updates) is done:
    its processes spend under 5% of a core over half a second, or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.025:
            return


class Clients:
    """`count` closed-loop threads, each on its own connection, each doing its list of items."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seconds = 0.0
        self.latencies_ms: list[float] = []
        self.statuses: Counter[str] = Counter()

    def run(self, work: Sequence[Sequence[Any]], setup, one) -> None:
        barrier = threading.Barrier(len(work) + 1)
        lock = threading.Lock()
        errors: list[BaseException] = []

        def client(items: Sequence[Any]) -> None:
            handle = setup()
            try:
                barrier.wait()
                for item in items:
                    began = time.perf_counter()
                    status = one(handle, item)
                    elapsed = (time.perf_counter() - began) * 1000
                    with lock:
                        self.latencies_ms.append(elapsed)
                        self.statuses[status] += 1
            except BaseException as exc:
                errors.append(exc)
            finally:
                handle.close()

        threads = [threading.Thread(target=client, args=(items,)) for items in work]
        for thread in threads:
            thread.start()
        barrier.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        self.seconds += time.perf_counter() - began
        if errors:
            raise errors[0]

    def ops(self) -> int:
        return len(self.latencies_ms)

    def rate(self) -> float:
        return self.ops() / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    return [list(items[index::parts]) for index in range(parts)]


def measure(workers: int, clients: int, actions: int, rounds: int) -> str:
    with tempfile.TemporaryDirectory(prefix="cs-bench-workers-") as tmp, SlackEmulator() as slack:
        slack.add_channel(CHANNEL, "approvals")
        with postgres_database(f"workers{workers}") as url:
            if url is None:
                raise SystemExit("PostgreSQL is needed: `serve --workers N` with N > 1 runs on PostgreSQL only")
            pending = make_pending(url, actions + WARMUP * clients)
            port, bare_port, directory = free_port(), free_port(), Path(tmp)
            serve = start(directory, url, slack, port, workers)
            bare = start_bare(directory, slack, bare_port, workers)
            try:
                wait_healthy(serve, f"http://127.0.0.1:{port}", directory)
                for process in (serve, bare):
                    deadline = time.monotonic() + 60
                    while len(tree(process.pid)) < workers + (workers > 1) and time.monotonic() < deadline:
                        time.sleep(0.1)  # every worker booted, not just the first
                wait_listening(bare, bare_port)
                return run(url, serve.pid, port, bare_port, slack, pending, workers, clients, rounds)
            finally:
                for process in (serve, bare):
                    process.send_signal(signal.SIGTERM)
                for process in (serve, bare):
                    try:
                        process.wait(timeout=40)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()


def run(
    url: str,
    serve_pid: int,
    port: int,
    bare_port: int,
    slack: SlackEmulator,
    pending: list[tuple[str, str]],
    workers: int,
    clients: int,
    rounds: int,
) -> str:
    raw_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    bodies = [
        click_body(slack, number, public_id, params_hash) for number, (public_id, params_hash) in enumerate(pending)
    ]

    def connect_http() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def connect_bare() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", bare_port, timeout=30)

    def click(connection: http.client.HTTPConnection, body: bytes) -> str:
        request = signed(SECRET, body, FORM)  # signed as it is sent: Slack's timestamps are fresh
        connection.request("POST", "/slack/events", body=request.body, headers=request.headers)
        reply = connection.getresponse()
        reply.read()
        return str(reply.status)

    def connect_raw() -> psycopg.Connection:
        return psycopg.connect(raw_url, autocommit=True)

    def update(connection: psycopg.Connection, row: int) -> str:
        connection.execute("UPDATE bench_rows SET n = n + 1 WHERE id = %s", (row,))
        return "ok"

    warm, measured = bodies[: WARMUP * clients], bodies[WARMUP * clients :]
    Clients(clients).run(split(warm, clients), connect_http, click)
    Clients(clients).run(split(warm, clients), connect_bare, click)
    Clients(clients).run(split(list(range(1, WARMUP * clients + 1)), clients), connect_raw, update)
    decisions, raw, bare = Clients(clients), Clients(clients), Clients(clients)
    per_round = -(-len(measured) // rounds)
    rows = iter(range(WARMUP * clients + 1, 100_001))
    serve_cpu = 0.0  # seconds of CPU the serve processes spent during the click rounds
    for index in range(rounds):
        chunk = measured[index * per_round : (index + 1) * per_round]
        settle(serve_pid)  # the last round's background work is not the baselines' load
        raw.run(split([next(rows) for _ in chunk], clients), connect_raw, update)
        bare.run(split(chunk, clients), connect_bare, click)  # the same signed clicks, acked by a no-op
        before = cpu_seconds(serve_pid)
        decisions.run(split(chunk, clients), connect_http, click)
        serve_cpu += cpu_seconds(serve_pid) - before
    verdict = check(url, [public_id for public_id, _ in pending])
    floor = min(raw.rate(), bare.rate())
    ratio = decisions.rate() / floor if floor else 0.0
    late = sum(1 for ms in decisions.latencies_ms if ms > 3000)
    print(f"  clicks: {dict(decisions.statuses)}; bare Bolt answers: {dict(bare.statuses)}; {verdict}")
    return (
        f"summary workers={workers}: clients {clients}, decisions {decisions.rate():.0f}/s, "
        f"raw UPDATE commits {raw.rate():.0f}/s, bare Bolt {bare.rate():.0f} requests/s, ratio {ratio:.3f} "
        f"of the lower ({'PASS' if ratio >= GOAL_RATIO else 'MISS'}, goal ≥ {GOAL_RATIO}); "
        f"ack p50 {decisions.percentile(0.5):.1f} ms, "
        f"p99 {decisions.percentile(0.99):.1f} ms, over 3 s {late} ({decisions.ops()} clicks); serve CPU "
        f"{serve_cpu / decisions.seconds:.2f} cores busy, {serve_cpu * 1000 / decisions.ops():.1f} ms per decision"
    )


def check(url: str, clicked: list[str]) -> str:
    """Each clicked action decided once: one approve decision, no longer pending."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            decisions = Counter(
                session.scalars(
                    select(Action.public_id)
                    .join(Decision, Decision.action_id == Action.id)
                    .where(Decision.kind == "approve")
                )
            )
            still = session.scalar(select(func.count()).select_from(Action).where(Action.state == "pending"))
    finally:
        engine.dispose()
    missing = sum(1 for public_id in clicked if decisions[public_id] == 0)
    duplicate = sum(1 for public_id in clicked if decisions[public_id] > 1)
    good = not missing and not duplicate and not still
    return (
        f"decided {len(clicked) - missing}, missing {missing}, duplicate {duplicate}, still pending {still}: "
        f"{'PASS' if good else 'FAIL'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated (default 1,2)")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients (default 8)")
    parser.add_argument("--actions", type=int, default=600, help="clicks measured per worker count (default 600)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; PostgreSQL on this machine; {args.clients} clients, {args.actions} clicks")
    for workers in (int(part) for part in args.workers.split(",")):
        print(f"workers={workers}")
        print(measure(workers, args.clients, args.actions, args.rounds))


if __name__ == "__main__":
    main()
