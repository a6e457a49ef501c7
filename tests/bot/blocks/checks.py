"""Checks every Block Kit payload must pass: slack_sdk's models, plus the limits they leave unchecked."""

from __future__ import annotations

import re
from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
MESSAGE_TEXT = 12_000
_TOKEN = re.compile(r"<[^>]*>")


def assert_blocks_valid(blocks: list[dict[str, Any]], *, max_blocks: int = MESSAGE_BLOCKS) -> None:
    assert 0 < len(blocks) <= max_blocks
    block_ids = [block.get("block_id") for block in blocks]
    assert all(isinstance(block_id, str) and 0 < len(block_id) <= 255 for block_id in block_ids), block_ids
    assert len(set(block_ids)) == len(block_ids), f"duplicate block_ids: {block_ids}"
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, f"unknown block type: {block}"
        # to_dict() validates recursively and drops unknown keys: equality catches typos too.
        assert parsed.to_dict() == block
        _check_unchecked_limits(block)


def assert_message_valid(text: str, blocks: list[dict[str, Any]]) -> None:
    assert text.strip(), "a message needs a top-level text"
    assert_blocks_valid(blocks)
    total = len(text) + total_text(blocks)
    assert total <= MESSAGE_TEXT, f"{total} characters of text in one message"


def assert_view_valid(view: dict[str, Any]) -> None:
    assert View(**view).to_dict() == view
    assert_blocks_valid(view["blocks"], max_blocks=VIEW_BLOCKS)


def _check_unchecked_limits(obj: Any) -> None:
    """What slack_sdk's models don't check: header/button/option text lengths, empty texts."""
    if isinstance(obj, dict):
        if obj.get("type") in ("plain_text", "mrkdwn"):
            assert obj["text"], "empty text object"
            assert len(obj["text"]) <= 3000
        if obj.get("type") == "header":
            assert len(obj["text"]["text"]) <= 150
        if obj.get("type") == "button":
            assert len(obj["text"]["text"]) <= 75
            assert len(obj.get("value", "")) <= 2000  # a url button may have none
            assert len(obj.get("url", "")) <= 3000
        if "options" in obj:
            assert len(obj["options"]) <= 100
            for option in obj["options"]:
                assert len(option["text"]["text"]) <= 75
                assert len(option["value"]) <= 150
        for value in obj.values():
            _check_unchecked_limits(value)
    elif isinstance(obj, list):
        for item in obj:
            _check_unchecked_limits(item)


def total_text(obj: Any) -> int:
    """Characters of text in a payload, as Slack's `msg_blocks_too_long` counts them (roughly)."""
    if isinstance(obj, dict):
        own = len(obj["text"]) if isinstance(obj.get("text"), str) else 0
        return own + sum(total_text(value) for key, value in obj.items() if key != "text" or not own)
    if isinstance(obj, list):
        return sum(total_text(item) for item in obj)
    return 0


def texts(obj: Any) -> list[str]:
    """Every text string in a payload."""
    if isinstance(obj, dict):
        own = [obj["text"]] if isinstance(obj.get("text"), str) else []
        return own + [t for key, value in obj.items() if key != "text" or not own for t in texts(value)]
    if isinstance(obj, list):
        return [t for item in obj for t in texts(item)]
    return []


def live_tokens(obj: Any) -> set[str]:
    """Every `<…>` token Slack would act on: mentions, broadcasts, links, dates."""
    return {token for text in texts(obj) for token in _TOKEN.findall(text)}


def buttons(blocks: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(action_id, value, style) of every button, in order."""
    return [
        (element["action_id"], element["value"], element.get("style"))
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def block(blocks: list[dict[str, Any]], block_id: str) -> dict[str, Any]:
    return next(b for b in blocks if b["block_id"] == block_id)


def block_text(blocks: list[dict[str, Any]], block_id: str) -> str:
    return "\n".join(texts(block(blocks, block_id)))
