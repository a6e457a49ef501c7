"""`countersign rules list [--type T] [--json]` and `countersign rules revoke RULE_ID --by U…
[--reason …]`: the standing rules admins made with "Approve, and allow similar…" on a card."""

from __future__ import annotations

import json

import click

from approvals import rules as constraints
from approvals import standing
from bot.cli_config import require_admin, settings_and_config
from bot.cli_database import open_current
from bot.terminal import printable
from core.clock import SystemClock


@click.group("rules")
def rules() -> None:
    """List or revoke standing rules ("Approve, and allow similar…")."""


@rules.command("list")
@click.option("--type", "task_type", default=None, help="Only this task type's rules.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule and line, with `id`.")
def list_command(task_type: str | None, as_json: bool) -> None:
    """One line per rule, newest first, starting with its id: status, task type, tool, what it
    allows, uses, expiry, who made it (and who revoked it, why)."""
    settings, _ = settings_and_config()
    engine, sessions = open_current(settings, read_only=True)
    now = SystemClock().now()
    try:
        with sessions() as session:
            found = standing.listed(session, task_type)
    finally:
        engine.dispose()
    if not found and not as_json:
        click.echo("no standing rules" + (f" of {task_type}" if task_type else ""))
    for rule in found:
        status = standing.status(rule, now)
        if as_json:
            fields = {
                "id": rule.public_id,
                "status": status,
                "task_type": rule.task_type,
                "tool": rule.tool,
                "constraints": rule.constraints,
                "created_by": rule.created_by,
                "created_from": rule.created_from,
                "created_at": rule.created_at.isoformat(),
                "expires_at": rule.expires_at.isoformat(),
                "max_uses": rule.max_uses,
                "uses": rule.uses,
                "revoked_at": rule.revoked_at.isoformat() if rule.revoked_at else None,
                "revoked_by": rule.revoked_by,
                "revoked_reason": rule.revoked_reason,
            }
            click.echo(json.dumps(fields, ensure_ascii=False))
            continue
        uses = f"{rule.uses}/{rule.max_uses} uses" if rule.max_uses is not None else f"{rule.uses} uses"
        revoked = (
            f"; revoked by {rule.revoked_by}" + (f": {rule.revoked_reason}" if rule.revoked_reason else "")
            if rule.revoked_at
            else ""
        )
        line = (
            f"{rule.public_id} {status} {rule.task_type} {rule.tool}: {constraints.summary(rule.constraints)}; "
            f"{uses}; until {rule.expires_at.isoformat(timespec='minutes')}; by {rule.created_by}{revoked}"
        )
        click.echo(printable(line))


@rules.command("revoke")
@click.argument("rule_id")
@click.option("--by", "actor", required=True, help="Your Slack user id; it must be listed in slack.admins.")
@click.option("--reason", default=None, help="Why: it goes on the record.")
def revoke_command(rule_id: str, actor: str, reason: str | None) -> None:
    """Revoke RULE_ID at once: drafts it would have allowed go through the gate as before."""
    settings, config = settings_and_config()
    require_admin(config, actor)
    engine, sessions = open_current(settings)
    try:
        with sessions.begin() as session:
            rule = standing.revoke(session, rule_id, actor, SystemClock().now(), reason)
            click.echo(f"{rule.public_id} revoked by {actor} ({rule.uses} uses)")
    except (standing.RuleNotFound, standing.RuleAlreadyRevoked) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
