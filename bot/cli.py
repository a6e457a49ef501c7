"""The `countersign` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent.anthropic_model import check_models
from agent.errors import ToolLoadError
from agent.tools import load_tool_modules
from bot.cli_audit import audit
from bot.cli_tasks import task, trace, usage
from bot.runtime import open_database
from core.config import Settings, check_tool_names, load_config
from core.errors import ConfigError
from core.migrate import current_revision, upgrade


@click.group()
def main() -> None:
    """countersign: AI agents draft actions, people approve them in Slack."""


@main.group()
def config() -> None:
    """Check the configuration."""


@config.command("check")
@click.option("--file", "path", type=click.Path(path_type=Path), help="YAML config (default: $COUNTERSIGN_CONFIG).")
def config_check(path: Path | None) -> None:
    """Print every problem in the configuration, or "ok"."""
    settings = Settings()
    try:
        loaded = load_config(path or Path(settings.config_path))
    except ConfigError as exc:
        _fail(exc.problems)
    try:
        registry = load_tool_modules(loaded.tools.modules)
    except ToolLoadError as exc:
        _fail([str(exc)])
    problems = check_tool_names(loaded, registry.names()) + check_models(loaded)
    if problems:
        _fail(problems)
    click.echo("ok")


def _fail(problems: list[str]) -> None:
    for problem in problems:
        click.echo(problem, err=True)
    sys.exit(1)


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema (idempotent; safe before every start)."""
    engine, _ = open_database(Settings())
    try:
        upgrade(engine)
        click.echo(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


main.add_command(audit)
main.add_command(task)
main.add_command(trace)
main.add_command(usage)
