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
  past the SDK's 60 s timeout) or until the outage ends, then answers 504: timeouts.

The runner's own backoff spaces its attempts and stalls tasks that stay failing past
`model.outage_limit` (`--outage-limit`, small so stalls happen). After the outage the fake
answers again; within `--deadline-seconds` every task must have succeeded.

Counted: lost (not succeeded by the deadline), failed, duplicate (a task with more than one
action, or a tool run more than once), resumed (tasks that met the outage and then
succeeded), stalled and stalled-then-resumed, model requests by phase.

    .venv/bin/python -m chaos.model_faults [--tasks 20] [--outage-seconds 120] [--outage-limit 10s]

The issue's two-minute outage is the default; the run lasts about outage + settling (the
runner's backoff is capped at 120 s, ±50 % jitter), so about 3 to 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.sandbox import SlackEmulator
from chaos import tools
from chaos.common import (
    ChaosFailure,
    Server,
    button_on,
    click,
    command,
    database,
    emulator,
    ledger_report,
    note,
    reader,
    serve_env,
    serving,
    summary,
    wait_for,
    workspace,
    write_yaml,
)
from core.db import make_sessionmaker
from core.models import Action, AuditEvent, OutboxMessage, Task, TraceEvent
from tests.fakes.anthropic_server import FakeAnthropic, text_block, tool_use_block

NAME = "model_faults"
CHANNEL = "C0MODEL"
REQUESTER, ALICE, BOB = "U0REQUESTER", "U0ALICE", "U0BOB"
DRAIN_MODEL = "chaos-drain"  # requests this script sends itself, to use up leftover hangs


