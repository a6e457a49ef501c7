"""Crash loop: SIGKILL a real `countersign serve` at random moments, restart it, carry on; then
prove that nothing ran twice, no audit event went missing and nothing is stuck.

Each round starts `countersign serve` (a fork of a warm interpreter running the real CLI, see
`chaos._crash_support`; SQLite file database, or a temporary PostgreSQL database with
`--backend postgres`), drives work at it as Slack would (signed slash commands,
signed Approve / Reject / Veto clicks) and kills it with SIGKILL after a random delay, while
clicks, model calls (the fake Messages API in this process sometimes holds a reply for
seconds), tool calls (`chaos._crash_support`: they nap, then record raw calls and effects in
real tables), outbox sends (the Slack emulator sometimes hangs a method) and escalation steps
(a short chain per task type) are under way. After the last round a final server settles
everything (its clock moved past every dead lease), then the checks run:

- duplicates: an idempotent tool's effects per idempotency key ≤ 1 (raw calls may repeat:
  a replay after a crash), exactly 1 for a succeeded action; a non-idempotent tool's raw
  calls ≤ 1 per action, and one killed mid-call leaves its action `unknown`; no tool ran for
  an action that was never approved;
- audit: `countersign audit verify` exits 0, and every action's state is the `to_state` of
  its latest audit event, every move linking to the previous one;
- stuck: no action left drafted, approved, executing or due; `unknown` only for a
  non-idempotent tool whose executor died holding the lease; no task running, no timer due,
  no outbox row undelivered.

    .venv/bin/python -m chaos.crash_loop [--rounds 100] [--backend sqlite|postgres] [--seed N] [--verbose]

Prints one summary line (problems, if any, on stderr before it) and exits 1 on a failure.
PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local `postgres`
superuser).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.executor import LOST_LEASE_NOTE  # noqa: E402
from bot import action_ids  # noqa: E402
from bot.blocks.card import decide_block_id  # noqa: E402
from bot.sandbox import SlackEmulator  # noqa: E402
from bot.sandbox.signed import (  # noqa: E402
    FORM,
    block_actions_payload,
    interaction_body,
    send,
    signed,
    slash_command_body,
    view_submission_payload,
)
from chaos import _crash_support as support  # noqa: E402
from chaos.common import SECRET, TEAM, TOKEN, database, free_port, note, serve_env, summary  # noqa: E402
from core.db import make_engine, normalize_url  # noqa: E402
from core.models import Action, AuditEvent, Decision, OutboxMessage, Task, Timer  # noqa: E402
from tests.fakes.anthropic_server import FakeAnthropic  # noqa: E402

COUNTERSIGN = str(Path(sys.executable).parent / "countersign")
APPROVALS, ADMINS = "C0APPROVALS", "C0ADMINS"
ALICE, BOB, ADMIN = "U0ALICE", "U0BOB", "U0ADMIN"
REQUESTERS = ("U0REQ0", "U0REQ1", "U0REQ2", "U0REQ3")  # expiry notices are DMs: one channel each
APPROVERS = [ALICE, BOB]
# Past every lease a killed server can leave (agent 300 s, outbox 60 s, executor timeout + 30 s)
# and every chain's expiry, short of the 30 min after which waiting tasks count as stalled.
SETTLE_OFFSET_S = 600.0
SETTLE_DEADLINE_S = 120.0
HEALTH_DEADLINE_S = 60.0
SLACK_HANG_METHODS = ("chat.postMessage", "chat.update", "conversations.open")
KINDS: dict[str, dict[str, Any]] = {
    "idem": {  # people approve; the tool dedupes on its idempotency key
        "description": "Idempotent effect, approved by a person",
        "tools": ["chaos_idempotent"],
        "autonomy": "hitl",
        "escalation": [{"after": "12s", "then": "expire"}],
    },
    "once": {  # people approve; the tool must never run twice
        "description": "Non-idempotent effect, approved by a person",
        "tools": ["chaos_once"],
        "autonomy": "hitl",
        "escalation": [{"after": "12s", "then": "expire"}],
    },
    "veto": {  # runs when its veto window ends, unless vetoed
        "description": "Non-idempotent effect in a veto window",
        "tools": ["chaos_once"],
        "autonomy": "hotl",
        "veto_window": "2s",
        # Vetoes can demote the type to hitl (3 of the last 10); its drafts then wait for a
        # person, and expire like the others.
        "escalation": [{"after": "12s", "then": "expire"}],
    },
    "auto": {  # runs at once
        "description": "Idempotent effect, no person",
        "tools": ["chaos_idempotent"],
        "autonomy": "auto",
    },
}
# Each kind in a few lanes, each lane a task type with its own channel: the outbox sender
# posts at most once a second per channel, and every kill leaves it a backlog to drain.
LANES = 3
TASK_TYPES = [f"{kind}{lane}" for kind in KINDS for lane in range(LANES)]
CHANNELS = [f"C0{name.upper()}" for name in TASK_TYPES]
CONFIG: dict[str, Any] = {
    "slack": {"approvals_channel": APPROVALS, "admin_channel": ADMINS, "admins": [ADMIN]},
    "tools": {"modules": ["chaos._crash_support"]},
    "task_types": {
        f"{kind}{lane}": {
            **spec,
            "instructions": "Record the effect named in the request.",
            "approvers": APPROVERS,
            "channel": f"C0{kind.upper()}{lane}",
        }
        for kind, spec in KINDS.items()
        for lane in range(LANES)
    },
}
# One lane of each person-approved kind also reminds the approvers before the expiry.
for name in ("idem0", "once0"):
    CONFIG["task_types"][name]["escalation"] = [
        {"after": "3s", "notify": "approvers"},
        {"after": "12s", "then": "expire"},
    ]
REF = re.compile(r"ref=(\w+)")


# -- the fakes around the server -------------------------------------------------------------


class CountingSlack(SlackEmulator):
    """The Slack emulator, counting the Web API calls it is answering right now."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.in_flight = Gauge()

    def call(self, method: str, params: dict[str, Any], token: str | None = None) -> Any:
        with self.in_flight.track():
            return super().call(method, params, token)


