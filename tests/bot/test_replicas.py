"""Two real `countersign serve` processes on one PostgreSQL database, as behind a load
balancer: slash commands, an @mention event delivered to both at once (Slack's retry) and
many concurrent Approve clicks go to both, escalation timers and veto windows run out on
both, and every effect happens exactly once: each approved or unvetoed action runs once, each
card is posted once, each reminder is sent once, each outbox row is delivered once, and each
click and event is handled once."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from approvals.ledger import verify
from bot.sandbox.signed import (
    FORM,
    JSON,
    SignedRequest,
    block_actions_payload,
    button_action,
    event_callback_body,
    interaction_body,
    new_event_id,
    send,
    signed,
    slash_command_body,
)
from core.db import make_engine, make_sessionmaker
from core.models import Action, AuditEvent, Decision, OutboxMessage, SlackEvent, SlackMessage, Task
from tests.bot import replica_tools
from tests.bot.slack_app import ALICE, APPROVALS, BOB, REQUESTER, SECRET, TEAM, TOKEN, decide_block
from tests.conftest import _truncate_all
from tests.fakes.slack_server import SlackEmulator

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COUNTERSIGN = str(Path(sys.executable).parent / "countersign")
DEADLINE_S = 60.0  # for any one thing to happen (generous: two cold starts on a busy machine); the test takes ~20 s
CAROL = "U0CAROL"
APPROVED_TASKS = 8  # refund tasks: every card gets many Approve clicks at once
LEFT_TASKS = 2  # chase tasks nobody decides: reminded, escalated, then expired
WINDOW_TASKS = 2  # hotl tasks nobody vetoes: run when their veto window closes (plus one by @mention)
CLICKS_PER_CARD = 6
APPROVERS = [ALICE, BOB]
# Slack takes about one post per second per channel, and each replica paces itself so: the
# refund tasks are spread over a few task types, one channel each, to keep the test short.
CHANNELS = {
    "refund0": "C0REFUNDS0",
    "refund1": "C0REFUNDS1",
    "refund2": "C0REFUNDS2",
    "chase": "C0CHASED",
    "window": "C0WINDOW",
}
REFUND_TYPES = [name for name in CHANNELS if name.startswith("refund")]

CONFIG = {
    "slack": {"approvals_channel": APPROVALS},
    "tools": {"modules": ["tests.bot.replica_tools"]},
    "task_types": {
        **{
            name: {
                "tools": ["replica_effect"],
                "autonomy": "hitl",
                "channel": CHANNELS[name],
                "approvers": APPROVERS,
                "quorum": 1,
                # Due about when the clicks land: a reminder fires before the approval or not
                # at all, and either way at most once.
                "escalation": [{"after": "4s", "notify": "approvers"}, {"after": "10m", "then": "expire"}],
            }
            for name in REFUND_TYPES
        },
        "chase": {
            "tools": ["replica_effect"],
            "autonomy": "hitl",
            "channel": CHANNELS["chase"],
            "approvers": APPROVERS,
            "quorum": 1,
            "escalation": [
                {"after": "2s", "notify": "approvers"},
                {"after": "4s", "notify": [CAROL]},
                {"after": "6s", "then": "expire"},
                {"before_expiry": "0s"},  # no warning before it: the steps counted below are these three
            ],
        },
        "window": {
            "tools": ["replica_effect"],
            "autonomy": "hotl",
            "veto_window": "2s",
            "channel": CHANNELS["window"],
            "approvers": APPROVERS,
            "graduation": {"review_share": 0},  # no spot-check cards: this test counts every message
        },
    },
}
SCRIPT = {
    task_type: {
        "match": r"ref (?P<ref>\w+)",
        "replies": [
            {
                "tool_use": [
                    {"name": "replica_effect", "input": {"ref": "{ref}"}, "rationale": "asked to", "confidence": 0.95}
                ]
            },
            {"text": "Done with {ref}."},
        ],
    }
    for task_type in CHANNELS
}
# What delivering one outbox row sends to Slack (escalation.notify: one DM per target, plus a
# note in the card's thread). The first row of a card posts it; later ones update it.
POSTS = {
    "action.card": 1,
    "action.decided": 0,
    "action.succeeded": 1,
    "action.expired": 2,
    "task.started": 1,
    "task.finished": 1,
}
UPDATES = {"action.card": 0, "action.decided": 1, "action.succeeded": 1, "action.expired": 1}


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass(frozen=True)
class Card:
    task_type: str
    task_id: str
    action_id: str
    channel: str
    ts: str
    blocks: list[dict[str, Any]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _wait(condition: Callable[[], bool], what: str, replicas: list[Replica]) -> None:
    # Other processes: polling what they expose is the only signal they give.
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        for replica in replicas:
            if replica.process.poll() is not None:
                pytest.fail(f"{replica.name} exited ({replica.process.returncode}) before {what}:\n{replica.output()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {r.name}\n{r.output()[-4000:]}" for r in replicas)
            pytest.fail(f"no {what} within {DEADLINE_S}s\n{logs}")
        time.sleep(0.05)


@contextmanager
def _serving(name: str, env: dict[str, str], cwd: Path) -> Iterator[Replica]:
    port, log = _free_port(), cwd / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [COUNTERSIGN, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Replica(name, f"http://127.0.0.1:{port}", process, log)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def _stop(replicas: list[Replica]) -> dict[str, int]:
    """SIGINT to each, as an orchestrator stops replicas; their exit statuses."""
    for replica in replicas:
        replica.process.send_signal(signal.SIGINT)
    exits = {}
    for replica in replicas:
        try:
            exits[replica.name] = replica.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{replica.name} did not stop on SIGINT:\n{replica.output()}")
    return exits


@pytest.fixture
def replica_db(postgres_database: str) -> Iterator[Engine]:
    """The migrated PostgreSQL database, emptied, with the tool's two tables."""
    _truncate_all(postgres_database)
    engine = make_engine(postgres_database)
    replica_tools.create_tables(engine)
    yield engine
    engine.dispose()


