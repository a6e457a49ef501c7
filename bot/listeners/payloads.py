"""Reading what Slack sent, defensively: a malformed payload becomes `BadPayload`, never a 500."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bot.blocks.card import params_hash_from_block_id, tool_hash_from_block_id

SLACK_ID = re.compile(r"[A-Z0-9][A-Z0-9_]{1,31}")


def slack_id(value: Any) -> str | None:
    """`value` if it looks like a Slack id (user, channel, team), else None."""
    return value if isinstance(value, str) and SLACK_ID.fullmatch(value) else None


class BadPayload(ValueError):
    """The request is not the shape Slack sends; the listener answers politely and changes nothing."""


@dataclass(frozen=True)
class Click:
    user: str
    team: str | None
    value: str  # the public id the button acts on
    seen_hash: str  # the params hash on the card the person clicked
    seen_tool: str | None  # the tool definition on it (None: a card drawn before cards showed it)
    trigger_id: str | None
    response_url: str | None
    channel: str | None
    message_ts: str | None


def click_from(body: dict[str, Any]) -> Click:
    try:
        action = body["actions"][0]
        user = body["user"]["id"]
        value = action["value"]
    except (KeyError, IndexError, TypeError) as exc:
        raise BadPayload(f"not a button click: missing {exc}") from None
    if not isinstance(user, str) or not isinstance(value, str) or not value:
        raise BadPayload("not a button click: user or value is not text")
    if slack_id(user) is None:  # a look-alike id would be a person no rule knows
        raise BadPayload(f"not a button click: the user {user!r} is not a Slack user id")
    block_id = str(action.get("block_id") or "")
    seen_hash = params_hash_from_block_id(block_id) or ""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return Click(
        user=user,
        team=(body.get("team") or {}).get("id") or body.get("user", {}).get("team_id"),
        value=value,
        seen_hash=seen_hash,
        seen_tool=tool_hash_from_block_id(block_id),
        trigger_id=body.get("trigger_id"),
        response_url=body.get("response_url"),
        channel=channel,
        message_ts=(body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts"),
    )


def metadata_from(view: dict[str, Any]) -> dict[str, Any]:
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except (ValueError, RecursionError):  # also a number over int's 4300 digits, and deep nesting
        raise BadPayload("the modal's metadata is not JSON") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("action_id"), str):
        raise BadPayload("the modal's metadata names no action")
    return metadata
