"""Decision delivery to many long-polls held at once by one `countersign serve` process: its
memory, and how soon each waiting client hears of the decision after the click is acked.

A real `countersign serve --workers 1` (one process; PostgreSQL unless `--backend sqlite`;
scripted model, Slack emulator in this process, background loops on), configured with one
external tool (`restart_service`, a JSON Schema for its params) on an approve-first task type,
and `COUNTERSIGN_API_TOKEN` for an all-types API client. Then:

1. `--polls` actions are asked for through `POST /api/actions` (the `countersign_client`
   package, `AsyncCountersign`, 20 at a time);
2. a long-poll for each, all at once (`GET /api/actions/{id}?wait=60`, asked again while
   undecided: `AsyncCountersign.wait`), each on its own connection, from one asyncio loop;
3. once every poll has been sent and `--hold` seconds passed, a signed Approve click for each
   action, one after another at `--rate` clicks/s on one keep-alive connection, each stamped
   when its 200 (the ack) has been read;
4. each long-poll's answer is stamped when it arrives. Delivery latency = answer - ack (it is
   negative when the answer came first: the click wakes the waiters before its ack is sent).

Printed: the polls answered and their states, delivery latency p50/p99/max (goal p99 ≤ 100 ms
after the ack), RSS of serve's process tree before the polls and while they are held (VmRSS),
and its peak (VmHWM, read once all are answered), and a check that each action was approved
once and answered `approved` with its params.

    .venv/bin/python bench/long_polls.py [--polls 500] [--rate 50] [--hold 3] [--backend postgres|sqlite]

PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local superuser);
`--backend postgres` falls back to SQLite, saying so, when it is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2
import yaml
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from countersign_client import Action as ClientAction
from countersign_client import AsyncCountersign

from bench.rss import (
    APPROVERS,
    CHANNEL,
    COUNTERSIGN,
    ROOT,
    SECRET,
    TOKEN,
    click_body,
    database,
    free_port,
    status_kb,
    stop_serve,
    tree,
    wait_healthy,
)
from bot.sandbox import SlackEmulator
from bot.sandbox.signed import FORM, signed
from core.db import make_engine, make_sessionmaker
from core.models import Action, Decision

API_TOKEN = "bench-api-token"
GOAL_P99_MS = 100.0
ASK_AT_ONCE = 20
SCHEMA = {
    "type": "object",
    "properties": {"service": {"type": "string"}, "replicas": {"type": "integer", "minimum": 1}},
    "required": ["service"],
    "additionalProperties": False,
}
CONFIG = {
    "slack": {"approvals_channel": CHANNEL},
    "tools": {"modules": []},
    "external_tools": {"restart_service": {"description": "Restart a service", "params": SCHEMA, "risk": "high"}},
    "task_types": {
        "ops": {"tools": ["restart_service"], "autonomy": "hitl", "approvers": list(APPROVERS), "quorum": 1}
    },
}
SCRIPT = {"ops": {"match": ".", "replies": [{"text": "ok"}]}}  # the model is never asked


def start(directory: Path, url: str, slack: SlackEmulator, port: int) -> subprocess.Popen[str]:
    (directory / "countersign.yml").write_text(yaml.safe_dump(CONFIG))
    (directory / "script.yml").write_text(yaml.safe_dump(SCRIPT))
    env = {
        **{name: value for name, value in os.environ.items() if name != "COUNTERSIGN_WORKERS"},
        "DATABASE_URL": url,
        "COUNTERSIGN_CONFIG": str(directory / "countersign.yml"),
        "COUNTERSIGN_MODEL_SCRIPT": str(directory / "script.yml"),
        "COUNTERSIGN_API_TOKEN": API_TOKEN,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = (directory / "serve.log").open("w")
    command = [COUNTERSIGN, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def rss_mb(pid: int) -> float:
    return sum(status_kb(each, "VmRSS") for each in tree(pid)) / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Clicker(threading.Thread):
    """Approve clicks, one after another at `rate` a second, once `go` is set; `acked[id]` is
    the `perf_counter` at which each click's answer had been read."""

    def __init__(self, port: int, slack: SlackEmulator, actions: list[ClientAction], rate: float) -> None:
        super().__init__(daemon=True)
        self.port, self.slack, self.actions, self.rate = port, slack, actions, rate
        self.go = threading.Event()
        self.acked: dict[str, float] = {}
        self.statuses: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            bodies = [
                click_body(self.slack, number, action.action_id, action.params_hash or "")
                for number, action in enumerate(self.actions)
            ]
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.go.wait()
            began = time.perf_counter()
            for number, (action, body) in enumerate(zip(self.actions, bodies, strict=True)):
                time.sleep(max(0.0, began + number / self.rate - time.perf_counter()))
                request = signed(SECRET, body, FORM)
                connection.request("POST", "/slack/events", body=request.body, headers=request.headers)
                reply = connection.getresponse()
                reply.read()
                self.acked[action.action_id] = time.perf_counter()
                self.statuses[str(reply.status)] += 1
            connection.close()
        except BaseException as exc:
            self.error = exc


async def ask(client: AsyncCountersign, polls: int) -> list[ClientAction]:
    gate = asyncio.Semaphore(ASK_AT_ONCE)

    async def one(number: int) -> ClientAction:
        async with gate:
            return await client.request(
                "ops",
                "restart_service",
                {"service": f"svc-{number}", "replicas": 1 + number % 3},
                rationale="bench",
                external_id=f"bench-{number}",
            )

    return list(await asyncio.gather(*(one(number) for number in range(polls))))


