"""Escalation messages: a DM reminder with an Acknowledge button, a thread note on the card,
a stuck-task alert, and telling a requester their action expired."""

from __future__ import annotations

from datetime import datetime

from bot import action_ids
from bot.blocks.card import card_text, decide_block_id
from bot.blocks.kit import Block, actions, button, context, section
from bot.blocks.text import action_name, escape, mention, seconds_text, slack_date, truncate
from bot.blocks.views import CardView, TaskView

REASONS = {
    "reminder": "is waiting for a decision",
    "repeat": "is still waiting for a decision",
    "low_confidence": "was drafted with low confidence and needs a person",
    "ack_timeout": "was acknowledged but not decided in time",
}
EXPIRY_WARNING = "expiry_warning"


def reminder(
    card: CardView,
    reason: str,
    late: bool,
    link: str | None = None,
    *,
    expires_at: datetime | None = None,
    now: datetime | None = None,
    waiting: int = 0,
) -> tuple[str, list[Block]]:
    """The reminder DM: what waits, who asked, a link to its card and Acknowledge; the warning
    before the expiry says how long is left (`expires_at`, from `now`). With several actions of
    its task type waiting for the reader (`waiting`), a button to review them all at once."""
    what = REASONS.get(reason, "needs attention")
    if reason == EXPIRY_WARNING and expires_at is not None:
        left = seconds_text((expires_at - now).total_seconds()) if now is not None else None
        what = f"expires in {left} unless someone decides" if left else "expires soon unless someone decides"
        text = f"{card_text(card)} {what}"
        what += f" ({slack_date(expires_at)})"
    else:
        text = f"{card_text(card)} {what}"
    summary = (
        f"*{truncate(action_name(card.summary, card.tool, capital=True), 300)}* ({escape(card.task_type)}) {what}.\n"
        f"Requested by {mention(card.requester) if card.requester else 'nobody'}: "
        f"_{escape(truncate(card.request_text, 300))}_"
    )
    blocks: list[Block] = [section("summary", summary)]
    if late:
        blocks.append(context("late", ":hourglass: This reminder is late: countersign was down when it was due."))
    buttons = [button("Acknowledge", action_ids.ACKNOWLEDGE, card.action_public_id)]
    blocks.append(actions(decide_block_id(card.params_hash, tool_hash=card.tool_hash), buttons))
    blocks.append(context("where", f"Approve or reject it on {_card_link(link)} (action `{card.action_public_id}`)."))
    if waiting > 1:
        review = button(f"Review {waiting} waiting", action_ids.REVIEW_WAITING, card.task_type, style="primary")
        blocks.append(actions("review", [review]))
    return text, blocks


def reminder_acknowledged(card: CardView, user: str, link: str | None) -> tuple[str, list[Block]]:
    """The reminder DM once someone acknowledged the action: no button left to click."""
    what = truncate(action_name(card.summary, card.tool, capital=True), 300)
    by = card.acknowledged_by
    if by == user:
        line = f":eyes: *Acknowledged — the card is yours.* {what} ({escape(card.task_type)}) waits for your decision."
        text = "Acknowledged — the card is yours"
    else:
        who = mention(by) if by else "someone"
        line = f":eyes: *Acknowledged by {who}*: {what} ({escape(card.task_type)}) is theirs now."
        text = "Acknowledged by someone else"
    blocks = [
        section("summary", line, verbatim=True),
        context("where", f"Decide on {_card_link(link)} (action `{card.action_public_id}`)."),
    ]
    return text, blocks


def _card_link(link: str | None) -> str:
    return f"<{link}|its card>" if link and "|" not in link and ">" not in link else "its card"


def reminded_note(targets: list[str], reason: str, late: bool, *, expires_at: datetime | None = None) -> str:
    people = ", ".join(mention(user) for user in targets)
    if reason == EXPIRY_WARNING and expires_at is not None:
        return f":hourglass: Warned {people}: it expires {slack_date(expires_at)} unless someone decides."
    return f":bell: Reminded {people} ({reason}{', late' if late else ''})."


def expired_notice(card: CardView) -> str:
    return (
        f"Your request, *{truncate(action_name(card.summary, card.tool), 300)}* ({escape(card.task_type)}, "
        f"action `{card.action_public_id}`), expired: nobody decided in time, so it did not run."
    )


def stall_alert(task: TaskView, what: str, targets: list[str]) -> tuple[str, list[Block]]:
    people = ", ".join(mention(t) if not t.startswith("@") else escape(t) for t in targets)
    text = f"Task {task.task_public_id} ({task.task_type}) is stuck"
    blocks = [
        section(
            "stuck",
            f":rotating_light: *Task `{task.task_public_id}` ({escape(task.task_type)}) is stuck:* {escape(what)}",
        ),
        context("who", f"For {people}" if people else "For the admins"),
    ]
    return text, blocks
