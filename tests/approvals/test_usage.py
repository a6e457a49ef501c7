"""approvals.usage: the one count of a day's model calls that budgets, alerts and
`countersign usage` share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from approvals.usage import NO_MODEL, Usage, daily_usage, per_task_type, usage_where, utc_day
from core.models import TraceEvent
from tests.factories import make_task

NOON = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def _call(
    session: Session, at: datetime, task_type: str = "refund", model: str | None = "m-big", **counts: float
) -> int:
    task = make_task(session, at, task_type=task_type)
    session.add(
        TraceEvent(
            task_id=task.id,
            task_type=task_type,
            at=at,
            kind=str(counts.pop("kind", "model_call")),
            model=model,
            input_tokens=int(counts.get("input", 0)),
            output_tokens=int(counts.get("output", 0)),
            cache_read_tokens=int(counts.get("cache_read", 0)),
            cache_creation_tokens=int(counts.get("cache_creation", 0)),
            cost_usd=float(counts.get("cost", 0.0)),
        )
    )
    session.flush()
    return task.id


def test_one_day_per_task_type_and_model_counting_cached_tokens(sessions: sessionmaker[Session]) -> None:
    midnight = NOON.replace(hour=0)
    with sessions.begin() as session:
        _call(session, midnight, input=10, output=5, cache_read=100, cache_creation=7, cost=0.5)
        _call(session, NOON, input=1, output=2, cost=0.25)
        _call(session, NOON, model="m-small", input=3, output=4, cost=0.125)
        _call(session, NOON, task_type="lookup", model=None, input=8, cost=0.0625)
        _call(session, NOON, kind="error", input=1000, cost=9.0)  # not a model call
        _call(session, midnight - timedelta(microseconds=1), input=1000, cost=9.0)  # yesterday
        _call(session, midnight + timedelta(days=1), input=1000, cost=9.0)  # tomorrow
    with sessions() as session:
        usage = daily_usage(session, NOON.date())
        refunds = daily_usage(session, NOON.date(), task_type="refund")
    assert list(usage) == [("lookup", NO_MODEL), ("refund", "m-big"), ("refund", "m-small")]
    assert usage[("refund", "m-big")] == Usage(
        calls=2, input_tokens=11, output_tokens=7, cache_read_tokens=100, cache_write_tokens=7, cost_usd=0.75
    )
    assert usage[("refund", "m-big")].cache_hit_share == 100 / 118  # of the prompt tokens (11 + 100 + 7)
    assert usage[("refund", "m-big")].tokens == 125  # cached prompt tokens count against a daily budget
    assert refunds == {key: used for key, used in usage.items() if key[0] == "refund"}
    summed = per_task_type(usage)
    assert summed["refund"] == Usage(
        calls=3, input_tokens=14, output_tokens=11, cache_read_tokens=100, cache_write_tokens=7, cost_usd=0.875
    )
    assert summed["lookup"].tokens == 8


def test_usage_of_one_task_and_an_empty_day(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        task_id = _call(session, NOON, input=2, output=3, cost=0.5)
        _call(session, NOON, input=1000, cost=9.0)
    with sessions() as session:
        assert usage_where(session, TraceEvent.task_id == task_id) == Usage(1, 2, 3, 0, 0, 0.5)
        assert usage_where(session, TraceEvent.task_id == -1) == Usage()
        assert Usage().cache_hit_share == 0.0
        assert daily_usage(session, (NOON + timedelta(days=3)).date()) == {}


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (datetime(2025, 3, 4, 23, 59, tzinfo=UTC), "2025-03-04"),
        (datetime(2025, 3, 4, 23, 30, tzinfo=UTC).astimezone(UTC).replace(tzinfo=None), "2025-03-04"),
        (datetime.fromisoformat("2025-03-05T00:30:00+02:00"), "2025-03-04"),
    ],
)
def test_the_day_is_the_utc_day(now: datetime, day: str) -> None:
    assert utc_day(now).isoformat() == day
