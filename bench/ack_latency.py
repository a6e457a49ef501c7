"""Ack latency of an Approve click, signed request sent → HTTP 200: ours beside a bare Bolt app.

Both apps serve at once, each in its own process behind waitress on 127.0.0.1 with the Slack
emulator, and get the same signed `block_actions` payloads at a steady open-loop rate each
(latency counts from the scheduled send, so a slow answer is not hidden by a late send). Ours
is the real app (`bot.serve.assemble`) with one pending action per click (quorum 1, two
approvers, clicks alternate): each click commits a decision before the ack; afterwards each is
checked to be approved exactly once. The bare app is `slack_bolt.App` with Bolt's defaults (it
polls for `ack()` about every 10 ms) and a no-op listener. Goals: our p99 ≤ 50 ms, our p50 ≤ the
bare p50. `--workers` also runs our agent, executor and outbox workers in the process, as
`countersign serve` does (not its escalation ticker).

    .venv/bin/python bench/ack_latency.py [--rate 100] [--seconds 30] [--backend sqlite|postgres] [--workers]

PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local superuser).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import waitress
from pydantic import SecretStr
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import tool
from agent.scripted_model import ScriptedModel
from agent.tasks import move, submit_task
from agent.tools import load_tool_modules
from approvals import gate
from bot.blocks.card import decide_block_id
from bot.runtime import build_services
from bot.sandbox import SlackEmulator
from bot.serve import assemble
from core.clock import SystemClock
from core.config import Config
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Action, AuditEvent, Decision
from core.settings import Settings
from core.states import TaskState

POSTGRES_ADMIN_URL = os.environ.get(
    "COUNTERSIGN_BENCH_POSTGRES_URL",
    os.environ.get("COUNTERSIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
)
SECRET, TOKEN, TEAM, CHANNEL = "bench-signing-secret", "xoxb-bench", "T0SANDBOX", "C0APPROVALS"
REQUESTER, APPROVERS = "U0REQUESTER", ("U0ALICE", "U0BOB")
GOAL_P99_MS = 50.0
CLIENT_THREADS = 8  # per app; at 100/s only a few requests are in flight at a time
WARMUP = 20  # clicks per app sent one at a time before measuring (imports, auth.test, connections)
CONFIG = {
    "slack": {"approvals_channel": CHANNEL},
    "tools": {"modules": [__name__]},  # `bench_refund` below
    "task_types": {"refund": {"tools": ["bench_refund"], "autonomy": "hitl", "approvers": APPROVERS, "quorum": 1}},
}


@tool(risk="high")
def bench_refund(order_id: str, amount_cents: int) -> dict[str, str]:
    """Never runs here (no executor): it only gives the pending actions a tool."""
    return {"order_id": order_id}


def pending_actions(url: str, count: int) -> list[tuple[str, str]]:
    """Migrate the database and put `count` pending actions on one task: [(public id, params hash)]."""
    engine = make_engine(url)
    upgrade(engine)
    config, now = Config.model_validate(CONFIG), SystemClock().now()
    registry, task_type = load_tool_modules(config.tools.modules), config.task_types["refund"]
    with make_sessionmaker(engine).begin() as session:
        task = submit_task(session, config, "refund", "bench refunds", now=now, requester=REQUESTER)
        move(session, task, TaskState.WAITING, actor="system", now=now)  # as after a turn that drafted actions
        drafts = [gate.Draft("bench_refund", {"order_id": str(n), "amount_cents": 500}, "-", 0.9) for n in range(count)]
        actions = [gate.submit(session, task, d, task_type=task_type, catalog=registry, now=now) for d in drafts]
        assert {action.state for action in actions} == {"pending"}, "the gate did not make them pending"
        made = [(action.public_id, action.params_hash) for action in actions]
    engine.dispose()
    return made


def click_body(number: int, action_id: str, params_hash: str) -> bytes:
    """The form body Slack posts when an approver clicks Approve on the action's card."""
    user, ts = APPROVERS[number % 2], "1700000000.000100"
    button = {"type": "button", "action_id": "approve", "block_id": decide_block_id(params_hash), "value": action_id}
    payload = {
        "type": "block_actions",
        "api_app_id": "A0APP",
        "token": "legacy",
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "team": {"id": TEAM, "domain": "sandbox"},
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL, "is_ephemeral": False},
        "channel": {"id": CHANNEL, "name": "approvals"},
        "message": {"ts": ts, "type": "message", "text": "card"},
        "trigger_id": f"1.{number}.bench",
        "response_url": "http://127.0.0.1:9/unused",  # only refusals answer the clicker
        "actions": [{**button, "text": {"type": "plain_text", "text": "Approve"}, "action_ts": str(time.time())}],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def serve(kind: str, db_url: str, workers: bool, conn: Connection) -> None:
    """In a child process: serve one app ("ours" or "bare") until told to stop; sends its port first."""
    with SlackEmulator() as slack:
        slack.add_channel(CHANNEL, "approvals")
        for user in (REQUESTER, *APPROVERS):
            slack.add_user(user, user.lower())
        if kind == "ours":
            secrets = {"slack_bot_token": SecretStr(TOKEN), "slack_signing_secret": SecretStr(SECRET)}
            settings = Settings(database_url=db_url, slack_api_url=slack.api_url, **secrets)
            engine = make_engine(db_url)
            services = build_services(settings, Config.model_validate(CONFIG), make_sessionmaker(engine))
            process = assemble(settings, services, engine, ScriptedModel({}))
            if workers:
                process.workers().start()
            wsgi: Any = process.server
        else:
            bare = App(signing_secret=SECRET, client=WebClient(token=TOKEN, base_url=slack.api_url))
            bare.action("approve")(lambda ack: ack())
            wsgi = SlackRequestHandler(bare)
        server = waitress.create_server(wsgi, host="127.0.0.1", port=0, threads=16)
        threading.Thread(target=server.run, daemon=True).start()
        conn.send(server.effective_port)  # type: ignore[union-attr]
        conn.recv()
        server.close()


