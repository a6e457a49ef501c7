"""The checks of `chaos.slack_faults`, once its flow has settled: per action, the emulator's
messages against the action's lifecycle and the outbox rows (lost, duplicate, out of order,
stale cards); and `dump`, the evidence behind a FAIL.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

from sqlalchemy import select

from bot.blocks.card import STATE_LABELS
from bot.sandbox import SlackEmulator
from chaos import tools
from chaos.common import ledger_report, note, reader
from core.db import make_sessionmaker
from core.models import Action, OutboxMessage, Task

NAME = "slack_faults"
LIFECYCLE = {STATE_LABELS[state]: rank for rank, state in enumerate(("pending", "approved", "executing", "succeeded"))}


def _rank(message_text: str) -> int:
    return LIFECYCLE.get(message_text.split(":", 1)[0], -1)


def check(
    url: str, slack: SlackEmulator, channels: list[str], started: dict[str, str]
) -> tuple[dict[str, object], bool]:
    engine = reader(url, 1)
    try:
        with make_sessionmaker(engine)() as session:
            rows = session.execute(
                select(Task.public_id, Task.task_type, Task.state, Action.public_id, Action.state).join(
                    Action, Action.task_id == Task.id
                )
            ).all()
            outbox = session.execute(select(OutboxMessage.kind, OutboxMessage.last_error, OutboxMessage.attempts)).all()
        calls = tools.calls(engine, "chaos_refund")
        ledger_ok, ledger = ledger_report(engine)
    finally:
        engine.dispose()
    by_channel = {channel: slack.messages(channel) for channel in channels}
    channel_of = {f"f{index}": channel for index, channel in enumerate(channels)}
    lost, duplicate, out_of_order, stale = Counter[str](), Counter[str](), 0, 0
    examples: list[str] = []
    seen_tasks = set()
    for task_id, task_type, task_state, action_id, action_state in rows:
        seen_tasks.add(task_id)
        messages = by_channel[channel_of[task_type]]
        mine = [m for m in messages if m.thread_ts is None and f"action `{action_id}`" in json.dumps(m.blocks)]
        replies = [m for m in messages if m.thread_ts is not None and f"action `{action_id}`" in json.dumps(m.blocks)]
        done = [m for m in messages if m.thread_ts is None and m.text == f"{task_type} task {task_id}: done"]
        for what, found in (("card", mine), ("result reply", replies), ("task message", done)):
            if not found:
                lost[what] += 1
                examples.append(f"{action_id}: no {what}")
            elif len(found) > 1:
                duplicate[what] += 1
                examples.append(f"{action_id}: {len(found)} {what}s " + " ".join(m.ts for m in found))
        if action_state != "succeeded" or task_state != "succeeded" or calls[action_id] != 1:
            lost["run"] += 1
            examples.append(f"{action_id}: action {action_state}, task {task_state}, ran {calls[action_id]} times")
        for card in mine:
            ranks = [_rank(version.text) for version in card.versions]
            if any(later < earlier for earlier, later in pairwise(ranks)):
                out_of_order += 1
                labels = " → ".join(version.text.split(":", 1)[0] for version in card.versions)
                examples.append(f"{action_id}: card {card.ts} versions {labels}")
            if ranks[-1] != LIFECYCLE[STATE_LABELS["succeeded"]]:
                stale += 1
        for reply in replies:
            if reply.thread_ts not in {card.ts for card in mine}:
                out_of_order += 1
                examples.append(f"{action_id}: result reply {reply.ts} outside its card's thread")
    missing_tasks = set(started) - seen_tasks
    if missing_tasks:
        lost["task"] += len(missing_tasks)
        examples.append(f"tasks without an action: {sorted(missing_tasks)[:5]}")
    given_up = [error for _, error, _ in outbox if error and error.startswith("gave up")]
    if given_up:
        lost["outbox given up"] += len(given_up)
    examples += [f"outbox: {error}" for error in given_up[:3]]
    for line in examples[:12]:
        note(NAME, line)
    fields: dict[str, object] = {
        "actions": len(rows),
        "messages": sum(len(m) for m in by_channel.values()),
        "lost": sum(lost.values()),
        "duplicate": sum(duplicate.values()),
        "out_of_order": out_of_order,
        "stale_cards": stale,
        "faulted_calls": len(slack.faulted_calls),
        "outbox_retries": sum(max(0, attempts - 1) for _, _, attempts in outbox),
        "ledger": "ok" if ledger_ok else "BROKEN",
    }
    if lost:
        fields["lost_by_kind"] = json.dumps(dict(lost), separators=(",", ":"))
    if duplicate:
        fields["duplicate_by_kind"] = json.dumps(dict(duplicate), separators=(",", ":"))
    if not ledger_ok:
        note(NAME, f"audit verify: {ledger}")
    passed = not (sum(lost.values()) or sum(duplicate.values()) or out_of_order or stale) and ledger_ok
    passed = passed and len(rows) == len(started)
    return fields, passed


def dump(path: Path, url: str, slack: SlackEmulator, channels: list[str]) -> None:
    """Everything the check looked at, as JSON: the evidence behind a FAIL."""
    engine = reader(url, 1)
    try:
        with make_sessionmaker(engine)() as session:
            outbox = [
                {
                    "id": row.id,
                    "kind": row.kind,
                    "key": row.ordering_key,
                    "attempts": row.attempts,
                    "delivered_at": str(row.delivered_at),
                    "last_error": row.last_error,
                    "result": row.result,
                }
                for row in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            ]
            actions = [
                {"action": a.public_id, "state": a.state, "task": t.public_id, "task_state": t.state}
                for a, t in session.execute(select(Action, Task).join(Task, Task.id == Action.task_id))
            ]
    finally:
        engine.dispose()
    messages = {
        channel: [
            {
                "ts": m.ts,
                "thread_ts": m.thread_ts,
                "versions": [{"text": v.text, "via": v.via, "at": v.at} for v in m.versions],
                "meta": [b for b in m.blocks if b.get("block_id") in ("meta", "result_meta", "task")],
            }
            for m in slack.messages(channel)
        ]
        for channel in channels
    }
    calls = [
        (method, {k: v for k, v in params.items() if k not in ("blocks", "text")}) for method, params in slack.calls
    ]
    faulted = [
        (method, {k: v for k, v in params.items() if k not in ("blocks", "text")})
        for method, params in slack.faulted_calls
    ]
    ephemerals = [{"user": e.user, "channel": e.channel, "text": e.text} for e in slack.ephemerals()]
    evidence = {
        "actions": actions,
        "outbox": outbox,
        "messages": messages,
        "calls": calls,
        "faulted": faulted,
        "ephemerals": ephemerals,
    }
    path.write_text(json.dumps(evidence, indent=1, default=str))
