"""What people read in Slack, gathered from the emulator's record and the app's HTTP answers,
and the check that no one reads a bare user id (`U…`/`W…` outside `<@…>`): Slack shows a
mention as the person's name, an id stays an id."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

# Keys whose strings never reach a person: ids, values carried by buttons, form metadata.
HIDDEN = frozenset(
    {
        "action_id",
        "block_id",
        "value",
        "private_metadata",
        "callback_id",
        "user",
        "user_id",
        "users",
        "team_id",
        "channel",
        "ts",
        "thread_ts",
        "url",
        "response_url",
        "trigger_id",
        "view_id",
        "external_id",
        "hash",
        "metadata",
        "image_url",
    }
)
# Web API calls whose arguments people read (the response_url's answers are recorded as such).
READ = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "views.open",
        "views.push",
        "views.update",
        "views.publish",
        "response_url",
    }
)
_TOKEN = re.compile(r"<[^<>]*>")  # a mention, a channel, a link, a date: Slack renders these
_CODE = re.compile(r"`[^`]*`")  # an id in code is one to copy (a CLI command), not a person's name
_USER_ID = re.compile(r"\b[UW][A-Z0-9]{4,}\b")


def strings(value: Any, key: str | None = None) -> Iterator[str]:
    """Every string a person may read in a call's arguments (blocks, views, text, errors)."""
    if key in HIDDEN:
        return
    if isinstance(value, str):
        if key in ("blocks", "view") and value.lstrip().startswith(("[", "{")):
            yield from strings(json.loads(value))  # the SDK may send JSON as a form field
        else:
            yield value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from strings(item, str(name))
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, key)


def bare_user_ids(text: str) -> list[str]:
    """User ids `text` shows as ids (outside Slack's `<…>` tokens)."""
    shown = _CODE.sub(" ", _TOKEN.sub(" ", text))
    return [found for found in _USER_ID.findall(shown) if any(ch.isdigit() for ch in found)]


def unnamed_people(calls: Iterable[tuple[str, dict[str, Any]]], replies: Iterable[str] = ()) -> list[str]:
    """Each text sent to Slack (or answered to it) that shows a bare user id, with the call."""
    found = []
    for method, params in calls:
        if method not in READ:
            continue
        for text in strings(params):
            if bare_user_ids(text):
                found.append(f"{method}: {text!r}")
    for reply in replies:
        try:
            body = json.loads(reply) if reply.strip() else {}
        except ValueError:
            body = reply
        for text in strings(body):
            if bare_user_ids(text):
                found.append(f"answer: {text!r}")
    return found
