"""Graduated autonomy in Slack: the promotion proposal card for admins, the announcement of a
level change, and the review card that keeps evidence coming once people stop approving."""

from __future__ import annotations

from bot import action_ids
from bot.blocks.card import decide_block_id
from bot.blocks.kit import Block, actions, button, context, header, section
from bot.blocks.text import action_name, escape, mention, mention_ids, truncate
from bot.blocks.views import CardView, ProposalView

WHAT_CHANGES = {
    "hotl": "Its actions will run after their veto window unless someone vetoes them.",
    "auto": "Its actions will run at once and report afterwards.",
}
OUTCOME_LABELS = {
    "promoted": ":arrow_up: Promoted",
    "dismissed": ":no_entry_sign: Dismissed",
    "stale": ":hourglass: Superseded: the level changed",
}


def proposal_card(view: ProposalView) -> tuple[str, list[Block]]:
    text = f"Proposal: {view.task_type} from {view.from_level} to {view.to_level}"
    stats = view.stats
    lines = [
        f"*{stats.get('samples', 0)}* outcomes over *{stats.get('days', 0)}* days from "
        f"*{stats.get('approvers', 0)}* approvers",
        f"clean *{stats.get('clean', 0)}* · rejected *{stats.get('rejected', 0)}* · vetoed "
        f"*{stats.get('vetoed', 0)}* · incidents *{stats.get('incidents', 0)}*",
        f"clean-rate Wilson 95% lower bound *{stats.get('clean_lower_bound', 0):.2f}* · veto-rate upper bound "
        f"*{stats.get('veto_upper_bound', 1):.2f}*",
    ]
    blocks = [
        header("header", f"Promote {view.task_type}: {view.from_level} → {view.to_level}?"),
        section("stats", "\n".join(lines)),
        section("change", WHAT_CHANGES.get(view.to_level, "")),
    ]
    if view.recent:
        recent = "\n".join(
            f"• {truncate(action_name(summary, 'action'), 200)} {escape(outcome)}"
            + (f": {truncate(escape(note), 300)}" if note else "")
            + f" · `{escape(action)}`"
            for action, outcome, note, summary in view.recent[:10]
        )
        blocks.append(section("recent", f"*Recent edits and rejections*\n{recent}", verbatim=True))
    if view.needed > 1:
        signed = ", ".join(mention(s) for s in view.signatures) or "nobody yet"
        blocks.append(context("signatures", f"Needs {view.needed} admins: signed by {signed}"))
    if view.state == "open":
        blocks.append(
            actions(
                "proposal",
                [
                    button("Promote", action_ids.PROMOTE, view.proposal_public_id, style="primary"),
                    button("Dismiss", action_ids.DISMISS, view.proposal_public_id),
                ],
            )
        )
    else:
        by = f" by {mention(view.decided_by)}" if view.decided_by else ""
        blocks.append(section("outcome", f"{OUTCOME_LABELS.get(view.state, view.state)}{by}"))
    return text, blocks


def level_changed(task_type: str, before: str, after: str, by: str, reason: str) -> str:
    who = "automatically" if by in ("system", "config") else f"by {mention(by)}"
    arrow = (
        ":arrow_up:" if (before, after) in (("hitl", "hotl"), ("hotl", "auto"), ("hitl", "auto")) else ":arrow_down:"
    )
    return f"{arrow} *{escape(task_type)}* autonomy: {before} → *{after}*, {who}: {mention_ids(escape(reason))}"


def review_card(card: CardView) -> tuple[str, list[Block]]:
    text = f"Review: did {card.tool} for {card.task_type} do the right thing?"
    blocks = [
        section(
            "review",
            f":mag: Spot check: *{truncate(action_name(card.summary, card.tool), 300)}* ran without an approval "
            f"(action `{escape(card.action_public_id)}`). Did it do the right thing?",
        ),
        actions(
            decide_block_id(card.params_hash),
            [
                button("Looks right", action_ids.REVIEW_OK, card.action_public_id, style="primary"),
                button("This was wrong", action_ids.REPORT_INCIDENT, card.action_public_id, style="danger"),
            ],
        ),
    ]
    return text, blocks
