"""Building the process's parts from settings: one place, used by the CLI and the server."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.db import make_engine, make_sessionmaker


def open_database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    return engine, make_sessionmaker(engine)
