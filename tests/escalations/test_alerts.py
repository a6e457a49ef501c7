"""Cost and backlog alerts on SQLite and PostgreSQL with a frozen clock: one `ops.alert`
outbox row per problem (per task type and UTC day for budgets; per episode for backlogs,
with one `resolved` row when it clears), the numbers in the payload, and the one line
`bot.blocks.alerts` renders from them to post."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from agent import budget
from approvals.usage import daily_usage, per_task_type
from bot.blocks.alerts import backlog_alert, budget_alert
from core import outbox
from core.config import AlertsConfig, Budget, Config
from core.messages import BacklogAlert, BudgetAlert, TaskStarted, decode
from core.models import Action, OutboxMessage, Task, TraceEvent
from escalations import alerts
from tests.approvals.conftest import ALICE, BOB, World
from tests.factories import make_action, make_task

CONFIG = Config.model_validate(
    {
        "slack": {"approvals_channel": "C0APPROVALS", "admin_channel": "C0ADMINS", "admins": ["U0ADMIN"]},
        "task_types": {
            "refund": {
                "tools": ["issue_refund"],
                "approvers": [ALICE, BOB],
                "budget": {"daily_max_tokens": 10_000, "daily_max_cost_usd": 2.0},
            },
            "restart-service": {"tools": ["restart"], "approvers": [ALICE], "budget": {"daily_max_cost_usd": 5.0}},
            "lookup": {"tools": ["lookup_order"], "autonomy": "auto"},  # no daily budget
        },
    }
)
LIMITS = AlertsConfig(budget_share=0.8, pending_max=3, outbox_max=4)


def _check(world: World, limits: AlertsConfig = LIMITS) -> int:
    with world.sessions.begin() as session:
        return alerts.check(session, CONFIG, world.clock.now(), limits=limits)


def _sent(world: World) -> list[dict[str, Any]]:
    with world.sessions() as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "ops.alert").order_by(OutboxMessage.id)
        ).all()
        assert all(row.ordering_key == "ops" for row in rows)
        return [{**row.payload, "message": _text(row.kind, row.payload)} for row in rows]


def _text(kind: str, payload: dict[str, Any]) -> str:
    """The line the admins read: the stored facts, decoded and rendered as the sender does."""
    assert "message" not in payload  # facts only: the text is bot's
    alert = decode(kind, payload)
    if isinstance(alert, BudgetAlert):
        return budget_alert(alert)
    assert isinstance(alert, BacklogAlert)
    return backlog_alert(alert)


def _spend(
    world: World, task_type: str, cost: float, tokens: int = 0, *, kind: str = "model_call", task_id: int | None = None
) -> int:
    """One trace event of `task_type` now, on a new task unless `task_id` is given; returns the task's id."""
    with world.sessions.begin() as session:
        if task_id is None:
            task_id = make_task(session, world.clock.now(), task_type=task_type).id
        session.add(
            TraceEvent(
                task_id=task_id,
                task_type=task_type,
                at=world.clock.now(),
                kind=kind,
                model="claude-sonnet-4-6",
                input_tokens=tokens // 2,
                output_tokens=tokens - tokens // 2,
                cost_usd=cost,
            )
        )
        return task_id


def _pending(world: World, count: int, task_type: str = "refund") -> list[str]:
    with world.sessions.begin() as session:
        task = make_task(session, world.clock.now(), task_type=task_type)
        return [make_action(session, task, world.clock.now(), state="pending").public_id for _ in range(count)]


def _decide(world: World, action_ids: list[str]) -> None:
    """Stands in for people's decisions: the alert counts states, not how they changed."""
    with world.sessions.begin() as session:
        session.execute(update(Action).where(Action.public_id.in_(action_ids)).values(state="approved"))


# -- budgets --------------------------------------------------------------------------------


