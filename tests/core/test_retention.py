"""Retention on SQLite and PostgreSQL: `prune` deletes old traces, delivered outbox rows,
Slack event ids and finished timers in batches, keeps everything else, and never the audit
ledger, which still verifies (also against a published head) afterwards. Driven through
the real gate, decisions, sweeper and `countersign prune` / `audit verify` commands."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.tools import load_tool_modules
from approvals import ledger
from approvals.decisions import Decisions
from approvals.ledger import last_published_head, publish_head, verify
from bot.cli import main
from bot.cli_prune import prune as prune_command
from core import outbox, retention
from core.messages import TaskStarted
from core.models import AuditEvent, ConnectState, OutboxMessage, SlackEvent, Timer, TraceEvent
from core.retention import RetentionError, prune
from escalations.sweeper import Sweeper
from tests.approvals.conftest import ALICE, BOB, CAROL, World
from tests.factories import make_task
from tests.fakes.clock import FrozenClock
from tests.fakes.directory import FakeDirectory

AGE = timedelta(days=90)
ONE_STEP = [{"after": "5m", "notify": "approvers"}]


def _world(sessions: sessionmaker[Session], clock: FrozenClock) -> World:
    directory = FakeDirectory({"payments-leads": {CAROL}})
    registry = load_tool_modules(["tests.approvals.shop_tools"])
    return World(sessions, clock, directory, registry, Decisions(directory, registry, clock))


def _traces(world: World, count: int) -> None:
    with world.sessions.begin() as session:
        task = make_task(session, world.clock.now())
        for number in range(count):
            session.add(
                TraceEvent(
                    task_id=task.id,
                    task_type=task.task_type,
                    at=world.clock.now(),
                    kind="model_call" if number % 2 else "draft",
                    model="claude-sonnet-4-6",
                    input_tokens=100,
                    output_tokens=20,
                    cost_usd=0.001,
                    data={"content": [{"type": "text", "text": f"step {number}"}]},
                )
            )


def _slack_events(world: World, prefix: str, count: int) -> None:
    with world.sessions.begin() as session:
        for number in range(count):
            session.add(SlackEvent(event_id=f"{prefix}{number}", received_at=world.clock.now()))


def _deliver_all(world: World, since: datetime) -> None:
    """What the outbox sender does after posting: mark the rows queued since `since` delivered now."""
    with world.sessions.begin() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.created_at >= since)
            .values(delivered_at=world.clock.now())
        )


@dataclass
class History:
    old_traces: int
    recent_traces: int
    kept_outbox_ids: set[int]  # the old undelivered row, the newest head, and everything recent
    kept_timer_ids: set[int]  # an open action's (done, old) and a recent one
    published_head: tuple[int, str]


def _history(world: World) -> History:
    """Activity at the clock's start (to be pruned) and 100 days later (to be kept), through
    the real gate, decisions, sweeper and head publication."""
    sweeper = Sweeper(world.sessions, world.directory, world.clock)
    start = world.clock.now()
    decided = world.draft(escalation=ONE_STEP, approvers=[ALICE, BOB])
    waiting = world.draft(escalation=ONE_STEP, approvers=[ALICE, BOB])  # never decided
    _traces(world, 5)
    _slack_events(world, "Ev_old_", 3)
    with world.sessions.begin() as session:
        assert publish_head(session, world.clock.now()) is not None  # superseded below: may go
    with world.sessions.begin() as session:
        world.decisions.approve(session, decided.public_id, ALICE, decided.params_hash)
    world.clock.advance(timedelta(minutes=6))
    sweeper.run_until_idle()  # decided's timer: done; waiting's: reminds once, then done
    with world.sessions.begin() as session:
        head = publish_head(session, world.clock.now())
        assert head is not None
    _deliver_all(world, start)
    with world.sessions.begin() as session:
        stuck = outbox.enqueue(session, TaskStarted("tsk_stuck"), world.clock.now())
        session.flush()
        newest_head = session.scalars(
            select(func.max(OutboxMessage.id)).where(OutboxMessage.kind == "audit.head")
        ).one()
        waiting_timer = session.scalars(select(Timer.id).where(Timer.action_id == waiting.id)).one()
        assert session.get(Timer, waiting_timer).state == "done"  # type: ignore[union-attr]

    world.clock.advance(timedelta(days=100))
    recent_start = world.clock.now()
    recent = world.draft(escalation=ONE_STEP, approvers=[ALICE, BOB])
    with world.sessions.begin() as session:
        world.decisions.approve(session, recent.public_id, BOB, recent.params_hash)
    world.clock.advance(timedelta(minutes=6))
    sweeper.run_until_idle()
    _traces(world, 3)
    _slack_events(world, "Ev_new_", 2)
    _deliver_all(world, recent_start)
    with world.sessions() as session:
        recent_timer = session.scalars(select(Timer.id).where(Timer.action_id == recent.id)).one()
        recent_rows = set(session.scalars(select(OutboxMessage.id).where(OutboxMessage.created_at >= recent_start)))
    return History(5, 3, {newest_head, stuck.id, *recent_rows}, {waiting_timer, recent_timer}, head)


def _ids(sessions: sessionmaker[Session], column: Any) -> set[Any]:
    with sessions() as session:
        return set(session.scalars(select(column)))


def _audit_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalars(select(func.count()).select_from(AuditEvent)).one()


def test_prune_deletes_old_operational_rows_and_keeps_the_ledger(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    world = _world(sessions, FrozenClock())
    history = _history(world)
    events_before = _audit_count(sessions)
    assert events_before > 10

    counts = prune(engine, AGE, world.clock.now(), batch=2)

    assert set(counts) == {"trace_events", "outbox", "slack_events", "timers", "connect_states", "webhook_deliveries"}
    assert counts["trace_events"] == history.old_traces
    assert counts["slack_events"] == 3
    assert _ids(sessions, SlackEvent.event_id) == {"Ev_new_0", "Ev_new_1"}
    with sessions() as session:
        assert session.scalars(select(func.count()).select_from(TraceEvent)).one() == history.recent_traces
    assert _ids(sessions, OutboxMessage.id) == history.kept_outbox_ids
    assert counts["outbox"] > 0
    # The decided action's old timer went; an open action's timer stays, whatever its age.
    assert counts["timers"] == 1
    assert _ids(sessions, Timer.id) == history.kept_timer_ids
    assert _audit_count(sessions) == events_before
    seq, hash_ = history.published_head
    with sessions() as session:
        report = verify(session, against=f"{seq}:{hash_}")
        assert report.ok, report.summary()
        assert report.events == events_before
        # The newest published head stays, so the next publication compares with it, and
        # plain `verify` still checks the chain against it.
        assert last_published_head(session) == history.published_head
        plain = verify(session)
        assert plain.ok, plain.summary()
        assert plain.anchor is not None and plain.anchor.seq == seq
        assert plain.unanchored == events_before - seq

    assert prune(engine, AGE, world.clock.now(), batch=2) == dict.fromkeys(counts, 0)


def test_timers_of_actions_still_waiting_are_kept(engine: Engine, sessions: sessionmaker[Session]) -> None:
    clock = FrozenClock()
    world = _world(sessions, clock)
    waiting = world.draft(escalation=ONE_STEP, approvers=[ALICE, BOB])
    clock.advance(timedelta(minutes=6))
    Sweeper(sessions, world.directory, clock).run_until_idle()
    with sessions() as session:
        assert session.scalars(select(Timer.state).where(Timer.action_id == waiting.id)).one() == "done"

    assert prune(engine, AGE, clock.advance(timedelta(days=365)))["timers"] == 0
    with sessions.begin() as session:
        world.decisions.approve(session, waiting.public_id, ALICE, waiting.params_hash)
    assert prune(engine, AGE, clock.now())["timers"] == 1


def test_each_batch_is_its_own_transaction(engine: Engine, sessions: sessionmaker[Session]) -> None:
    clock = FrozenClock()
    world = _world(sessions, clock)
    _traces(world, 7)
    _slack_events(world, "Ev_", 4)
    clock.advance(AGE + timedelta(seconds=1))
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))

    counts = prune(engine, AGE, clock.now(), batch=3)

    counted = {"trace_events": 7, "outbox": 0, "slack_events": 4, "timers": 0, "connect_states": 0}
    assert counts == {**counted, "webhook_deliveries": 0}
    # trace_events 3 + 3 + 1, outbox none, slack_events 3 + 1, timers none, connect_states none,
    # webhook_deliveries none: a short batch ends a table.
    assert len(commits) == 3 + 1 + 2 + 1 + 1 + 1


def test_nothing_younger_than_the_cutoff_goes(engine: Engine, sessions: sessionmaker[Session]) -> None:
    clock = FrozenClock()
    world = _world(sessions, clock)
    _traces(world, 2)
    _slack_events(world, "Ev_", 2)
    clock.advance(AGE)  # exactly at the cutoff: not older than it
    assert prune(engine, AGE, clock.now()) == {
        "trace_events": 0,
        "outbox": 0,
        "slack_events": 0,
        "timers": 0,
        "connect_states": 0,
        "webhook_deliveries": 0,
    }


def test_connect_links_go_once_expired_before_the_cutoff(engine: Engine, sessions: sessionmaker[Session]) -> None:
    clock = FrozenClock()
    with sessions.begin() as session:
        for number, lasts in enumerate((timedelta(minutes=10), AGE * 2)):
            session.add(
                ConnectState(
                    state_hash=f"{number:064d}",
                    user_id="U0ALICE",
                    team_id=None,
                    provider="github",
                    secret_name="github_token",
                    tool="open_pr",
                    action_public_id=None,
                    created_at=clock.now(),
                    expires_at=clock.now() + lasts,
                    used_at=None,
                )
            )
    clock.advance(AGE + timedelta(minutes=11))
    assert prune(engine, AGE, clock.now())["connect_states"] == 1
    assert _ids(sessions, ConnectState.state_hash) == {f"{1:064d}"}


def test_retention_knows_the_ledgers_head_rows() -> None:
    assert retention.AUDIT_HEAD_KIND == ledger.HEAD_KIND
    assert retention.AUDIT_HEAD_ORDERING_KEY == ledger.HEAD_ORDERING_KEY


@pytest.mark.parametrize("age", [timedelta(0), timedelta(hours=23)])
def test_prune_keeps_at_least_a_day(engine: Engine, age: timedelta) -> None:
    with pytest.raises(RetentionError, match="at least one day"):
        prune(engine, age, FrozenClock().now())


def test_prune_refuses_an_empty_batch(engine: Engine) -> None:
    with pytest.raises(ValueError, match="batch must be at least 1"):
        prune(engine, AGE, FrozenClock().now(), batch=0)


def test_prune_skips_rows_another_transaction_holds(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: SQLite locks the whole database and has one serving process")
    clock = FrozenClock()
    world = _world(sessions, clock)
    _traces(world, 4)
    clock.advance(AGE * 2)
    with engine.connect() as holder:
        held = holder.execute(select(TraceEvent.id).order_by(TraceEvent.id).limit(1).with_for_update()).scalar_one()
        result: dict[str, int] = {}
        worker = threading.Thread(target=lambda: result.update(prune(engine, AGE, clock.now())))
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "prune waited for a row lock"
        holder.rollback()
    assert result["trace_events"] == 3
    assert _ids(sessions, TraceEvent.id) == {held}
    assert prune(engine, AGE, clock.now())["trace_events"] == 1


# -- the command ----------------------------------------------------------------------------


def _cli(db_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(prune_command, list(args), env={"DATABASE_URL": db_url})
    return result.exit_code, result.output


def test_prune_command_prints_counts_and_audit_verify_still_passes(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    # The command reads the system clock, so the frozen clock starts 200 days before today.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=200)
    world = _world(sessions, FrozenClock(start))
    history = _history(world)  # ends 100 days after `start`: its old half is 200 days old, its new half 100
    head_seq = history.published_head[0]
    events = _audit_count(sessions)
    with sessions() as session:
        traces = session.scalars(select(func.count()).select_from(TraceEvent)).one()

    code, output = _cli(db_url, "--older-than", "150d", "--batch", "3")

    assert code == 0, output
    assert "trace_events: 5 deleted" in output
    assert "slack_events: 3 deleted" in output
    assert "the audit ledger is kept" in output
    with sessions() as session:
        assert session.scalars(select(func.count()).select_from(TraceEvent)).one() == traces - 5
    assert _audit_count(sessions) == events
    verified = CliRunner().invoke(main, ["audit", "verify"], env={"DATABASE_URL": db_url})
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith(f"ok: {events} events")
    assert f" after the last published head (seq {head_seq} at " in verified.output


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90 days", "not a duration: '90 days'"),
        ("-5d", "cannot be negative: '-5d'"),
        ("12h", "must be at least 1d (daily budgets count today's model calls): '12h'"),
    ],
)
def test_prune_command_names_a_bad_age(db_url: str, value: str, expected: str) -> None:
    code, output = _cli(db_url, "--older-than", value)
    assert code == 2
    assert "--older-than" in output
    assert expected in output


def test_prune_command_needs_an_age_and_a_positive_batch(db_url: str) -> None:
    code, output = _cli(db_url)
    assert code == 2
    assert "Missing option '--older-than'" in output
    code, output = _cli(db_url, "--older-than", "90d", "--batch", "0")
    assert code == 2
    assert "--batch" in output
