"""`countersign api-client create|list|revoke`: the clients of the actions API.

`create` prints, once, one JSON object {"name", "token", "webhook_secret"}: the token is kept
only as a sha256, the webhook secret sealed by the vault (`COUNTERSIGN_VAULT_KEYS`).
"""

from __future__ import annotations

import json

import click
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from agent.vault import KEYS_VARIABLE, Vault, VaultError, parse_keys
from bot import api_clients
from bot.cli_database import open_current
from core.clock import SystemClock
from core.config import load_config
from core.db import reading
from core.errors import ConfigError
from core.models import ApiClient
from core.settings import Settings


@click.group("api-client")
def api_client() -> None:
    """Create, list and revoke clients of the actions API."""


def _open(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    return open_current(settings)


@api_client.command("create")
@click.argument("name")
@click.option("--task-types", default=None, help="Comma-separated task types it may ask for (default: all).")
def create(name: str, task_types: str | None) -> None:
    """Create a client; prints its token and webhook secret once, as one JSON object."""
    settings = Settings()
    if settings.vault_keys is None:
        raise click.ClickException(f"set {KEYS_VARIABLE}: the webhook secret is sealed with the vault's key")
    try:
        config = load_config(settings.config_path)
    except ConfigError as exc:
        raise click.ClickException("; ".join(exc.problems)) from None
    types = [t.strip() for t in task_types.split(",") if t.strip()] if task_types is not None else None
    engine, sessions = _open(settings)
    try:
        vault = Vault(sessions, parse_keys(settings.vault_keys.get_secret_value()))
        with sessions.begin() as session:
            created = api_clients.create(session, vault, name, types, sorted(config.task_types), SystemClock().now())
    except (api_clients.ClientError, VaultError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(json.dumps(created))


@api_client.command("list")
def list_clients() -> None:
    """One line per client: name, task types, created, revoked."""
    engine, sessions = _open(Settings())
    try:
        with reading(sessions) as session:
            rows = session.scalars(select(ApiClient).order_by(ApiClient.name)).all()
            for row in rows:
                types = ",".join(row.task_types) if row.task_types is not None else "(all)"
                revoked = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "active"
                click.echo(f"{row.name}\t{types}\tcreated {row.created_at.isoformat()}\t{revoked}")
    finally:
        engine.dispose()


@api_client.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a client: its token stops working at once (its actions stay on the record)."""
    engine, sessions = _open(Settings())
    try:
        with sessions.begin() as session:
            api_clients.revoke(session, name, SystemClock().now())
    except api_clients.ClientError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"revoked {name}")
