"""`countersign secrets set|connect|list|delete|rotate-key|generate-key`: the vault of tool secrets.

`connect` stores a person's own credential (for task types with `credentials: requester |
approver`), optionally an OAuth token with what refreshes it.
Values are read from stdin (a hidden, confirmed prompt on a terminal) and never printed;
`list` shows names, tools, owners, ages and whether the newest key encrypts each row. The keys
come from `COUNTERSIGN_VAULT_KEYS`, comma-separated, newest first.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import click

from agent.delegation import connect_credential
from agent.vault import ANY_TOOL, KEYS_VARIABLE, TEAM, OAuthGrant, Vault, VaultError, generate_key, parse_keys
from bot.cli_database import open_current
from bot.terminal import printable
from core.clock import SystemClock
from core.settings import Settings

_TOOL_HELP = f"The tool that may use it, or '{ANY_TOOL}' for every tool that declares it."
_OWNER_HELP = f"'{TEAM}' (every run of the tool), or the Slack user id it belongs to."
_BY_HELP = "Your Slack user id, for the audit record (default: system)."


@contextmanager
def _vault() -> Iterator[Vault]:
    settings = Settings()
    if settings.vault_keys is None:
        raise click.ClickException(
            f"set {KEYS_VARIABLE} to one or more Fernet keys, comma-separated, newest first "
            "(`countersign secrets generate-key` makes one)"
        )
    engine, sessions = open_current(settings)
    try:
        yield Vault(sessions, parse_keys(settings.vault_keys.get_secret_value()))
    except VaultError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()


@click.group()
def secrets() -> None:
    """Store, list and delete the secrets tools declare; rotate the vault key."""


@secrets.command("set")
@click.argument("name")
@click.option("--tool", "scope", required=True, help=_TOOL_HELP)
@click.option("--owner", default=TEAM, show_default=True, help=_OWNER_HELP)
@click.option("--by", "actor", default="system", help=_BY_HELP)
def set_command(name: str, scope: str, owner: str, actor: str) -> None:
    """Store NAME for a tool. The value is read from stdin (hidden when typed), never echoed.

    \b
    printf %s "$STRIPE_KEY" | countersign secrets set stripe_api_key --tool issue_refund
    """
    value = _read_value(name)
    with _vault() as vault:
        replaced = vault.put(name, value, scope=scope, owner=owner, actor=actor)
    click.echo(f"secret {name!r} {'replaced' if replaced else 'set'} for tool {scope!r} (owner {owner})")


@secrets.command("connect")
@click.argument("name")
@click.option("--owner", required=True, help="The Slack user id of the person it belongs to.")
@click.option("--tool", "scope", default=ANY_TOOL, show_default=True, help=_TOOL_HELP)
@click.option("--provider", default=None, help="The oauth_providers entry that refreshes it (needs a refresh token).")
@click.option("--expires-in", type=click.IntRange(min=1), default=None, help="Seconds the access token stays valid.")
@click.option("--by", "actor", default="system", help=_BY_HELP)
def connect_command(
    name: str, owner: str, scope: str, provider: str | None, expires_in: int | None, actor: str
) -> None:
    """Store a person's own credential NAME, for task types with `credentials: requester | approver`.

    stdin holds the access token, or the JSON answer of the provider's token endpoint
    (access_token, and refresh_token and expires_in if it gave them). Never echoed.

    \b
    printf %s "$TOKEN" | countersign secrets connect github_token --owner U0123ABCD
    countersign secrets connect github_token --owner U0123ABCD --provider github < token.json
    """
    if owner == TEAM:
        raise click.ClickException("--owner is a person's Slack user id; use `secrets set` for the workspace's own")
    access_token, refresh_token, given_expiry = _token(_read_value(name), name)
    expires_in = expires_in or given_expiry
    if (refresh_token or expires_in) and provider is None:
        has = "a refresh token" if refresh_token else "an expiry"
        raise click.ClickException(f"the token has {has}: name its --provider (an oauth_providers entry)")
    with _vault() as vault:
        now = vault.clock.now()
        grant = None
        if provider is not None:
            expires_at = now + timedelta(seconds=expires_in) if expires_in else None
            grant = OAuthGrant(provider, refresh_token, expires_at)
        replaced = connect_credential(vault, name, access_token, owner=owner, scope=scope, actor=actor, oauth=grant)
    what = "refreshable OAuth token" if grant and grant.refresh_token else "credential"
    verb = "replaced" if replaced else "connected"
    click.echo(f"{owner}'s {what} {name!r} {verb} for tool {scope!r}")


def _token(value: str, name: str) -> tuple[str, str | None, int | None]:
    """(access token, refresh token, expires_in) from a bare token or a token endpoint's JSON answer."""
    if not value.lstrip().startswith("{"):
        return value.strip(), None, None
    try:
        answer: Any = json.loads(value)
    except ValueError:
        raise click.ClickException(f"{name}: stdin starts like JSON but is not valid JSON") from None
    access_token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(access_token, str) or not access_token:
        raise click.ClickException(f"{name}: the JSON on stdin has no access_token")
    refresh_token, expires_in = answer.get("refresh_token"), answer.get("expires_in")
    return (
        access_token,
        refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        int(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None,
    )


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value: str = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        # The newline that `echo` or a file adds is not part of the secret.
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise click.ClickException(
            f'no value on stdin: pipe it in, e.g. printf %s "$VALUE" | countersign secrets set {name} --tool TOOL'
        )
    return value


@secrets.command("list")
def list_command() -> None:
    """Names, tools, owners, ages (since set or replaced) and keys; never values."""
    with _vault() as vault:
        listed = vault.list()
    if not listed:
        click.echo("no secrets")
        return
    now = SystemClock().now()
    rows = [("NAME", "TOOL", "OWNER", "AGE", "KEY")]
    rows += [
        (
            info.name,
            info.scope,
            info.owner if info.team_id is None else f"{info.owner}@{info.team_id}",
            _age(info.age(now)),
            "current" if info.current_key else "old",
        )
        for info in listed
    ]
    shown = [[printable(cell, newlines=False) for cell in row] for row in rows]  # rows may have been altered
    widths = [max(len(row[column]) for row in shown) for column in range(len(shown[0]))]
    for row in shown:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@secrets.command("delete")
@click.argument("name")
@click.option("--tool", "scope", required=True, help=_TOOL_HELP)
@click.option("--owner", default=TEAM, show_default=True, help=_OWNER_HELP)
@click.option("--by", "actor", default="system", help=_BY_HELP)
def delete_command(name: str, scope: str, owner: str, actor: str) -> None:
    """Delete the secret NAME of a tool."""
    with _vault() as vault:
        deleted = vault.delete(name, scope=scope, owner=owner, actor=actor)
    if not deleted:
        raise click.ClickException(f"no secret {name!r} for tool {scope!r} (owner {owner}): see `secrets list`")
    click.echo(f"secret {name!r} deleted for tool {scope!r} (owner {owner})")


@secrets.command("rotate-key")
@click.option("--batch-size", default=100, show_default=True, help="Rows re-encrypted per transaction.")
@click.option("--by", "actor", default="system", help=_BY_HELP)
def rotate_key_command(batch_size: int, actor: str) -> None:
    """Re-encrypt every secret with the first key in COUNTERSIGN_VAULT_KEYS.

    \b
    Without downtime:
    1. make a key (`secrets generate-key`) and append it to COUNTERSIGN_VAULT_KEYS
       everywhere; restart (every process can now read both keys)
    2. move it to the front everywhere and restart (new secrets use it)
    3. run `secrets rotate-key` (safe to run again: it resumes)
    4. drop the old key from COUNTERSIGN_VAULT_KEYS and restart
    """
    with _vault() as vault:
        report = vault.rotate_key(batch_size=batch_size, actor=actor)
        current = vault.current_key_id
        # Multi-workspace mode's Slack tokens are sealed with the same keys. Imported here:
        # it loads slack_bolt, which no other `secrets` command needs.
        from bot.installations import SealedInstallationStore

        client_id = Settings().slack_client_id
        tokens = (
            SealedInstallationStore(client_id, vault.sessions.kw["bind"], vault).reseal_all(batch_size)
            if client_id
            else 0
        )
    plural = "" if report.rotated == 1 else "s"
    click.echo(f"re-encrypted {report.rotated} secret{plural} with key {current}")
    if client_id:
        click.echo(f"re-encrypted the Slack tokens of {tokens} installation row(s) with key {current}")
    if report.unreadable:
        for row in report.unreadable:
            click.echo(
                f"cannot decrypt {printable(row, newlines=False)} with any key: set it again, or add the key that "
                "encrypted it",
                err=True,
            )
        raise click.ClickException(f"{len(report.unreadable)} secret(s) still need a key other than the first")
    click.echo(f"every secret is under key {current}: keys after the first may now be removed from {KEYS_VARIABLE}")


@secrets.command("generate-key")
def generate_key_command() -> None:
    """Print a new Fernet key for COUNTERSIGN_VAULT_KEYS."""
    click.echo(generate_key())
