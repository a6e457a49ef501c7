"""Resident memory of a real `countersign serve` process: idle after start, and under load.

The script starts `countersign serve` as its own process (scripted model, Slack emulator in this
process, PostgreSQL or SQLite), waits for `/healthz`, then samples VmRSS from /proc every 0.25 s
(the process plus any children it has):

1. idle: `--idle` seconds after it answers its health check;
2. load: `--commands` signed `/countersign run refund ...` slash commands sent evenly over
   `--seconds`, each drafting one refund the model proposes, and a signed Approve click for each
   pending action as soon as it shows in the database; sampled until every task has finished
   (or 60 s after the last command).

Goals: idle ≤ 150 MB, peak ≤ 250 MB. The peak is the kernel's high-water mark, VmHWM, read from
/proc/PID/status of each process of serve's tree once the load is done (so no spike between
two samples is missed), summed over them (with `--workers N`, each process's own peak: an upper
bound of the peak they reached together; a worker replaced during the run takes its peak with
it). Afterwards: every task succeeded and every action ran exactly once (one
`action.succeeded` audit event each).

    .venv/bin/python bench/rss.py [--backend postgres|sqlite] [--commands 100] [--seconds 20] [--idle 5]

PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local `postgres`
superuser); `--backend postgres` falls back to SQLite with a message if it is unreachable.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.databases import postgres_database
from bot.blocks.card import decide_block_id
from bot.sandbox import SlackEmulator
from bot.sandbox.signed import (
    FORM,
    block_actions_payload,
    button_action,
    interaction_body,
    send,
    signed,
    slash_command_body,
)
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Action, AuditEvent, Task

ROOT = Path(__file__).resolve().parent.parent
COUNTERSIGN = str(Path(sys.executable).parent / "countersign")
GOAL_IDLE_MB, GOAL_LOAD_MB = 150.0, 250.0
SECRET, TOKEN, TEAM, CHANNEL = "bench-signing-secret", "xoxb-bench", "T0SANDBOX", "C0APPROVALS"
REQUESTER, APPROVERS = "U0REQUESTER", ("U0ALICE", "U0BOB")
SAMPLE_S = 0.25
CONFIG = {
    "slack": {"approvals_channel": CHANNEL},
    # A small module of test tools: a tool module of this script would load the script's imports into serve.
    "tools": {"modules": ["tests.approvals.shop_tools"]},
    "task_types": {
        "refund": {
            "description": "Refund a customer order",
            "instructions": "Refund broken orders.",
            "tools": ["lookup_order", "issue_refund"],
            "autonomy": "hitl",
            "approvers": list(APPROVERS),
            "escalation": [{"after": "5m", "notify": "approvers"}, {"after": "30m", "then": "expire"}],
        }
    },
}
SCRIPT = {
    "refund": {
        "match": r"order (?P<order_id>\d+)",
        "replies": [
            {
                "tool_use": [
                    {
                        "name": "issue_refund",
                        "input": {"order_id": "{order_id}", "amount_cents": 500},
                        "rationale": "The customer says it arrived broken.",
                        "confidence": 0.9,
                    }
                ]
            },
            {"text": "Done with order {order_id}."},
        ],
    }
}


def tree(pid: int) -> list[int]:
    """The process and its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler:
    """VmRSS of the process tree every SAMPLE_S seconds, in MB, tagged with the current phase."""

    def __init__(self, pid: int) -> None:
        self.pid, self.phase = pid, "start"
        self.samples: list[tuple[str, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> tuple[float, int]:
        pids = tree(self.pid)
        return sum(status_kb(pid, "VmRSS") for pid in pids) / 1024, len(pids)

    def _run(self) -> None:
        while not self._stop.is_set():
            mb, processes = self.rss_mb()
            self.samples.append((self.phase, mb, processes))
            self._stop.wait(SAMPLE_S)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def of(self, phase: str) -> list[float]:
        return [mb for tag, mb, _ in self.samples if tag == phase]


def post(url: str, body: bytes) -> int:
    """One signed form POST to the app's /slack/events, as Slack sends it; its status (0: no answer)."""
    try:
        return send(url + "/slack/events", signed(SECRET, body, FORM)).status
    except OSError:
        return 0


def command_body(slack: SlackEmulator, number: int) -> bytes:
    return slash_command_body(
        team_id=TEAM,
        user_id=REQUESTER,
        channel_id=CHANNEL,
        text=f"run refund Refund order {number}",
        response_url=slack.new_response_url(CHANNEL, None, REQUESTER),
        trigger_id=slack.new_trigger_id(REQUESTER),
    )


def click_body(slack: SlackEmulator, number: int, public_id: str, params_hash: str) -> bytes:
    user, ts = APPROVERS[number % 2], "1700000000.000100"
    block_id = decide_block_id(params_hash)
    button = {
        "type": "button",
        "action_id": "approve",
        "value": public_id,
        "text": {"type": "plain_text", "text": "Approve"},
    }
    payload = block_actions_payload(
        team_id=TEAM,
        user_id=user,
        actions=[button_action(button, block_id)],
        trigger_id=slack.new_trigger_id(user),
        message={"ts": ts, "type": "message", "text": "card"},
        channel_id=CHANNEL,
        channel_name="approvals",
        response_url=slack.new_response_url(CHANNEL, ts, user),
    )
    return interaction_body(payload)


def load(url: str, db_url: str, slack: SlackEmulator, commands: int, seconds: float) -> tuple[Counter[str], float]:
    """Send the commands evenly, click Approve on each pending action once, until all tasks finish."""
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    sent_all = threading.Event()

    def send_commands() -> None:
        start = time.perf_counter()
        for number in range(commands):
            time.sleep(max(0.0, start + number * seconds / commands - time.perf_counter()))
            status = post(url, command_body(slack, number))
            with lock:
                statuses[f"command {status}"] += 1
        sent_all.set()

    sender = threading.Thread(target=send_commands)
    began = time.perf_counter()
    sender.start()
    clicked: set[str] = set()
    deadline = began + seconds + 60
    try:
        while time.perf_counter() < deadline:
            with sessions() as session:
                pending = session.execute(
                    select(Action.public_id, Action.params_hash).where(Action.state == "pending").order_by(Action.id)
                ).all()
                finished = session.scalar(
                    select(func.count()).select_from(Task).where(Task.state.in_(("succeeded", "failed", "cancelled")))
                )
            for public_id, params_hash in pending:
                if public_id not in clicked:
                    clicked.add(public_id)
                    status = post(url, click_body(slack, len(clicked), public_id, params_hash))
                    with lock:
                        statuses[f"click {status}"] += 1
            if sent_all.is_set() and finished == commands:
                break
            time.sleep(0.1)
    finally:
        sender.join()
        engine.dispose()
    return statuses, time.perf_counter() - began


def check(db_url: str, commands: int) -> str:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            tasks = Counter(session.scalars(select(Task.state)))
            actions = Counter(session.scalars(select(Action.state)))
            ran = Counter(
                session.scalars(
                    select(AuditEvent.action_public_id).where(
                        AuditEvent.kind == "action.succeeded", AuditEvent.action_public_id.is_not(None)
                    )
                )
            )
    finally:
        engine.dispose()
    lost = commands - sum(1 for count in ran.values() if count >= 1)
    duplicate = sum(1 for count in ran.values() if count > 1)
    good = tasks.get("succeeded") == commands and actions.get("succeeded") == commands and not lost and not duplicate
    return (
        f"verify: tasks {dict(tasks)}, actions {dict(actions)}; executions lost {lost}, duplicate {duplicate}: "
        f"{'PASS' if good else 'FAIL'}"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def wait_healthy(serve: subprocess.Popen[str], url: str, directory: Path, timeout_s: float = 60) -> None:
    """Wait until `serve` answers /healthz; stop the bench with its log if it dies or takes too long."""
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        if serve.poll() is not None or time.monotonic() > deadline:
            log = (directory / "serve.log").read_text()[-2000:]
            raise SystemExit(f"serve did not become healthy (exit {serve.returncode}):\n{log}")
        time.sleep(0.1)


@contextmanager
def database(backend: str, directory: Path) -> Iterator[tuple[str, str]]:
    """(backend actually used, URL) of a fresh, migrated database; SQLite when PostgreSQL is unreachable."""
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database("rss")) if backend == "postgres" else None
        if url is None:
            if backend == "postgres":
                print("using SQLite")
            backend, url = "sqlite", f"sqlite:///{directory / 'serve.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield backend, url


def start_serve(
    directory: Path, db_url: str, slack: SlackEmulator, port: int, config: dict[str, object] | None = None
) -> subprocess.Popen[str]:
    (directory / "countersign.yml").write_text(yaml.safe_dump(config or CONFIG))
    (directory / "script.yml").write_text(yaml.safe_dump(SCRIPT))
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "COUNTERSIGN_CONFIG": str(directory / "countersign.yml"),
        "COUNTERSIGN_MODEL_SCRIPT": str(directory / "script.yml"),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = (directory / "serve.log").open("w")
    return subprocess.Popen(
        [COUNTERSIGN, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_serve(serve: subprocess.Popen[str], timeout_s: float = 30) -> None:
    """SIGINT (a graceful stop), then SIGKILL if it is still there after `timeout_s`."""
    serve.send_signal(signal.SIGINT)
    try:
        serve.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        serve.kill()
        serve.wait()


def verdict(value: float, goal: float) -> str:
    return "PASS" if value <= goal else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--commands", type=int, default=100, help="slash commands, each one refund (default 100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="over how long to send them (default 20)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds sampled after start (default 5)")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cs-bench-rss-") as tmp, SlackEmulator() as slack:
        directory = Path(tmp)
        slack.add_channel(CHANNEL, "approvals")
        for user in (REQUESTER, *APPROVERS):
            slack.add_user(user, user.lower())
        with database(args.backend, directory) as (backend, db_url):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            serve = start_serve(directory, db_url, slack, port)
            sampler = Sampler(serve.pid).start()
            try:
                wait_healthy(serve, url, directory)
                started = time.perf_counter() - began
                sampler.phase = "idle"
                time.sleep(args.idle)
                sampler.phase = "load"
                statuses, took = load(url, db_url, slack, args.commands, args.seconds)
                sampler.phase = "after"
                time.sleep(1.0)
            finally:
                sampler.stop()
                peaks = [round(status_kb(pid, "VmHWM") / 1024, 1) for pid in tree(serve.pid)]
                hwm = sum(peaks)
                processes = max((count for _, _, count in sampler.samples), default=1)
                stop_serve(serve)
            idle, loaded = sampler.of("idle"), sampler.of("load")
            idle_mb, load_mb, after_mb = max(idle), max(loaded), max(sampler.of("after") or [0.0])
            print(
                f"serve on {backend}, scripted model, Slack emulator: healthy {started:.1f} s after launch; "
                f"{processes} process(es) in its tree; sampled every {SAMPLE_S:g} s"
            )
            print(f"idle   {args.idle:g} s: RSS {min(idle):6.1f}..{idle_mb:6.1f} MB ({len(idle)} samples)")
            print(
                f"load   {args.commands} commands over {args.seconds:g} s + one approve click each, all tasks done "
                f"in {took:.1f} s: RSS {min(loaded):6.1f}..{load_mb:6.1f} MB ({len(loaded)} samples); "
                f"after {after_mb:.1f} MB; {dict(statuses)}"
            )
            print(f"peak   VmHWM {hwm:.1f} MB, summed over the {len(peaks)} process(es) of serve's tree {peaks}")
            print(f"serve exit code {serve.returncode} after SIGINT")
            print(
                f"summary: idle RSS {idle_mb:.1f} MB (goal ≤ {GOAL_IDLE_MB:.0f}): {verdict(idle_mb, GOAL_IDLE_MB)}; "
                f"peak RSS under load {hwm:.1f} MB (VmHWM; goal ≤ {GOAL_LOAD_MB:.0f}): {verdict(hwm, GOAL_LOAD_MB)}"
            )
            print(check(db_url, args.commands))
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
