"""Click storms: rounds of concurrent signed Approve clicks on fresh pending actions, against two
`countersign serve` replicas on one PostgreSQL database.

Each round takes a pending action the agent drafted (a task submitted through the task API, a
scripted model drafting one `chaos_refund` call that needs one approval) and fires `--clicks`
signed Approve clicks at once, alternating replicas and five listed approvers. Exactly one click
may decide; every other one must be refused, audited and told to its clicker only. The tool
counts its own calls in `chaos_calls`, so a double execution cannot hide behind idempotency.

Counted, from the rows: duplicate decisions (an action with more than one approve decision, or
an action, actor and kind decided twice), duplicate executions (calls per action > 1), lost
decisions (an action without an approve decision, or a click answered 200 that left neither a
decision, nor an audited refusal, nor a "busy" notice to its clicker: under load a click may be
shed, `bot.admission`), unanswered or twice-answered refusals, non-200 answers, actions not run
within `--settle-seconds`, and `audit verify` at the end.

    .venv/bin/python -m chaos.click_storm [--rounds 200] [--clicks 50] [--replicas 2]

Real `serve` processes rather than in-process servers: two processes (two GILs, two pools, two
executors and outbox senders racing) are what a load balancer in front of replicas sees. The
full count of the issue is `--rounds 1000` (about 5x the default's time).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from bot.admission import busy as busy_text
from bot.sandbox import SlackEmulator
from bot.sandbox.signed import FORM, sign
from chaos import tools
from chaos.common import (
    API_TOKEN,
    SECRET,
    ChaosFailure,
    Server,
    approve_element,
    click_body,
    ledger_report,
    note,
    reader,
    summary,
    wait_for,
)
from chaos.stage import stage
from core.db import make_sessionmaker
from core.models import Action, AuditEvent, Decision, Task

NAME = "click_storm"
CHANNEL = "C0STORM"
REQUESTER = "U0REQUESTER"
APPROVERS = ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN")
SLOW_ACK_S = 3.0  # Slack shows the clicker an error after this long
BUSY = busy_text().split(";")[0]  # what a shed click's clicker is told (`bot.admission`)
CONFIG = {
    "slack": {"approvals_channel": CHANNEL},
    "tools": {"modules": ["chaos.tools"]},
    "task_types": {
        "storm": {
            "description": "Refunds approved under a click storm",
            "tools": ["chaos_refund"],
            "autonomy": "hitl",
            "approvers": list(APPROVERS),
            "quorum": 1,
        }
    },
}
SCRIPT = {
    "storm": {
        "match": r"order (?P<order_id>\d+)",
        "replies": [
            {
                "tool_use": [
                    {
                        "name": "chaos_refund",
                        "input": {"order_id": "{order_id}", "amount_cents": 500},
                        "rationale": "it arrived broken",
                        "confidence": 0.95,
                    }
                ]
            },
            {"text": "Refunded order {order_id}."},
        ],
    }
}


@dataclass
class Round:
    action_id: str
    statuses: list[int | str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    response_urls: list[str] = field(default_factory=list)


class Clickers:
    """`clicks` threads, each with a keep-alive connection to each replica (waitress accepts 100)."""

    def __init__(self, servers: list[Server], clicks: int) -> None:
        self.servers, self.clicks = servers, clicks
        self.pool = ThreadPoolExecutor(max_workers=clicks, thread_name_prefix="clicker")
        self.local = threading.local()

    def _connection(self, index: int) -> http.client.HTTPConnection:
        """This thread's keep-alive connection to the replica that click `index` goes to."""
        connections: dict[int, http.client.HTTPConnection] = self.local.__dict__.setdefault("connections", {})
        replica = index % len(self.servers)
        if replica not in connections:
            port = int(self.servers[replica].url.rsplit(":", 1)[1])
            connections[replica] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        return connections[replica]

    def fire(self, bodies: list[bytes]) -> list[tuple[int | str, float]]:
        start = threading.Barrier(len(bodies))

        def one(index: int) -> tuple[int | str, float]:
            start.wait(timeout=30)
            return self._post(index, bodies[index])

        return list(self.pool.map(one, range(len(bodies))))

    def _post(self, index: int, body: bytes) -> tuple[int | str, float]:
        conn = self._connection(index)
        headers = {"Content-Type": FORM, **sign(SECRET, body)}
        began = time.perf_counter()
        while True:
            kept = conn.sock is not None
            try:
                conn.request("POST", "/slack/events", body, headers)
                with conn.getresponse() as reply:
                    reply.read()
                    return reply.status, time.perf_counter() - began
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as exc:
                conn.close()  # reconnects on the next request
                if not kept:
                    return type(exc).__name__, time.perf_counter() - began
                # A kept-alive connection the server closed while idle (after 15 s): the click
                # never reached it, so it goes again on a new one, as HTTP clients do. (Had it
                # arrived, its signature would now be a replay: 401, counted as an error.)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                return type(exc).__name__, time.perf_counter() - began

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def submit_tasks(servers: list[Server], count: int) -> None:
    """`count` refund tasks through the task API, alternating replicas."""
    connections = [http.client.HTTPConnection("127.0.0.1", int(s.url.rsplit(":", 1)[1]), timeout=30) for s in servers]
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    for number in range(count):
        body = json.dumps({"task_type": "storm", "text": f"Refund order {number}", "requester": REQUESTER})
        conn = connections[number % len(connections)]
        conn.request("POST", "/api/tasks", body, headers)
        with conn.getresponse() as reply:
            answer = reply.read()
            if reply.status != 201:
                raise ChaosFailure(f"the task API answered {reply.status}: {answer[:200]!r}")
    for conn in connections:
        conn.close()


