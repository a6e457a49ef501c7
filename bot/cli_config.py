"""The configuration a CLI command works on: the environment's settings and the countersign.yml
they name. A config that does not load is one line per problem on stderr and exit 1, never a
traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.config import Config, load_config
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
