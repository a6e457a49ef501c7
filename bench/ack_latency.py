"""Ack latency of an Approve click: signed request sent → HTTP 200, ours beside a bare Bolt app.

Both apps run at the same time, each in its own process behind waitress on 127.0.0.1 with
the Slack emulator, and get the same signed `block_actions` payloads at a steady open-loop
rate each (sends are scheduled by wall-clock time and latency counts from the scheduled send,
so a slow answer delays no later measurement). Ours is the real app (`bot.serve.assemble`)
on a migrated database holding one pending action per click (quorum 1, approvers two users,
clicks alternate): every click commits a decision before the ack. The bare app is
`slack_bolt.App` with Bolt's defaults (it polls for `ack()` every ~10 ms) and one no-op
`approve` listener. Goals: our p99 ≤ 50 ms, our p50 ≤ the bare app's p50. Afterwards every
clicked action is checked to be approved exactly once.

    .venv/bin/python bench/ack_latency.py [--rate 100] [--seconds 30] [--backend sqlite|postgres]

PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local `postgres` superuser).
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import waitress
from pydantic import SecretStr
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import tool
from agent.scripted_model import ScriptedModel
from agent.tasks import TaskState, move, submit_task
from agent.tools import load_tool_modules
from approvals import gate
from bot.blocks.card import decide_block_id
from bot.runtime import build_services
from bot.sandbox import SlackEmulator
from bot.serve import assemble
from core.clock import SystemClock
from core.config import Config, Settings
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Action, AuditEvent, Decision

POSTGRES_ADMIN_URL = os.environ.get(
    "COUNTERSIGN_BENCH_POSTGRES_URL",
    os.environ.get("COUNTERSIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
)
SECRET, TOKEN, TEAM, CHANNEL = "bench-signing-secret", "xoxb-bench", "T0SANDBOX", "C0APPROVALS"
REQUESTER, APPROVERS = "U0REQUESTER", ("U0ALICE", "U0BOB")
GOAL_P99_MS = 50.0
CLIENT_THREADS = 8  # per app; at 100/s a few requests are in flight at a time
CONFIG = {
    "slack": {"approvals_channel": CHANNEL},
    "tools": {"modules": [__name__]},  # `bench_refund` below
    "task_types": {
        "refund": {"tools": ["bench_refund"], "autonomy": "hitl", "approvers": list(APPROVERS), "quorum": 1}
    },
}


@tool(risk="high")
def bench_refund(order_id: str, amount_cents: int) -> dict[str, str]:
    """Never runs here (no executor): it only gives the pending actions a tool."""
    return {"order_id": order_id}


def pending_actions(url: str, count: int) -> list[tuple[str, str]]:
    """Migrate the database and create `count` pending actions on one task: (public id, params hash)."""
    engine = make_engine(url)
    upgrade(engine)
    config, now = Config.model_validate(CONFIG), SystemClock().now()
    registry = load_tool_modules(config.tools.modules)
    with make_sessionmaker(engine).begin() as session:
        task = submit_task(session, config, "refund", "bench refunds", now=now, requester=REQUESTER)
        move(session, task, TaskState.WAITING, actor="system", now=now)  # as after a turn that drafted actions
        actions = [
            gate.submit(
                session,
                task,
                gate.Draft("bench_refund", {"order_id": str(number), "amount_cents": 500}, "bench", 0.9),
                task_type=config.task_types["refund"],
                catalog=registry,
                now=now,
            )
            for number in range(count)
        ]
        assert all(action.state == "pending" for action in actions), "the gate did not make them pending"
        made = [(action.public_id, action.params_hash) for action in actions]
    engine.dispose()
    return made


def click_body(number: int, action_id: str, params_hash: str) -> bytes:
    user = APPROVERS[number % 2]
    payload = {
        "type": "block_actions",
        "api_app_id": "A0APP",
        "token": "legacy",
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "team": {"id": TEAM, "domain": "sandbox"},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": CHANNEL, "is_ephemeral": False},
        "channel": {"id": CHANNEL, "name": "approvals"},
        "message": {"ts": "1.000001", "type": "message", "text": "card"},
        "trigger_id": f"1.{number}.bench",
        "response_url": "http://127.0.0.1:9/unused",  # only refusals answer the clicker
        "actions": [
            {
                "type": "button",
                "action_id": "approve",
                "block_id": decide_block_id(params_hash),
                "value": action_id,
                "text": {"type": "plain_text", "text": "Approve"},
                "action_ts": str(time.time()),
            }
        ],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def serve(kind: str, db_url: str, conn: Connection) -> None:
    """In a child process: serve one app until told to stop; sends its port first."""
    with SlackEmulator() as slack:
        slack.add_channel(CHANNEL, "approvals")
        for user in (REQUESTER, *APPROVERS):
            slack.add_user(user, user.lower())
        if kind == "ours":
            settings = Settings(
                database_url=db_url,
                slack_bot_token=SecretStr(TOKEN),
                slack_signing_secret=SecretStr(SECRET),
                slack_api_url=slack.api_url,
            )
            engine = make_engine(db_url)
            services = build_services(settings, Config.model_validate(CONFIG), make_sessionmaker(engine))
            wsgi: Any = assemble(settings, services, engine, ScriptedModel({})).server
        else:
            bare = App(signing_secret=SECRET, client=WebClient(token=TOKEN, base_url=slack.api_url))

            @bare.action("approve")
            def approve(ack: Ack) -> None:
                ack()

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
    sent: list[int] = field(default_factory=list)  # which bodies went out

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")

    def line(self) -> str:
        errors = sum(count for status, count in self.statuses.items() if status != 200)
        return (
            f"{self.name:<5} n={len(self.latencies_ms):<6} errors={errors:<4} p50 {self.percentile(0.5):7.2f} ms   "
            f"p99 {self.percentile(0.99):7.2f} ms   max {max(self.latencies_ms, default=0):8.2f} ms"
            + (f"   {dict(self.statuses)}" if errors else "")
        )


def drive(target: Target, bodies: list[bytes], start: float, rate: float, deadline: float) -> None:
    """Open loop: body i is due at start + i/rate; a pool of keep-alive clients sends them in order."""
    due: queue.SimpleQueue[int] = queue.SimpleQueue()
    for number in range(len(bodies)):
        due.put(number)
    signer, lock = SignatureVerifier(SECRET), threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
        while True:
            try:
                number = due.get_nowait()
            except queue.Empty:
                break
            scheduled = start + number / rate
            time.sleep(max(0.0, scheduled - time.perf_counter()))
            if time.perf_counter() > deadline:
                status: int | str = "unsent"
            else:
                stamp, body = str(int(time.time())), bodies[number]
                headers = {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Slack-Request-Timestamp": stamp,
                    "X-Slack-Signature": signer.generate_signature(timestamp=stamp, body=body.decode()),
                }
                try:
                    conn.request("POST", "/slack/events", body=body, headers=headers)
                    reply = conn.getresponse()
                    reply.read()
                    status = reply.status
                except (OSError, http.client.HTTPException) as exc:
                    status = type(exc).__name__
                    conn.close()  # reconnects on the next request
            elapsed_ms = (time.perf_counter() - scheduled) * 1000
            with lock:
                target.statuses[status] += 1
                if status != "unsent":
                    target.latencies_ms.append(elapsed_ms)
                    target.sent.append(number)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def check(db_url: str, clicked: list[str]) -> str:
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        states = Counter(session.scalars(select(Action.state).where(Action.public_id.in_(clicked))))
        per_action = session.execute(
            select(Action.public_id, func.count(Decision.id))
            .outerjoin(Decision, (Decision.action_id == Action.id) & (Decision.kind == "approve"))
            .where(Action.public_id.in_(clicked))
            .group_by(Action.public_id)
        ).all()
        refused = session.scalar(select(func.count()).where(AuditEvent.kind == "decision.refused"))
    engine.dispose()
    once = sum(1 for _, count in per_action if count == 1)
    verdict = "PASS" if once == len(clicked) == states["approved"] and not refused else "FAIL"
    return (
        f"verify ours: {len(clicked)} clicked actions, {states['approved']} approved, {once} with exactly one "
        f"approve decision, {refused} refusals, states {dict(states)}: {verdict}"
    )


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cs-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"cs_bench_ack_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=100.0, help="clicks per second to each app (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send (default 30)")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    count, began = round(args.rate * args.seconds), time.perf_counter()
    with database(args.backend) as db_url:
        actions = pending_actions(db_url, count)
        bodies = [click_body(number, *action) for number, action in enumerate(actions)]
        print(f"{args.backend}: {count} pending actions in {time.perf_counter() - began:.1f} s", flush=True)
        # Fork before this process starts any thread; each app gets its own process and GIL.
        context, children, targets = multiprocessing.get_context("fork"), [], []
        for kind in ("ours", "bare"):
            here, there = context.Pipe()
            child = context.Process(target=serve, args=(kind, db_url, there), daemon=True)
            child.start()
            if not here.poll(30):
                raise SystemExit(f"the {kind} app did not start")
            children.append((child, here))
            targets.append(Target(kind, here.recv()))
        start = time.perf_counter() + 0.5
        deadline = start + args.seconds + 15  # a stalled server cannot keep the script running
        drivers = [
            threading.Thread(target=drive, args=(target, bodies, start + index / (2 * args.rate), args.rate, deadline))
            for index, target in enumerate(targets)
        ]
        for thread in drivers:
            thread.start()
        for thread in drivers:
            thread.join()
        for child, here in children:
            here.send("stop")
            child.join(10)
            if child.is_alive():
                child.terminate()
        ours, bare = targets
        for target in targets:
            print(target.line())
        p50, p99 = ours.percentile(0.5) / bare.percentile(0.5), ours.percentile(0.99) / bare.percentile(0.99)
        print(
            f"summary: ours/bare p50 x{p50:.2f}, p99 x{p99:.2f}; "
            f"our p99 ≤ {GOAL_P99_MS:.0f} ms: {'PASS' if ours.percentile(0.99) <= GOAL_P99_MS else 'MISS'}; "
            f"our p50 ≤ bare p50: {'PASS' if ours.percentile(0.5) <= bare.percentile(0.5) else 'MISS'}"
        )
        print(check(db_url, [public_id for public_id, _ in actions[: ours.statuses.total() - ours.statuses["unsent"]]]))
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
