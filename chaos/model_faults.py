"""Model faults: the Messages API fails for `--outage-seconds` while tasks are mid-way, then
comes back; every task must finish, none twice.

A real `countersign serve` talks to the fake Anthropic API (`tests.fakes.anthropic_server`)
through the official SDK with the product's own settings (60 s timeout, 2 SDK retries). Each
task drafts one `chaos_refund` that needs an approval, so `--tasks` tasks are waiting on their
cards when the outage starts. Then all are approved: the tools run and every task needs the
model again, into the outage:

- the first sixth of it answers 429 with `retry-after: --retry-after`,
- the next quarter 529 (overloaded, no retry-after),
- the rest (70 s of the default 120) holds each request for `--hang-seconds` (default 65 s,
  past the SDK's 60 s timeout, so it gives up and retries) or until the outage ends: timeouts.

The runner's own backoff spaces its attempts and stalls tasks that stay failing past
`model.outage_limit` (`--outage-limit`, small so stalls happen). After the outage the fake
answers again; within `--deadline-seconds` every task must have succeeded.

Counted: lost (not succeeded by the deadline, or no "done" message), failed, duplicate (a task
with more than one action, a tool run more than once, or two "done" messages), resumed
(tasks that met the outage and then succeeded), stalled and stalled-then-resumed, people told
of each, model requests by phase, and `waited_past_limit_unstalled`: tasks that waited on the
model longer than the outage limit without ever being marked stalled (the runner decides a
stall only when a call fails, and one hung call holds its only agent thread for minutes).

    .venv/bin/python -m chaos.model_faults [--tasks 20] [--outage-seconds 120] [--outage-limit 10s]

The issue's two-minute outage is the default; the whole run takes about 2.5 minutes (the
deadline allows for the runner's backoff, capped at 120 s ±50 % jitter). `--logs DIR` keeps
the server log and writes each task's audit trail, outbox rows and messages to
`evidence.json` there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.sandbox import Message, SlackEmulator
from chaos import tools
from chaos.common import (
    ChaosFailure,
    Server,
    button_on,
    click,
    command,
    ledger_report,
    note,
    reader,
    summary,
    wait_for,
)
from chaos.stage import stage
from core.db import make_sessionmaker
from core.durations import parse_duration
from core.models import Action, AuditEvent, OutboxMessage, Task, TraceEvent
from tests.fakes.anthropic_server import FakeAnthropic, text_block, tool_use_block

NAME = "model_faults"
# Slack paces posts per channel: four task types, four channels, so the reports are not queued.
CHANNELS = [f"C0MODEL{index}" for index in range(4)]
REQUESTER, ALICE, BOB = "U0REQUESTER", "U0ALICE", "U0BOB"


def config(outage_limit: str) -> dict[str, object]:
    return {
        "slack": {"approvals_channel": CHANNELS[0]},
        "model": {"outage_limit": outage_limit},
        "tools": {"modules": ["chaos.tools"]},
        "task_types": {
            f"refund{index}": {
                "description": "Refunds while the model is down",
                "instructions": "Refund broken orders.",
                "tools": ["chaos_refund"],
                "autonomy": "hitl",
                "approvers": [ALICE, BOB],
                "channel": channel,
            }
            for index, channel in enumerate(CHANNELS)
        },
    }


def respond(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The model when it answers: draft the refund, then report it once its result is back."""
    messages = list(body.get("messages") or [])
    first = messages[0].get("content") if messages else ""
    found = re.search(r"order (\d+)", first if isinstance(first, str) else json.dumps(first))
    order = found.group(1) if found else "0"
    last = messages[-1].get("content") if messages else ""
    if isinstance(last, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last):
        return {"content": [text_block(f"Refunded order {order}.")]}
    refund = {"order_id": order, "amount_cents": 900, "rationale": "it arrived broken", "confidence": 0.95}
    return {"content": [tool_use_block("chaos_refund", refund)]}


