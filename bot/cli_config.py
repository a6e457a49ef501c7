"""The configuration a CLI command works on: the environment's settings and the countersign.yml
they name. A config that does not load is one line per problem on stderr and exit 1, never a
traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.config import Config, is_user_id, load_config
from core.errors import ConfigError
from core.settings import Settings


def settings_and_config() -> tuple[Settings, Config]:
    settings = Settings()
    try:
        return settings, load_config(Path(settings.config_path))
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(1)


def require_admin(config: Config, actor: str) -> None:
    """Refuse (exit 1) a `--by` who is not one of `slack.admins` by id; groups there are resolved by
    Slack, which the CLI does not ask."""
    if actor not in config.slack.admins:
        groups = [a for a in config.slack.admins if not is_user_id(a)]
        hint = f" (groups like {groups[0]} are checked in Slack, not here)" if groups else ""
        raise click.ClickException(f"{actor} is not listed in slack.admins{hint}")