def config(outage_limit: str) -> dict[str, object]:
    return {
        "slack": {"approvals_channel": CHANNEL},
        "model": {"outage_limit": outage_limit},
        "tools": {"modules": ["chaos.tools"]},
        "task_types": {
            "refund": {
                "description": "Refunds while the model is down",
                "instructions": "Refund broken orders.",
                "tools": ["chaos_refund"],
                "autonomy": "hitl",
                "approvers": [ALICE, BOB],
            }
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
    """The fake's outage, phase by phase, on its own thread."""

    fake: FakeAnthropic
    seconds: float
    retry_after: float
    hang_s: float
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)  # name → (start, end), monotonic
    hangs: int = 0
    restored_at: float = 0.0

    def run(self) -> None:
        began = time.monotonic()
        rate_limited, overloaded = began + self.seconds / 6, began + self.seconds * 5 / 12
        self.fake.unavailable(429, retry_after=self.retry_after)
        self._phase("429", began, rate_limited)
        self.fake.unavailable(529)
        self._phase("529", rate_limited, overloaded)
        self.fake.restore()  # scripted hangs only: each request is held, then 504
        end = began + self.seconds
        while time.monotonic() < end:
            if self.fake.pending == 0:
                self.fake.hang(min(self.hang_s, max(0.1, end - time.monotonic())))
                self.hangs += 1
            time.sleep(0.02)
        self.phases["timeout"] = (overloaded, end)
        self._drain()
        self.restored_at = time.monotonic()

    def _phase(self, name: str, start: float, end: float) -> None:
        time.sleep(max(0.0, end - time.monotonic()))
        self.phases[name] = (start, end)

    def _drain(self) -> None:
        """Use up a hang queued but not taken, so that nothing is held after the outage."""
        for _ in range(self.fake.pending):
            threading.Thread(target=_drain_request, args=(self.fake.url,), daemon=True).start()
        deadline = time.monotonic() + 5
        while self.fake.pending and time.monotonic() < deadline:
            time.sleep(0.02)


def _drain_request(url: str) -> None:
    body = json.dumps({"model": DRAIN_MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "drain"}]})
    request = urllib.request.Request(  # noqa: S310 - the fake on loopback
        url + "/v1/messages",
        data=body.encode(),
        method="POST",
        headers={"x-api-key": "chaos", "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120):  # noqa: S310 - the fake on loopback
            pass
    except OSError:
        pass  # a 504 after the hang, or the fake closing: either way the hang is used up


def start_tasks(server: Server, slack: SlackEmulator, count: int) -> list[str]:
    task_ids = []
    for number in range(count):
        reply = command(server, slack, REQUESTER, CHANNEL, f"run refund Refund order {number}, it arrived broken")
        found = re.search(r"Started `([^`]+)`", reply.body)
        if reply.status != 200 or not found:
            raise ChaosFailure(f"the command answered {reply.status}: {reply.body[:200]}")
        task_ids.append(found.group(1))
    return task_ids


def approve_all(server: Server, slack: SlackEmulator, count: int) -> int:
    """Approve every card in the channel once; how many were approved."""
    approved = 0
    for message in slack.messages(CHANNEL):
        if message.thread_ts is None and button_on(message, "approve") is not None:
            reply = click(server, slack, (ALICE, BOB)[approved % 2], message, "approve")
            if reply.status != 200:
                raise ChaosFailure(f"Approve answered {reply.status}: {reply.body[:200]}")
            approved += 1
    if approved != count:
        raise ChaosFailure(f"{approved} cards to approve, expected {count}")
    return approved


def count_cards(slack: SlackEmulator) -> int:
    return sum(1 for m in slack.messages(CHANNEL) if m.thread_ts is None and button_on(m, "approve") is not None)


def dump(path: Path, url: str, slack: SlackEmulator, task_ids: list[str]) -> None:
    """Per task: its audit trail, its outbox rows and the messages posted about it (evidence)."""
    engine = reader(url, 1)
    try:
        with make_sessionmaker(engine)() as session:
            audit = session.execute(
                select(AuditEvent.task_id, AuditEvent.kind, AuditEvent.at).order_by(AuditEvent.seq)
            ).all()
            rows = session.execute(
                select(OutboxMessage.ordering_key, OutboxMessage.kind, OutboxMessage.created_at).order_by(
                    OutboxMessage.id
                )
            ).all()
    finally:
        engine.dispose()
    messages = slack.messages(CHANNEL)
    evidence = {
        task: {
            "audit": [f"{at:%H:%M:%S.%f} {kind}" for t, kind, at in audit if t == task],
            "outbox": [f"{at:%H:%M:%S.%f} {kind}" for key, kind, at in rows if key == task],
            "messages": [f"{m.ts} {m.text}" for m in messages if task in m.text],
        }
        for task in task_ids
    }
    path.write_text(json.dumps(evidence, indent=1))


def report(
    url: str, slack: SlackEmulator, fake: FakeAnthropic, outage: Outage, task_ids: list[str]
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
                select(AuditEvent.task_id, AuditEvent.kind).where(
                    AuditEvent.kind.in_(["task.stalled", "task.model_available"])
                )
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
    stalled = {task for task, kind in events if kind == "task.stalled"}
    back = {task for task, kind in events if kind == "task.model_available"}
    posted = Counter(m.text for m in slack.messages(CHANNEL) if m.thread_ts is None)
    lost = [t for t in task_ids if tasks.get(t) != "succeeded" or not posted[f"refund task {t}: done"]]
    duplicate = [t for t in task_ids if actions_per_task[t] != 1] + [k for k, n in calls.items() if n > 1]
    duplicate += [
        f"{t}: {posted[f'refund task {t}: done']} 'done' messages"
        for t in task_ids
        if posted[f"refund task {t}: done"] > 1
    ]
    resumed = [t for t in task_ids if errors_per_task[t] and tasks.get(t) == "succeeded"]
    by_phase: Counter[str] = Counter()
    for request in fake.requests:
        if request.body.get("model") == DRAIN_MODEL:
            continue
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
        "told_stalled": told["task.stalled"],
        "told_resumed": told["task.resumed"],
        "resumed_messages": sum(posted[f"refund task {t}: resumed"] for t in task_ids),
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
    with (
        database(args.backend, "model") as url,
        workspace(args.logs, "model") as workdir,
        emulator([CHANNEL], [REQUESTER, ALICE, BOB]) as slack,
        FakeAnthropic() as fake,
        ExitStack() as stack,
    ):
        fake.respond_with(respond)
        env = serve_env(
            url, write_yaml(workdir, "countersign.yml", config(args.outage_limit)), slack, anthropic_url=fake.url
        )
        outage = Outage(fake, args.outage_seconds, args.retry_after, args.hang_seconds)
        server: Server | None = None
        try:
            server = stack.enter_context(serving("serve", env, workdir))
            task_ids = start_tasks(server, slack, args.tasks)
            wait_for(lambda: count_cards(slack) >= args.tasks, "a card for every task", [server], 120)
            note(NAME, f"{args.tasks} tasks waiting on approval after {time.monotonic() - began:.0f} s; outage starts")
            failing = threading.Thread(target=outage.run, name="outage", daemon=True)
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
            if server is not None:
                note(NAME, f"--- server log\n{server.output()}")
            return summary(NAME, {"error": json.dumps(str(exc))}, False)
        fields, passed = report(url, slack, fake, outage, task_ids)
        if args.logs is not None:
            dump(args.logs / "evidence.json", url, slack, task_ids)
        fields["hangs"] = outage.hangs
        fields["ended_after_restore"] = f"{recovered_s:.0f}s"
        fields["seconds"] = f"{time.monotonic() - began:.0f}"
        return summary(NAME, fields, passed)


if __name__ == "__main__":
    sys.exit(main())