class PendingFeed:
    """Pending actions the storm has not clicked yet, oldest first, read from the database."""

    def __init__(self, engine_url: str, servers: list[Server]) -> None:
        self.engine = reader(engine_url, 2)
        self.sessions = make_sessionmaker(self.engine)
        self.servers = servers
        self.used: set[str] = set()
        self.ready: list[tuple[str, str]] = []

    def next(self) -> tuple[str, str]:
        def refill() -> bool:
            with self.sessions() as session:
                rows = session.execute(
                    select(Action.public_id, Action.params_hash).where(Action.state == "pending").order_by(Action.id)
                ).all()
            self.ready = [(a, h) for a, h in rows if a not in self.used]
            return bool(self.ready)

        if not self.ready:
            wait_for(refill, "a fresh pending action", self.servers, 60)
        action_id, params_hash = self.ready.pop(0)
        self.used.add(action_id)
        return action_id, params_hash


def storm(slack: SlackEmulator, servers: list[Server], url: str, rounds: int, clicks: int) -> list[Round]:
    feed, clickers, done = PendingFeed(url, servers), Clickers(servers, clicks), []
    began = time.monotonic()
    try:
        for number in range(rounds):
            action_id, params_hash = feed.next()
            element, block_id = approve_element(action_id, params_hash)
            current = Round(action_id)
            bodies = []
            for index in range(clicks):
                user = APPROVERS[index % len(APPROVERS)]
                body, response_url = click_body(slack, user, CHANNEL, None, element, block_id)
                bodies.append(body)
                current.response_urls.append(response_url)
            for status, latency in clickers.fire(bodies):
                current.statuses.append(status)
                current.latencies_s.append(latency)
            done.append(current)
            if (number + 1) % 50 == 0:
                note(NAME, f"{number + 1}/{rounds} rounds in {time.monotonic() - began:.0f} s")
    finally:
        clickers.close()
        feed.engine.dispose()
    return done


def settle(url: str, servers: list[Server], done: list[Round], seconds: float) -> None:
    """Wait until every clicked action has run and its task ended (or the time is up)."""
    engine = reader(url, 1)
    sessions = make_sessionmaker(engine)
    ids = [r.action_id for r in done]

    def finished() -> bool:
        with sessions() as session:
            open_actions = session.scalar(
                select(func.count()).where(Action.public_id.in_(ids), Action.state != "succeeded")
            )
            open_tasks = session.scalar(select(func.count()).select_from(Task).where(Task.state != "succeeded"))
        return open_actions == 0 and open_tasks == 0

    try:
        wait_for(finished, "every clicked action run", servers, seconds)
    except ChaosFailure as exc:
        note(NAME, f"settling: {exc}")
    finally:
        engine.dispose()


def answered(slack: SlackEmulator, expected: int, timeout_s: float = 30.0) -> tuple[dict[str, int], set[str]]:
    """Posts per response_url, and the response_urls told "busy" (a shed click), once `expected`
    of them were used (refusals and "busy" notices are told after the ack)."""
    deadline = time.monotonic() + timeout_s
    while True:
        hooks = slack.workspace.response_urls()
        posts = {hook.id: len(hook.posts) for hook in hooks}
        if sum(1 for n in posts.values() if n) >= expected or time.monotonic() > deadline:
            busy = {hook.id for hook in hooks if any(BUSY in str(post.get("text")) for post in hook.posts)}
            return posts, busy
        time.sleep(0.5)