def test_a_budget_alert_goes_once_per_task_type_and_day(world: World) -> None:
    world.clock._now = world.clock.now().replace(hour=0, minute=30)
    small = _spend(world, "refund", 1.00)
    _spend(world, "refund", 0.50, kind="draft")  # not a model call: does not count
    assert _check(world) == 0

    _spend(world, "refund", 0.40)
    _spend(world, "refund", 0.30, task_id=small)  # model calls today: $1.70 of $2.00, 85%
    assert _check(world) == 1
    [alert] = _sent(world)
    assert alert["kind"] == "budget_cost"
    assert alert["state"] == "firing"
    assert alert["task_type"] == "refund"
    assert alert["day"] == "2026-01-05"
    assert alert["used"] == pytest.approx(1.70)
    assert alert["limit"] == 2.0
    assert alert["share"] == pytest.approx(0.85)
    assert alert["top_task_id"] != ""
    assert alert["top_task_used"] == pytest.approx(1.30)
    assert alert["message"] == (
        "Budget: task type `refund` has spent $1.70 of its $2.00 daily budget today (85%; the alert is at 80%). "
        f"Biggest user: {alert['top_task_id']} ($1.30), see `countersign trace {alert['top_task_id']}`."
    )
    assert "\n" not in alert["message"]

    for _ in range(3):  # more spending the same day: no more messages
        _spend(world, "refund", 0.50)
        world.clock.advance(timedelta(minutes=1))
        assert _check(world) == 0

    world.clock._now = world.clock.now().replace(hour=23, minute=59)
    assert _check(world) == 0
    world.clock.advance(timedelta(minutes=2))  # a new UTC day: usage starts from zero
    assert _check(world) == 0
    _spend(world, "refund", 1.65)
    assert _check(world) == 1
    assert [(a["kind"], a["day"]) for a in _sent(world)] == [
        ("budget_cost", "2026-01-05"),
        ("budget_cost", "2026-01-06"),
    ]


def test_tokens_and_cost_alert_separately_and_each_task_type_has_its_own(world: World) -> None:
    _spend(world, "refund", 0.10, tokens=7_999)
    _spend(world, "restart-service", 3.9)
    _spend(world, "lookup", 1000.0, tokens=10**9)  # no daily budget: never alerts
    assert _check(world) == 0

    _spend(world, "refund", 0.0, tokens=1)  # 8,000 of 10,000 tokens: at the share
    assert _check(world) == 1
    _spend(world, "restart-service", 0.2)  # $4.10 of $5.00
    _spend(world, "refund", 1.55)  # $1.65 of $2.00
    assert _check(world) == 2
    assert _check(world) == 0
    sent = {(a["kind"], a["task_type"]): a for a in _sent(world)}
    assert set(sent) == {("budget_tokens", "refund"), ("budget_cost", "restart-service"), ("budget_cost", "refund")}
    tokens = sent[("budget_tokens", "refund")]
    assert (tokens["used"], tokens["limit"]) == (8_000, 10_000)
    assert tokens["message"].startswith(
        "Budget: task type `refund` has used 8,000 of its 10,000 daily tokens today (80%; the alert is at 80%)."
    )


def test_daily_usage_counts_as_the_agents_budget_does(world: World) -> None:
    world.clock._now = world.clock.now().replace(hour=0, minute=5)
    _spend(world, "refund", 0.25, tokens=300)
    world.clock.advance(timedelta(minutes=-10))  # yesterday
    _spend(world, "refund", 5.0, tokens=9_000)
    world.clock.advance(timedelta(hours=3))
    task_id = _spend(world, "refund", 0.5, tokens=120)
    _spend(world, "refund", 9.0, tokens=50, kind="draft")
    now = world.clock.now()
    with world.sessions() as session:
        # The alerts and the agent's budget read the same count (approvals.usage.daily_usage).
        usage = per_task_type(daily_usage(session, now.date()))
        task = session.get(Task, task_id)
        assert task is not None
        refusal = budget.exceeded(session, task, Budget(daily_max_tokens=420), now)
        assert budget.exceeded(session, task, Budget(daily_max_tokens=421), now) is None
    assert list(usage) == ["refund"]
    assert usage["refund"].tokens == 420
    assert usage["refund"].cost_usd == pytest.approx(0.75)
    assert refusal == "budget: task type 'refund' used 420 tokens today (limit 420)"


# -- backlogs -------------------------------------------------------------------------------


