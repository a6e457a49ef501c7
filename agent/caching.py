"""Prompt caching: where a request's `cache_control` breakpoints go.

Anthropic caches a request's prefix in the order tools → system → messages, up to each block
marked `cache_control: {"type": "ephemeral"}` (at most 4 a request, alive 5 minutes after their
last use). A step of a task resends everything the step before sent and adds the model's reply
and its tool results, so the breakpoints mark what stays byte-identical from step to step:

1. the last tool definition (the type's tools, in the config's order),
2. the system prompt (the preamble and the type's instructions),
3. the last block of the conversation up to the previous turn (where the previous step's
   request ended: this step reads that prefix exactly, however many blocks the turn added),
4. the last block of this request (written now, read by the next step).

The marks are added to copies when the request is sent; the stored conversation never holds
one (they would pile up past the limit). A string message content is sent as one text block
whether or not it carries a mark, so the bytes before a mark are the same in every step.
"""

from __future__ import annotations

from typing import Any, Literal

EPHEMERAL = {"type": "ephemeral"}
MAX_BREAKPOINTS = 4

# off: no marks · prefix: tools and system (one-shot requests: the router's) · conversation: all four
Caching = Literal["off", "prefix", "conversation"]


def system_blocks(system: str, caching: Caching) -> str | list[dict[str, Any]]:
    """The system prompt as sent: one marked text block when cached, else the plain string."""
    if caching == "off" or not system:
        return system
    return [{"type": "text", "text": system, "cache_control": EPHEMERAL}]


def marked_tools(tools: list[dict[str, Any]], caching: Caching) -> list[dict[str, Any]]:
    """The tool definitions, the last one marked (it ends the tools' part of the prefix)."""
    if caching == "off" or not tools:
        return tools
    return [*tools[:-1], {**tools[-1], "cache_control": EPHEMERAL}]


def marked_messages(messages: list[dict[str, Any]], caching: Caching) -> list[dict[str, Any]]:
    """The conversation with the previous step's end and this request's end marked."""
    if caching != "conversation":
        return messages
    marks = {len(messages) - 1, len(messages) - 3} - {-1, -2}
    return [_message(message, index in marks) for index, message in enumerate(messages)]


def _message(message: dict[str, Any], marked: bool) -> dict[str, Any]:
    content = message.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    if marked and blocks:
        blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
    return {**message, "content": blocks}