@dataclass
class Target:
    name: str
    port: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    sent: list[int] = field(default_factory=list)  # the bodies that went out, warm-up included

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms) or [float("nan")]
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    def line(self) -> str:
        errors = sum(count for status, count in self.statuses.items() if status != 200)
        return (
            f"{self.name:<5} n={len(self.latencies_ms):<6} errors={errors:<4} p50 {self.percentile(0.5):7.2f} ms   "
            f"p99 {self.percentile(0.99):7.2f} ms   max {max(self.latencies_ms, default=0):8.2f} ms"
            + (f"   {dict(self.statuses)}" if errors else "")
        )


def send(conn: http.client.HTTPConnection, body: bytes) -> int | str:
    """POST one signed click as Slack does: the HTTP status, or the name of the failure."""
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body.decode())
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
    try:
        conn.request("POST", "/slack/events", body, {"Content-Type": "application/x-www-form-urlencoded", **headers})
        with conn.getresponse() as reply:
            reply.read()
            return reply.status
    except (OSError, http.client.HTTPException) as exc:
        conn.close()  # it reconnects on the next request
        return type(exc).__name__


def start_clients(target: Target, due: list[tuple[float, bytes, int]], deadline: float) -> list[threading.Thread]:
    """Open loop: keep-alive clients take (send time, body, number) in order, sleep until the send
    time and measure from it, so a slow answer makes the next sends late and counts that too."""
    todo: queue.SimpleQueue[tuple[float, bytes, int]] = queue.SimpleQueue()
    for item in due:
        todo.put(item)
    lock = threading.Lock()

    def client() -> None:
        with closing(http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)) as conn:
            while not todo.empty():
                scheduled, body, number = todo.get()
                time.sleep(max(0.0, scheduled - time.perf_counter()))
                status = send(conn, body) if time.perf_counter() < deadline else "unsent"
                elapsed_ms = (time.perf_counter() - scheduled) * 1000
                with lock:
                    target.statuses[status] += 1
                    if status != "unsent":
                        target.latencies_ms.append(elapsed_ms)
                        target.sent.append(number)

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    return threads