class Gauge:
    """Counts what is under way (`with gauge.track():` around each one); `since(t)` counts those
    begun at or after `t`: a killed server's calls may still be held here after it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._next = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        with self._lock:
            self._next += 1
            mine = self._next
            self._started[mine] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                del self._started[mine]

    def since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for began in self._started.values() if began >= moment)


class Model:
    """Answers the fake Messages API like a model that does what the request says: first turn,
    call the task type's tool with the request's `ref`; after the tool's result, say done.
    Some calls are held a while first, so that kills land mid-call."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.hang_share = rng, 0.3
        self.in_flight = Gauge()
        self.closing = threading.Event()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.in_flight.track():
            if self.rng.random() < self.hang_share:
                self.closing.wait(self.rng.uniform(0.3, 2.5))
            messages = body.get("messages") or []
            if any(message.get("role") == "assistant" for message in messages):
                return {"content": [{"type": "text", "text": "Done."}]}
            first = messages[0].get("content") if messages else ""
            found = REF.search(json.dumps(first))
            tool = (body.get("tools") or [{}])[0].get("name", "")
            params = {"ref": found.group(1) if found else "missing", "rationale": "asked to", "confidence": 0.95}
            return {"content": [{"type": "tool_use", "name": tool, "input": params}]}


# -- the servers ---------------------------------------------------------------------------


class Server:
    """One forked `countersign serve`; the zygote reports its death."""

    def __init__(self, servers: Servers, pid: int) -> None:
        self.servers, self.pid = servers, pid

    def poll(self) -> int | None:
        """Its wait status once it has died, else None."""
        return self.servers.status(self.pid, timeout_s=0)

    def kill(self) -> int:
        with suppress(ProcessLookupError):  # it may have died by itself a moment ago
            os.kill(self.pid, signal.SIGKILL)
        return self.wait()

    def interrupt(self, timeout_s: float = 30.0) -> int:
        """SIGINT (a graceful stop), then SIGKILL if it is still there after `timeout_s`."""
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        status = self.servers.status(self.pid, timeout_s=timeout_s)
        return self.kill() if status is None else status

    def wait(self) -> int:
        status = self.servers.status(self.pid, timeout_s=60)
        if status is None:
            raise RuntimeError(f"server {self.pid} did not die")
        return status


