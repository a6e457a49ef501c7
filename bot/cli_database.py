"""The database a CLI command works on: one that is there and at the latest schema.

Only `db upgrade` (and `serve`, `demo`) may create one: a command that reads or changes what is
in it says what to do instead of leaving an empty SQLite file behind or printing a traceback.
"""

from __future__ import annotations

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_sessionmaker, normalize_url, open_database, sqlite_path
from core.migrate import current_revision, head_revision
from core.settings import Settings

DEMO_DATABASE = "sqlite:///countersign-demo.db"


def open_current(settings: Settings, *, read_only: bool = False) -> tuple[Engine, sessionmaker[Session]]:
    """`DATABASE_URL`'s engine (the caller disposes of it) and sessions; a `ClickException` naming
    the database when it is not there, cannot be reached, or is not at the latest schema.
    `read_only`: on SQLite, deferred transactions that never take the serving process's write lock."""
    where = _shown(settings.database_url)
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        raise click.ClickException(
            f"no database at {path} (DATABASE_URL={where}): run `countersign db upgrade` to create one; "
            f"the demo's is countersign-demo.db where `make demo` runs (DATABASE_URL={DEMO_DATABASE})"
        )
    engine, sessions = open_database(settings)
    bind = engine.execution_options(sqlite_deferred=True) if read_only else engine
    try:
        current, expected = current_revision(bind), head_revision()
    except OperationalError as exc:
        engine.dispose()
        raise click.ClickException(f"cannot read the database at {where}: {exc.orig}") from None
    if current != expected:
        engine.dispose()
        if current is None:
            raise click.ClickException(
                f"the database at {where} has no countersign tables: run `countersign db upgrade`"
            )
        raise click.ClickException(
            f"the database schema is at revision {current!r}, not {expected!r}: run `countersign db upgrade`"
        )
    return engine, make_sessionmaker(bind) if read_only else sessions


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse is shown as given
        return url
