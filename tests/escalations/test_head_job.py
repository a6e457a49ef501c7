"""The audit head job: published every `audit.publish_every` (a minute unless configured),
to the outbox (the admin channel) and as one structured log line, on SQLite and PostgreSQL,
with a frozen clock and APScheduler's job table read, never waited for."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from approvals import audit
from approvals.audit import AuditEntry
from core import logs
from core.config import Config
from core.models import AuditEvent, OutboxMessage
from escalations.jobs import HEAD_JOB, periodic_jobs
from escalations.scheduler import Ticker
from escalations.sweeper import Sweeper
from tests.fakes.clock import FrozenClock
from tests.fakes.directory import FakeDirectory


def _config(**audit_keys: Any) -> Config:
    return Config.model_validate(
        {
            "slack": {"approvals_channel": "C0APPROVALS", "admin_channel": "C0ADMINS"},
            "task_types": {"lookup": {"tools": ["lookup_order"], "autonomy": "auto"}},
            **({"audit": audit_keys} if audit_keys else {}),
        }
    )


def _jobs(sessions: sessionmaker[Session], config: Config, clock: FrozenClock) -> dict[str, Any]:
    return periodic_jobs(Sweeper(sessions, FakeDirectory({}), clock), sessions, config, clock)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The production log pipeline (JSON lines), written to a string."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure(json=True, level=logging.INFO)
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        structlog.reset_defaults()


@pytest.mark.parametrize(
    ("keys", "seconds"), [({}, 60.0), ({"publish_every": "15s"}, 15.0), ({"publish_every": "1h"}, 3600.0)]
)
def test_heads_are_published_every_minute_unless_configured(
    sessions: sessionmaker[Session], keys: dict[str, str], seconds: float
) -> None:
    clock = FrozenClock()
    jobs = _jobs(sessions, _config(**keys), clock)
    assert jobs[HEAD_JOB][1] == seconds

    ticker = Ticker(jobs, clock)
    ticker.scheduler.start(paused=True)  # jobs get their triggers on start; paused, none runs
    try:
        assert ticker.scheduler.get_job(HEAD_JOB).trigger.interval.total_seconds() == seconds
    finally:
        ticker.shutdown()


def test_a_moved_head_goes_to_the_outbox_and_to_the_log(
    sessions: sessionmaker[Session], json_logs: io.StringIO
) -> None:
    clock = FrozenClock()
    publish = _jobs(sessions, _config(), clock)[HEAD_JOB][0]
    for number in range(3):
        with sessions.begin() as session:
            audit.record(session, AuditEntry(kind="task.created", actor="system", at=clock.now(), note=str(number)))

    assert publish() == (3, _hash(sessions, 3))
    clock.advance(60)
    assert publish() is None  # the head did not move: nothing posted, nothing logged

    with sessions() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "audit.head")).all()
    assert [row.payload for row in rows] == [
        {"seq": 3, "hash": _hash(sessions, 3), "at": "2026-01-05T09:00:00.000000+00:00"}
    ]
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    heads = [line for line in lines if line.get("logger") == "escalations.jobs"]
    assert len(heads) == 1
    assert heads[0]["event"] == f"audit head published: 3:{_hash(sessions, 3)}"
    assert (heads[0]["audit_seq"], heads[0]["audit_hash"], heads[0]["level"]) == (3, _hash(sessions, 3), "info")


def _hash(sessions: sessionmaker[Session], seq: int) -> str:
    with sessions() as session:
        return session.execute(select(AuditEvent.hash).where(AuditEvent.seq == seq)).scalar_one()
