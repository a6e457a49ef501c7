"""Database engine and sessions, SQLite and PostgreSQL both first-class.

SQLite: WAL, `synchronous=FULL`, a busy timeout and `BEGIN IMMEDIATE` for every
transaction, so writers queue instead of failing with "database is locked" half-way.
SQLAlchemy silently drops `FOR UPDATE SKIP LOCKED` there, so a SQLite database has one
serving process; `own_sqlite_database` refuses a second.

PostgreSQL: `postgresql+psycopg://`, pooled; a pooled connection is pinged before reuse once
it has sat idle (`PING_AFTER_IDLE_S`), not on every checkout.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Update, bindparam, create_engine, event, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, ClauseElement, Null

from core.errors import DatabaseBusy, DatabaseOwned
from core.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Each PostgreSQL engine (one per serving process) opens up to POOL_SIZE + MAX_OVERFLOW connections.
POOL_SIZE = 10
MAX_OVERFLOW = 20
# A pooled PostgreSQL connection idle this long is pinged before reuse (a round trip); one
# returned a moment ago is not: it is as alive as the transaction that just used it. Should
# the server have gone away since, the transaction that finds out fails (as one in flight
# would) and the pool then drops every connection older than that failure.
PING_AFTER_IDLE_S = 1.0
_HOLDS_WRITER = "countersign.sqlite_writer"
# An execution option: how long (seconds) this transaction may wait for SQLite's write turn
# before `DatabaseBusy`, when less than the default (a click with a deadline, `bot.admission`).
WRITER_TIMEOUT_OPTION = "countersign_writer_timeout_s"
_IDLE_SINCE = "countersign.idle_since"


def normalize_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url_or_engine: str | Engine) -> bool:
    url = url_or_engine.url if isinstance(url_or_engine, Engine) else make_url(url_or_engine)
    return url.get_backend_name() == "sqlite"


def make_engine(url: str, *, ping_after_idle_s: float = PING_AFTER_IDLE_S, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    options: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}
    options.update(kwargs)
    engine = create_engine(url, **options)
    if not options.get("pool_pre_ping"):
        _ping_when_idle(engine, ping_after_idle_s)
    return engine


def _ping_when_idle(engine: Engine, after_s: float) -> None:
    """Ping a pooled connection at checkout only if it was checked in `after_s` ago or more (the
    pool's own `pre_ping` pings on every checkout: a round trip per transaction). A dead one is
    replaced, the way SQLAlchemy's documented pessimistic recipe does it."""

    @event.listens_for(engine.pool, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < after_s:
            return  # a new connection, or one in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"a pooled connection was found dead: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so that we can say BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    # Writers of this process queue on a Python lock before BEGIN IMMEDIATE: a waiter wakes
    # the moment the lock is free, where SQLite's busy handler sleeps in growing steps (up to
    # 100 ms) and turns contention into long tail latencies. Other processes (the CLI beside
    # a server) still meet SQLite's own lock and busy timeout.
    writer = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads and then writes
        # can fail with SQLITE_BUSY without waiting, after it has done half its work.
        # Read-only work (`audit verify`/`export` beside a serving process) opts out with the
        # execution option `sqlite_deferred=True`: WAL gives it a snapshot and no writer waits.
        options = connection.get_execution_options()
        if options.get("sqlite_deferred"):
            connection.exec_driver_sql("BEGIN")
            return
        longest_s = SQLITE_BUSY_TIMEOUT_MS / 1000
        timeout_s = min(options.get(WRITER_TIMEOUT_OPTION, longest_s), longest_s)
        if not writer.acquire(timeout=timeout_s):
            raise DatabaseBusy(f"no write turn on the SQLite database within {timeout_s * 1000:.0f} ms")
        connection.info[_HOLDS_WRITER] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(connection)
            raise

    def _release(connection: Any) -> None:
        if connection.info.pop(_HOLDS_WRITER, False):
            writer.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def open_database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """The engine and sessions of `DATABASE_URL`; the caller disposes of the engine."""
    engine = make_engine(settings.database_url)
    return engine, make_sessionmaker(engine)


@contextmanager
def reading(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A read-only session; on SQLite a deferred transaction (a WAL snapshot), so it neither takes
    nor waits for the write turn. Workers look for due work this way before claiming it, so an
    idle poll costs the writers (a click's transaction) nothing."""
    with sessions() as session:
        # PostgreSQL: autocommit, so a poll is its statement alone (no BEGIN and ROLLBACK round trips).
        sqlite = session.get_bind().dialect.name == "sqlite"
        options = {"sqlite_deferred": True} if sqlite else {"isolation_level": "AUTOCOMMIT"}
        session.connection(execution_options=options)
        yield session


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).resolve()


@contextmanager
def own_sqlite_database(url: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite database for as long as this process serves it.

    A no-op for PostgreSQL, where replicas coordinate through row locks.
    """
    path = sqlite_path(url)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".owner")
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise DatabaseOwned(str(path), handle.read().strip() or "unknown process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def compare_and_set(session: Session, model: type[Any], row_id: int, *expected: Any, **values: Any) -> bool:
    """`UPDATE model SET values WHERE id = row_id AND expected…`: whether this write won.

    The one compare-and-set every lifecycle move and fenced write goes through: a row that
    no longer matches what the caller saw (another click, replica or executor moved it
    first) is left as it is, and the caller says what that means.

    Its statement is built once per shape (the model, each condition's column and operator,
    the columns set) and run with this call's values: building an ORM UPDATE and its cache key
    costs several times what running it does, on every move. Pending changes are flushed first,
    as the ORM would. A condition of another shape (not `column <op> value` or `IS [NOT] NULL`
    on the model's own table) or a value that is a SQL expression is built as before."""
    cached = _cas_statement(model, expected, values)
    if cached is None:
        result = session.execute(
            update(model)
            .where(model.id == row_id, *expected)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    else:
        statement, params = cached
        if session.autoflush:
            session.flush()
        params.update({f"cas_v_{name}": value for name, value in values.items()}, cas_id=row_id)
        result = session.execute(statement, params)
    return getattr(result, "rowcount", 0) == 1


_COMPARISONS = frozenset({operators.eq, operators.ne, operators.lt, operators.le, operators.gt, operators.ge})
_NULL_TESTS = frozenset({operators.is_, operators.is_not})
_CAS_STATEMENTS: dict[tuple[Any, ...], Update] = {}


def _cas_statement(
    model: type[Any], expected: tuple[Any, ...], values: dict[str, Any]
) -> tuple[Update, dict[str, Any]] | None:
    """The statement of this shape, built once, and the values of its conditions; None when a
    condition or a value is of a shape it does not cover."""
    table = model.__table__
    shape: list[tuple[str, Any, bool]] = []
    params: dict[str, Any] = {}
    for index, condition in enumerate(expected):
        if not isinstance(condition, BinaryExpression) or getattr(condition.left, "table", None) is not table:
            return None
        operator, right = condition.operator, condition.right
        if operator in _NULL_TESTS and isinstance(right, Null):
            shape.append((str(condition.left.key), operator, False))
        elif operator in _COMPARISONS and isinstance(right, BindParameter) and not right.expanding:
            shape.append((str(condition.left.key), operator, True))
            params[f"cas_e{index}"] = right.effective_value
        else:
            return None
    if any(isinstance(value, ClauseElement) for value in values.values()):
        return None
    key = (model, tuple(shape), tuple(values))
    statement = _CAS_STATEMENTS.get(key)
    if statement is None:
        columns = model.__mapper__.columns
        conditions = [table.c.id == bindparam("cas_id", type_=table.c.id.type)]
        for index, (name, operator, compared) in enumerate(shape):
            column = table.c[name]
            conditions.append(operator(column, bindparam(f"cas_e{index}", type_=column.type) if compared else None))
        changes = {columns[name]: bindparam(f"cas_v_{name}", type_=columns[name].type) for name in values}
        statement = _CAS_STATEMENTS[key] = update(table).where(*conditions).values(changes)
    return statement, params
