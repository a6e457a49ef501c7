"""App Home: what waits for this person (with the card's buttons), what was decided lately, autonomy levels."""

from __future__ import annotations

from typing import Any

from bot import action_ids
from bot.blocks.card import card_buttons, confidence_text, decide_block_id, mode_text, outcome_text
from bot.blocks.kit import SECTION_LIMIT, Block, actions, button, context, divider, header, plain, section
from bot.blocks.text import action_name, escape, mention, seconds_text, slack_date, to_json, truncate
from bot.blocks.views import ApproverView, CardView, HomeView, RuleView

MAX_WAITING = 30  # two blocks each
MAX_RECENT = 20  # one block each: with the headers, a view stays under Slack's 100 blocks
MAX_REVIEW_BUTTONS = 10
MAX_APPROVERS = 25
EXCERPT_LIMIT = 200
PARAMS_LIMIT = 500
LEVEL_LABELS = {"hitl": "approve first (hitl)", "hotl": "veto window (hotl)", "auto": "autonomous (auto)"}


def home_view(view: HomeView) -> dict[str, Any]:
    """The `home` view to publish for `view.user`."""
    waiting = _unique(view.waiting)
    recent = _unique(view.recent)
    blocks = [header("waiting", "Waiting for you")]
    review = review_buttons(view)
    if review:
        blocks.append(actions("review", review))
    if not waiting:
        blocks.append(context("waiting_empty", "Nothing waits for you. Actions you may approve show up here."))
    for card in waiting[:MAX_WAITING]:
        blocks.append(section(f"summary:{card.action_public_id}", _summary(card), verbatim=True))
        buttons = card_buttons(card)
        if buttons:
            blocks.append(
                actions(decide_block_id(card.params_hash, card.action_public_id, tool_hash=card.tool_hash), buttons)
            )
    if len(waiting) > MAX_WAITING:
        blocks.append(context("waiting_more", f"_…and {len(waiting) - MAX_WAITING} more waiting_"))
    blocks += [divider("divider_recent"), header("recent", "Recently decided")]
    if not recent:
        blocks.append(context("recent_empty", "Nothing decided lately."))
    for card in recent[:MAX_RECENT]:
        line = _recent_line(card, view.links.get(card.action_public_id))
        blocks.append(context(f"recent:{card.action_public_id}", line, verbatim=True))
    if len(recent) > MAX_RECENT:
        blocks.append(context("recent_more", f"_…and {len(recent) - MAX_RECENT} more_"))
    blocks += [divider("divider_levels"), header("levels", "Autonomy levels")]
    if view.levels:
        blocks.append(section("levels_list", _levels(view.levels)))
    else:
        blocks.append(context("levels_empty", "No task types are configured yet."))
    if view.approvers is not None:  # admins only
        blocks += [divider("divider_approvers"), header("approvers", f"Approvers, last {view.approvers_days} days")]
        blocks.append(section("approvers_list", approvers_text(view.approvers)))
        blocks.append(
            context(
                "approvers_about",
                "Fast: approved sooner after the card than the task type's `min_read_time`; a run of them "
                "is a streak. :warning: passes `alerts.fast_approval_share`. `countersign approvers` says the same.",
            )
        )
    if view.rules is not None:  # admins only
        blocks += [divider("divider_rules"), header("rules", "Standing rules")]
        blocks.append(section("rules_list", rules_text(view.rules), verbatim=True))
        blocks.append(
            context(
                "rules_about",
                "Made with *Approve, and allow similar…* on a card. `countersign rules revoke RULE_ID --by U…` "
                "ends one; an incident on a task type ends all of its rules.",
            )
        )
    return {"type": "home", "blocks": blocks}


