"""`countersign task submit`, `trace` and `usage`: start work and see what it did and cost."""

from __future__ import annotations

from datetime import UTC, date, datetime

import click

from agent.tasks import TaskError, get_task, submit_task
from agent.traces import task_usage, timeline
from approvals.usage import Routing, daily_routing, daily_usage, per_task_type
from bot.cli_config import settings_and_config
from bot.cli_database import open_current
from bot.terminal import printable
from core.clock import SystemClock
from core.settings import Settings


@click.group()
def task() -> None:
    """Start tasks."""


@task.command("submit")
@click.argument("task_type")
@click.argument("text")
@click.option("--requester", help="Slack user id of the person asking (U…); they can never approve it.")
def task_submit(task_type: str, text: str, requester: str | None) -> None:
    """Start a task of TASK_TYPE for TEXT; the serving process's agent picks it up."""
    settings, config = settings_and_config()
    engine, sessions = open_current(settings)
    try:
        with sessions.begin() as session:
            created = submit_task(session, config, task_type, text, now=SystemClock().now(), requester=requester)
        click.echo(created.public_id)
    except TaskError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()


@click.command("trace")
@click.argument("task_public_id", metavar="TASK_ID")
def trace(task_public_id: str) -> None:
    """Print TASK_ID's timeline: model calls, drafts, decisions, executions, and its cost."""
    engine, sessions = open_current(Settings(), read_only=True)
    try:
        with sessions() as session:
            found = get_task(session, task_public_id)
            # Request text, replies, notes and tool output are untrusted: one entry, one line.
            click.echo(
                printable(
                    f"task {found.public_id} · {found.task_type} · {found.state} · requested by "
                    f"{found.requester or 'nobody'} at {found.created_at.isoformat(timespec='seconds')}",
                    newlines=False,
                )
            )
            for entry in timeline(session, found):
                click.echo(
                    f"{entry.at.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}  {printable(entry.kind, newlines=False):<24} "
                    f"{printable(entry.actor, newlines=False):<18} {printable(entry.summary, newlines=False)}"
                )
            usage = task_usage(session, found)
            click.echo(
                f"total: {usage.calls} model calls · in {usage.input_tokens} · cache read "
                f"{usage.cache_read_tokens} / write {usage.cache_write_tokens} · out {usage.output_tokens} "
                f"tokens · cache hits {usage.cache_hit_share:.0%} · ${usage.cost_usd:.4f}"
            )
    except TaskError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()


@click.command("usage")
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), help="UTC day (default: today).")
def usage(day: datetime | None) -> None:
    """Model calls, tokens (uncached, cache read, cache write, output) and cost per task type and
    model on one UTC day, and the cache hit share per task type."""
    wanted: date = (day or datetime.now(UTC)).date()
    engine, sessions = open_current(Settings(), read_only=True)
    try:
        with sessions() as session:
            rows = daily_usage(session, wanted)
            routing = daily_routing(session, wanted)
        click.echo(f"usage on {wanted.isoformat()} (UTC)")
        if not rows:
            click.echo("no model calls")
            _print_routing(routing)
            return
        for (task_type, model), used in rows.items():
            named = f"{printable(task_type, newlines=False):<20} {printable(model, newlines=False):<28}"
            click.echo(
                f"{named} {used.calls:>6} calls {used.input_tokens:>10} in {used.cache_read_tokens:>10} cache read "
                f"{used.cache_write_tokens:>9} cache write {used.output_tokens:>9} out  ${used.cost_usd:.4f}"
            )
        click.echo("cache hits (share of prompt tokens read from the prompt cache) per task type:")
        for task_type, used in per_task_type(rows).items():
            click.echo(
                f"{printable(task_type, newlines=False):<20} {used.cache_hit_share:>5.0%} of "
                f"{used.prompt_tokens} prompt tokens  ${used.cost_usd:.4f}"
            )
        _print_routing(routing)
    finally:
        engine.dispose()


def _print_routing(routing: Routing) -> None:
    """The router's day: its calls and cost, and per task type how often its choice was kept."""
    if not routing.usage.calls:
        return
    used = routing.usage
    click.echo(
        f"router (requests without a type): {used.calls} calls {used.tokens} tokens ${used.cost_usd:.4f};"
        " per task type, its choice kept / changed by the requester / made by the requester (router unsure):"
    )
    for task_type, routed in routing.per_type.items():
        click.echo(
            f"{printable(task_type, newlines=False):<20} kept {routed.kept:>5}  changed {routed.changed:>5}"
            f"  chosen by the requester {routed.asked:>5}"
        )
    if routing.waiting:
        click.echo(f"{'(no type yet)':<20} {routing.waiting} unsure, the requester not answered yet")
    # No path lets a requester replace a type the router chose (only an unsure router asks them),
    # so "changed" stays 0 until one exists; it is counted from the task's type all the same.
