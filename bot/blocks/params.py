"""An action's parameters as people read them: one labelled field per parameter (its name, its
description from the tool's schema), values formatted when the schema says what they are
(times, links, amounts in cents), edited values marked; the exact JSON and its hash on a
context line below (or, too long for one, in a code block)."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from bot.blocks.kit import Block, context, mrkdwn
from bot.blocks.text import code_block, escape, slack_date, to_json, truncate

FIELDS = 10  # Slack's most fields in one section
FIELD_LIMIT = 2000  # characters of one field
VALUE_LIMIT = 300
DESCRIPTION_LIMIT = 150
JSON_LINE_LIMIT = 1500  # longer JSON goes in a code block instead of the context line
JSON_BLOCK_LIMIT = 2900
SHORT_HASH = 12
LINK_SCHEMES = ("http://", "https://")
BACKTICK = "\\u0060"  # JSON's own escape of a backtick: it cannot end the code span


def params_blocks(
    params: dict[str, Any],
    params_hash: str,
    schema: dict[str, Any] | None = None,
    diff: dict[str, dict[str, Any]] | None = None,
    *,
    lead: str | None = None,
    shown_above: Collection[str] = (),
    masked: bool = False,
) -> list[Block]:
    """The `params` section (labelled fields) and the `params_json` block (the exact JSON and its
    hash). `lead`: the consequential parameter of a high-risk action, first and highlighted;
    `shown_above`: parameters the card already shows as code (no field of their own); `masked`:
    secret-looking values in `params` are masked (the hash covers the real ones)."""
    properties = (schema or {}).get("properties") or {}
    names = list(params)
    if lead in params:
        names = [lead, *(name for name in names if name != lead)]
    names = [name for name in names if name not in shown_above]
    if shown_above and not names and not diff:
        return [exact_json(params, params_hash, masked=masked)]
    fields = []
    shown = names if len(names) <= FIELDS else names[: FIELDS - 1]
    for name in shown:
        found = properties.get(name)
        prop: dict[str, Any] = found if isinstance(found, dict) else {}
        text = _field(name, params[name], prop, (diff or {}).get(name))
        fields.append(mrkdwn(f":point_right: {text}" if name == lead else text, verbatim=True))
    if len(names) > len(shown):
        fields.append(mrkdwn(f"_…and {len(names) - len(shown)} more: see the exact JSON below_"))
    edited_only = sorted(set(diff or {}) - set(names))  # an edit that unset a parameter
    heading = "*Parameters*" + (
        " · :pencil2: edited: " + ", ".join(f"`{escape(n)}` unset" for n in edited_only[:5]) if edited_only else ""
    )
    section: Block = {"type": "section", "block_id": "params", "text": mrkdwn(heading, verbatim=True)}
    if fields:
        section["fields"] = fields
    else:
        section["text"] = mrkdwn(heading + "\n_none_", verbatim=True)
    return [section, exact_json(params, params_hash, masked=masked)]


def exact_json(params: dict[str, Any], params_hash: str, *, masked: bool = False) -> Block:
    """The parameters exactly as they run (canonical, compact JSON) and their sha256; with
    `masked`, said to be masked where they look like secrets (the hash is the real values')."""
    raw = json.dumps(params, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    digest = f"sha256 `{escape(params_hash[:SHORT_HASH])}`" + (
        " of the real values (:lock: secrets masked here)" if masked else ""
    )
    shown = escape(raw.replace("`", BACKTICK))
    if len(shown) <= JSON_LINE_LIMIT and "\n" not in shown:
        return context("params_json", f"Exact JSON `{shown}` · {digest}", verbatim=True)
    body = code_block(params, JSON_BLOCK_LIMIT)
    return {
        "type": "section",
        "block_id": "params_json",
        "text": mrkdwn(f"*Exact JSON* ({digest})\n{body}", verbatim=True),
    }


def consequential(params: dict[str, Any], schema: dict[str, Any] | None) -> str | None:
    """The parameter whose value is the consequence of running it: an amount (in cents, by name
    or description), else the first number, else the first parameter; None without parameters."""
    properties = (schema or {}).get("properties") or {}

    def prop(name: str) -> dict[str, Any]:
        found = properties.get(name)
        return found if isinstance(found, dict) else {}

    numbers = [n for n, v in params.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    amounts = [n for n in numbers if _is_cents(n, prop(n))]
    return next(iter(amounts or numbers or list(params)), None)


def plain_value(name: str, value: Any, schema: dict[str, Any] | None) -> str:
    """One value for a plain-text place (a confirm dialog): nothing escaped, amounts formatted."""
    found = ((schema or {}).get("properties") or {}).get(name)
    prop: dict[str, Any] = found if isinstance(found, dict) else {}
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and _is_cents(name, prop):
        return f"{value / 100:,.2f} ({value:,} cents)"
    if isinstance(value, str):
        return truncate(" ".join(value.split()), VALUE_LIMIT) or "(empty)"
    return truncate(json.dumps(value, ensure_ascii=False, default=str), VALUE_LIMIT)


def label(name: str) -> str:
    words = name.replace("_", " ").replace("-", " ").strip()
    return (words[:1].upper() + words[1:]) if words else name


def _field(name: str, value: Any, prop: dict[str, Any], change: dict[str, Any] | None) -> str:
    title = f"*{truncate(escape(label(name)), 100)}*"
    description = prop.get("description")
    if isinstance(description, str) and description.strip():
        title += f" · _{truncate(escape(' '.join(description.split())), DESCRIPTION_LIMIT)}_"
    text = f"{title}\n{format_value(name, value, prop)}"
    if change is not None:
        was = format_value(name, change["from"], prop) if "from" in change else "_unset_"
        text += f"\n:pencil2: _edited, was_ {truncate(was, VALUE_LIMIT)}"
    return truncate(text, FIELD_LIMIT)


def format_value(name: str, value: Any, prop: dict[str, Any]) -> str:
    """One value for people (mrkdwn, untrusted text escaped)."""
    if value is None:
        return "_none_"
    if isinstance(value, bool):
        return "yes" if value else "no"
    fmt = prop.get("format")
    if isinstance(value, int | float) and _is_cents(name, prop):
        return f"{value / 100:,.2f} ({value:,} cents)"
    if isinstance(value, int | float):
        return escape(str(value))
    if isinstance(value, str):
        if fmt == "date-time":
            when = _time(value)
            if when is not None:
                return slack_date(when, fallback=value)
        if fmt in ("uri", "url") and value.startswith(LINK_SCHEMES) and len(value) <= 1000:
            url = value.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")
            return f"<{url}|{truncate(escape(value), 200)}>"
        text = " ".join(value.split()) if "\n" not in value else value
        return truncate(escape(text), VALUE_LIMIT) if text else "_empty_"
    compact = to_json(value, indent=None).replace("`", BACKTICK)
    return f"`{truncate(escape(compact), VALUE_LIMIT)}`"


def _is_cents(name: str, prop: dict[str, Any]) -> bool:
    description = prop.get("description")
    return name.endswith("_cents") or (isinstance(description, str) and "in cents" in description.lower())


def _time(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