class Servers:
    """Starts servers as forks of one warm interpreter (`chaos._crash_support.zygote`)."""

    def __init__(self, env: dict[str, str], workdir: Path, log_path: Path) -> None:
        self.log_path = log_path
        bootstrap = "from chaos._crash_support import zygote; zygote()"
        with log_path.open("ab") as log:
            self.zygote = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", bootstrap],
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._lines: queue.Queue[dict[str, int]] = queue.Queue()
        self._statuses: dict[int, int] = {}
        threading.Thread(target=self._read, name="zygote-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.zygote.stdout is not None
        for line in self.zygote.stdout:
            self._lines.put(json.loads(line))

    def start(self, port: int, clock_offset_s: float = 0.0) -> Server:
        argv = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        order = {"argv": argv, "log": str(self.log_path), "clock_offset_s": clock_offset_s}
        assert self.zygote.stdin is not None
        self.zygote.stdin.write(json.dumps(order) + "\n")
        self.zygote.stdin.flush()
        reply = self._next(timeout_s=60)
        if "started" not in reply:
            raise RuntimeError(f"the zygote answered {reply} to a start")
        return Server(self, reply["started"])

    def status(self, pid: int, timeout_s: float) -> int | None:
        if pid not in self._statuses:
            try:
                reply = self._next(timeout_s)
            except queue.Empty:
                return None
            self._statuses[reply["pid"]] = reply["status"]
        return self._statuses.get(pid)

    def _next(self, timeout_s: float) -> dict[str, int]:
        if self.zygote.poll() is not None and self._lines.empty():
            raise RuntimeError(f"the zygote exited ({self.zygote.returncode}); see {self.log_path}")
        return self._lines.get(timeout=timeout_s) if timeout_s > 0 else self._lines.get_nowait()

    def close(self) -> None:
        if self.zygote.poll() is None:
            assert self.zygote.stdin is not None
            self.zygote.stdin.close()  # its loop ends
            try:
                self.zygote.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.zygote.kill()
                self.zygote.wait()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=0.5) as reply:  # noqa: S310 - loopback URL we built
            return bool(reply.status == 200)
    except (OSError, http.client.HTTPException):
        return False


# -- what Slack sends ---------------------------------------------------------------------


