"""The Bolt app: signature checks, listeners, and Bolt's settings chosen for acking fast.

`process_before_response=True` answers Slack as soon as the listener returns, instead of
polling for `ack()` every 10 ms; our listeners do only one database transaction before
acking and hand slower work to `services.background`. The listener pool is larger than
Bolt's default of 5 threads, which starves under bursts of clicks.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse

from bot.listeners import actions, autonomy, commands, events, views
from bot.services import Services

log = logging.getLogger(__name__)


def build_app(
    services: Services,
    *,
    signing_secret: str | None,
    verify_token: bool = True,
    listener_threads: int = 32,
) -> App:
    app = App(
        signing_secret=signing_secret,
        client=services.client,
        process_before_response=True,
        listener_executor=ThreadPoolExecutor(max_workers=listener_threads, thread_name_prefix="bolt-listener"),
        token_verification_enabled=verify_token,
        request_verification_enabled=signing_secret is not None,
    )

    @app.error
    def on_error(error: Exception, body: dict[str, Any], response: BoltResponse) -> None:
        # The only catch-all: log it, and answer Slack calmly rather than with a 500 that it retries.
        log.error("unhandled error in a Slack listener: %r (payload type %s)", error, body.get("type"), exc_info=error)
        response.status = 200
        response.body = ""

    for surface in (actions, autonomy, views, commands, events):
        surface.register(app, services)
    return app