async def hold(
    url: str, actions: list[ClientAction], clicker: Clicker, hold_s: float, serve_pid: int
) -> tuple[dict[str, tuple[float, ClientAction]], list[str], float]:
    """Long-poll every action at once; set the clicker going once all are sent and `hold_s`
    passed. (answers by id with their arrival time, errors, RSS while held)."""
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=len(actions) + 10)
    answers: dict[str, tuple[float, ClientAction]] = {}
    errors: list[str] = []
    async with AsyncCountersign(url, API_TOKEN, transport=httpx2.AsyncHTTPTransport(limits=limits)) as client:
        # Every click is due within hold + polls / rate seconds: a poll still waiting a minute
        # after that is counted unanswered (the run ends in bounded time whatever the server does).
        timeout_s = hold_s + len(actions) / clicker.rate + 60

        async def poll(action: ClientAction) -> None:
            try:
                decided = await client.wait(action.action_id, timeout=timeout_s)
                answers[action.action_id] = (time.perf_counter(), decided)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        polls = [asyncio.create_task(poll(action)) for action in actions]
        await asyncio.sleep(hold_s)
        held_mb = rss_mb(serve_pid)
        clicker.go.set()
        await asyncio.gather(*polls)
    return answers, errors, held_mb


def check(db_url: str, actions: list[ClientAction], answers: dict[str, tuple[float, ClientAction]]) -> str:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            approvals = Counter(
                session.scalars(
                    select(Action.public_id)
                    .join(Decision, Decision.action_id == Action.id)
                    .where(Decision.kind == "approve")
                )
            )
            pending = session.scalar(select(func.count()).select_from(Action).where(Action.state == "pending"))
    finally:
        engine.dispose()
    wrong = 0
    for number, action in enumerate(actions):
        answer = answers.get(action.action_id)
        expected = {"service": f"svc-{number}", "replicas": 1 + number % 3}
        if answer is None or answer[1].state != "approved" or dict(answer[1].params or {}) != expected:
            wrong += 1
    missing = sum(1 for action in actions if approvals[action.action_id] == 0)
    duplicate = sum(1 for action in actions if approvals[action.action_id] > 1)
    good = not (wrong or missing or duplicate or pending)
    return (
        f"verify: approved once {len(actions) - missing - duplicate}, missing {missing}, duplicate {duplicate}, "
        f"still pending {pending}, answers wrong or absent {wrong}: {'PASS' if good else 'FAIL'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--polls", type=int, default=500, help="long-polls held at once (default 500)")
    parser.add_argument("--rate", type=float, default=50.0, help="approve clicks a second (default 50)")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds all polls are held before clicks (default 3)")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cs-bench-polls-") as tmp, SlackEmulator() as slack:
        directory = Path(tmp)
        slack.add_channel(CHANNEL, "approvals")
        for user in APPROVERS:
            slack.add_user(user, user.lower())
        with database(args.backend, directory) as (backend, db_url):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            serve = start(directory, db_url, slack, port)
            try:
                wait_healthy(serve, url, directory)

                async def asked() -> list[ClientAction]:
                    async with AsyncCountersign(url, API_TOKEN) as client:
                        return await ask(client, args.polls)

                asked_at = time.perf_counter()
                actions = asyncio.run(asked())
                asking_s = time.perf_counter() - asked_at
                states = Counter(action.state for action in actions)
                before_mb = rss_mb(serve.pid)
                clicker = Clicker(port, slack, actions, args.rate)
                clicker.start()
                answers, errors, held_mb = asyncio.run(hold(url, actions, clicker, args.hold, serve.pid))
                clicker.join()
                peaks = [round(status_kb(pid, "VmHWM") / 1024, 1) for pid in tree(serve.pid)]
            finally:
                stop_serve(serve)
            if clicker.error is not None:
                raise SystemExit(f"the clicks failed: {clicker.error!r}")
            latencies = [
                (answers[action_id][0] - acked) * 1000
                for action_id, acked in clicker.acked.items()
                if action_id in answers
            ]
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            answered = Counter(decided.state for _, decided in answers.values())
            print(
                f"serve --workers 1 on {backend}, scripted model, Slack emulator; {args.polls} actions asked in "
                f"{asking_s:.1f} s ({dict(states)})"
            )
            print(
                f"polls  {args.polls} held at once for {args.hold:g} s, then {args.rate:g} approve clicks/s "
                f"({dict(clicker.statuses)}); answered {dict(answered)}; errors {len(errors)}"
                + (f" (first: {errors[0]})" if errors else "")
            )
            print(
                f"delivery after the ack: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies, default=0):.1f} ms, "
                f"min {min(latencies, default=0):.1f} ms ({len(latencies)} answers)"
            )
            print(
                f"memory RSS {before_mb:.1f} MB before the polls, {held_mb:.1f} MB holding {args.polls}; "
                f"peak VmHWM {sum(peaks):.1f} MB over the {len(peaks)} process(es) of serve's tree"
            )
            ok = len(latencies) == args.polls and p99 <= GOAL_P99_MS and not errors
            print(
                f"summary: {args.polls} long-polls held by one serve, delivery p99 {p99:.1f} ms after the ack "
                f"(goal ≤ {GOAL_P99_MS:.0f}): {'PASS' if ok else 'MISS'}; peak RSS {sum(peaks):.1f} MB (VmHWM)"
            )
            print(check(db_url, actions, answers))
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