class Driver:
    """Sends one round's work to a live server until told to stop; a dead server is no error."""

    def __init__(self, url: str, slack: SlackEmulator, reader: Engine, rng: random.Random, round_no: int) -> None:
        self.url, self.slack, self.reader, self.rng, self.round_no = url + "/slack/events", slack, reader, rng, round_no
        self.in_flight = Gauge()
        self.sent: Counter[str] = Counter()

    def run(self, stop: threading.Event) -> None:
        for number in range(self.rng.choice([0, 1, 1])):  # Slack posts ~1/s: more would not drain
            if stop.is_set():
                return
            kind = self.rng.choice(["idem", "idem", "once", "once", "veto", "auto"])
            task_type, requester = f"{kind}{self.rng.randrange(LANES)}", self.rng.choice(REQUESTERS)
            ref = f"r{self.round_no:04d}n{number}x{self.rng.getrandbits(24):06x}"
            body = slash_command_body(
                team_id=TEAM,
                user_id=requester,
                channel_id=APPROVALS,
                text=f"run {task_type} record ref={ref}",
                response_url=self.slack.new_response_url(APPROVALS, None, requester),
                trigger_id=self.slack.new_trigger_id(requester),
            )
            self._send("command", body)
        while not stop.wait(self.rng.uniform(0.05, 0.2)):
            for public_id, state, params_hash in self._open_actions():
                if stop.is_set():
                    return
                self._decide(public_id, state, params_hash)

    def burst(self, clicks: int = 4) -> None:
        """Approve clicks on the newest actions, all at once, not waiting for the answers: on a
        decided one, a click is a refusal, which is written to the ledger all the same."""
        with self.reader.connect() as conn:
            newest = conn.execute(
                select(Action.public_id, Action.params_hash).order_by(Action.id.desc()).limit(clicks)
            ).all()
        for public_id, params_hash in newest:
            click = (action_ids.APPROVE, public_id, params_hash, self.rng.choice(APPROVERS))
            threading.Thread(target=self._click, args=click, daemon=True).start()

    def _open_actions(self) -> list[tuple[str, str, str]]:
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(Action.public_id, Action.state, Action.params_hash)
                .where(Action.state.in_(["pending", "scheduled"]))
                .order_by(Action.id.desc())
                .limit(20)
            ).all()
        return [(row[0], row[1], row[2]) for row in rows]

    def _decide(self, public_id: str, state: str, params_hash: str) -> None:
        roll, user = self.rng.random(), self.rng.choice(APPROVERS)
        if state == "scheduled":
            if roll < 0.05:
                self._click(action_ids.VETO, public_id, params_hash, user)
            return
        if roll < 0.45:
            self._click(action_ids.APPROVE, public_id, params_hash, user)
        elif roll < 0.5:  # a double click
            self._click(action_ids.APPROVE, public_id, params_hash, user)
            self._click(action_ids.APPROVE, public_id, params_hash, user)
        elif roll < 0.56:
            self._reject(public_id, params_hash, user)
        elif roll < 0.6:
            self._click(action_ids.ACKNOWLEDGE, public_id, params_hash, user)
        # else: left to its escalation chain

    def _click(self, action_id: str, public_id: str, params_hash: str, user: str) -> None:
        element = {"type": "button", "action_id": action_id, "value": public_id}
        action = {
            "type": "button",
            "action_id": action_id,
            "block_id": decide_block_id(params_hash),
            "value": public_id,
            "text": {"type": "plain_text", "text": action_id},
            "action_ts": f"{time.time():.6f}",
        }
        payload = block_actions_payload(
            team_id=TEAM,
            user_id=user,
            actions=[action],
            trigger_id=self.slack.new_trigger_id(user),
            message={"type": "message", "ts": "1.000001", "text": "card", "blocks": [element]},
            channel_id=APPROVALS,
            response_url=self.slack.new_response_url(APPROVALS, None, user),
        )
        self._send(action_id, interaction_body(payload))

    def _reject(self, public_id: str, params_hash: str, user: str) -> None:
        view = {
            "id": "V0CHAOS",
            "type": "modal",
            "callback_id": action_ids.REJECT_MODAL,
            "private_metadata": json.dumps({"action_id": public_id, "params_hash": params_hash}),
        }
        values = {"reason": {"reason": {"type": "plain_text_input", "value": "not this one"}}}
        payload = view_submission_payload(
            team_id=TEAM, user_id=user, view=view, values=values, trigger_id=self.slack.new_trigger_id(user)
        )
        self._send("reject", interaction_body(payload))

    def _send(self, what: str, body: bytes) -> None:
        try:
            with self.in_flight.track():
                reply = send(self.url, signed(SECRET, body, FORM), timeout=5)
            self.sent[f"{what}:{reply.status}"] += 1
        except (OSError, http.client.HTTPException):
            self.sent[f"{what}:dropped"] += 1


# -- the loop ------------------------------------------------------------------------------


@dataclass
class Kills:
    rounds: int = 0
    before_healthy: int = 0
    moments: Counter[str] = field(default_factory=Counter)
    startup_s: list[float] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)