def _command(replica: Replica, slack: SlackEmulator, words: str) -> str:
    """`/countersign run …` as REQUESTER at one replica; the id of the task it started."""
    body = slash_command_body(
        team_id=TEAM,
        user_id=REQUESTER,
        channel_id=APPROVALS,
        text=words,
        response_url=slack.new_response_url(APPROVALS, None, REQUESTER),
        trigger_id=slack.new_trigger_id(REQUESTER),
    )
    reply = send(replica.url + "/slack/events", signed(SECRET, body, FORM))
    assert reply.status == 200, reply.body
    started = re.search(r"Started `([^`]+)`", reply.body)
    assert started, reply.body
    return started.group(1)


def _mention_twice(replicas: list[Replica], slack: SlackEmulator, words: str) -> str:
    """REQUESTER's `@countersign …` in the approvals channel, its event delivered to both
    replicas at once (as Slack does when it retries one it thinks was missed); the message ts."""
    message = slack.workspace.post(APPROVALS, f"<@{slack.workspace.bot_user_id}> {words}", [], via="client")
    event = {
        "type": "app_mention",
        "user": REQUESTER,
        "text": message.text,
        "ts": message.ts,
        "channel": APPROVALS,
        "event_ts": message.ts,
        "team": TEAM,
    }
    body = event_callback_body(event, team_id=TEAM, event_id=new_event_id())
    # The first delivery, which Slack thinks timed out, and its retries, each signed afresh
    # seconds later (the very same signature again would be refused as a replay).
    now, others = int(time.time()), len(replicas) - 1
    requests = [signed(SECRET, body, JSON, timestamp=now - others - 3)]
    requests += [signed(SECRET, body, JSON, timestamp=now - others + number) for number in range(1, others + 1)]
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    together = threading.Barrier(len(replicas))

    def deliver(replica: Replica, request: SignedRequest, headers: dict[str, str] | None) -> int:
        together.wait(timeout=DEADLINE_S)
        return send(replica.url + "/slack/events", request, headers=headers).status

    with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        statuses = list(pool.map(deliver, replicas, requests, [None, *[retry] * others]))
    assert statuses == [200] * len(replicas)
    return message.ts


def _approve(replica: Replica, slack: SlackEmulator, card: Card, user: str) -> int:
    """One signed click on the card's Approve button, as Slack sends it; the HTTP status."""
    block_id, _ = decide_block(card.blocks)
    [block] = [b for b in card.blocks if b.get("block_id") == block_id]
    [button] = [e for e in block["elements"] if e.get("action_id") == "approve"]
    payload = block_actions_payload(
        team_id=TEAM,
        user_id=user,
        actions=[button_action(button, block_id)],
        trigger_id=slack.new_trigger_id(user),
        message={"type": "message", "ts": card.ts, "text": "card", "blocks": card.blocks},
        channel_id=card.channel,
        response_url=slack.new_response_url(card.channel, card.ts, user),
    )
    return send(replica.url + "/slack/events", signed(SECRET, interaction_body(payload), FORM)).status