def verify(url: str, slack: SlackEmulator, done: list[Round]) -> tuple[dict[str, object], bool]:
    engine = reader(url, 1)
    try:
        with make_sessionmaker(engine)() as session:
            ids = [r.action_id for r in done]
            states = dict(
                session.execute(select(Action.public_id, Action.state).where(Action.public_id.in_(ids))).all()
            )
            approvals = Counter(
                dict(
                    session.execute(
                        select(Action.public_id, func.count(Decision.id))
                        .join(Decision, Decision.action_id == Action.id)
                        .where(Decision.kind == "approve", Action.public_id.in_(ids))
                        .group_by(Action.public_id)
                    ).all()
                )
            )
            refusals = Counter(
                dict(
                    session.execute(
                        select(AuditEvent.action_public_id, func.count())
                        .where(AuditEvent.kind == "decision.refused", AuditEvent.action_public_id.in_(ids))
                        .group_by(AuditEvent.action_public_id)
                    ).all()
                )
            )
            twice = Counter(
                session.scalars(
                    select(Action.public_id)
                    .join(Decision, Decision.action_id == Action.id)
                    .where(Action.public_id.in_(ids))
                    .group_by(Action.public_id, Decision.actor, Decision.kind)
                    .having(func.count() > 1)
                )
            )
        calls = tools.calls(engine, "chaos_refund")
        ledger_ok, ledger = ledger_report(engine)
    finally:
        engine.dispose()
    decided_any = sum(1 for r in done if approvals[r.action_id])
    # Every click answered 200 but the one that decided is told: refused, or shed ("busy").
    posts, busy = answered(slack, sum(1 for r in done for status in r.statuses if status == 200) - decided_any)

    lost = duplicate = duplicate_decisions = unrun = unrecorded = unanswered = twice_told = shed = 0
    statuses: Counter[int | str] = Counter()
    latencies = sorted(s for r in done for s in r.latencies_s)
    examples: list[str] = []
    for r in done:
        statuses.update(r.statuses)
        ok = sum(1 for s in r.statuses if s == 200)
        decided, refused = approvals[r.action_id], refusals[r.action_id]
        told_busy = sum(1 for url in r.response_urls if url in busy)
        shed += told_busy
        if decided == 0:
            lost += 1
            examples.append(f"{r.action_id}: no approve decision")
        if decided > 1 or twice[r.action_id]:
            duplicate_decisions += 1
            examples.append(f"{r.action_id}: {decided} approve decisions ({twice[r.action_id]} by one actor twice)")
        if decided + refused + told_busy < ok:
            unrecorded += ok - decided - refused - told_busy
            examples.append(
                f"{r.action_id}: {ok} clicks answered 200, {decided} decisions + {refused} refusals + {told_busy} shed"
            )
        if calls[r.action_id] > 1:
            duplicate += 1
            examples.append(f"{r.action_id}: the tool ran {calls[r.action_id]} times")
        if calls[r.action_id] == 0 or states.get(r.action_id) != "succeeded":
            unrun += 1
            examples.append(f"{r.action_id}: {states.get(r.action_id)}, ran {calls[r.action_id]} times")
        told = [posts.get(url, 0) for url in r.response_urls]
        unanswered += max(0, refused + told_busy - sum(1 for n in told if n))
        twice_told += sum(1 for n in told if n > 1)
    clicks = sum(len(r.statuses) for r in done)
    errors = clicks - statuses[200]
    slow = sum(1 for s in latencies if s > SLOW_ACK_S)

    def pct(fraction: float) -> str:
        return f"{latencies[min(len(latencies) - 1, round(fraction * (len(latencies) - 1)))] * 1000:.0f}ms"

    fields: dict[str, object] = {
        "rounds": len(done),
        "clicks": clicks,
        "answered_200": statuses[200],
        "errors": errors,
        "lost": lost + unrecorded,
        "duplicate_decisions": duplicate_decisions,
        "duplicate": duplicate,
        "shed": shed,
        "unrun": unrun,
        "refusals_untold": unanswered,
        "told_twice": twice_told,
        "ack_p50": pct(0.5),
        "ack_p99": pct(0.99),
        f"ack_over_{SLOW_ACK_S:.0f}s": slow,
        "ledger": "ok" if ledger_ok else "BROKEN",
    }
    if errors:
        examples.append(f"answers: {dict(statuses)}")
    if not ledger_ok:
        examples.append(f"audit verify: {ledger}")
    for line in examples[:10]:
        note(NAME, line)
    bad = (lost, unrecorded, duplicate, duplicate_decisions, unrun, unanswered, twice_told, errors)
    passed = not any(bad) and ledger_ok
    return fields, passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=200, help="rounds, one fresh action each (issue: 1000)")
    parser.add_argument("--clicks", type=int, default=50, help="concurrent Approve clicks per round (default 50)")
    parser.add_argument("--replicas", type=int, default=2, help="`countersign serve` processes (default 2)")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs and config in this directory")
    parser.add_argument("--settle-seconds", type=float, default=120.0, help="for the last runs to finish")
    args = parser.parse_args()
    if args.backend == "sqlite" and args.replicas > 1:
        parser.error("SQLite serves one process: use --replicas 1 with --backend sqlite")
    began = time.monotonic()
    with stage(
        NAME,
        backend=args.backend,
        logs=args.logs,
        channels=[CHANNEL],
        users=[REQUESTER, *APPROVERS],
        config=CONFIG,
        script=SCRIPT,
    ) as world:
        try:
            servers = [world.serve(f"replica-{i}") for i in range(args.replicas)]
            submit_tasks(servers, args.rounds)
            note(NAME, f"{args.replicas} replicas up, {args.rounds} tasks in {time.monotonic() - began:.0f} s")
            done = storm(world.slack, servers, world.url, args.rounds, args.clicks)
            settle(world.url, servers, done, args.settle_seconds)
        except ChaosFailure as exc:
            return world.failed(exc)
        fields, passed = verify(world.url, world.slack, done)
        fields["seconds"] = f"{time.monotonic() - began:.0f}"
        return summary(NAME, fields, passed)


if __name__ == "__main__":
    sys.exit(main())