def run_round(
    round_no: int,
    servers: Servers,
    slack: CountingSlack,
    model: Model,
    reader: Engine,
    rng: random.Random,
    kills: Kills,
    max_delay_s: float,
) -> None:
    if rng.random() < 0.5:
        slack.hang(rng.choice(SLACK_HANG_METHODS), rng.uniform(0.3, 2.0), times=rng.randint(1, 3))
    port = free_port()
    went = time.monotonic()
    server = servers.start(port)
    try:
        _kill_at_random(round_no, server, went, port, slack, model, reader, rng, kills, max_delay_s)
    finally:
        if server.poll() is None:  # the round failed half-way: leave no server behind
            server.kill()


def _kill_at_random(
    round_no: int,
    server: Server,
    went: float,
    port: int,
    slack: CountingSlack,
    model: Model,
    reader: Engine,
    rng: random.Random,
    kills: Kills,
    max_delay_s: float,
) -> None:
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    driver = Driver(url, slack, reader, random.Random(rng.getrandbits(64)), round_no)
    thread: threading.Thread | None = None
    started = went
    if rng.random() < 0.1:  # mid-startup
        kill_at = went + rng.uniform(0.05, 0.6)
    else:  # once it serves: the delay counts from there, however slow the machine is today
        deadline = went + HEALTH_DEADLINE_S
        while not healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start in round {round_no} (status {server.poll()})")
            time.sleep(0.02)
        started = time.monotonic()
        thread = threading.Thread(target=driver.run, args=(stop,), name=f"driver-{round_no}", daemon=True)
        thread.start()
        kill_at = started + rng.uniform(0.1, max_delay_s)
    # Tool calls are rare and short: some rounds watch for one of this server's and kill it then.
    aim_at_tool = thread is not None and rng.random() < 0.2
    if aim_at_tool:
        kill_at += 2.0  # a longer round, for an execution to come along
    while time.monotonic() < kill_at:
        if server.poll() is not None:
            raise RuntimeError(f"serve exited by itself (status {server.poll()}) in round {round_no}")
        if aim_at_tool and tools_killed_mid_call(reader, server.pid):
            break
        time.sleep(0.01)
    if thread is not None and not aim_at_tool and rng.random() < 0.3:  # clicks take ms: aim some kills at them
        driver.burst()
        time.sleep(rng.uniform(0.0, 0.03))
    if thread is None:
        kills.before_healthy += 1
    moments = {"click": driver.in_flight.since(went), "model": model.in_flight.since(went)}
    moments["slack"] = slack.in_flight.since(went)
    server.kill()
    stop.set()
    if thread is not None:
        thread.join(timeout=10)
    moments["tool"] = tools_killed_mid_call(reader, server.pid)
    kills.rounds += 1
    kills.startup_s.append(started - went if thread is not None else float("nan"))
    kills.moments.update({name: 1 for name, count in moments.items() if count})
    kills.requests.update(driver.sent)


def tools_killed_mid_call(reader: Engine, pid: int) -> int:
    with reader.connect() as conn:
        calls = support.CALLS
        rows = conn.execute(select(calls.c.id).where(calls.c.pid == pid, calls.c.finished_at.is_(None))).all()
    return len(rows)


def busy(reader: Engine, now: datetime) -> dict[str, int]:
    """What is still due or under way, seen at `now` (the settling server's shifted clock)."""
    queries = {
        "tasks running": "SELECT COUNT(*) FROM tasks WHERE state IN ('running', 'stalled')",
        "actions moving": "SELECT COUNT(*) FROM actions WHERE state IN ('drafted', 'approved', 'executing')",
        "actions due": "SELECT COUNT(*) FROM actions WHERE state = 'scheduled' AND run_at <= :now",
        # ... or soon: drafts the settling server makes itself get to expire too
        "timers due": "SELECT COUNT(*) FROM timers WHERE state = 'pending' AND due_at <= :soon",
        "outbox undelivered": "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL",
    }
    stamp = now if reader.dialect.name == "postgresql" else now.replace(tzinfo=None)
    times = {"now": stamp, "soon": stamp + timedelta(seconds=20)}
    with reader.connect() as conn:
        found = {name: int(conn.execute(text(query), times).scalar_one()) for name, query in queries.items()}
    return {name: count for name, count in found.items() if count}


