"""Block Kit builders: small functions that make well-formed block dicts within Slack's limits."""

from __future__ import annotations

from typing import Any

from bot.blocks.text import truncate

Block = dict[str, Any]

SECTION_LIMIT = 3000
HEADER_LIMIT = 150
BUTTON_TEXT_LIMIT = 75
OPTION_TEXT_LIMIT = 75
URL_LIMIT = 3000


def plain(text: str, limit: int = SECTION_LIMIT) -> Block:
    return {"type": "plain_text", "text": truncate(text, limit) if text else " "}


def mrkdwn(text: str, *, verbatim: bool = False) -> Block:
    """A mrkdwn text object; `verbatim` for untrusted text, so Slack parses no bare mentions or links in it."""
    obj: Block = {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT) if text else " "}
    if verbatim:
        obj["verbatim"] = True
    return obj


def header(block_id: str, text: str) -> Block:
    return {"type": "header", "block_id": block_id, "text": plain(text, HEADER_LIMIT)}


def section(block_id: str, text: str, *, verbatim: bool = False) -> Block:
    return {"type": "section", "block_id": block_id, "text": mrkdwn(text, verbatim=verbatim)}


def context(block_id: str, text: str, *, verbatim: bool = False) -> Block:
    return {"type": "context", "block_id": block_id, "elements": [mrkdwn(text, verbatim=verbatim)]}


def divider(block_id: str) -> Block:
    return {"type": "divider", "block_id": block_id}


def actions(block_id: str, elements: list[Block]) -> Block:
    if not 1 <= len(elements) <= 25:
        raise ValueError(f"an actions block holds 1 to 25 elements (got {len(elements)})")
    return {"type": "actions", "block_id": block_id, "elements": elements}


def button(text: str, action_id: str, value: str, *, style: str | None = None, confirm: Block | None = None) -> Block:
    element: Block = {
        "type": "button",
        "action_id": action_id,
        "text": plain(text, BUTTON_TEXT_LIMIT),
        "value": value,
    }
    if style is not None:
        element["style"] = style
    if confirm is not None:
        element["confirm"] = confirm
    return element


def url_button(text: str, action_id: str, url: str, *, style: str | None = None) -> Block:
    """A button that opens `url` in the browser (Slack still sends the click: ack it)."""
    if len(url) > URL_LIMIT:
        raise ValueError(f"a button's url is at most {URL_LIMIT} characters (got {len(url)})")
    element: Block = {"type": "button", "action_id": action_id, "text": plain(text, BUTTON_TEXT_LIMIT), "url": url}
    if style is not None:
        element["style"] = style
    return element


def confirm_dialog(title: str, text: str, ok: str, deny: str, *, style: str = "danger") -> Block:
    return {
        "title": plain(title, 100),
        "text": plain(text, 300),
        "confirm": plain(ok, 30),
        "deny": plain(deny, 30),
        "style": style,
    }


def option(text: str, value: str) -> Block:
    return {"text": plain(text, OPTION_TEXT_LIMIT), "value": value}
