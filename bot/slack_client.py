"""The Slack Web API client, configured once: `SLACK_API_URL`, and retries for rate limits,
server errors and connections that failed before the request was sent (a default `WebClient`
retries only dropped connections, once). A timeout or a connection dropped after the request
went out is not retried here: Slack may have acted on it (`bot.outbox_sender` handles those).
Bolt copies base_url and retry handlers from the app's client to its per-request clients."""

from __future__ import annotations

from urllib.error import URLError

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
            # urllib wraps in URLError only what failed while connecting or sending.
            ConnectionErrorRetryHandler(max_retry_count=max_retries, error_types=[URLError]),
            RateLimitErrorRetryHandler(max_retry_count=max_retries),
            ServerErrorRetryHandler(max_retry_count=max_retries),
        ],
    )
