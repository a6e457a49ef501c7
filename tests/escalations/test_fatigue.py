"""Signals of rubber-stamping per approver (`approvals.fatigue`) and the alert to the admins
when someone's fast share passes `alerts.fast_approval_share` (`escalations.alerts`): from real
decisions on SQLite and PostgreSQL with a frozen clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from approvals import fatigue
from approvals.decisions import decide
from bot.blocks.alerts import fatigue_alert
from core.config import Config
from core.messages import FatigueAlert, decode
from core.models import OutboxMessage
from escalations import alerts
from tests.approvals.conftest import ALICE, BOB, World

CONFIG = Config.model_validate(
    {
        "slack": {"approvals_channel": "C0APPROVALS", "admins": ["U0ADMIN"]},
        "alerts": {"fast_approval_share": 0.5, "fast_approval_min": 4, "fast_approval_window": "7d"},
        "task_types": {
            "refund": {"tools": ["issue_refund"], "approvers": [ALICE, BOB], "graduation": {"min_read_time": "5s"}}
        },
    }
)


def _decide(world: World, actor: str, kind: str, after_s: float) -> None:
    """One fresh refund decided by `actor` `after_s` seconds after its card."""
    action = world.draft()
    world.clock.advance(after_s)

    def call(session: Any) -> object:
        if kind == "reject":
            return world.decisions.reject(session, action.public_id, actor, "no")
        return world.decisions.approve(session, action.public_id, actor, action.params_hash)

    decide(world.sessions, world.clock, call)
    world.clock.advance(60)


def _signals(world: World) -> dict[str, fatigue.Signals]:
    with world.sessions() as session:
        since = world.clock.now() - timedelta(days=7)
        return {s.approver: s for s in fatigue.signals(session, since, fatigue.min_read_times(CONFIG))}


def _alerts(world: World) -> list[FatigueAlert]:
    with world.sessions.begin() as session:
        alerts.check(session, CONFIG, world.clock.now())
    with world.sessions() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ops.alert")).all()
        found = [decode(row.kind, row.payload) for row in rows]
    return [alert for alert in found if isinstance(alert, FatigueAlert)]


def test_each_approver_gets_rate_median_fast_share_and_streaks(world: World) -> None:
    # Alice: fast, fast, fast, a rejection (ends the streak), slow, fast.
    for kind, after in (("approve", 1), ("approve", 2), ("approve", 1), ("reject", 3), ("approve", 30), ("approve", 2)):
        _decide(world, ALICE, kind, after)
    _decide(world, BOB, "approve", 20)
    found = _signals(world)
    alice, bob = found[ALICE], found[BOB]
    assert (alice.decisions, alice.approvals, alice.fast) == (6, 5, 4)
    assert alice.approval_rate == 5 / 6 and alice.fast_share == 4 / 5
    assert alice.median_read_s == 2.0  # of 1, 1, 2, 2, 3, 30
    assert (alice.longest_fast_streak, alice.current_fast_streak) == (3, 1)
    assert (bob.decisions, bob.fast, bob.fast_share, bob.median_read_s) == (1, 0, 0.0, 20.0)
    assert fatigue.flagged(alice, CONFIG) and not fatigue.flagged(bob, CONFIG)
    # Pooled under one label (bounded metrics): one row for everyone.
    with world.sessions() as session:
        since = world.clock.now() - timedelta(days=7)
        [pooled] = fatigue.signals(session, since, fatigue.min_read_times(CONFIG), label=lambda _: "other")
    assert (pooled.approver, pooled.decisions, pooled.fast) == ("other", 7, 4)


def test_the_admins_are_told_once_when_someone_approves_too_fast_and_once_when_it_passes(world: World) -> None:
    for _ in range(3):
        _decide(world, ALICE, "approve", 1)
    assert _alerts(world) == []  # 3 approvals: too few to say (fast_approval_min 4)
    _decide(world, ALICE, "approve", 1)
    [fired] = _alerts(world)
    assert (fired.state, fired.approver, fired.approvals, fired.fast, fired.share) == ("firing", ALICE, 4, 4, 1.0)
    assert fired.longest_streak == 4 and fired.window_days == 7.0
    text = fatigue_alert(fired)
    assert text.startswith(f"Fast approvals: <@{ALICE}> approved 4 of 4 approvals (100%) faster than")
    assert "min_read_time" in text and "longest run of fast approvals: 4" in text
    assert len(_alerts(world)) == 1  # not again while it lasts
    for _ in range(5):  # read slowly: 4 of 9 fast is 44%, still over 0.8 x 50%
        _decide(world, ALICE, "approve", 30)
    assert len(_alerts(world)) == 1
    _decide(world, ALICE, "approve", 30)  # 4 of 10: 40%, back to 0.8 x the threshold
    fired, resolved = _alerts(world)
    assert (resolved.state, resolved.approver, resolved.fast, resolved.approvals) == ("resolved", ALICE, 4, 10)
    assert fatigue_alert(resolved).startswith(f"Resolved: <@{ALICE}> approved 4 of 10 approvals (40%)")


def test_a_share_of_one_turns_the_alert_off(world: World) -> None:
    for _ in range(5):
        _decide(world, ALICE, "approve", 1)
    quiet = CONFIG.model_copy(update={"alerts": CONFIG.alerts.model_copy(update={"fast_approval_share": 1.0})})
    with world.sessions.begin() as session:
        assert alerts.check(session, quiet, world.clock.now()) == 0
