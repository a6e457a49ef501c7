"""Ack latency of Approve clicks (signed request due → answer) through a whole `countersign serve`,
beside bare Bolt apps on the same server settings; an answer after Slack's 3 s is a failure.

Three apps, in one run, each alone on the machine in turn (apps served at once on 2 cores would
measure each other's CPU, not their ack path), the bare ones first so that ours' background
work after its burst (executions, card updates) cannot slow them:
- `bare`: `slack_bolt.App` with Bolt's defaults (it polls for `ack()` about every 10 ms) and a
  no-op listener;
- `bare-pbr`: the same with `process_before_response=True`, the fair floor: it answers when the
  listener returns, as ours does;
- `ours`: `countersign serve` with its defaults (the background workers and the escalation
  ticker on), on PostgreSQL unless `--backend sqlite`, one pending action per click (quorum 1,
  two approvers, clicks alternate). A click whose decision cannot start in time is shed: acked,
  nothing recorded, the clicker told to click again at its own `response_url` (`bot.admission`).
The bare apps are served by waitress with serve's settings (`bot.server.listen`).

Load: `--rate` clicks/s for `--seconds`, open loop: each click is due at its time, signed with
that second as Slack would, and sent by one of CLIENT_THREADS keep-alive connections (in a
process of their own); its latency counts from its due time, so a slow answer that makes later
clicks late counts too. No answer 200 within 3 s of its due time (late, never, or not sent in
time because every connection was waiting) is a failure, counted in `over_3s`, and the
percentiles count it as infinite.

Afterwards, from ours' database and the response_url sink: each click answered in time either
decided its action on exactly one decision, or was shed and told once; counted and printed:
lost (neither), duplicate decisions (per action, and per action, actor and kind), duplicate
executions (`action.succeeded` events per action), clicks told twice, clicks decided yet told
"busy". Goals: at 300 clicks/s, our p99 ≤ 50 ms and none over 3 s; at 1,000 clicks/s, none
over 3 s (the overload path).

    .venv/bin/python bench/ack_latency.py [--rate 100] [--seconds 30] [--backend postgres|sqlite]
                                          [--apps bare,bare-pbr,ours]

PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local superuser).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import logging
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, insert, inspect, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.tasks import move, submit_task
from agent.tools import load_tool_modules
from approvals import gate
from bench.databases import postgres_database
from bench.rss import free_port, stop_serve, wait_healthy
from bot.blocks.card import decide_block_id
from bot.sandbox import SlackEmulator
from bot.server import listen
from core.clock import SystemClock
from core.config import Config
from core.db import make_engine, make_sessionmaker
from core.ids import new_id
from core.migrate import upgrade
from core.models import Action, AuditEvent, Decision
from core.states import TaskState

ROOT = Path(__file__).resolve().parent.parent
COUNTERSIGN = str(Path(sys.executable).parent / "countersign")
SECRET, TOKEN, TEAM, CHANNEL = "bench-signing-secret", "xoxb-bench", "T0SANDBOX", "C0APPROVALS"
REQUESTER, APPROVERS = "U0REQUESTER", ("U0ALICE", "U0BOB")
SLACK_TIMEOUT_S = 3.0  # Slack shows "this app did not respond" after this long
GOAL_P99_MS = 50.0
CLIENT_THREADS = 100  # keep-alive connections per app; serve accepts 1000
WARMUP = 20  # clicks per app sent one at a time before measuring (imports, auth.test, connections)
APPS = ("bare", "bare-pbr", "ours")
CONFIG = {
    "slack": {"approvals_channel": CHANNEL},
    # A small module of test tools: serve imports it (the executor runs the approved refunds).
    "tools": {"modules": ["tests.approvals.shop_tools"]},
    "task_types": {
        "refund": {"tools": ["issue_refund"], "autonomy": "hitl", "approvers": list(APPROVERS), "quorum": 1}
    },
}


# The task resumes once its refunds ran: the scripted model then ends it.
SCRIPT = {"refund": {"match": "order", "replies": [{"text": "Refunded."}]}}


def pending_actions(url: str, count: int) -> list[tuple[str, str]]:
    """Migrate the database and put `count` pending actions on one task: [(public id, params hash)].

    The gate drafts one; the others are its copies under new public ids, inserted at once (the
    gate takes ~20 ms an action, minutes for a burst's worth). The copies have no card in the
    outbox and no draft events: as when the cards of a burst were posted long before it."""
    engine = make_engine(url)
    upgrade(engine)
    config, now = Config.model_validate(CONFIG), SystemClock().now()
    registry, task_type = load_tool_modules(config.tools.modules), config.task_types["refund"]
    with make_sessionmaker(engine).begin() as session:
        task = submit_task(session, config, "refund", "Refund order 1", now=now, requester=REQUESTER)
        move(session, task, TaskState.WAITING, actor="system", now=now)  # as after a turn that drafted actions
        draft = gate.Draft("issue_refund", {"order_id": "1", "amount_cents": 500}, "-", 0.9)
        first = gate.submit(session, task, draft, task_type=task_type, catalog=registry, now=now)
        assert first.state == "pending", "the gate did not make it pending"
        columns = {
            p.key: getattr(first, p.key) for p in inspect(Action).column_attrs if p.key not in ("id", "public_id")
        }
        copies = [{**columns, "public_id": new_id("act")} for _ in range(count - 1)]
        if copies:
            session.execute(insert(Action), copies)
        made = [(first.public_id, first.params_hash)] + [(c["public_id"], first.params_hash) for c in copies]
    engine.dispose()
    return made


def click_body(number: int, action_id: str, params_hash: str, response_url: str) -> bytes:
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
        "response_url": response_url,
        "actions": [{**button, "text": {"type": "plain_text", "text": "Approve"}, "action_ts": str(time.time())}],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


# -- the processes: Slack's Web API, the response_url sink, the bare apps, the clients --------------


def slack_process(conn: Connection) -> None:
    """The Slack emulator (auth.test, cards, card updates) until told to stop; sends its API URL."""
    with SlackEmulator() as slack:
        slack.add_channel(CHANNEL, "approvals")
        for user in (REQUESTER, *APPROVERS):
            slack.add_user(user, user.lower())
        conn.send(slack.api_url)
        conn.recv()


def sink_process(conn: Connection) -> None:
    """Counts POSTs per path: the response_urls the clickers are answered at (asyncio: a burst of
    "busy" answers must not be slowed by the sink). Sends its port; answers "counts"; ends on "stop"."""
    counts: Counter[str] = Counter()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await reader.readline():
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                counts[request.split(b" ")[1].decode()] += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        conn.send(server.sockets[0].getsockname()[1])
        loop, asked = asyncio.get_running_loop(), asyncio.Queue[str]()
        loop.add_reader(conn.fileno(), lambda: asked.put_nowait(conn.recv()))
        while (what := await asked.get()) != "stop":
            conn.send(dict(counts) if what == "counts" else None)
        server.close()

    asyncio.run(main())


def bare_process(kind: str, api_url: str, conn: Connection) -> None:
    """A bare Bolt app with a no-op Approve listener, behind serve's waitress settings; sends its port."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N" under a burst
    app = App(
        signing_secret=SECRET,
        client=WebClient(token=TOKEN, base_url=api_url),  # auth.test, once
        process_before_response=kind == "bare-pbr",
    )

    def approve(ack: Ack) -> None:
        ack()

    app.action("approve")(approve)
    server = listen(SlackRequestHandler(app), "127.0.0.1", 0)
    conn.send(server.effective_port)  # type: ignore[union-attr]
    threading.Thread(target=server.run, daemon=True).start()
    conn.recv()
    server.close()


@dataclass(frozen=True)
class Sent:
    status: int | str  # HTTP status, "over_3s" (no answer within 3 s of due), "unsent", or the error's name
    latency_ms: float | None  # from due to answer; None when there was none in time


def sign(body: bytes, stamp: int) -> dict[str, str]:
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=str(stamp), body=body.decode())
    assert signature is not None
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": signature,
    }