def rules_text(rules: tuple[RuleView, ...]) -> str:
    if not rules:
        return "No standing rules yet."
    lines = []
    for rule in rules:
        limit = f"{rule.uses} of {rule.max_uses} uses" if rule.max_uses is not None else f"{rule.uses} uses"
        lines.append(
            f"`{escape(rule.rule_public_id)}` *{escape(rule.status)}* · {escape(rule.task_type)} · "
            f"`{escape(rule.tool)}` · {truncate(escape(rule.constraints), 300)} · {limit} · until "
            f"{slack_date(rule.expires_at)} · by {mention(rule.created_by)}"
        )
    return truncate("\n".join(lines), SECTION_LIMIT)


def review_buttons(view: HomeView) -> list[Block]:
    """ "Review N waiting" (every type) and one per task type with several waiting, when several do."""
    if view.review_all < 2:
        return []
    everything: Block = {
        "type": "button",
        "action_id": action_ids.REVIEW_WAITING,
        "text": plain(f"Review {view.review_all} waiting"),
        "style": "primary",
    }  # no value: every task type
    per_type = [
        button(f"Review {count} {task_type}", action_ids.REVIEW_WAITING, task_type)
        for task_type, count in view.review_by_type
        if count >= 2 and count < view.review_all
    ]
    return [everything, *per_type[: MAX_REVIEW_BUTTONS - 1]]


def approvers_text(approvers: tuple[ApproverView, ...]) -> str:
    if not approvers:
        return "No decisions in this window."
    lines = []
    for found in approvers[:MAX_APPROVERS]:
        median = seconds_text(found.median_read_s) if found.median_read_s is not None else "n/a"
        flag = " :warning:" if found.flagged else ""
        lines.append(
            f"{mention(found.approver)}: {found.decisions} decisions, {found.approval_rate:.0%} approved, "
            f"median {median} card to click, {found.fast_share:.0%} fast, longest fast streak "
            f"{found.longest_fast_streak}{flag}"
        )
    if len(approvers) > MAX_APPROVERS:
        lines.append(f"_…and {len(approvers) - MAX_APPROVERS} more: `countersign approvers`_")
    return truncate("\n".join(lines), SECTION_LIMIT)


def _unique(cards: tuple[CardView, ...]) -> list[CardView]:
    """One entry per action, so block_ids stay unique across the view."""
    unique: dict[str, CardView] = {}
    for card in cards:
        unique.setdefault(card.action_public_id, card)
    return list(unique.values())


def _summary(card: CardView) -> str:
    who = f" · from {mention(card.requester)}" if card.requester else ""
    excerpt = truncate(escape(" ".join(card.request_text.split())), EXCERPT_LIMIT) or "_(empty)_"
    params = truncate(escape(to_json(card.params, indent=None).replace("`", "\\u0060")), PARAMS_LIMIT)
    changed = (
        "\n:warning: Tool changed since drafted: approvals given before no longer count" if card.tool_changed_at else ""
    )
    return (
        f"*{escape(card.task_type)}* · `{escape(card.tool)}` · {escape(card.risk)} risk{who}\n"
        f">{excerpt}\n`{params}`\n"
        f"{mode_text(card)} · confidence {confidence_text(card)} · params `{escape(card.params_hash[:12])}`{changed}"
    )


def _recent_line(card: CardView, link: str | None) -> str:
    """What the action was (linked to its card when Slack gave its permalink) and how it ended."""
    outcome = (outcome_text(card) or escape(card.state)).replace("\n", " · ")
    name = truncate(action_name(card.summary, card.tool, capital=True), 300)
    if link:  # a link's label ends at its `>`; `|` would only start the label again: neither is left in
        name = f"<{link}|{name.replace('|', '¦')}>"
    return truncate(f"{name} ({escape(card.task_type)}): {outcome}", 1000)


def _levels(levels: tuple[tuple[str, str], ...]) -> str:
    text = ""
    for shown, (task_type, level) in enumerate(levels):
        line = f"• `{escape(task_type)}`: {LEVEL_LABELS.get(level, escape(level))}\n"
        if len(text) + len(line) > SECTION_LIMIT - 40:
            return text + f"_…and {len(levels) - shown} more_"
        text += line
    return text.rstrip("\n")
