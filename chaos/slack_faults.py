"""Slack faults: a flow of actions (slash command → card → Approve → run → card update + thread
reply → task message) through a real `countersign serve` while the Slack emulator answers 429
with `Retry-After`, 500, and holds calls for `--hang-seconds` (then applies them, like a Slack
whose success the client never saw; the app's client gives up after 10 s).

Faults come in `--cycles` cycles of 25 s from the start of the flow: a window of 429s (every
method), a window of 500s, a burst of hung calls (any method), then a few 429s on
`chat.update`, 500s on `chat.postMessage` and hung posts and updates. The flow keeps the outbox busy, so most card
updates already show the final state; once everything is delivered, `--probes` more actions
are approved while Slack is otherwise quiet, each with its approval's `chat.update` hung
(`--probe-hang-seconds`): a timely update that hangs is the one that can land over a later
one. Afterwards, per action, the emulator's messages are compared with the action's lifecycle
and the outbox rows:

- lost: no card, no result reply in the card's thread, no "done" task message, an outbox row
  given up, or an action that did not succeed;
- duplicate: more than one card, result reply or task message;
- out of order: a card whose versions go back in the lifecycle (pending → approved → running
  → succeeded), or whose last version is not "Succeeded".

    .venv/bin/python -m chaos.slack_faults [--actions 200] [--hang-seconds 60] [--rate 4] [--cycles 2]

The issue's flow, 200 actions, takes about 3.5 minutes: a call that got no answer is checked
a minute after its timeout, and the probes wait that out together.

The run is bounded: commands take `actions / rate` seconds, fault cycles `cycles x 25` s, and
the wait for everything to be delivered, the probes and every hung call to land is at most
`--settle-seconds`. `--logs DIR` keeps the server log and writes `evidence.json` (messages
with every version, outbox rows, Slack calls) there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from bot.sandbox import Message, SlackEmulator
from chaos.common import (
    ChaosFailure,
    Server,
    button_on,
    click,
    command,
    note,
    reader,
    summary,
    wait_for,
)
from chaos.slack_faults_checks import NAME, check, dump
from chaos.stage import stage
from core.db import make_sessionmaker
from core.models import OutboxMessage, Task

REQUESTER, ALICE, BOB = "U0REQUESTER", "U0ALICE", "U0BOB"
CYCLE_S = 25.0  # one round of every kind of fault


def config(channels: list[str]) -> dict[str, object]:
    """One task type per channel: Slack paces posts per channel, so the flow spreads out."""
    return {
        "slack": {"approvals_channel": channels[0]},
        "tools": {"modules": ["chaos.tools"]},
        "task_types": {
            f"f{index}": {
                "description": "Refunds under Slack faults",
                "tools": ["chaos_refund"],
                "autonomy": "hitl",
                "approvers": [ALICE, BOB],
                "channel": channel,
            }
            for index, channel in enumerate(channels)
        },
    }


def script(count: int) -> dict[str, object]:
    steps = [
        {
            "tool_use": [
                {
                    "name": "chaos_refund",
                    "input": {"order_id": "{order_id}", "amount_cents": 700},
                    "rationale": "it arrived broken",
                    "confidence": 0.95,
                }
            ]
        },
        {"text": "Refunded order {order_id}."},
    ]
    return {f"f{index}": {"match": r"order (?P<order_id>\d+)", "replies": steps} for index in range(count)}


@dataclass
class Faults:
    """What was injected, by kind (the emulator counts what it answered)."""

    hang_s: float
    windows: Counter[str]
    landed_by: float = 0.0  # monotonic time by which every hung call has been applied

    def held(self, seconds: float) -> None:
        self.landed_by = max(self.landed_by, time.monotonic() + seconds)

    def cycle(self, slack: SlackEmulator, stop: threading.Event) -> None:
        """One cycle of every fault, spread over CYCLE_S seconds (stops early when told)."""
        steps: list[tuple[float, Callable[[], None], str]] = [
            (3.0, lambda: slack.fail_for(6, status=429, retry_after=2), "429_window"),
            (10.0, lambda: slack.fail_for(5, status=500), "500_window"),
            (16.0, lambda: slack.hang(None, self.hang_s, times=2), "hang_any"),
            (19.0, lambda: slack.fail("chat.update", status=429, retry_after=1, times=4), "429_update"),
            (20.0, lambda: slack.fail("chat.postMessage", status=500, times=4), "500_post"),
            (22.0, lambda: slack.hang("chat.update", self.hang_s, times=1), "hang_update"),
            (23.0, lambda: slack.hang("chat.postMessage", self.hang_s, times=1), "hang_post"),
        ]
        began = time.monotonic()
        for at, inject, kind in steps:
            if stop.wait(max(0.0, began + at - time.monotonic())):
                return
            inject()
            self.windows[kind] += 1
            if kind.startswith("hang"):
                self.held(self.hang_s)


def drive(
    server: Server, slack: SlackEmulator, channels: list[str], actions: int, rate: float, faults: Faults, cycles: int
) -> dict[str, str]:
    """Send the commands at `rate` per second and approve every card as it appears, under faults;
    {task id: task type}."""
    started: dict[str, str] = {}
    clicked: set[str] = set()
    stop = threading.Event()
    problems: list[str] = []

    def approve_cards() -> None:
        while not stop.is_set():
            for channel in channels:
                for message in slack.messages(channel):
                    found = button_on(message, "approve") if message.thread_ts is None else None
                    if found is None or found[0]["value"] in clicked:
                        continue
                    clicked.add(found[0]["value"])
                    reply = click(server, slack, (ALICE, BOB)[len(clicked) % 2], message, "approve")
                    if reply.status != 200:
                        problems.append(f"Approve on {found[0]['value']} answered {reply.status}")
            stop.wait(0.3)

    def inject() -> None:
        for _ in range(cycles):
            if stop.is_set():
                return
            faults.cycle(slack, stop)

    threads = [threading.Thread(target=approve_cards, daemon=True), threading.Thread(target=inject, daemon=True)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    try:
        for number in range(actions):
            time.sleep(max(0.0, began + number / rate - time.monotonic()))
            task_type = f"f{number % len(channels)}"
            reply = command(
                server, slack, REQUESTER, channels[number % len(channels)], f"run {task_type} order {number}"
            )
            found = re.search(r"Started `([^`]+)`", reply.body)
            if reply.status != 200 or not found:
                raise ChaosFailure(f"the command answered {reply.status}: {reply.body[:200]}")
            started[found.group(1)] = task_type
        threads[1].join(timeout=cycles * CYCLE_S + 5)
        try:
            wait_for(lambda: len(clicked) >= actions, "a card for every action", [server], 180)
        except ChaosFailure as exc:  # the check below names the actions without a card
            note(NAME, str(exc))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    if problems:
        raise ChaosFailure("; ".join(problems[:5]))
    return started


def settle(
    url: str, server: Server, slack: SlackEmulator, channels: list[str], faults: Faults, args: argparse.Namespace
) -> dict[str, str]:
    """Until every task succeeded and every outbox row is delivered; then the probes; then until
    every hung call has landed. {task id: task type} of the probes."""
    engine = reader(url, 1)
    sessions = make_sessionmaker(engine)

    def drained() -> bool:
        with sessions() as session:
            open_tasks = session.scalar(select(func.count()).select_from(Task).where(Task.state != "succeeded"))
            undelivered = session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
            )
        return open_tasks == 0 and undelivered == 0

    deadline = time.monotonic() + args.settle_seconds
    probes: dict[str, str] = {}
    try:
        wait_for(drained, "every task done and every message delivered", [server], args.settle_seconds)
        for number in range(args.probes):  # one per channel, at once: each waits out its hung update
            task_id = probe(server, slack, channels[number % len(channels)], f"f{number % len(channels)}", faults, args)
            probes[task_id] = f"f{number % len(channels)}"
        wait_for(drained, "the probes done and delivered", [server], max(1.0, deadline - time.monotonic()))
        wait_for(
            lambda: time.monotonic() > faults.landed_by + 2,
            "every hung call landed",
            [server],
            max(1.0, deadline - time.monotonic()),
        )
    except ChaosFailure as exc:
        note(NAME, f"settling: {exc}")
    finally:
        engine.dispose()
    return probes


def probe(
    server: Server, slack: SlackEmulator, channel: str, task_type: str, faults: Faults, args: argparse.Namespace
) -> str:
    """One action while Slack is otherwise quiet: its card's next update (the approval) hangs.
    A timely outbox renders "Approved" or "Running", gives up on the call after 10 s and sends
    the card again; the hung version must not land over a later one."""
    order = 900_000 + faults.windows["hang_probe"]
    reply = command(server, slack, REQUESTER, channel, f"run {task_type} order {order}")
    found = re.search(r"Started `([^`]+)`", reply.body)
    if reply.status != 200 or not found:
        raise ChaosFailure(f"the probe's command answered {reply.status}: {reply.body[:200]}")

    def card() -> Message | None:
        for message in slack.messages(channel):
            button = button_on(message, "approve") if message.thread_ts is None else None
            if button is not None and found.group(1) in json.dumps(message.blocks):
                return message
        return None

    wait_for(lambda: card() is not None, "the probe's card", [server], 30)
    slack.hang("chat.update", args.probe_hang_seconds, times=1)
    faults.held(args.probe_hang_seconds)
    faults.windows["hang_probe"] += 1
    shown = card()
    assert shown is not None
    click(server, slack, ALICE, shown, "approve")
    return found.group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--actions", type=int, default=200, help="actions in the flow (default 200)")
    parser.add_argument("--rate", type=float, default=4.0, help="slash commands per second (default 4)")
    parser.add_argument("--hang-seconds", type=float, default=60.0, help="how long a hung call is held (default 60)")
    parser.add_argument("--cycles", type=int, default=2, help=f"fault cycles of {CYCLE_S:.0f} s each (default 2)")
    parser.add_argument("--channels", type=int, default=10, help="approval channels, one task type each")
    parser.add_argument(
        "--settle-seconds", type=float, default=300.0, help="for the flow to finish after the last command"
    )
    parser.add_argument("--probes", type=int, default=3, help="actions whose approval update hangs, once quiet")
    parser.add_argument("--probe-hang-seconds", type=float, default=15.0, help="the probes' hang (> the 10 s timeout)")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--logs", type=Path, help="keep the server's log and config in this directory")
    args = parser.parse_args()
    channels = [f"C0FAULT{index}" for index in range(args.channels)]
    faults = Faults(args.hang_seconds, Counter())
    began = time.monotonic()
    with stage(
        NAME,
        backend=args.backend,
        logs=args.logs,
        channels=channels,
        users=[REQUESTER, ALICE, BOB],
        config=config(channels),
        script=script(args.channels),
    ) as world:
        slack, url = world.slack, world.url
        try:
            server = world.serve()
            started = drive(server, slack, channels, args.actions, args.rate, faults, args.cycles)
            note(NAME, f"{len(started)} tasks started and approved in {time.monotonic() - began:.0f} s; settling")
            started.update(settle(url, server, slack, channels, faults, args))
        except ChaosFailure as exc:
            return world.failed(exc)
        fields, passed = check(url, slack, channels, started)
        if args.logs is not None:
            dump(args.logs / "evidence.json", url, slack, channels)
        fields["injected"] = json.dumps(dict(faults.windows), separators=(",", ":"))
        fields["seconds"] = f"{time.monotonic() - began:.0f}"
        return summary(NAME, fields, passed)


if __name__ == "__main__":
    sys.exit(main())
