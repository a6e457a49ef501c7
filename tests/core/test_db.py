from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError

from core.db import compare_and_set, make_engine, normalize_url, own_sqlite_database
from core.errors import DatabaseOwned
from core.migrate import is_at_head
from core.models import Task
from tests.factories import make_task


def test_sqlite_is_durable_and_waits_for_the_write_lock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_a_second_process_cannot_serve_the_same_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with (
        own_sqlite_database(url),
        pytest.raises(DatabaseOwned, match="already served by another process"),
        own_sqlite_database(url),
    ):
        pass
    with own_sqlite_database(url):  # released when the owner stops
        pass


def test_postgres_needs_no_owner_lock() -> None:
    with own_sqlite_database("postgresql+psycopg://u@h/db"), own_sqlite_database("postgresql+psycopg://u@h/db"):
        pass


def test_postgres_urls_use_psycopg_3() -> None:
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_schema_is_at_head_and_times_come_back_aware_utc(engine, sessions) -> None:
    assert is_at_head(engine)
    berlin = timezone(timedelta(hours=1))
    written = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=berlin)
    with sessions.begin() as session:
        task_id = make_task(session, written).id
    with sessions() as session:
        stored = session.get(Task, task_id).created_at
    assert stored == written
    assert stored.tzinfo == UTC


def test_naive_datetimes_are_refused(sessions) -> None:
    with pytest.raises(Exception, match="naive datetime"), sessions.begin() as session:
        make_task(session, datetime(2026, 1, 1))


def _kill_pooled_connection(engine: Engine, url: str) -> None:
    """Terminate the backend of the one connection in `engine`'s pool, from another engine."""
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = make_engine(url)
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def test_a_pooled_postgres_connection_idle_long_enough_is_pinged_and_replaced_if_dead(postgres_database: str) -> None:
    engine = make_engine(postgres_database, pool_size=1, max_overflow=0, ping_after_idle_s=0.0)
    _kill_pooled_connection(engine, postgres_database)
    with engine.connect() as conn:  # the ping finds it dead: a new connection, no error
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_a_postgres_connection_reused_at_once_is_not_pinged_and_a_dead_one_fails_one_transaction(
    postgres_database: str,
) -> None:
    engine = make_engine(postgres_database, pool_size=1, max_overflow=0, ping_after_idle_s=3600.0)
    _kill_pooled_connection(engine, postgres_database)
    with pytest.raises(OperationalError), engine.connect() as conn:  # no round trip spent on a ping
        conn.execute(text("SELECT 1"))
    with engine.connect() as conn:  # the failure invalidated the pool: the next one reconnects
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_compare_and_set_wins_once_for_each_shape_it_builds_once_and_for_any_other(sessions) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        task_id = make_task(session, now).id
        pending = Task(public_id="tsk_pending", task_type="refund", request_text="x", state="running", created_at=now)
        session.add(pending)  # not flushed: the compare-and-set below flushes it first, as the ORM would
        pending.updated_at = now
        assert compare_and_set(session, Task, task_id, Task.state == "running", Task.lease_owner.is_(None), steps=1)
        assert not compare_and_set(session, Task, task_id, Task.state == "running", Task.steps < 1, steps=2)
        assert compare_and_set(session, Task, pending.id, Task.lease_owner == None, lease_owner="me")  # noqa: E711
        # Not a shape it builds once (IN, a SQL expression as the value): built as before.
        assert compare_and_set(session, Task, task_id, Task.state.in_(["running"]), steps=Task.steps + 1)
    with sessions() as session:
        assert session.get_one(Task, task_id).steps == 2
        assert session.scalars(select(Task.lease_owner).where(Task.public_id == "tsk_pending")).one() == "me"
