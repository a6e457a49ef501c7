"""Review many at once: one modal listing every waiting action it holds, each with its own
checkbox (none checked), grouped by task type and tool; and what became of the checked ones.

Slack's limits shape it: a checkboxes element holds at most 10 options and a modal at most 100
blocks, and `private_metadata` 3,000 characters. So each group of items is followed by one
checkboxes input per 10 of them, and the modal shows the oldest items that fit (at most
MAX_ITEMS), saying how many more wait. The metadata keeps, for each item shown, the digest of
the params and tool definition it showed (`approvals.decisions.shown_binding`): an item changed
since is refused when the form is submitted, never approved unseen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot import action_ids
from bot.blocks.kit import Block, context, mrkdwn, plain, section
from bot.blocks.params import BACKTICK
from bot.blocks.text import action_name, escape, mention, quote, slack_date, to_json, truncate
from bot.blocks.views import ReviewItemView, ReviewView

MAX_BLOCKS = 100  # in a modal
MAX_OPTIONS = 10  # in one checkboxes element
METADATA_LIMIT = 3000
MAX_ITEMS = 50
TITLE_LIMIT = 24
OPTION_LIMIT = 75
PARAMS_LIMIT = 600
REQUEST_LIMIT = 200
RATIONALE_LIMIT = 300
DIFF_FIELDS = 5
PICK = "pick"  # block ids of the checkbox inputs start with it
RISK_ICONS = {"low": ":large_green_circle:", "medium": ":large_orange_circle:", "high": ":red_circle:"}


@dataclass(frozen=True)
class Group:
    task_type: str
    tool: str
    items: tuple[tuple[int, ReviewItemView], ...]  # (number shown, item)


def review_modal(view: ReviewView) -> Block:
    """The modal for `view`: as many of its items, oldest first, as Slack lets one modal hold."""
    for count in range(min(len(view.items), MAX_ITEMS), 0, -1):
        modal = _modal(view, view.items[:count])
        if len(modal["blocks"]) <= MAX_BLOCKS and len(modal["private_metadata"]) <= METADATA_LIMIT:
            return modal
    return _modal(view, ())


def groups(items: Sequence[ReviewItemView]) -> list[Group]:
    """Items by task type and tool (the group of the oldest first), similar items together
    inside (by their params), each numbered in the order shown."""
    keyed: dict[tuple[str, str], list[ReviewItemView]] = {}
    for item in items:
        keyed.setdefault((item.task_type, item.tool), []).append(item)
    found, number = [], 0
    for (task_type, tool), members in keyed.items():
        numbered = []
        for item in sorted(members, key=lambda i: (json.dumps(i.params, sort_keys=True, default=str), i.drafted_at)):
            number += 1
            numbered.append((number, item))
        found.append(Group(task_type, tool, tuple(numbered)))
    return found


def _modal(view: ReviewView, items: Sequence[ReviewItemView]) -> Block:
    shown = len(items)
    blocks: list[Block] = [context("about", _about(view, shown))]
    for g, group in enumerate(groups(items)):
        count = len(group.items)
        heading = f"*{escape(group.task_type)}* · `{escape(group.tool)}` · {count} waiting"
        blocks.append(section(f"group:{g}", heading))
        for c in range(math.ceil(count / MAX_OPTIONS)):
            chunk = group.items[c * MAX_OPTIONS : (c + 1) * MAX_OPTIONS]
            blocks += [
                section(f"item:{item.action_public_id}", _item_text(n, item), verbatim=True) for n, item in chunk
            ]
            blocks.append(_checkboxes(f"{PICK}:{g}:{c}", chunk))
    metadata = {
        "at": view.shown_at.isoformat(),
        "type": view.task_type or "",
        "shown": {item.action_public_id: item.binding for item in items},
    }
    what = "waiting" if not view.task_type else view.task_type
    modal: Block = {
        "type": "modal",
        "callback_id": action_ids.REVIEW_MODAL,
        "title": plain(truncate(f"Review {view.waiting} {what}", TITLE_LIMIT), TITLE_LIMIT),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata, separators=(",", ":")),
        "blocks": blocks,
    }
    if items:
        modal["submit"] = plain("Approve selected")
    return modal


def _about(view: ReviewView, shown: int) -> str:
    if not view.items:
        return "Nothing waits for you to approve now."
    text = (
        "Check each one you approve: nothing is checked for you. Each checked item is approved on its own, "
        "with the parameters shown here; one changed since you opened this is not approved."
    )
    if view.waiting > shown:
        text += f"\n:warning: {view.waiting} wait for you; this shows the oldest {shown}. Review again for the rest."
    return text


def _item_text(number: int, item: ReviewItemView) -> str:
    what = truncate(action_name(item.summary, item.tool, capital=True), 300)
    risk = f"{RISK_ICONS.get(item.risk, ':white_circle:')} {escape(item.risk)} risk"
    who = f"from {mention(item.requester)}" if item.requester else "via the API"
    confidence = item.confidence if math.isfinite(item.confidence) else 0.0
    sure = f"confidence {confidence:.0%}" + (" :warning: low" if confidence < item.confidence_threshold else "")
    lines = [
        f"*{number}.* *{what}* · {risk}",
        f"{who} · {sure} · drafted {slack_date(item.drafted_at)}",
    ]
    request = " ".join(item.request_text.split())
    if request:
        lines.append(quote(truncate(escape(request), REQUEST_LIMIT), 2))
    if item.rationale.strip():
        lines.append(f"*Why:* {truncate(escape(' '.join(item.rationale.split())), RATIONALE_LIMIT)}")
    params = to_json(item.params, indent=None).replace("`", BACKTICK)
    lines.append(f"`{truncate(escape(params), PARAMS_LIMIT)}` · params `{escape(item.params_hash[:12])}`")
    if item.diff:
        by = f" by {mention(item.edited_by)}" if item.edited_by else ""
        changes = [
            f"`{truncate(escape(name), 40)}`: {_value(change, 'from')} → {_value(change, 'to')}"
            for name, change in sorted(item.diff.items())[:DIFF_FIELDS]
        ]
        more = f"; …and {len(item.diff) - DIFF_FIELDS} more" if len(item.diff) > DIFF_FIELDS else ""
        lines.append(f":pencil2: Edited{by}: " + "; ".join(changes) + more)
    if item.tool_changed:
        lines.append(":warning: Tool changed since drafted: its schema or description is not what it was.")
    return "\n".join(lines)


def _value(change: dict[str, Any], key: str) -> str:
    if key not in change:
        return "_unset_"
    return truncate(escape(to_json(change[key], indent=None)), 80)


def _checkboxes(block_id: str, chunk: Sequence[tuple[int, ReviewItemView]]) -> Block:
    first, last = chunk[0][0], chunk[-1][0]
    options = [
        {
            "text": plain(f"{number}. {_plain_name(item)}", OPTION_LIMIT),
            "description": plain(f"{item.action_public_id} · params {item.params_hash[:8]}", OPTION_LIMIT),
            "value": item.action_public_id,
        }
        for number, item in chunk
    ]
    label = f"Approve {first}" if first == last else f"Approve {first} to {last}"
    return {
        "type": "input",
        "block_id": block_id,
        "optional": True,
        "label": plain(label),
        "element": {"type": "checkboxes", "action_id": action_ids.REVIEW_PICK, "options": options},
    }


def _plain_name(item: ReviewItemView) -> str:
    """What the item does, for a plain-text label (no mrkdwn; escaped as all text Slack reads)."""
    summary = " ".join(item.summary.split())
    return escape(summary[:1].upper() + summary[1:] if summary else item.tool)


def review_result(approved: Sequence[str], refused: Sequence[str], unreached: Sequence[str]) -> Block:
    """The modal after "Approve selected": each checked item's fate, one line each (mrkdwn)."""
    blocks: list[Block] = []
    parts = (
        ("approved", f":white_check_mark: *Approved ({len(approved)})*", approved),
        ("refused", f":no_entry_sign: *Not approved ({len(refused)})*", refused),
        ("unreached", f":hourglass: *Not decided ({len(unreached)}): countersign was busy; review again*", unreached),
    )
    for name, heading, lines in parts:
        if not lines:
            continue
        chunks: list[list[str]] = [[]]
        for line in lines:
            if sum(len(text) + 1 for text in chunks[-1]) + len(line) > 2800:
                chunks.append([])
            chunks[-1].append(line)
        for index, chunk in enumerate(chunks):
            text = (heading + "\n" if index == 0 else "") + "\n".join(f"• {line}" for line in chunk)
            blocks.append({"type": "section", "block_id": f"{name}:{index}", "text": mrkdwn(text)})
    if not blocks:
        blocks.append(context("none", "Nothing was checked, so nothing was approved."))
    return {
        "type": "modal",
        "title": plain("Review", TITLE_LIMIT),
        "close": plain("Done"),
        "blocks": blocks[:MAX_BLOCKS],
    }
