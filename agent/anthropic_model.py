"""Claude through the official `anthropic` SDK (the only module that imports it).

`bot.runtime` passes `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL` as the settings read them
(so a `.env` file works too; unset, the SDK reads the environment itself). The SDK retries 408/409/429/5xx
with its own backoff (`max_retries`); what is still failing after that becomes
`ModelUnavailable` and the drafting loop's own, longer backoff takes over.
"""

from __future__ import annotations

from typing import Any

import anthropic

from agent.caching import marked_messages, marked_tools, system_blocks
from agent.model import ModelReply, ModelRequest, ModelRequestError, ModelUnavailable, Usage
from core.durations import seconds_from_peer

_BLOCK_KEYS = {"text": ("type", "text"), "tool_use": ("type", "id", "name", "input")}


class AnthropicModel:
    def __init__(
        self,
        client: anthropic.Anthropic | None = None,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self.client = client or anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    def complete(self, request: ModelRequest) -> ModelReply:
        try:
            message = self.client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                system=system_blocks(request.system, request.caching),  # type: ignore[arg-type]
                messages=marked_messages(request.messages, request.caching),  # type: ignore[arg-type]
                tools=marked_tools(request.tools, request.caching),  # type: ignore[arg-type]
            )
        except anthropic.APIStatusError as exc:
            if exc.status_code == 429 or exc.status_code >= 500:
                raise ModelUnavailable(_describe(exc), status=exc.status_code, retry_after_s=_retry_after(exc)) from exc
            raise ModelRequestError(_describe(exc), status=exc.status_code) from exc
        except anthropic.APIConnectionError as exc:  # includes timeouts
            raise ModelUnavailable(f"{type(exc).__name__}: {exc}") from exc
        usage = message.usage
        return ModelReply(
            content=[_block(block.model_dump(mode="json")) for block in message.content],
            stop_reason=message.stop_reason or "end_turn",
            model=message.model,
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_input_tokens or 0,
                cache_creation_tokens=usage.cache_creation_input_tokens or 0,
            ),
            request_id=getattr(message, "_request_id", None),
        )


def _block(dumped: dict[str, Any]) -> dict[str, Any]:
    # Keep only what the API accepts back in an assistant turn.
    keys = _BLOCK_KEYS.get(dumped.get("type", ""))
    return {key: dumped[key] for key in keys} if keys else {k: v for k, v in dumped.items() if v is not None}


def _describe(exc: anthropic.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    kind = error.get("type", "error") if isinstance(error, dict) else "error"
    text = error.get("message", str(exc)) if isinstance(error, dict) else str(exc)
    return f"{exc.status_code} {kind}: {text}"


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    return seconds_from_peer(exc.response.headers.get("retry-after"), most=3600.0)
