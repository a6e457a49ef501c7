"""What Slack accepts: its error (`SlackError`, by Slack's code) and its rules for what a
message or view may hold, checked with slack_sdk's Block Kit models."""

from __future__ import annotations

import copy
import json
from typing import Any, cast

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View as ViewModel

JsonDict = dict[str, Any]


class SlackError(Exception):
    """An API error, answered as `{"ok": false, "error": code}` (plus `response_metadata`)."""

    def __init__(self, code: str, *messages: str) -> None:
        super().__init__(code, *messages)
        self.code = code
        self.messages = list(messages)


_MODEL_ERRORS = (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError)


def parse_blocks(raw: object, *, limit: int = 50, code: str = "invalid_blocks") -> list[JsonDict]:
    """Blocks as Slack checks them: a JSON list of at most `limit` objects, each a known type
    that slack_sdk's models accept, with unique block_ids."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SlackError(code, "blocks must be a JSON array") from None
    if not isinstance(raw, list) or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in raw):
        raise SlackError(code, "blocks must be a list of objects with a type")
    if len(raw) > limit:
        raise SlackError(code, f"no more than {limit} items allowed [json-pointer:/blocks]")
    block_ids = [b["block_id"] for b in raw if "block_id" in b]
    if len(block_ids) != len(set(block_ids)):
        raise SlackError(code, "block_id must be unique within a message [json-pointer:/blocks]")
    for index, block in enumerate(raw):
        try:
            model = Block.parse(copy.deepcopy(block))
            if model is None:
                raise ValueError(f"unknown block type {block['type']!r}")
            model.to_dict()
        except _MODEL_ERRORS as exc:
            raise SlackError(code, f"{exc} [json-pointer:/blocks/{index}]") from None
    return cast(list[JsonDict], raw)


def parse_view(raw: object, *, kinds: tuple[str, ...]) -> JsonDict:
    """A modal or Home view; Slack answers `invalid_arguments` for any problem in it."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SlackError("invalid_arguments", "view must be a JSON object") from None
    if not isinstance(raw, dict) or raw.get("type") not in kinds:
        raise SlackError("invalid_arguments", f"view must be an object of type {' or '.join(kinds)}")
    parse_blocks(raw.get("blocks"), limit=100, code="invalid_arguments")
    try:
        ViewModel(**copy.deepcopy(raw)).to_dict()
    except _MODEL_ERRORS as exc:
        raise SlackError("invalid_arguments", str(exc)) from None
    return raw


def truthy(value: object) -> bool:
    """A boolean parameter, as JSON (true) or a form ("true", "1") carries it."""
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))
