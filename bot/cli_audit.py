"""`countersign audit …`: verify and export the ledger, publish its head.

`verify` and `export` only read: on SQLite they open deferred transactions, so they run
beside a serving process without taking (or waiting for) its write lock.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import cast

import click
from sqlalchemy.orm import Session, sessionmaker

from approvals.audit import head
from approvals.ledger import (
    EXPORT_FORMATS,
    ExportFormat,
    InvalidPublishedHead,
    PublishedHead,
    export,
    publish_head,
    verify,
)
from bot.cli_database import open_current
from core.clock import SystemClock, utc
from core.durations import parse_duration
from core.settings import Settings


@click.group()
def audit() -> None:
    """Verify and export the audit ledger, publish its head."""


@contextmanager
def _sessions(*, read_only: bool) -> Iterator[sessionmaker[Session]]:
    engine, sessions = open_current(Settings(), read_only=read_only)
    try:
        yield sessions
    finally:
        engine.dispose()


def _published_head(_ctx: click.Context, _param: click.Parameter, value: str | None) -> PublishedHead | None:
    if value is None:
        return None
    try:
        return PublishedHead.parse(value)
    except InvalidPublishedHead as exc:
        raise click.BadParameter(str(exc)) from None


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 date or time (naive means UTC), or a duration meaning that long ago."""
    if value is None:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        pass
    try:
        return SystemClock().now() - parse_duration(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO 8601 date or time (2026-01-05, 2026-01-05T09:00:00Z) nor a duration (7d, 12h)"
        ) from None


@audit.command("verify")
@click.option(
    "--against",
    metavar="HEAD",
    callback=_published_head,
    help="A head published earlier (HASH or SEQ:HASH, e.g. from the admin channel or the log) the ledger "
    "must still contain, besides the last one this database recorded.",
)
def verify_command(against: PublishedHead | None) -> None:
    """Check the hash chain and the last published head; exit 1 at the first broken event.

    Prints how many events came after the newest head found: those are not anchored yet.
    """
    with _sessions(read_only=True) as sessions, sessions() as session:
        report = verify(session, against=against)
    if not report.ok:
        click.echo(report.summary(), err=True)
        sys.exit(1)
    click.echo(report.summary())


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl", show_default=True)
@click.option(
    "--since",
    metavar="WHEN",
    callback=_since,
    help="Only events at or after this time: ISO 8601 (naive = UTC), or a duration ago (7d).",
)
def export_command(fmt: str, since: datetime | None) -> None:
    """Write the ledger to stdout in seq order, one event per line."""
    out = sys.stdout
    with _sessions(read_only=True) as sessions, sessions() as session:
        export(session, out, cast(ExportFormat, fmt), since)  # `| head`: a broken pipe ends it, exit 0 (bot.cli)
        out.flush()


@audit.command("publish-head")
def publish_head_command() -> None:
    """Enqueue the ledger head for the admin channel now, if it moved (serve does it every audit.publish_every)."""
    with _sessions(read_only=False) as sessions, sessions.begin() as session:
        published = publish_head(session, SystemClock().now())
        seq, hash_ = published or head(session)
    if published:
        click.echo(f"published head {seq}:{hash_}")
    elif seq == 0:
        click.echo("nothing to publish: the ledger is empty")
    else:
        click.echo(f"nothing to publish: head {seq}:{hash_} was already published")
