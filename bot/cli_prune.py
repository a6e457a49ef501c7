"""`countersign prune --older-than 90d`: delete old traces, delivered outbox rows, handled
Slack event ids and finished timers in small batches (see `core.retention`).

The audit ledger is never pruned: `countersign audit export` is its archive path, and
`countersign audit verify` passes after a prune as before it. Safe beside serving processes:
each batch is its own short transaction.
"""

from __future__ import annotations

from datetime import timedelta

import click

from bot.cli_database import open_current
from core import retention
from core.clock import SystemClock
from core.durations import format_duration, parse_duration
from core.settings import Settings


def _age(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta:
    try:
        age = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if age < retention.MIN_AGE:
        least = format_duration(retention.MIN_AGE)
        raise click.BadParameter(f"must be at least {least} (daily budgets count today's model calls): {value!r}")
    return age


@click.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    callback=_age,
    help="Delete what is older than this age, e.g. 90d or 36h (at least 1d).",
)
@click.option(
    "--batch",
    default=retention.DEFAULT_BATCH,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows per transaction: smaller batches hold locks for less time.",
)
def prune(older_than: timedelta, batch: int) -> None:
    """Delete old traces, delivered outbox rows, Slack event ids and finished timers (never the audit ledger)."""
    engine, _ = open_current(Settings())
    try:
        counts = retention.prune(engine, older_than, SystemClock().now(), batch=batch)
    finally:
        engine.dispose()
    for table, count in counts.items():
        click.echo(f"{table}: {count} deleted")
    click.echo(f"older than {format_duration(older_than)}; the audit ledger is kept (archive it with `audit export`)")