def post(conn: http.client.HTTPConnection, body: bytes, stamp: int, timeout_s: float) -> int:
    """POST one signed click as Slack does: the HTTP status; raises on no answer within `timeout_s`."""
    conn.timeout = timeout_s
    if conn.sock is not None:
        conn.sock.settimeout(timeout_s)
    conn.request("POST", "/slack/events", body, sign(body, stamp))
    with conn.getresponse() as reply:
        reply.read()
        return reply.status


def client_process(port: int, clicks: list[bytes], rate: float, start: float, wall: float, conn: Connection) -> None:
    """Open loop: click n is due at `start + n / rate` (monotonic), signed with the wall-clock second
    Slack would have sent it in; CLIENT_THREADS keep-alive connections take the clicks in due order."""
    results: list[Sent | None] = [None] * len(clicks)
    numbers, lock = itertools.count(), threading.Lock()

    def worker() -> None:
        with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=SLACK_TIMEOUT_S)) as connection:
            while True:
                with lock:
                    number = next(numbers)
                if number >= len(clicks):
                    return
                due = start + number / rate
                time.sleep(max(0.0, due - time.monotonic()))
                left = due + SLACK_TIMEOUT_S - time.monotonic()
                if left <= 0:  # every connection was waiting on an answer until too late
                    results[number] = Sent("unsent", None)
                    continue
                try:
                    status: int | str = post(connection, clicks[number], int(wall + (due - start)), left)
                except TimeoutError:
                    status = "over_3s"
                    connection.close()  # as Slack gives up; it reconnects on the next click
                except (OSError, http.client.HTTPException) as exc:
                    status = type(exc).__name__
                    connection.close()
                latency_ms = (time.monotonic() - due) * 1000
                if latency_ms > SLACK_TIMEOUT_S * 1000 and status == 200:
                    status = "over_3s"
                results[number] = Sent(status, latency_ms if status != "over_3s" else None)

    threads = [threading.Thread(target=worker) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    conn.send(results)


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    results: list[Sent] = field(default_factory=list)

    def statuses(self) -> Counter[int | str]:
        return Counter(result.status for result in self.results)

    def in_time(self) -> list[int]:
        """The click numbers answered 200 within 3 s."""
        return [n for n, result in enumerate(self.results) if result.status == 200]

    def over(self) -> int:
        return sum(1 for result in self.results if result.status in ("over_3s", "unsent"))

    def errors(self) -> int:
        return len(self.results) - len(self.in_time()) - self.over()

    def percentile(self, fraction: float) -> float:
        """Over every click; a failure counts as infinitely slow."""
        ordered = sorted(
            r.latency_ms if r.status == 200 and r.latency_ms is not None else float("inf") for r in self.results
        )
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")

    def line(self) -> str:
        answered = [r.latency_ms for r in self.results if r.status == 200 and r.latency_ms is not None]
        extra = {k: v for k, v in self.statuses().items() if k != 200}
        return (
            f"{self.name:<8} n={len(self.results):<6} in_time={len(self.in_time()):<6} over_3s={self.over():<5} "
            f"errors={self.errors():<4} p50 {ms(self.percentile(0.5))}   p99 {ms(self.percentile(0.99))}   "
            f"max answered {max(answered, default=0):8.2f} ms" + (f"   {extra}" if extra else "")
        )


def ms(value: float) -> str:
    return f"{value:8.2f} ms" if value != float("inf") else "   >3000 ms"


def warm_up(port: int, bodies: list[bytes]) -> None:
    with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
        for body in bodies:
            post(conn, body, int(time.time()), 10)


def measure(name: str, port: int, bodies: list[bytes], rate: float) -> Phase:
    """Warm up on the first WARMUP bodies, then send the others at `rate` from a client process."""
    warm_up(port, bodies[:WARMUP])
    here, there = multiprocessing.get_context("fork").Pipe()
    start = time.monotonic() + 0.5
    wall = time.time() + (start - time.monotonic())
    args = (port, bodies[WARMUP:], rate, start, wall, there)
    child = multiprocessing.get_context("fork").Process(target=client_process, args=args)
    child.start()
    phase = Phase(name, here.recv())
    child.join()
    return phase


@contextmanager
def forked(target: Any, *args: Any) -> Iterator[tuple[Connection, Any]]:
    """A child process running `target(*args, pipe)`; yields (pipe, the first thing it sends); stops it after."""
    here, there = multiprocessing.get_context("fork").Pipe()
    child = multiprocessing.get_context("fork").Process(target=target, args=(*args, there), daemon=True)
    child.start()
    try:
        if not here.poll(30):
            raise SystemExit(f"{getattr(target, '__name__', target)} did not start within 30 s")
        yield here, here.recv()
    finally:
        with suppress(OSError):
            here.send("stop")
        child.join(10)
        if child.is_alive():
            child.terminate()


@contextmanager
def serving(db_url: str, api_url: str) -> Iterator[int]:
    """`countersign serve` with its defaults on `db_url`, Slack at `api_url`; yields its port."""
    with tempfile.TemporaryDirectory(prefix="cs-bench-ack-") as tmp:
        directory, port = Path(tmp), free_port()
        (directory / "countersign.yml").write_text(yaml.safe_dump(CONFIG))
        (directory / "script.yml").write_text(yaml.safe_dump(SCRIPT))
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "COUNTERSIGN_CONFIG": str(directory / "countersign.yml"),
            "COUNTERSIGN_MODEL_SCRIPT": str(directory / "script.yml"),
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": api_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        with (directory / "serve.log").open("w") as log:
            serve = subprocess.Popen(
                [COUNTERSIGN, "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        try:
            wait_healthy(serve, f"http://127.0.0.1:{port}", directory)
            yield port
        finally:
            stop_serve(serve)


def shed_in_metrics(port: int) -> dict[str, float] | str:
    """`countersign_clicks_shed_total` by reason, as /metrics shows it (summed over the workers),
    or why it could not be read (a server still busy with its backlog)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
            page = reply.read().decode()
    except OSError as exc:
        return f"/metrics did not answer: {type(exc).__name__}"
    found: dict[str, float] = {}
    for reason, value in re.findall(r'^countersign_clicks_shed_total\{[^}]*reason="(\w+)"\} ([\d.e+]+)$', page, re.M):
        found[reason] = found.get(reason, 0.0) + float(value)
    return found


def told(sink: Connection, expected: int, timeout_s: float = 30.0) -> dict[str, int]:
    """Posts per response_url path, once at least `expected` paths were posted to (refusals and
    "busy" answers are sent after the ack) or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        sink.send("counts")
        counts: dict[str, int] = sink.recv()
        if len(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def verify(db_url: str, phase: Phase, actions: list[tuple[str, str]], sink: Connection) -> str:
    """What became of each measured click, from the database and the response_url sink."""
    measured = actions[WARMUP:]
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            per_action = Counter(
                dict(
                    session.execute(
                        select(Action.public_id, func.count(Decision.id))
                        .join(Decision, Decision.action_id == Action.id)
                        .group_by(Action.public_id)
                    ).all()
                )
            )
            per_actor = session.execute(
                select(func.count()).select_from(
                    select(Decision.action_id)
                    .group_by(Decision.action_id, Decision.actor, Decision.kind)
                    .having(func.count() > 1)
                    .subquery()
                )
            ).scalar_one()
            ran = Counter(
                session.scalars(
                    select(AuditEvent.action_public_id).where(
                        AuditEvent.kind == "action.succeeded", AuditEvent.action_public_id.is_not(None)
                    )
                )
            )
            refused = session.scalar(select(func.count()).where(AuditEvent.kind == "decision.refused")) or 0
    finally:
        engine.dispose()
    in_time = phase.in_time()
    undecided = sum(1 for number in in_time if per_action[measured[number][0]] == 0)
    posts = told(sink, undecided + refused)
    decided = shed = lost = told_twice = decided_and_told = 0
    for number in in_time:
        decisions, answers = per_action[measured[number][0]], posts.get(f"/r/{number}", 0)
        told_twice += answers > 1
        if decisions and answers:
            decided_and_told += 1
        elif decisions:
            decided += 1
        elif answers:
            shed += 1
        else:
            lost += 1
    late = [n for n, r in enumerate(phase.results) if r.status in ("over_3s", "unsent")]
    decided_late = sum(1 for number in late if per_action[measured[number][0]])
    dup_actions = sum(1 for count in per_action.values() if count > 1)
    dup_runs = sum(1 for count in ran.values() if count > 1)
    good = not (lost or dup_actions or per_actor or dup_runs or told_twice or decided_and_told or refused)
    return (
        f"verify ours: {len(in_time)} clicks answered in time: {decided} decided once, {shed} shed and told once; "
        f"lost {lost}, duplicate decisions {dup_actions + per_actor} ({dup_actions} actions decided more than once, "
        f"{per_actor} (action, actor, kind) twice), duplicate executions {dup_runs}, told twice {told_twice}, "
        f"decided yet told busy {decided_and_told}, refusals {refused}; "
        f"{len(late)} not answered in time, {decided_late} of them decided after: {'PASS' if good else 'FAIL'}"
    )


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cs-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    with postgres_database("ack") as url:
        if url is None:
            raise SystemExit("PostgreSQL is unreachable: pass --backend sqlite to measure on SQLite")
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=100.0, help="clicks per second to each app (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send (default 30)")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--apps", default=",".join(APPS), help=f"which, in this order (default {','.join(APPS)})")
    args = parser.parse_args()
    apps = [name for name in APPS if name in args.apps.split(",")]
    count, began = round(args.rate * args.seconds), time.perf_counter()
    phases: dict[str, Phase] = {}
    # Every child is forked before this process starts a thread of its own.
    with database(args.backend) as db_url, ExitStack() as stack:
        actions = pending_actions(db_url, WARMUP + count) if "ours" in apps else []
        print(
            f"{args.backend}: ours is `countersign serve` with its defaults (background workers and ticker on); "
            f"{len(actions)} pending actions in {time.perf_counter() - began:.1f} s; {args.rate:g} clicks/s to "
            f"{', '.join(apps)} in turn, {args.seconds:g} s each; load {load()}",
            flush=True,
        )
        sink, sink_port = stack.enter_context(forked(sink_process))
        urls = [f"http://127.0.0.1:{sink_port}/r/{n - WARMUP}" for n in range(WARMUP + count)]
        _, api_url = stack.enter_context(forked(slack_process))
        for name in apps:
            if name == "ours":
                port = stack.enter_context(serving(db_url, api_url))
                bodies = [click_body(n, *action, urls[n]) for n, action in enumerate(actions)]
            else:
                _, port = stack.enter_context(forked(bare_process, name, api_url))
                bodies = [click_body(n, "act_bare", "0" * 64, urls[n]) for n in range(WARMUP + count)]
            phases[name] = measure(name, port, bodies, args.rate)
            print(phases[name].line(), flush=True)
            if name == "ours":
                print(f"ours: shed by reason in /metrics: {shed_in_metrics(port)}")
                print(verify(db_url, phases[name], actions, sink), flush=True)
        summary(phases, args.rate)
    print(f"total {time.perf_counter() - began:.1f} s; load {load()} (other work on this machine skews the numbers)")


def summary(phases: dict[str, Phase], rate: float) -> None:
    ours = phases.get("ours")
    if ours is None:
        return
    ratios = []
    for floor in ("bare-pbr", "bare"):
        if floor in phases:
            bare = phases[floor]
            p50, p99 = ours.percentile(0.5) / bare.percentile(0.5), ours.percentile(0.99) / bare.percentile(0.99)
            ratios.append(f"ours/{floor} p50 x{p50:.2f}, p99 x{p99:.2f}")
    p99, over = ours.percentile(0.99), ours.over()
    print(
        f"summary: {'; '.join(ratios) or 'no bare app measured'}; our p99 ≤ {GOAL_P99_MS:.0f} ms and none over 3 s: "
        f"{'PASS' if p99 <= GOAL_P99_MS and not over else 'MISS'}; acks over 3 s: {over} of {len(ours.results)} "
        f"at {rate:g}/s: {'PASS' if not over else 'MISS'}"
    )


if __name__ == "__main__":
    main()
