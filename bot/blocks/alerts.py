"""Operations messages for the admin channel, rendered from the facts the domain sends
(`escalations.alerts` → `core.messages.BudgetAlert` / `BacklogAlert` / `FatigueAlert`; the
ledger's head).

One line of text each, as the admins have always read them. The facts are numbers, config
names and ids countersign made, never text from people.
"""

from __future__ import annotations

from datetime import datetime

from bot.blocks.text import mention, seconds_text
from core.clock import utc
from core.messages import AuditHead, BacklogAlert, BudgetAlert, FatigueAlert


def budget_alert(alert: BudgetAlert) -> str:
    amount = _tokens if alert.kind == "budget_tokens" else _usd
    what = "used {} of its {} daily tokens" if alert.kind == "budget_tokens" else "spent {} of its {} daily budget"
    text = (
        f"Budget: task type `{alert.task_type}` has {what.format(amount(alert.used), amount(alert.limit))} today "
        f"({alert.used / alert.limit:.0%}; the alert is at {alert.alert_share:.0%})."
    )
    if alert.top_task_public_id is not None:
        top = amount(alert.top_task_used or 0.0)
        text += (
            f" Biggest user: {alert.top_task_public_id} ({top}), see `countersign trace {alert.top_task_public_id}`."
        )
    return text


def backlog_alert(alert: BacklogAlert) -> str:
    what = _waiting(alert)
    if alert.state == "resolved":
        return f"Resolved: {what} now, back under the alert threshold of {alert.threshold}."
    extra = "; ".join(note for note in _notes(alert) if note)
    return f"Backlog: {what} (alert threshold {alert.threshold})" + (f": {extra}." if extra else ".")


def fatigue_alert(alert: FatigueAlert) -> str:
    """A person approves too fast too often (or no longer does): the numbers, not a verdict."""
    who, days = mention(alert.approver), f"{alert.window_days:g} day{'' if alert.window_days == 1 else 's'}"
    of = f"{alert.fast} of {alert.approvals} approvals ({alert.share:.0%})"
    if alert.state == "resolved":
        return (
            f"Resolved: {who} approved {of} faster than the read time in the last {days}, "
            f"back under the alert's {alert.threshold:.0%}."
        )
    median = f", median {seconds_text(alert.median_read_s)} from card to click" if alert.median_read_s else ""
    return (
        f"Fast approvals: {who} approved {of} faster than their task types' read time (min_read_time) in the "
        f"last {days}{median}; longest run of fast approvals: {alert.longest_streak}. The alert is at "
        f"{alert.threshold:.0%}: a break, a rotation, or fewer cards (batch review) may help."
    )


def audit_head(head: AuditHead) -> str:
    return f"Audit ledger head: `{head.seq}:{head.hash}` at {head.at}"


def _waiting(alert: BacklogAlert) -> str:
    count = alert.count
    verb = "is" if count == 1 else "are"
    if alert.kind == "pending_approvals":
        return f"{count} action{'' if count == 1 else 's'} {verb} waiting for approval"
    return f"{count} Slack message{'' if count == 1 else 's'} {verb} waiting to be sent"


def _notes(alert: BacklogAlert) -> list[str]:
    """The clauses after the count: where to start looking."""
    when = _when(alert.oldest_at) if alert.oldest_at else None
    if alert.kind == "pending_approvals":
        ranked = sorted((alert.by_task_type or {}).items(), key=lambda item: (-item[1], item[0]))
        notes = [", ".join(f"{name} {number}" for name, number in ranked[:3]) + (", …" if len(ranked) > 3 else "")]
        if alert.oldest_action_public_id is not None and when:
            notes.append(f"the oldest ({alert.oldest_action_public_id}) drafted {when}")
        return notes
    return [f"the oldest queued {when}" if when else "", f"last error: {alert.last_error}" if alert.last_error else ""]


def _when(moment: str) -> str:
    return utc(datetime.fromisoformat(moment)).strftime("%Y-%m-%d %H:%M UTC")


def _tokens(value: float) -> str:
    return f"{int(value):,}"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