def check(db_url: str, clicked: list[str]) -> str:
    """Every clicked action approved (or run since, with --workers) on exactly one approve decision; no refusals."""
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        rows = session.execute(
            select(Action.state, func.count(Decision.id))
            .outerjoin(Decision, (Decision.action_id == Action.id) & (Decision.kind == "approve"))
            .where(Action.public_id.in_(clicked))
            .group_by(Action.id)
        ).all()
        refused = session.scalar(select(func.count()).where(AuditEvent.kind == "decision.refused"))
    engine.dispose()
    states = Counter(state for state, _ in rows)
    good = sum(1 for state, decisions in rows if decisions == 1 and state in ("approved", "executing", "succeeded"))
    verdict = "PASS" if good == len(clicked) and not refused else "FAIL"
    return (
        f"verify ours: {len(clicked)} clicked actions, {good} approved on exactly one approve decision, "
        f"{refused} refusals; states {dict(states)}: {verdict}"
    )


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cs-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"cs_bench_ack_{os.getpid()}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        raise SystemExit(f"postgres unreachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}") from None
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=100.0, help="clicks per second to each app (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send (default 30)")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", action="store_true", help="run our background workers too")
    args = parser.parse_args()
    count, began = round(args.rate * args.seconds), time.perf_counter()
    with database(args.backend) as db_url:
        actions = pending_actions(db_url, WARMUP + count)
        bodies = [click_body(number, *action) for number, action in enumerate(actions)]
        print(
            f"{args.backend}: {len(actions)} pending actions in {time.perf_counter() - began:.1f} s; {args.rate:g}/s "
            f"to each app for {args.seconds:g} s{' with our workers' if args.workers else ''}; load {load()}",
            flush=True,
        )
        # Fork while this process has no threads yet; each app gets its own process (and GIL).
        context, targets, children = multiprocessing.get_context("fork"), [], []
        for kind in ("ours", "bare"):
            here, there = context.Pipe()
            child = context.Process(target=serve, args=(kind, db_url, args.workers, there), daemon=True)
            child.start()
            if not here.poll(30):
                raise SystemExit(f"the {kind} app did not start within 30 s")
            targets.append(Target(kind, here.recv()))
            children.append((child, here))
        for target in targets:  # both get the same bodies; only ours decides
            with closing(http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)) as conn:
                for number in range(WARMUP):
                    send(conn, bodies[number])
            target.sent += range(WARMUP)
        start = time.perf_counter() + 0.2
        deadline = start + args.seconds + 15  # a stalled server cannot keep the script running
        threads = []
        for offset, target in enumerate(targets):  # `rate` sends a second each; the bare app's fall between ours
            due = [(start + (n + offset / 2) / args.rate, bodies[WARMUP + n], WARMUP + n) for n in range(count)]
            threads += start_clients(target, due, deadline)
        for thread in threads:
            thread.join()
        for child, here in children:
            here.send("stop")
            child.join(10)
            if child.is_alive():
                child.terminate()
        ours, bare = targets
        print(ours.line(), bare.line(), sep="\n")
        p50, p99 = ours.percentile(0.5), ours.percentile(0.99)
        print(
            f"summary: ours/bare p50 x{p50 / bare.percentile(0.5):.2f}, p99 x{p99 / bare.percentile(0.99):.2f}; "
            f"our p99 ≤ {GOAL_P99_MS:.0f} ms: {'PASS' if p99 <= GOAL_P99_MS else 'MISS'}; "
            f"our p50 ≤ bare p50: {'PASS' if p50 <= bare.percentile(0.5) else 'MISS'}"
        )
        print(check(db_url, [actions[number][0] for number in ours.sent]))
    print(f"total {time.perf_counter() - began:.1f} s; load {load()} (other work on this machine skews the numbers)")


if __name__ == "__main__":
    main()
