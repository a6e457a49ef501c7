"""Escalation messages: a DM reminder with an Acknowledge button, a thread note on the card,
a stuck-task alert, and telling a requester their action expired."""

from __future__ import annotations

from bot import action_ids
from bot.blocks.card import card_text, decide_block_id
from bot.blocks.kit import Block, actions, button, context, section
from bot.blocks.text import action_name, escape, mention, truncate
from bot.blocks.views import CardView, TaskView

REASONS = {
    "reminder": "is waiting for a decision",
    "repeat": "is still waiting for a decision",
    "low_confidence": "was drafted with low confidence and needs a person",
    "ack_timeout": "was acknowledged but not decided in time",
}


def reminder(card: CardView, reason: str, late: bool) -> tuple[str, list[Block]]:
    what = REASONS.get(reason, "needs attention")
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
    blocks.append(actions(decide_block_id(card.params_hash), buttons))
    blocks.append(context("where", f"Approve or reject it on its card (`{card.action_public_id}`)."))
    return text, blocks


def reminded_note(targets: list[str], reason: str, late: bool) -> str:
    people = ", ".join(mention(user) for user in targets)
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