def settle(
    servers: Servers, reader: Engine, slack: CountingSlack, model: Model, *, verbose: bool = False
) -> tuple[bool, dict[str, int], float]:
    """Start a last server past every dead lease and wait until nothing is due; stop it gently."""
    slack.clear_faults()
    model.hang_share = 0.0
    port, began = free_port(), time.monotonic()
    server = servers.start(port, clock_offset_s=SETTLE_OFFSET_S)
    url = f"http://127.0.0.1:{port}"
    deadline = began + HEALTH_DEADLINE_S
    while not healthy(url):
        if server.poll() is not None or time.monotonic() > deadline:
            return False, {"settling server did not start": 1}, time.monotonic() - began
        time.sleep(0.05)
    quiet, remaining = 0, {"not polled": 1}
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while time.monotonic() < deadline and quiet < 4:
        time.sleep(0.3)
        remaining = busy(reader, datetime.now(UTC) + timedelta(seconds=SETTLE_OFFSET_S))
        quiet = 0 if remaining else quiet + 1
        if verbose:
            note("crash_loop", f"settling {time.monotonic() - began:5.1f} s: {remaining or 'quiet'}")
    server.interrupt()
    return quiet >= 4, remaining, time.monotonic() - began


# -- the checks ----------------------------------------------------------------------------


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    replays: int = 0
    unknown: int = 0
    unknown_before_call: int = 0
    audit_events: int = 0
    verify: str = ""
    duplicates: int = 0
    lost_audit: int = 0
    stuck: int = 0

    def fail(self, column: str, problem: str) -> None:
        setattr(self, column, getattr(self, column) + 1)
        self.problems.append(f"{column}: {problem}")


