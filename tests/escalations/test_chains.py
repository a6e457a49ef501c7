"""Escalation chains with an injected clock: each step exactly once, across restarts and
replicas; acknowledgements, expiry, business hours, snapshots."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from agent.executor import Executor
from approvals.decisions import decide
from approvals.errors import AlreadyAcknowledged, AlreadyDecided, NotApplicable
from core.db import make_engine, make_sessionmaker
from core.models import Action, AuditEvent, OutboxMessage, Timer
from escalations.sweeper import Sweeper
from tests.approvals import shop_tools
from tests.approvals.conftest import ALICE, BOB, World

CHAIN = [
    {"after": "5m", "notify": "approvers"},
    {"after": "15m", "notify": ["@oncall"]},
    {"after": "30m", "then": "expire"},
]
ONCALL = {"U0ONCALL1", "U0ONCALL2"}


@pytest.fixture
def chain_world(world: World) -> World:
    world.directory.groups["oncall"] = set(ONCALL)
    world.directory.groups["empty"] = set()
    return world


def _sweeper(world: World) -> Sweeper:
    return Sweeper(world.sessions, world.directory, world.clock)


def _draft(world: World, **overrides: Any) -> Action:
    overrides.setdefault("escalation", CHAIN)
    overrides.setdefault("approvers", [ALICE, BOB])
    return world.draft(**overrides)


def _timeline(world: World, start: datetime, minutes: int, *, down: range = range(0)) -> list[tuple[int, str, Any]]:
    """Run the sweeper once a minute (not while `down`); what went out, by minute since `start`."""
    sweeper = _sweeper(world)
    for minute in range(minutes + 1):
        world.clock._now = start + timedelta(minutes=minute)
        if minute not in down:
            sweeper.run_until_idle()
    with world.sessions() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [
            (
                int((row.created_at - start).total_seconds() // 60),
                row.kind,
                sorted(row.payload.get("targets", [])) or None,
            )
            for row in rows
        ]


def _audit(world: World, kind: str) -> list[AuditEvent]:
    with world.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.seq)))


def test_no_response_reminds_then_pings_oncall_then_expires_and_nothing_after(chain_world: World) -> None:
    start = chain_world.clock.now()
    action = _draft(chain_world)
    assert _timeline(chain_world, start, 60) == [
        (0, "action.card", None),
        (5, "escalation.notify", [ALICE, BOB]),
        (15, "escalation.notify", sorted(ONCALL)),
        # The warning before the expiry: a quarter of its 30 min before it (22:30, swept at 23),
        # to the chain's current targets.
        (23, "escalation.notify", sorted(ONCALL)),
        (30, "action.expired", None),
    ]
    with chain_world.sessions() as session:
        assert session.get(Action, action.id).state == "expired"
        assert session.scalars(select(Timer.state)).all() == ["done"]
    with pytest.raises(AlreadyDecided, match="expired"):
        decide(
            chain_world.sessions,
            chain_world.clock,
            lambda s: chain_world.decisions.approve(s, action.public_id, ALICE, action.params_hash),
        )


def test_acknowledge_stops_the_pings_not_the_expiry(chain_world: World) -> None:
    start = chain_world.clock.now()
    action = _draft(chain_world)
    sweeper = _sweeper(chain_world)
    chain_world.clock.advance(timedelta(minutes=3))
    sweeper.run_until_idle()
    decide(
        chain_world.sessions, chain_world.clock, lambda s: chain_world.decisions.acknowledge(s, action.public_id, ALICE)
    )
    chain_world.clock.advance(0.08)
    with pytest.raises(AlreadyAcknowledged, match="already acknowledged by U0ALICE"):
        decide(
            chain_world.sessions,
            chain_world.clock,
            lambda s: chain_world.decisions.acknowledge(s, action.public_id, BOB),
        )
    kinds = [kind for _, kind, _ in _timeline(chain_world, start + timedelta(minutes=3), 57)]
    # The reminders stop; the expiry stands, and so does its warning.
    assert kinds == ["action.card", "action.acknowledged", "escalation.notify", "action.expired"]
    assert len(_audit(chain_world, "decision.acknowledge")) == 1


def test_a_step_missed_while_down_fires_once_at_restart_marked_late(chain_world: World) -> None:
    start = chain_world.clock.now()
    _draft(chain_world)
    timeline = _timeline(chain_world, start, 20, down=range(4, 10))
    assert timeline == [
        (0, "action.card", None),
        (10, "escalation.notify", [ALICE, BOB]),
        (15, "escalation.notify", sorted(ONCALL)),
    ]
    reminder, oncall = _audit(chain_world, "escalation.notified")
    assert reminder.data is not None and reminder.data["late"] is True
    assert reminder.data["lateness_s"] == 300.0
    assert oncall.data is not None and oncall.data["late"] is False


def test_a_level_that_resolves_to_nobody_is_skipped_and_recorded(chain_world: World) -> None:
    start = chain_world.clock.now()
    _draft(chain_world, escalation=[{"after": "5m", "notify": ["@empty"]}, {"after": "10m", "notify": "approvers"}])
    assert [(m, k) for m, k, _ in _timeline(chain_world, start, 20)] == [(0, "action.card"), (10, "escalation.notify")]
    [skipped] = _audit(chain_world, "escalation.skipped")
    assert skipped.note == "@empty resolve to nobody"


def test_a_config_change_does_not_move_a_running_chain(chain_world: World) -> None:
    start = chain_world.clock.now()
    first = _draft(chain_world)
    chain_world.clock.advance(timedelta(minutes=1))
    second = _draft(chain_world, escalation=[{"after": "2m", "notify": ["@oncall"]}])  # the config changed
    _timeline(chain_world, start, 20)
    with chain_world.sessions() as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "escalation.notify").order_by(OutboxMessage.id)
        ).all()
        notified = [(row.ordering_key, int((row.created_at - start).total_seconds() // 60)) for row in rows]
    assert notified == [(second.public_id, 3), (first.public_id, 5), (first.public_id, 15)]


def test_low_confidence_pings_the_first_targets_at_once(chain_world: World) -> None:
    start = chain_world.clock.now()
    _draft(chain_world, confidence=0.2)
    timeline = _timeline(chain_world, start, 6)
    assert timeline[:2] == [(0, "action.card", None), (0, "escalation.notify", [ALICE, BOB])]
    [ping] = [e for e in _audit(chain_world, "escalation.notified") if e.data and e.data["reason"] == "low_confidence"]
    assert ping.data is not None and ping.data["late"] is False


def test_an_acknowledgement_that_times_out_reopens_escalation(chain_world: World) -> None:
    start = chain_world.clock.now()
    action = _draft(chain_world, ack_timeout="10m")
    chain_world.clock.advance(timedelta(minutes=3))
    decide(
        chain_world.sessions, chain_world.clock, lambda s: chain_world.decisions.acknowledge(s, action.public_id, BOB)
    )
    notified = [
        (m, t) for m, k, t in _timeline(chain_world, start + timedelta(minutes=3), 20) if k == "escalation.notify"
    ]
    # ack at 3 + 10 min; @oncall at 15; the expiry's warning at 22:30 (swept at 23)
    assert notified == [(10, [ALICE, BOB]), (12, sorted(ONCALL)), (20, sorted(ONCALL))]


@pytest.mark.parametrize(
    ("warning", "at_minute", "targets"),
    [
        (None, 23, sorted(ONCALL)),  # the default: 25% of 30 min before, to the current targets
        ({"before_expiry": "70%"}, 9, [ALICE, BOB]),  # at 9:00: the approvers were the last pinged
        ({"before_expiry": "2m", "notify": ["U0CAROL"]}, 28, ["U0CAROL"]),
        ({"before_expiry": "0s"}, None, None),  # off
    ],
)
def test_a_chain_that_expires_warns_before_it(
    chain_world: World, warning: dict[str, Any] | None, at_minute: int | None, targets: list[str] | None
) -> None:
    start = chain_world.clock.now()
    action = _draft(chain_world, escalation=[*CHAIN, warning] if warning else CHAIN)
    sent = _timeline(chain_world, start, 40)
    with chain_world.sessions() as session:
        expired = session.get(Action, action.id).state
        payloads = [
            row.payload
            for row in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "escalation.notify"))
            if row.payload["reason"] == "expiry_warning"
        ]
    assert expired == "expired"
    if at_minute is None:
        assert payloads == []
        return
    [payload] = payloads
    assert (at_minute, "escalation.notify", targets) in sent
    assert payload["expires_at"] == (start + timedelta(minutes=30)).isoformat()
    assert [step for step in sent if step[1] == "action.expired"] == [(30, "action.expired", None)]


def test_a_warning_with_nothing_to_warn_of_is_a_config_error() -> None:
    from core.config import TaskTypeConfig

    problems: list[str] = []
    for chain in (
        [{"after": "5m", "notify": "approvers"}, {"before_expiry": "25%"}],  # no expiry
        [{"after": "30m", "then": "expire"}, {"before_expiry": "30m"}],  # not shorter than it
        [{"after": "30m", "then": "expire"}, {"before_expiry": "lots"}],
        [{"after": "30m", "then": "expire"}, {"before_expiry": "120%"}],
        [{"after": "30m", "then": "expire"}, {"before_expiry": "1m"}, {"before_expiry": "2m"}],
        [{"before_expiry": "10%", "after": "5m", "notify": "approvers"}],
    ):
        with pytest.raises(ValueError, match=r"before_expiry|after") as raised:
            TaskTypeConfig.model_validate({"tools": ["x"], "approvers": [ALICE], "escalation": chain})
        problems.append(str(raised.value))
    assert "no step has 'then: expire'" in problems[0]
    assert "must be shorter than the expiry's after (30m)" in problems[1]
    assert "or a share like 25%" in problems[2]
    assert "a share from 0% to below 100%" in problems[3]
    assert "one warning before the expiry at most" in problems[4]
    assert "takes no after, then or repeat" in problems[5]


def test_someone_the_chain_pings_may_acknowledge(chain_world: World) -> None:
    action = _draft(chain_world)
    outcome = decide(
        chain_world.sessions,
        chain_world.clock,
        lambda s: chain_world.decisions.acknowledge(s, action.public_id, "U0ONCALL1"),
    )
    assert outcome.decision.actor == "U0ONCALL1"


@pytest.mark.parametrize(
    ("pending_at", "expected_due"),
    [
        # Friday 16:50 CET + 30 min = 17:20, after hours; the DST switch (29 March) falls on the
        # weekend, so Monday 09:00 CEST is 07:00 UTC.
        (datetime(2026, 3, 27, 15, 50, tzinfo=UTC), datetime(2026, 3, 30, 7, 0, tzinfo=UTC)),
        # And back (25 October): Monday 09:00 CET is 08:00 UTC.
        (datetime(2026, 10, 23, 14, 50, tzinfo=UTC), datetime(2026, 10, 26, 8, 0, tzinfo=UTC)),
    ],
)
def test_business_hours_hold_a_step_to_the_window_across_a_dst_switch(
    chain_world: World, pending_at: datetime, expected_due: datetime
) -> None:
    chain_world.clock._now = pending_at
    _draft(
        chain_world,
        escalation=[{"after": "30m", "notify": "approvers"}],
        business_hours={"timezone": "Europe/Berlin", "start": "09:00", "end": "17:00"},
    )
    with chain_world.sessions() as session:
        assert session.scalars(select(Timer.due_at)).one() == expected_due
    sweeper = _sweeper(chain_world)
    chain_world.clock._now = expected_due - timedelta(seconds=1)
    assert sweeper.run_until_idle() == 0
    chain_world.clock._now = expected_due
    assert sweeper.run_until_idle() == 1
    [notified] = _audit(chain_world, "escalation.notified")
    assert notified.data is not None and notified.data["late"] is False


@pytest.mark.slow
def test_two_sweepers_share_many_due_timers_and_fire_each_step_once(chain_world: World, db_url: str) -> None:
    actions = [_draft(chain_world, escalation=[{"after": "5m", "notify": "approvers"}]) for _ in range(60)]
    chain_world.clock.advance(timedelta(minutes=6))
    engines = [make_engine(db_url) for _ in range(2)]
    sweepers = [Sweeper(make_sessionmaker(e), chain_world.directory, chain_world.clock) for e in engines]
    start = threading.Barrier(2)

    def run(sweeper: Sweeper) -> None:
        start.wait()
        sweeper.run_until_idle()

    threads = [threading.Thread(target=run, args=(s,)) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    with chain_world.sessions() as session:
        keys = session.scalars(select(OutboxMessage.ordering_key).where(OutboxMessage.kind == "escalation.notify"))
        assert sorted(keys) == sorted(a.public_id for a in actions)


@pytest.mark.slow
def test_a_veto_racing_the_window_end_has_exactly_one_outcome(chain_world: World, db_url: str) -> None:
    actions = [
        chain_world.draft(
            tool="toggle_flag", params={"flag": f"f{i}", "enabled": True}, autonomy="hotl", veto_window="30s"
        )
        for i in range(10)
    ]
    chain_world.clock.advance(timedelta(seconds=30))
    start = threading.Barrier(len(actions) * 2)

    def veto(action: Action) -> None:
        start.wait()
        with contextlib.suppress(AlreadyDecided, NotApplicable):  # the executor got there first
            decide(
                chain_world.sessions,
                chain_world.clock,
                lambda s: chain_world.decisions.veto(s, action.public_id, ALICE, "stop"),
            )

    def execute() -> None:
        start.wait()
        Executor(chain_world.sessions, chain_world.registry, chain_world.clock).run_until_idle()

    threads = [threading.Thread(target=veto, args=(a,)) for a in actions]
    threads += [threading.Thread(target=execute) for _ in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with chain_world.sessions() as session:
        for action in actions:
            state = session.get(Action, action.id).state
            runs = shop_tools.CALLS[action.public_id]
            assert (state, runs) in {("vetoed", 0), ("succeeded", 1)}, (state, runs)
