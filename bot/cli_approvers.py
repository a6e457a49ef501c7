"""`countersign approvers [--days 30] [--json]`: each approver's signals of rubber-stamping
(`approvals.fatigue`), as the admins' App Home shows them."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from approvals import fatigue
from bot.cli_config import settings_and_config
from core.clock import SystemClock
from core.db import open_database


@click.command("approvers")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650), help="The window, in days.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per approver and line.")
def approvers(days: int, as_json: bool) -> None:
    """Per approver: decisions, approval rate, median time from card to click, the share of
    approvals faster than the task type's min_read_time, and the longest run of them."""
    settings, config = settings_and_config()
    engine, sessions = open_database(settings)
    try:
        with sessions() as session:
            since = SystemClock().now() - timedelta(days=days)
            found = fatigue.signals(session, since, fatigue.min_read_times(config))
    finally:
        engine.dispose()
    if not found and not as_json:
        click.echo(f"no decisions in the last {days} days")
    threshold = config.alerts.fast_approval_share
    for s in found:
        flagged = fatigue.flagged(s, config)
        if as_json:
            fields = {
                "approver": s.approver,
                "days": days,
                "decisions": s.decisions,
                "approvals": s.approvals,
                "approval_rate": round(s.approval_rate, 4),
                "median_read_s": None if s.median_read_s is None else round(s.median_read_s, 3),
                "fast": s.fast,
                "fast_share": round(s.fast_share, 4),
                "longest_fast_streak": s.longest_fast_streak,
                "current_fast_streak": s.current_fast_streak,
                "flagged": flagged,
            }
            click.echo(json.dumps(fields))
            continue
        median = "n/a" if s.median_read_s is None else f"{s.median_read_s:.1f}s"
        flag = f"  ! over alerts.fast_approval_share ({threshold:.0%})" if flagged else ""
        click.echo(
            f"{s.approver}: {s.decisions} decisions, {s.approval_rate:.0%} approved, median {median} card to click, "
            f"{s.fast_share:.0%} fast ({s.fast} of {s.approvals} approvals), longest fast streak "
            f"{s.longest_fast_streak} (now {s.current_fast_streak}){flag}"
        )