def test_pending_approvals_alert_once_then_resolve_then_alert_again(world: World) -> None:
    first = _pending(world, 3)
    assert _check(world) == 0  # 3 is the maximum, not over it

    _pending(world, 2, task_type="restart-service")
    assert _check(world) == 1
    [alert] = _sent(world)
    assert alert["kind"] == "pending_approvals"
    assert alert["state"] == "firing"
    assert (alert["count"], alert["threshold"]) == (5, 3)
    assert alert["by_task_type"] == {"refund": 3, "restart-service": 2}
    assert alert["oldest_action_id"] == first[0]
    assert alert["oldest_at"] == "2026-01-05T09:00:00+00:00"
    assert alert["message"] == (
        "Backlog: 5 actions are waiting for approval (alert threshold 3): refund 3, restart-service 2; "
        f"the oldest ({first[0]}) drafted 2026-01-05 09:00 UTC."
    )

    _pending(world, 10)
    for _ in range(3):
        world.clock.advance(timedelta(minutes=1))
        assert _check(world) == 0

    with world.sessions() as session:
        waiting = list(session.scalars(select(Action.public_id).where(Action.state == "pending")))
    _decide(world, waiting[:-3])  # 3 left: under the threshold, above 80% of it
    assert _check(world) == 0
    _decide(world, waiting[-3:-1])  # 1 left: resolved
    assert _check(world) == 1
    assert _check(world) == 0
    resolved = _sent(world)[-1]
    assert (resolved["kind"], resolved["state"], resolved["count"]) == ("pending_approvals", "resolved", 1)
    assert resolved["message"] == "Resolved: 1 action is waiting for approval now, back under the alert threshold of 3."

    _pending(world, 3)
    assert _check(world) == 1
    assert [a["state"] for a in _sent(world)] == ["firing", "resolved", "firing"]


def test_outbox_backlog_alerts_and_resolves(world: World) -> None:
    with world.sessions.begin() as session:
        for number in range(5):
            row = outbox.enqueue(session, TaskStarted(f"tsk_{number}"), world.clock.now())
        row.last_error = "SlackApiError: ratelimited"
    assert _check(world) == 1
    [alert] = _sent(world)
    assert (alert["kind"], alert["count"], alert["threshold"]) == ("outbox_backlog", 5, 4)
    assert alert["last_error"] == "SlackApiError: ratelimited"
    assert alert["message"] == (
        "Backlog: 5 Slack messages are waiting to be sent (alert threshold 4): "
        "the oldest queued 2026-01-05 09:00 UTC; last error: SlackApiError: ratelimited."
    )
    world.clock.advance(timedelta(minutes=1))
    assert _check(world) == 0  # still 6 (the alert is queued too): nothing new

    with world.sessions.begin() as session:  # the sender catches up
        session.execute(update(OutboxMessage).values(delivered_at=world.clock.now()))
    assert _check(world) == 1
    resolved = _sent(world)[-1]
    assert (resolved["state"], resolved["count"]) == ("resolved", 0)
    assert (
        resolved["message"]
        == "Resolved: 0 Slack messages are waiting to be sent now, back under the alert threshold of 4."
    )


def test_no_alert_without_a_problem(world: World) -> None:
    _pending(world, 1)
    _spend(world, "refund", 0.01, tokens=10)
    assert _check(world, AlertsConfig()) == 0
    assert _sent(world) == []


def test_replicas_checking_at_once_send_one_alert(world: World) -> None:
    _pending(world, 5)
    _spend(world, "refund", 1.99)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def replica() -> None:
        barrier.wait()
        results.append(_check(world))

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(results) == 2
    assert sorted(a["kind"] for a in _sent(world)) == ["budget_cost", "pending_approvals"]
    assert _check(world) == 0


def test_thresholds_come_from_the_config(world: World) -> None:
    configured = Config.model_validate(
        {**CONFIG.model_dump(mode="json"), "alerts": {"budget_share": 0.5, "pending_max": 1, "outbox_max": 2}}
    )
    _pending(world, 2)
    with world.sessions.begin() as session:
        assert alerts.check(session, configured, world.clock.now()) == 1
