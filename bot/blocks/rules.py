"""The "Approve, and allow similar…" form: one constraint per parameter of the tool, prefilled
with the action's own values (`= value`), the rule's expiry and an optional count limit."""

from __future__ import annotations

from typing import Any

from approvals import rules
from approvals.standing import DEFAULT_EXPIRY
from bot import action_ids
from bot.blocks.kit import Block, context, plain
from bot.blocks.modals import ABOUT, INPUT_LIMIT, MAX_FIELDS, _modal
from bot.blocks.text import escape
from core.durations import format_duration

PARAM = "param:"  # a parameter's block id: `param:{name}`
EXPIRES = "expires"
MAX_USES = "max_uses"
SYNTAX = "any · = value · one of a, b · >= n · <= n · >= n and <= m · ~ regex (RE2, whole value)"


def param_block(name: str) -> str:
    return f"{PARAM}{name}"


def allow_similar_modal(
    action_public_id: str, tool: str, task_type: str, schema: dict[str, Any], params: dict[str, Any], metadata: str
) -> Block:
    props = rules.properties(schema)
    if len(props) > MAX_FIELDS - 3:
        raise ValueError(f"{tool!r} has {len(props)} parameters; the form holds at most {MAX_FIELDS - 3}")
    intro = (
        f"`{escape(tool)}` · {escape(task_type)} · action `{escape(action_public_id)}`. Submitting approves this "
        "action and lets drafts whose every parameter meets its line run one level more autonomously "
        "(approve first → veto window → autonomous), within the tool's limits, until the rule expires, "
        "is used up or revoked. On the record."
    )
    blocks: list[Block] = [context(ABOUT, intro)]
    for name, prop in props.items():
        written = rules.describe({"equals": params[name]}) if name in params else "any"
        element: Block = {"type": "plain_text_input", "action_id": name}
        if len(written) <= INPUT_LIMIT:
            element["initial_value"] = written
        blocks.append(
            {
                "type": "input",
                "block_id": param_block(name),
                "label": plain(str(prop.get("title") or name), 2000),
                "hint": plain(SYNTAX, 2000),
                "element": element,
            }
        )
    blocks.append(
        {
            "type": "input",
            "block_id": EXPIRES,
            "label": plain("Expires after"),
            "hint": plain("A duration such as 12h, 7d (at most 90d)."),
            "element": {
                "type": "plain_text_input",
                "action_id": EXPIRES,
                "initial_value": format_duration(DEFAULT_EXPIRY),
            },
        }
    )
    blocks.append(
        {
            "type": "input",
            "block_id": MAX_USES,
            "label": plain("At most this many uses"),
            "hint": plain("Empty: no count limit (the expiry still ends it)."),
            "optional": True,
            "element": {"type": "number_input", "action_id": MAX_USES, "is_decimal_allowed": False, "min_value": "1"},
        }
    )
    return _modal(action_ids.ALLOW_SIMILAR_MODAL, "Allow similar", "Approve and allow", blocks, metadata)
