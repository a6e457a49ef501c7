"""`countersign actions resolve ID ran|not-run`: a person resolves an action whose outcome is
unknown from the command line, as the card's **It ran** / **It did not run** buttons do.

The CLI acts for the Slack user named by `--by`, who must be listed by id among the action's
approvers (user groups are checked in Slack, not here) and must not be its requester. The
decision, or its refusal, goes on the record like a click's; the card is updated by the
serving process's outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from sqlalchemy import select

from approvals.errors import ActionNotFound, DecisionRefused
from bot.cli_database import open_current
from core.clock import SystemClock
from core.config import is_user_id
from core.models import Action
from core.settings import Settings

if TYPE_CHECKING:
    from approvals.resolutions import Verdict


class _NoGroups:
    """The CLI cannot read Slack's user groups: only approvers listed by id count here."""

    def members(self, handle: str) -> frozenset[str]:
        return frozenset()


@click.group()
def actions() -> None:
    """Act on actions: resolve one whose outcome is unknown."""


@actions.command("resolve")
@click.argument("action_public_id", metavar="ID")
@click.argument("verdict", type=click.Choice(["ran", "not-run"]))
@click.option("--by", "actor", required=True, help="Your Slack user id (U…): an approver, not its requester.")
@click.option("--note", default=None, help="How you checked; the agent gets it and it goes on the record.")
@click.option(
    "--run-again",
    is_flag=True,
    help="With not-run: ask to run it again (counts as an approval; the task type's quorum applies).",
)
def resolve(action_public_id: str, verdict: str, actor: str, note: str | None, run_again: bool) -> None:
    """Say whether the action ID, whose outcome is unknown, ran (it ends `succeeded`) or did not
    (`failed`, or with --run-again back to `approved` once its quorum asked)."""
    if not is_user_id(actor):
        raise click.ClickException(f"--by {actor!r} is not a Slack user id (U…)")
    if run_again and verdict != "not-run":
        raise click.ClickException("--run-again goes with not-run: an action that ran is not run again")
    # Imported here: decisions count in prometheus_client, which `serve --workers` must set up
    # before its first import (`bot.cli._metrics_across_processes`).
    from approvals.decisions import decide
    from approvals.resolutions import Resolutions

    chosen: Verdict = "run_again" if run_again else ("ran" if verdict == "ran" else "not_run")
    clock = SystemClock()
    resolutions = Resolutions(_NoGroups(), clock)
    engine, sessions = open_current(Settings())
    try:
        with sessions() as session:
            seen = session.scalar(select(Action.params_hash).where(Action.public_id == action_public_id))
        if seen is None:
            raise click.ClickException(str(ActionNotFound(action_public_id)))
        text = note.strip() if note and note.strip() else None
        outcome = decide(
            sessions,
            clock,
            lambda session: resolutions.resolve(session, action_public_id, actor, chosen, seen, note=text),
            actor=actor,
        )
    except DecisionRefused as refusal:
        raise click.ClickException(str(refusal)) from refusal
    finally:
        engine.dispose()
    if outcome.state == "unknown":
        click.echo(f"{action_public_id}: unknown; {outcome.approvals} of {outcome.quorum} asked to run it again")
    else:
        click.echo(f"{action_public_id}: {outcome.state} (resolved by {actor})")
