"""`countersign eval TYPE`: replay a task type's decided actions through a candidate model or
instructions (`agent.evaluation`) before changing it; `autonomy set` shows the latest one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agent.errors import AgentError
from agent.evaluation import Candidate, Report, record, run_eval
from agent.external_tools import add_external_tools
from agent.model import ModelRequestError, ModelUnavailable
from agent.tools import load_tool_modules
from bot.cli_database import open_current
from bot.terminal import printable
from core.clock import SystemClock
from core.config import is_user_id, load_config
from core.errors import ConfigError
from core.ids import SYSTEM
from core.settings import Settings


@click.command("eval")
@click.argument("task_type")
@click.option("--model", "model_name", help="Candidate model (default: the type's current model).")
@click.option(
    "--instructions",
    "instructions_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File with candidate instructions (default: the type's current instructions).",
)
@click.option("--last", default=50, show_default=True, type=click.IntRange(1, 1000), help="Decided actions to replay.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout (for CI).")
@click.option("--by", "actor", help="Your Slack user id, for the ledger's record of this eval (default: system).")
def eval_command(
    task_type: str, model_name: str | None, instructions_file: Path | None, last: int, as_json: bool, actor: str | None
) -> None:
    """Replay TASK_TYPE's last decided actions through a candidate model/instructions (no tool runs)
    and report how often it drafts what people approved."""
    settings = Settings()
    try:
        config = load_config(Path(settings.config_path))
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    if actor is not None and not is_user_id(actor):
        raise click.ClickException(f"--by must be a Slack user id (U… or W…): {actor!r}")
    if task_type not in config.task_types:
        raise click.ClickException(f"unknown task type {task_type!r} (known: {', '.join(sorted(config.task_types))})")
    current = config.task_types[task_type]
    instructions = current.instructions
    if instructions_file is not None:
        try:
            instructions = instructions_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"cannot read --instructions {str(instructions_file)!r}: {exc}") from exc
    candidate = Candidate(model_name or current.model or config.model.default, instructions)

    from bot.runtime import build_model  # the SDK is imported only when a model is needed

    try:
        registry = add_external_tools(load_tool_modules(config.tools.modules), config.external_tools)
        model, _ = build_model(settings)
    except (AgentError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    engine, sessions = open_current(settings)
    try:
        with sessions.begin() as session:
            report = run_eval(session, config, registry, model, task_type, candidate, last)
            if not report.items:
                raise click.ClickException(f"{task_type!r} has no decided actions to replay yet")
            record(session, report, actor or SYSTEM, SystemClock().now())
    except (ModelUnavailable, ModelRequestError) as exc:
        raise click.ClickException(f"the candidate model did not answer: {exc}") from exc
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False, default=str))
    else:
        _print(report)


def _print(report: Report) -> None:
    agreement, current = report.agreement, report.current
    click.echo(
        printable(
            f"eval of {report.task_type}: {report.model}, instructions sha256 {report.instructions_sha256[:12]}",
            newlines=False,
        )
    )
    click.echo(
        f"  agreement      {agreement.agreed}/{agreement.of}  (Wilson 95% {agreement.lower:.3f}-{agreement.upper:.3f})"
    )
    click.echo(
        f"  current        {current.agreed}/{current.of}  approved as drafted"
        f" (Wilson 95% {current.lower:.3f}-{current.upper:.3f})"
    )
    for label, rate in (
        ("exact params", report.exact),
        ("same tool", report.same_tool),
        ("rejected again", report.rejected_again),
    ):
        click.echo(f"  {label:<14} {rate.agreed}/{rate.of}")
    click.echo(f"  tokens in {report.input_tokens} · out {report.output_tokens} · ${report.cost_usd:.4f}")
    differing = report.differing
    click.echo(f"differing ({len(differing)}):")
    for item in differing:
        diff = json.dumps(item.diff, ensure_ascii=False, sort_keys=True, default=str)
        error = f" · invalid: {item.error}" if item.error else ""
        click.echo(printable(f"  {item.action_id} ({item.verdict}) {diff}{error}", newlines=False))
    for note in report.notes:
        click.echo(printable(f"note: {note}", newlines=False))