def check(reader: Engine, env: dict[str, str], workdir: Path, now: datetime) -> Report:
    report = Report()
    verify = subprocess.run(  # noqa: S603 - our own CLI
        [COUNTERSIGN, "audit", "verify"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    lines = (verify.stdout + verify.stderr).strip().splitlines()
    report.verify = lines[-1] if lines else f"audit verify exited {verify.returncode}"
    if verify.returncode != 0:
        report.fail("lost_audit", f"audit verify exited {verify.returncode}: {verify.stdout}{verify.stderr}")
    with reader.connect() as conn:
        actions = conn.execute(select(Action)).all()
        tasks = conn.execute(select(Task.public_id, Task.id, Task.state)).all()
        events = conn.execute(
            select(AuditEvent.seq, AuditEvent.action_id, AuditEvent.kind, AuditEvent.from_state, AuditEvent.to_state)
            .where(AuditEvent.action_id.is_not(None))
            .order_by(AuditEvent.seq)
        ).all()
        report.audit_events = int(conn.execute(text("SELECT COUNT(*) FROM audit_events")).scalar_one())
        calls = conn.execute(select(support.CALLS)).all()
        effects = conn.execute(select(support.EFFECTS)).all()
        decisions = conn.execute(select(Decision.action_id, Decision.kind)).all()
        timers = conn.execute(select(Timer.action_id, Timer.state)).all()
        undelivered = conn.execute(select(OutboxMessage.id).where(OutboxMessage.delivered_at.is_(None))).all()
    by_action: dict[str, list[Any]] = {}
    for event in events:
        by_action.setdefault(event.action_id, []).append(event)
    calls_by_ref: dict[str, list[Any]] = {}
    for call in calls:
        calls_by_ref.setdefault(call.ref, []).append(call)
    effects_by_ref: Counter[str] = Counter(effect.ref for effect in effects)
    effects_by_key: Counter[str] = Counter(effect.key for effect in effects if effect.key)
    decided = {(row.action_id, row.kind) for row in decisions}
    open_timers = {row.action_id for row in timers if row.state == "pending"}
    refs = set()
    for action in actions:
        report.states[action.state] += 1
        ref = str((action.params or {}).get("ref", ""))
        refs.add(ref)
        _check_audit(report, action, by_action.get(action.public_id, []))
        _check_effects(report, action, calls_by_ref.get(ref, []), effects_by_ref[ref], effects_by_key)
        _check_settled(report, action, now, decided, open_timers)
    for ref in set(calls_by_ref) - refs:
        report.fail("duplicates", f"tool calls for ref {ref!r}, which no action has")
    # A task may wait on a person: an action pending (a demotion re-gates scheduled ones) or unknown.
    waiting_on_people = {action.task_id for action in actions if action.state in ("pending", "unknown")}
    for task in tasks:
        report.tasks[task.state] += 1
        if task.state in ("running", "stalled", "paused"):
            report.fail("stuck", f"task {task.public_id} is {task.state} after settling")
        elif task.state == "waiting" and task.id not in waiting_on_people:
            report.fail("stuck", f"task {task.public_id} waits, but none of its actions waits for a person")
    if undelivered:
        report.fail("stuck", f"{len(undelivered)} outbox rows undelivered after settling")
    return report


def _check_audit(report: Report, action: Any, events: list[Any]) -> None:
    if not events:
        report.fail("lost_audit", f"{action.public_id} ({action.state}) has no audit event")
        return
    last = events[-1]
    if last.to_state != action.state:
        report.fail(
            "lost_audit",
            f"{action.public_id} is {action.state}, its latest audit event ({last.kind}) says {last.to_state}",
        )
    previous = None
    for event in events:
        moved = event.from_state is not None and event.from_state != event.to_state
        if moved and previous is not None and event.from_state != previous:
            report.fail(
                "lost_audit",
                f"{action.public_id}: event {event.seq} ({event.kind}) moves from {event.from_state}, "
                f"but the previous event left it {previous}",
            )
        previous = event.to_state


def _check_effects(report: Report, action: Any, calls: list[Any], effects: int, effects_by_key: Counter[str]) -> None:
    name = f"{action.public_id} ({action.tool}, {action.state})"
    ran_states = {"executing", "succeeded", "failed", "unknown"}
    if calls and action.state not in ran_states:
        report.fail("duplicates", f"{name}: the tool ran {len(calls)}x, but the action was never run")
    if action.idempotent:
        keyed = effects_by_key[action.public_id]
        report.replays += max(0, len(calls) - 1)
        if keyed > 1 or effects > 1:
            report.fail("duplicates", f"{name}: {keyed} effects for one idempotency key")
        if action.state == "succeeded" and keyed != 1:
            report.fail("duplicates", f"{name}: succeeded with {keyed} effects")
        return
    if len(calls) > 1 or effects > 1:
        report.fail("duplicates", f"{name}: a non-idempotent tool ran {len(calls)}x ({effects} effects)")
    if action.state == "unknown" and not calls:
        report.unknown_before_call += 1  # the executor died holding the lease, before the tool began
    if any(call.finished_at is None for call in calls) and action.state != "unknown":
        report.fail("duplicates", f"{name}: killed mid-call, but the action did not end unknown")
    if action.state == "succeeded" and effects != 1:
        report.fail("duplicates", f"{name}: succeeded with {effects} effects")


def _check_settled(report: Report, action: Any, now: datetime, decided: set[tuple[int, str]], timers: set[int]) -> None:
    name = f"{action.public_id} ({action.task_type}, {action.state})"
    state = action.state
    if state in ("drafted", "approved", "executing"):
        report.fail("stuck", f"{name} after settling (lease {action.lease_owner!r} until {action.lease_until})")
    elif state == "scheduled" and action.run_at is not None and action.run_at.replace(tzinfo=UTC) <= now:
        report.fail("stuck", f"{name}: its veto window ended at {action.run_at}, but it never ran")
    elif state == "pending" and action.task_type[:4] in ("idem", "once") and action.id not in timers:
        report.fail("stuck", f"{name}: pending without its escalation timer")
    elif state == "unknown":
        report.unknown += 1
        if action.idempotent or action.error != LOST_LEASE_NOTE:
            report.fail("stuck", f"{name}: unknown, not from a non-idempotent tool losing its lease: {action.error!r}")
    for state_kind, decision in (("approved", "approve"), ("rejected", "reject"), ("vetoed", "veto")):
        if state == state_kind and (action.id, decision) not in decided:
            report.fail("lost_audit", f"{name}: no {decision} decision recorded")


# -- main ----------------------------------------------------------------------------------


def prepare(url: str) -> None:
    engine = make_engine(url)
    try:
        support.create_tables(engine)
    finally:
        engine.dispose()


def keep_sqlite(source: str, target: Path) -> None:
    """Copy the database out of its temporary directory (the backup API includes the WAL)."""
    with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(target)) as copy:
        live.backup(copy)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="kill/restart rounds (default 100)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument(
        "--max-delay", type=float, default=2.0, help="latest kill, in s after the server answers (default 2.0)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (config, server logs)")
    parser.add_argument("--verbose", action="store_true", help="a progress line per round on stderr")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cs-chaos-crash-"))
    with ExitStack() as stack:
        url = stack.enter_context(database(args.backend, "crash"))
        prepare(url)
        reader = create_engine(normalize_url(url))
        stack.callback(reader.dispose)
        model = Model(random.Random(rng.getrandbits(64)))
        fake = stack.enter_context(FakeAnthropic())
        stack.callback(model.closing.set)  # runs before the fake closes: releases held calls
        fake.respond_with(model)
        slack = stack.enter_context(CountingSlack())
        for channel in (APPROVALS, ADMINS, *CHANNELS):
            slack.add_channel(channel, channel.lower())
        for user in (*REQUESTERS, ALICE, BOB, ADMIN):
            slack.add_user(user, user.lower())
        config_path = workdir / "countersign.yml"
        config_path.write_text(yaml.safe_dump(CONFIG))
        env = serve_env(url, config_path, slack, anthropic_url=fake.url)
        servers = Servers(env, workdir, workdir / "serve.log")
        stack.callback(servers.close)
        kills = Kills()
        for round_no in range(args.rounds):
            run_round(round_no, servers, slack, model, reader, rng, kills, args.max_delay)
            if args.verbose:
                note("crash_loop", f"round {round_no}: started in {kills.startup_s[-1]:.2f} s, {kills.moments}")
        settled, remaining, settle_s = settle(servers, reader, slack, model, verbose=args.verbose)
        servers.close()
        report = check(reader, env, workdir, datetime.now(UTC) + timedelta(seconds=SETTLE_OFFSET_S))
        if not settled:
            report.fail("stuck", f"not settled within {SETTLE_DEADLINE_S:.0f} s: {remaining}")
        if (args.keep or report.problems) and url.startswith("sqlite:///"):
            keep_sqlite(url.removeprefix("sqlite:///"), workdir / "chaos.db")
    passed = not report.problems
    for problem in report.problems[:50]:
        print(problem, file=sys.stderr)
    if len(report.problems) > 50:
        print(f"... and {len(report.problems) - 50} more", file=sys.stderr)
    if args.keep or not passed:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    fields = {
        "rounds": kills.rounds,
        "backend": args.backend,
        "seed": seed,
        "killed_mid": ",".join(f"{name}:{kills.moments[name]}" for name in ("click", "model", "tool", "slack"))
        + f",startup:{kills.before_healthy}",
        "tasks": sum(report.tasks.values()),
        "actions": ",".join(f"{state}:{count}" for state, count in sorted(report.states.items())),
        "replays": report.replays,
        "unknown_before_call": report.unknown_before_call,
        "requests": sum(kills.requests.values()),
        "audit_events": report.audit_events,
        "verify": "ok" if report.verify.startswith("ok") else "BROKEN",
        "duplicates": report.duplicates,
        "lost_audit": report.lost_audit,
        "stuck": report.stuck,
        "settle_s": f"{settle_s:.1f}",
        "total_s": f"{time.monotonic() - began:.0f}",
    }
    return summary("crash_loop", fields, passed)


if __name__ == "__main__":
    sys.exit(main())