def _mentions(params: dict[str, Any], public_id: str) -> bool:
    return public_id in json.dumps(params.get("blocks") or []) or public_id in str(params.get("text") or "")


def test_two_replicas_on_one_postgres_do_everything_exactly_once(replica_db: Engine, tmp_path: Path) -> None:
    sessions: sessionmaker[Session] = make_sessionmaker(replica_db)
    (tmp_path / "countersign.yml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "script.yml").write_text(yaml.safe_dump(SCRIPT))

    with SlackEmulator() as slack, ExitStack() as stack:
        for channel in (APPROVALS, *CHANNELS.values()):
            slack.add_channel(channel, channel.lower())
        for user in (REQUESTER, ALICE, BOB, CAROL):
            slack.add_user(user, user.lower())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "COUNTERSIGN_", "SLACK_"))},
            "DATABASE_URL": replica_db.url.render_as_string(hide_password=False),
            "COUNTERSIGN_CONFIG": str(tmp_path / "countersign.yml"),
            "COUNTERSIGN_MODEL_SCRIPT": str(tmp_path / "script.yml"),
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        replicas = [stack.enter_context(_serving(name, env, tmp_path)) for name in ("replica-a", "replica-b")]
        _wait(lambda: all(_healthy(r.url) for r in replicas), "health on both replicas", replicas)

        # -- tasks, alternating between the replicas ------------------------------------------
        kinds = [REFUND_TYPES[i % len(REFUND_TYPES)] for i in range(APPROVED_TASKS)]
        kinds += ["chase"] * LEFT_TASKS + ["window"] * WINDOW_TASKS
        task_type = {_command(replicas[i % 2], slack, f"run {kind} ref r{i}"): kind for i, kind in enumerate(kinds)}
        mentioned = _mention_twice(replicas, slack, f"window ref r{len(kinds)}")

        def mention_task() -> str | None:
            with sessions() as session:
                return session.scalar(select(Task.public_id).where(Task.thread_ts == mentioned).limit(1))

        _wait(lambda: mention_task() is not None, "a task for the @mention", replicas)
        task_type[str(mention_task())] = "window"
        channel_of = {task: CHANNELS[kind] for task, kind in task_type.items()}

        def drafted() -> dict[str, str]:
            with sessions() as session:
                rows = session.execute(select(Task.public_id, Action.public_id).join(Action, Action.task_id == Task.id))
                return {task: action for task, action in rows if task in task_type}

        _wait(lambda: len(drafted()) == len(task_type), "a drafted action for every task", replicas)
        action_of = drafted()

        def posted_cards() -> dict[str, Card]:
            found = {}
            for task, action in action_of.items():
                for message in slack.messages(channel_of[task]):
                    if message.thread_ts is None and action in json.dumps(message.blocks):
                        found[task] = Card(task_type[task], task, action, channel_of[task], message.ts, message.blocks)
            return found

        _wait(lambda: len(posted_cards()) == len(task_type), "a card for every task", replicas)
        cards = posted_cards()
        approved = [c for c in cards.values() if c.task_type in REFUND_TYPES]
        left = [c for c in cards.values() if c.task_type == "chase"]
        windowed = [c for c in cards.values() if c.task_type == "window"]

        # -- many Approve clicks per card, at both replicas at once -----------------------------
        clicks = [
            (replicas[(i + j) % 2], card, APPROVERS[j % 2])
            for i, card in enumerate(approved)
            for j in range(CLICKS_PER_CARD)
        ]
        together = threading.Barrier(len(clicks))

        def click(replica: Replica, card: Card, user: str) -> int:
            together.wait(timeout=DEADLINE_S)
            return _approve(replica, slack, card, user)

        with ThreadPoolExecutor(max_workers=len(clicks)) as pool:
            statuses = list(pool.map(lambda c: click(*c), clicks))
        assert statuses == [200] * len(clicks)

        # -- until every action is run or expired, every task done, every message delivered -----
        def settled() -> bool:
            with sessions() as session:
                actions = dict(session.execute(select(Action.public_id, Action.state)).all())
                tasks = dict(session.execute(select(Task.public_id, Task.state)).all())
                undelivered = session.scalar(
                    select(func.count()).select_from(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
                )
            answered = sum(1 for method, _ in slack.calls if method == "response_url")
            return (
                all(actions[c.action_id] == "succeeded" for c in approved + windowed)
                and all(actions[c.action_id] == "expired" for c in left)
                and all(tasks[task] == "succeeded" for task in task_type)
                and undelivered == 0
                and answered >= len(approved) * (CLICKS_PER_CARD - 1)
            )

        _wait(settled, "every action run or expired, every task done, every message delivered", replicas)
        exits = _stop(replicas)

    # Both replicas stopped cleanly on SIGINT, having logged no error.
    logs = {replica.name: replica.output() for replica in replicas}
    assert exits == {"replica-a": 0, "replica-b": 0}, logs
    for name, output in logs.items():
        assert not re.search(r'"level": "(error|critical)"|Traceback', output), f"{name}:\n{output}"

    calls = slack.calls
    posts = [params for method, params in calls if method == "chat.postMessage"]
    updates = [params for method, params in calls if method == "chat.update"]
    dm = {user: slack.dm(user) for user in (ALICE, BOB, CAROL, REQUESTER)}

    with sessions() as session:
        actions = {a.public_id: a for a in session.scalars(select(Action))}
        decisions = Counter(
            (public_id, kind)
            for public_id, kind in session.execute(
                select(Action.public_id, Decision.kind).join(Action, Decision.action_id == Action.id)
            )
        )
        events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        outbox = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        card_rows = Counter(key for (key,) in session.execute(select(SlackMessage.key)))
        all_tasks = set(session.scalars(select(Task.public_id)))
        slack_events = session.scalar(select(func.count()).select_from(SlackEvent))
        tool_calls = Counter(key for (key,) in session.execute(text("SELECT key FROM replica_calls")))
        effects = Counter(key for (key,) in session.execute(text("SELECT key FROM sample_effects")))
        ledger = verify(session)

    # The @mention delivered to both replicas started one task, which said so once, in its thread.
    assert (all_tasks, slack_events) == (set(task_type), 1)
    started = [p for p in posts if p.get("thread_ts") == mentioned and str(p.get("text")).startswith("Working on it")]
    assert len(started) == 1, started

    # Each approved or unvetoed action ran exactly once, on one replica or the other; nothing
    # else ran.
    assert tool_calls == Counter({c.action_id: 1 for c in approved + windowed})
    assert effects == Counter({c.action_id: 1 for c in approved + windowed})
    for card in approved:
        action = actions[card.action_id]
        assert (action.state, action.attempts, action.decided_by in APPROVERS) == ("succeeded", 1, True)
    for card in windowed:
        action = actions[card.action_id]
        assert (action.state, action.mode, action.attempts, action.decided_by) == ("succeeded", "hotl", 1, None)
    for card in left:
        assert (actions[card.action_id].state, actions[card.action_id].attempts) == ("expired", 0)

    # One approval per action (quorum 1); every other click was refused as already decided,
    # recorded, and answered to the clicker once; or, on a machine too busy to reach it within
    # its budget, shed: nothing recorded, the clicker told "busy" once (`bot.admission`).
    assert decisions == Counter({(c.action_id, "approve"): 1 for c in approved})
    refused = Counter(e.action_public_id for e in events if e.kind == "decision.refused")
    answers = [params for method, params in calls if method == "response_url"]
    busy = [answer for answer in answers if str(answer["text"]).startswith("countersign is busy")]
    answers = [answer for answer in answers if answer not in busy]
    assert sum(refused.values()) + len(busy) == len(approved) * (CLICKS_PER_CARD - 1)
    assert set(refused) <= {c.action_id for c in approved} and max(refused.values(), default=0) <= CLICKS_PER_CARD - 1
    assert len({answer["response_url"] for answer in busy}) == len(busy)
    assert Counter(a for a in actions for answer in answers if a in answer["text"]) == refused
    for answer in answers:
        [action_id] = [c.action_id for c in approved if c.action_id in answer["text"]]
        assert re.search(rf"already [\w ]+: decided by <@{actions[action_id].decided_by}>", answer["text"]), answer
    assert {e.data["code"] for e in events if e.kind == "decision.refused" and e.data} == {"already_decided"}
    approvals = Counter(e.action_public_id for e in events if e.kind == "action.approved")
    assert approvals == Counter({c.action_id: 1 for c in approved})

    # Each card was posted once, and its message recorded once.
    for card in cards.values():
        top_level = [p for p in posts if p["channel"] == card.channel and not p.get("thread_ts")]
        assert sum(_mentions(p, card.action_id) for p in top_level) == 1, card
        assert card_rows[f"card:{card.action_id}"] == 1

    # Each escalation step fired once per action, and each reminder reached each target once,
    # with one note in the card's thread.
    notified = [e for e in events if e.kind == "escalation.notified"]
    steps = Counter((e.action_public_id, e.data["step"]) for e in notified if e.data)
    assert max(steps.values(), default=1) == 1, steps
    for card in left:
        assert {step for (action, step) in steps if action == card.action_id} == {0, 1}
    # A reminder whose action was decided (or expired) before it could be delivered is dropped
    # by the sender, on purpose: it would contradict the card.
    with replica_db.connect() as conn:
        reminder_rows = [
            (key, _json(payload), _json(result))
            for key, payload, result in conn.execute(
                text("SELECT ordering_key, payload, result FROM outbox WHERE kind = 'escalation.notify'")
            )
        ]
    for card in cards.values():
        notified_targets = Counter(
            t for e in notified if e.action_public_id == card.action_id for t in (e.data or {})["targets"]
        )
        if card.task_type == "chase":
            assert notified_targets == Counter({ALICE: 1, BOB: 1, CAROL: 1})
        delivered = [
            payload
            for key, payload, result in reminder_rows
            if key == card.action_id and not (result or {}).get("skipped")
        ]
        expected = Counter(t for payload in delivered for t in payload["targets"])
        reminded = Counter(
            user
            for user in (ALICE, BOB, CAROL)
            for p in posts
            if p["channel"] == dm[user] and _mentions(p, card.action_id)
        )
        assert reminded == expected, card
        thread = [p for p in posts if p["channel"] == card.channel and p.get("thread_ts") == card.ts]
        notes = [p for p in thread if str(p.get("text", "")).startswith(":bell: Reminded")]
        assert len(notes) == len(delivered), card

    # Each expiry was announced once: in the card's thread and to the requester.
    for card in cards.values():
        thread = [p for p in posts if p["channel"] == card.channel and p.get("thread_ts") == card.ts]
        expired_notes = [p for p in thread if str(p.get("text", "")).startswith("Expired:")]
        to_requester = [p for p in posts if p["channel"] == dm[REQUESTER] and _mentions(p, card.action_id)]
        assert len(expired_notes) == len(to_requester) == (card.task_type == "chase"), card

    # Each outbox row was claimed and delivered once, and what reached Slack is exactly what
    # the rows call for: no row delivered twice, no message without a row.
    assert [(row.id, row.attempts, row.last_error) for row in outbox if row.attempts != 1 or row.last_error] == []
    assert all(row.delivered_at is not None for row in outbox)
    unknown = {row.kind for row in outbox} - set(POSTS) - {"escalation.notify"}
    assert not unknown, f"outbox kinds this test does not account for: {unknown}"
    # The @mention's task also tells the thread it was asked in: a link to each card, each result.
    with sessions() as session:
        asked = set(
            session.scalars(
                select(Action.public_id).join(Task, Task.id == Action.task_id).where(Task.thread_ts == mentioned)
            )
        )
    in_asked_thread = {"action.card", "action.succeeded", "action.failed", "action.unknown"}
    expected_posts = sum(
        (0 if (row.result or {}).get("skipped") else len(row.payload["targets"]) + 1)
        if row.kind == "escalation.notify"
        else POSTS[row.kind] + (row.kind in in_asked_thread and row.payload.get("action_id") in asked)
        for row in outbox
    )
    assert len(posts) == expected_posts
    assert len(updates) == sum(UPDATES.get(row.kind, 0) for row in outbox)
    same = Counter(
        json.dumps([p["channel"], p.get("thread_ts"), p.get("text"), p.get("blocks")], sort_keys=True) for p in posts
    )
    assert [message for message, times in same.items() if times > 1] == []

    # The hash-chained ledger both replicas appended to is intact.
    assert ledger.ok, ledger.summary()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