@dataclass
class Outage:
    """The fake's outage, phase by phase, on its own thread; also the fake's responder, which
    holds requests during the timeout phase."""

    seconds: float
    retry_after: float
    hang_s: float
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)  # name → (start, end), monotonic
    holds: int = 0
    restored_at: float = 0.0
    _holding_until: float = 0.0
    _over: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, fake: FakeAnthropic) -> None:
        began = time.monotonic()
        rate_limited, overloaded = began + self.seconds / 6, began + self.seconds * 5 / 12
        end = began + self.seconds
        fake.unavailable(429, retry_after=self.retry_after)
        self._phase("429", began, rate_limited)
        fake.unavailable(529)
        self._phase("529", rate_limited, overloaded)
        self._holding_until = end
        fake.restore()  # requests reach `respond` again, which holds them until `end`
        self._phase("timeout", overloaded, end)
        self._over.set()  # requests still held are answered now
        self.restored_at = time.monotonic()

    def _phase(self, name: str, start: float, end: float) -> None:
        time.sleep(max(0.0, end - time.monotonic()))
        self.phases[name] = (start, end)

    def respond(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Hold a request for `hang_s` (past the SDK's timeout, so it gives up and retries) or
        until the outage ends, whichever is first; then answer as the model does."""
        held = min(self.hang_s, self._holding_until - time.monotonic())
        if held > 0 and not self._over.is_set():
            with self._lock:
                self.holds += 1
            self._over.wait(held)
        return respond(body)


def start_tasks(server: Server, slack: SlackEmulator, count: int) -> list[str]:
    task_ids = []
    for number in range(count):
        index = number % len(CHANNELS)
        reply = command(
            server, slack, REQUESTER, CHANNELS[index], f"run refund{index} Refund order {number}, it's broken"
        )
        found = re.search(r"Started `([^`]+)`", reply.body)
        if reply.status != 200 or not found:
            raise ChaosFailure(f"the command answered {reply.status}: {reply.body[:200]}")
        task_ids.append(found.group(1))
    return task_ids


def approve_all(server: Server, slack: SlackEmulator, count: int) -> int:
    """Approve every card in the channel once; how many were approved."""
    approved = 0
    for message in messages(slack):
        if message.thread_ts is None and button_on(message, "approve") is not None:
            reply = click(server, slack, (ALICE, BOB)[approved % 2], message, "approve")
            if reply.status != 200:
                raise ChaosFailure(f"Approve answered {reply.status}: {reply.body[:200]}")
            approved += 1
    if approved != count:
        raise ChaosFailure(f"{approved} cards to approve, expected {count}")
    return approved


def count_cards(slack: SlackEmulator) -> int:
    return sum(1 for m in messages(slack) if m.thread_ts is None and button_on(m, "approve") is not None)


def messages(slack: SlackEmulator) -> list[Message]:
    return [message for channel in CHANNELS for message in slack.messages(channel)]


def about(text: str) -> str:
    """`task tsk_…: done` of `refund2 task tsk_…: done`: what a task message says, whatever the type."""
    return text.split(" ", 1)[-1]


def dump(path: Path, url: str, slack: SlackEmulator, task_ids: list[str]) -> None:
    """Per task: its audit trail, its outbox rows and the messages posted about it (evidence)."""
    engine = reader(url, 1)
    try:
        with make_sessionmaker(engine)() as session:
            audit = session.execute(
                select(AuditEvent.task_public_id, AuditEvent.kind, AuditEvent.at).order_by(AuditEvent.seq)
            ).all()
            rows = session.execute(
                select(OutboxMessage.ordering_key, OutboxMessage.kind, OutboxMessage.created_at).order_by(
                    OutboxMessage.id
                )
            ).all()
    finally:
        engine.dispose()
    posted = messages(slack)
    evidence = {
        task: {
            "audit": [f"{at:%H:%M:%S.%f} {kind}" for t, kind, at in audit if t == task],
            "outbox": [f"{at:%H:%M:%S.%f} {kind}" for key, kind, at in rows if key == task],
            "messages": [f"{m.ts} {m.text}" for m in posted if task in m.text],
        }
        for task in task_ids
    }
    path.write_text(json.dumps(evidence, indent=1))


def report(
    url: str, slack: SlackEmulator, fake: FakeAnthropic, outage: Outage, task_ids: list[str], limit: timedelta
) -> tuple[dict[str, object], bool]:
    engine = reader(url, 1)
    try:
        with make_sessionmaker(engine)() as session:
            tasks = dict(session.execute(select(Task.public_id, Task.state)).all())
            actions_per_task = Counter(
                dict(
                    session.execute(
                        select(Task.public_id, func.count(Action.id))
                        .join(Action, Action.task_id == Task.id)
                        .group_by(Task.public_id)
                    ).all()
                )
            )
            errors_per_task = Counter(
                dict(
                    session.execute(
                        select(Task.public_id, func.count(TraceEvent.id))
                        .join(TraceEvent, TraceEvent.task_id == Task.id)
                        .where(TraceEvent.kind == "model_error")
                        .group_by(Task.public_id)
                    ).all()
                )
            )
            events = session.execute(
                select(AuditEvent.task_public_id, AuditEvent.kind, AuditEvent.at)
                .where(AuditEvent.kind.in_(["task.stalled", "task.model_available", "task.running", "task.succeeded"]))
                .order_by(AuditEvent.seq)
            ).all()
            told = Counter(
                kind
                for (kind,) in session.execute(
                    select(OutboxMessage.kind).where(
                        OutboxMessage.kind.in_(["task.stalled", "task.resumed"]),
                        OutboxMessage.delivered_at.is_not(None),
                    )
                )
            )
        calls = tools.calls(engine, "chaos_refund")
        ledger_ok, ledger = ledger_report(engine)
    finally:
        engine.dispose()
    stalled = {task for task, kind, _ in events if kind == "task.stalled"}
    back = {task for task, kind, _ in events if kind == "task.model_available"}
    # Waiting on the model from its resume (task.running) to its answer (task.succeeded): past the
    # outage limit, the README says the task is stalled and people are told.
    needed = {task: at for task, kind, at in events if kind == "task.running"}
    answered = {task: at for task, kind, at in events if kind == "task.succeeded"}
    unnoticed = [
        t for t in task_ids if t in needed and t in answered and answered[t] - needed[t] > limit and t not in stalled
    ]
    posted = Counter(about(m.text) for m in messages(slack) if m.thread_ts is None)
    lost = [t for t in task_ids if tasks.get(t) != "succeeded" or not posted[f"task {t}: done"]]
    duplicate = [t for t in task_ids if actions_per_task[t] != 1] + [k for k, n in calls.items() if n > 1]
    duplicate += [
        f"{t}: {posted[f'task {t}: done']} 'done' messages" for t in task_ids if posted[f"task {t}: done"] > 1
    ]
    resumed = [t for t in task_ids if errors_per_task[t] and tasks.get(t) == "succeeded"]
    by_phase: Counter[str] = Counter()
    for request in fake.requests:
        phase = next((name for name, (a, b) in outage.phases.items() if a <= request.received_at < b), None)
        by_phase[phase or ("after" if request.received_at >= outage.restored_at else "before")] += 1
    for task in lost[:5]:
        note(NAME, f"lost: {task} is {tasks.get(task)}")
    for task in duplicate[:5]:
        note(NAME, f"duplicate: {task}")
    if not ledger_ok:
        note(NAME, f"audit verify: {ledger}")
    fields: dict[str, object] = {
        "tasks": len(task_ids),
        "lost": len(lost),
        "failed": sum(1 for t in task_ids if tasks.get(t) == "failed"),
        "duplicate": len(duplicate),
        "resumed": len(resumed),
        "met_outage": sum(1 for t in task_ids if errors_per_task[t]),
        "stalled": len(stalled),
        "stalled_resumed": len(stalled & back),
        "waited_past_limit_unstalled": len(unnoticed),
        "told_stalled": told["task.stalled"],
        "told_resumed": told["task.resumed"],
        "resumed_messages": sum(posted[f"task {t}: resumed"] for t in task_ids),
        "model_errors": sum(errors_per_task.values()),
        "requests": json.dumps(dict(by_phase), separators=(",", ":")),
        "ledger": "ok" if ledger_ok else "BROKEN",
    }
    passed = not lost and not duplicate and ledger_ok and len(stalled & back) == len(stalled)
    return fields, passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20, help="tasks in flight (default 20)")
    parser.add_argument("--outage-seconds", type=float, default=120.0, help="how long the model fails (default 120)")
    parser.add_argument("--outage-limit", default="10s", help="model.outage_limit: stall after this long (10s)")
    parser.add_argument("--retry-after", type=float, default=1.0, help="the 429s' retry-after, seconds (default 1)")
    parser.add_argument("--hang-seconds", type=float, default=65.0, help="hold per request in the timeout phase")
    parser.add_argument("--deadline-seconds", type=float, default=240.0, help="for every task to end after restore")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--logs", type=Path, help="keep the server's log and config in this directory")
    args = parser.parse_args()
    began = time.monotonic()
    outage = Outage(args.outage_seconds, args.retry_after, args.hang_seconds)
    with stage(
        NAME,
        backend=args.backend,
        logs=args.logs,
        channels=CHANNELS,
        users=[REQUESTER, ALICE, BOB],
        config=config(args.outage_limit),
        model=outage.respond,
    ) as world:
        slack, url = world.slack, world.url
        try:
            server = world.serve()
            task_ids = start_tasks(server, slack, args.tasks)
            wait_for(lambda: count_cards(slack) >= args.tasks, "a card for every task", [server], 120)
            note(NAME, f"{args.tasks} tasks waiting on approval after {time.monotonic() - began:.0f} s; outage starts")
            failing = threading.Thread(target=outage.run, args=(world.model,), name="outage", daemon=True)
            failing.start()
            approve_all(server, slack, args.tasks)
            failing.join(timeout=args.outage_seconds + 30)
            note(NAME, f"model restored after {time.monotonic() - began:.0f} s")
            engine = reader(url, 1)
            sessions = make_sessionmaker(engine)

            def ended() -> bool:
                with sessions() as session:
                    return not session.scalar(
                        select(func.count()).select_from(Task).where(Task.state.not_in(["succeeded", "failed"]))
                    )

            def delivered() -> bool:
                with sessions() as session:
                    return not session.scalar(
                        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
                    )

            try:
                wait_for(ended, "every task ended", [server], args.deadline_seconds)
                recovered_s = time.monotonic() - outage.restored_at
                wait_for(delivered, "every message delivered", [server], 120)
            except ChaosFailure as exc:
                note(NAME, str(exc))
                recovered_s = time.monotonic() - outage.restored_at
            finally:
                engine.dispose()
        except ChaosFailure as exc:
            return world.failed(exc)
        fields, passed = report(url, slack, world.model, outage, task_ids, parse_duration(args.outage_limit))
        if args.logs is not None:
            dump(args.logs / "evidence.json", url, slack, task_ids)
        fields["held"] = outage.holds
        fields["ended_after_restore"] = f"{recovered_s:.0f}s"
        fields["seconds"] = f"{time.monotonic() - began:.0f}"
        return summary(NAME, fields, passed)


if __name__ == "__main__":
    sys.exit(main())
