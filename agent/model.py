"""The model port: what the drafting loop asks of a language model, and what it gets back.

Implementations: `agent.anthropic_model.AnthropicModel` (Claude through the official SDK)
and `agent.scripted_model.ScriptedModel` (replies from a YAML script, for the offline demo
and tests that need no HTTP). Blocks are plain dicts in the Messages API's wire form, so
the conversation can be stored as JSON and sent back as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.caching import Caching


@dataclass(frozen=True)
class ModelRequest:
    model: str
    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    max_tokens: int = 4096
    task_type: str = ""  # not sent to the API; lets a scripted model pick its script
    caching: Caching = "off"  # which prompt-cache breakpoints to send (`agent.caching`)


@dataclass(frozen=True)
class Usage:
    """As the API counts: `input_tokens` are the prompt tokens after the last cache breakpoint,
    read and written cache tokens come on top (each at its own price)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0


@dataclass(frozen=True)
class ModelReply:
    content: list[dict[str, Any]]
    stop_reason: str
    model: str
    usage: Usage = field(default_factory=Usage)
    request_id: str | None = None

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [block for block in self.content if block.get("type") == "tool_use"]

    @property
    def text(self) -> str:
        return "\n".join(block["text"] for block in self.content if block.get("type") == "text").strip()


class ModelClient(Protocol):
    def complete(self, request: ModelRequest) -> ModelReply:
        """One Messages API call. Raises `ModelUnavailable` for faults worth retrying
        (429, 529, 5xx, timeouts, connection errors) and `ModelRequestError` otherwise."""
        ...


class ModelUnavailable(Exception):
    """The model did not answer, for now: retry later (after `retry_after_s` if known)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after_s: float | None = None) -> None:
        self.status, self.retry_after_s = status, retry_after_s
        super().__init__(message)


class ModelRequestError(Exception):
    """The model refused the request itself (bad request, authentication): retrying won't help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)
