"""Text helpers for Slack's mrkdwn: escaping, safe truncation, mentions, dates, code blocks, help."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

ELLIPSIS = "…"
_ESCAPES = ("&amp;", "&lt;", "&gt;")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_FENCE = "```"
DATE_FORMAT = "{date_short_pretty} at {time_secs}"  # "today at 12:28:41 AM": to the second

COMMANDS = (
    ("run TYPE TEXT", "start a task of that type; TEXT is the request"),
    ("status [ID]", "where a task or action stands (your recent ones without an ID)"),
    ("autonomy [TYPE]", "each task type's autonomy level and its track record"),
    ("audit [ID]", "the decisions on record, for an action or task"),
    ("help", "this message"),
)


def escape(text: str) -> str:
    """Escape what Slack requires (`&`, `<`, `>`): untrusted text can then neither ping nor forge links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_cut(text: str, at: int) -> int:
    """The largest index <= `at` where `text` may be cut: not inside `&amp;` nor inside a `<…>` token."""
    at = max(0, min(at, len(text)))
    amp = text.rfind("&", max(0, at - 4), at)
    if amp != -1 and any(text.startswith(seq, amp) and amp + len(seq) > at for seq in _ESCAPES):
        at = amp
    head = text[:at]
    opening = head.rfind("<")
    if opening > head.rfind(">"):
        at = opening
    return at


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters (ending in "…" when cut), never inside an escape."""
    if limit < 1:
        raise ValueError(f"limit must be positive (got {limit!r})")
    if len(text) <= limit:
        return text
    return text[: safe_cut(text, limit - len(ELLIPSIS))] + ELLIPSIS


def split(text: str, size: int, max_parts: int) -> list[str]:
    """`text` in at most `max_parts` pieces of at most `size` characters, preferably cut at line ends."""
    parts: list[str] = []
    while text and len(parts) < max_parts:
        if len(text) <= size:
            parts.append(text)
            return parts
        if len(parts) == max_parts - 1:
            parts.append(truncate(text, size))
            return parts
        cut = text.rfind("\n", 0, size)
        if cut < size // 2:
            cut = safe_cut(text, size)
        parts.append(text[:cut])
        text = text[cut:].lstrip("\n")
    return parts


def quote(text: str, max_lines: int = 15) -> str:
    """`text` (already escaped) as a mrkdwn block quote of at most `max_lines` lines."""
    lines = text.splitlines() or [""]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], ELLIPSIS]
    return "\n".join(f">{line}" for line in lines)


def mention(user_id: str) -> str:
    """`<@U…>` for a Slack user id; anything else (`system`, a CLI name) as escaped plain text."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id)


def action_name(summary: str, tool: str, *, capital: bool = False) -> str:
    """An action named by what it does ("the refund of order 1001"), escaped; its tool's name in
    code when it has no summary. `capital` starts a sentence with it."""
    if not summary.strip():
        return f"`{escape(tool)}`"
    text = escape(" ".join(summary.split()))
    return text[:1].upper() + text[1:] if capital else text


# A Slack user id standing alone in text we wrote (never inside `<…>`): it becomes a mention.
_BARE_USER_ID = re.compile(r"(?<![<@\w|])([UW][A-Z0-9]*[0-9][A-Z0-9]*)(?![\w>|])")


def mention_ids(text: str) -> str:
    """`text` (escaped mrkdwn that we wrote) with each bare user id as a mention, which Slack shows
    as a name; not inside code spans."""
    parts = text.split("`")  # inside a code span an id stays as typed: a command to copy
    for index in range(0, len(parts), 2):
        parts[index] = _BARE_USER_ID.sub(_as_mention, parts[index])
    return "`".join(parts)


def _as_mention(found: re.Match[str]) -> str:
    return f"<@{found.group(1)}>" if len(found.group(1)) >= 5 else found.group(1)


def slack_date(when: datetime, fmt: str = DATE_FORMAT, fallback: str | None = None) -> str:
    """Slack's date formatting (shown in each reader's time zone); the fallback defaults to UTC ISO 8601."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"slack_date needs an aware datetime (got {when!r})")
    if fallback is None:
        fallback = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"<!date^{int(when.timestamp())}^{fmt}|{escape(fallback)}>"


def seconds_text(seconds: float) -> str:
    """A span as people say it, to the second: "30 s", "4 min 10 s", "2 h 5 min", "3 days"."""
    left = max(0, round(seconds))
    if left < 60:
        return f"{left} s"
    if left < 3600:
        minutes, secs = divmod(left, 60)
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    if left < 86400:
        hours, minutes = divmod(left // 60, 60)
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days = left // 86400
    return f"{days} day{'s' if days != 1 else ''}"


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """Pretty, stable JSON for people (sorted keys where possible, non-ASCII kept)."""
    separators = None if indent else (", ", ": ")
    try:
        return json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, default=str, separators=separators)
    except TypeError:  # keys of mixed types cannot be sorted
        return json.dumps(obj, indent=indent, ensure_ascii=False, default=str, separators=separators)


def code_block(obj: Any, limit: int) -> str:
    """A mrkdwn code block of `obj` (a string as is, anything else as pretty JSON), within `limit` chars.

    Backticks cannot close the block early: in JSON they become the equivalent escape `\\u0060`; in a
    string a zero-width space breaks up a fence.
    """
    if limit < 100:
        raise ValueError(f"limit must be at least 100 (got {limit!r})")
    raw = obj if isinstance(obj, str) else to_json(obj).replace("`", "\\u0060")
    while _FENCE in raw:
        raw = raw.replace(_FENCE, "``\u200b`")
    body = escape(raw) or " "
    if len(body) + 8 <= limit:
        return f"{_FENCE}\n{body}\n{_FENCE}"
    note = f"\n_truncated: {len(raw):,} characters in all_"
    return f"{_FENCE}\n{truncate(body, limit - 8 - len(note))}\n{_FENCE}{note}"


def help_text(task_types: dict[str, str]) -> str:
    """The reply to `/countersign help` (and to a command it doesn't understand), at most 3000 chars."""
    lines = ["*countersign*: agents draft actions, people decide. Commands:"]
    lines += [f"• `/countersign {usage}`: {what}" for usage, what in COMMANDS]
    lines.append("*Task types*")
    if not task_types:
        lines.append("_No task types are configured yet._")
    text = "\n".join(lines)
    for shown, (name, description) in enumerate(sorted(task_types.items())):
        line = f"\n• `{escape(name)}`" + (f": {escape(description)}" if description else "")
        more = f"\n_…and {len(task_types) - shown} more_"
        if len(text) + len(line) + len(more) + 30 > 3000:
            return text + more
        text += line
    return text
