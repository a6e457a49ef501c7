"""The Slack Web API client, configured once: `SLACK_API_URL`, and retries for rate limits,
server errors and dropped connections (a default `WebClient` retries only the last, once).
Bolt copies base_url and retry handlers from the app's client to its per-request clients."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

SLACK_API_URL = "https://slack.com/api/"


def make_client(
    token: str | None, api_url: str | None = None, *, timeout_s: int = 10, max_retries: int = 2
) -> WebClient:
    base_url = api_url or SLACK_API_URL
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout_s,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=max_retries),
            RateLimitErrorRetryHandler(max_retry_count=max_retries),
            ServerErrorRetryHandler(max_retry_count=max_retries),
        ],
    )
