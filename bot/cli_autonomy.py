"""`countersign autonomy show|set`: each task type's level, evidence and progress; an admin's change."""

from __future__ import annotations

import click
from sqlalchemy.orm import Session

from agent.evaluation import latest
from approvals.autonomy import describe, fingerprint, set_level
from bot.cli_config import require_admin, settings_and_config
from bot.cli_database import open_current
from core.clock import SystemClock
from core.config import AutonomyLevel


@click.group()
def autonomy() -> None:
    """Show or set task types' autonomy levels."""


@autonomy.command("show")
@click.argument("task_type", required=False)
def show(task_type: str | None) -> None:
    """Level, ceiling, evidence and what the next level still needs, per task type."""
    settings, config = settings_and_config()
    names = [task_type] if task_type else sorted(config.task_types)
    if task_type and task_type not in config.task_types:
        raise click.ClickException(f"unknown task type {task_type!r} (known: {', '.join(sorted(config.task_types))})")
    engine, sessions = open_current(settings)
    try:
        with sessions() as session:
            for name in names:
                info = describe(session, name, config.task_types[name], SystemClock().now())
                flags = [f"frozen until {info['frozen_until']}"] if info["frozen_until"] else []
                flags += ["capped at hitl: config changed, an admin must confirm"] if info["unconfirmed"] else []
                flags += [f"probation: {info['probation_left']} runs"] if info["probation_left"] else []
                stats = info["stats"]
                click.echo(f"{name}: {info['level']} (ceiling {info['ceiling']})" + "".join(f"; {f}" for f in flags))
                click.echo(
                    f"  evidence: {stats['samples']} outcomes, {stats['clean']} clean, {stats['rejected']} "
                    f"rejected, {stats['vetoed']} vetoed over {stats['days']} days from {stats['approvers']} "
                    f"approvers; clean lower bound {stats['clean_lower_bound']:.2f}"
                )
                click.echo("  next level: " + ("; ".join(info["unmet"]) or "eligible: a proposal goes to the admins"))
                earned = info["earned"]
                if earned:
                    at = earned["at"].isoformat(timespec="seconds") if earned["at"] else "?"
                    was = earned["stats"]
                    click.echo(
                        f"  earned {earned['from_level']} -> {earned['to_level']} at {at} by "
                        f"{', '.join(earned['by']) or 'the admins'} (proposal {earned['proposal_id']}): "
                        f"{was.get('samples', 0)} outcomes, {was.get('clean', 0)} clean, "
                        f"{was.get('rejected', 0)} rejected, {was.get('vetoed', 0)} vetoed; clean lower bound "
                        f"{was.get('clean_lower_bound', 0):.2f}"
                    )
    finally:
        engine.dispose()


@autonomy.command("set")
@click.argument("task_type")
@click.argument("level", type=click.Choice([level.value for level in AutonomyLevel]))
@click.option("--by", "actor", required=True, help="Your Slack user id; it must be listed in slack.admins.")
@click.option("--reason", required=True, help="Why: it goes on the record.")
def set_command(task_type: str, level: str, actor: str, reason: str) -> None:
    """Set TASK_TYPE's level as an admin (also confirms a level capped after a config change)."""
    settings, config = settings_and_config()
    if task_type not in config.task_types:
        raise click.ClickException(f"unknown task type {task_type!r} (known: {', '.join(sorted(config.task_types))})")
    require_admin(config, actor)
    engine, sessions = open_current(settings)
    try:
        with sessions.begin() as session:
            set_level(
                session,
                task_type,
                config.task_types[task_type],
                AutonomyLevel(level),
                actor=actor,
                reason=reason,
                now=SystemClock().now(),
                admins=config.slack.admins,
            )
            evaluated = _latest_eval(session, task_type, fingerprint(config.task_types[task_type]))
        click.echo(f"{task_type}: {level} (set by {actor})")
        click.echo(evaluated)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()


def _latest_eval(session: Session, task_type: str, current: str) -> str:
    """The type's latest `countersign eval`, and whether it evaluated the version now configured."""
    event = latest(session, task_type)
    if event is None:
        return f"no eval of {task_type} on the ledger: `countersign eval {task_type}` replays its decided actions"
    data = event.data or {}
    which = "this version" if data.get("fingerprint") == current else "another version (not the one configured now)"
    when = event.at.isoformat(timespec="seconds")
    return f"latest eval ({when}, of {which}): {event.note}"
