"""The Bolt app: signature checks, listeners, and Bolt's settings chosen for acking fast.

`process_before_response=True` answers Slack as soon as the listener returns, instead of
polling for `ack()` every 10 ms; our listeners do only one database transaction before
acking and hand slower work to `services.background`. The listener pool is larger than
Bolt's default of 5 threads, which starves under bursts of clicks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.oauth.oauth_settings import OAuthSettings
from structlog.contextvars import bound_contextvars

from bot.listeners import actions, autonomy, commands, events, installs, questions, review, rules, views
from bot.services import Services
from core.storable import first_unstorable

log = logging.getLogger(__name__)
# Bolt's base logger. Bolt logs at INFO what it refuses, body and all (a failed signature
# check logs the whole request): below WARNING nothing of Bolt's reaches our logs.
BOLT_LOG = "bot.bolt"


def build_app(
    services: Services,
    *,
    signing_secret: str | None,
    verify_token: bool = True,
    listener_threads: int = 32,
    oauth: OAuthSettings | None = None,
) -> App:
    """`oauth` turns on multi-workspace mode: each request is authorized with its workspace's
    installation (Bolt's `authorize`), and the install routes are served."""
    bolt_log = logging.getLogger(BOLT_LOG)
    bolt_log.setLevel(logging.WARNING)
    app = App(
        logger=bolt_log,
        signing_secret=signing_secret,
        client=services.client,
        oauth_settings=oauth,
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

    @app.middleware
    def refuse_unstorable_text(body: dict[str, Any], next: Callable[[], BoltResponse]) -> BoltResponse:
        # Slack never sends a NUL or a lone surrogate (a signed request with one is not Slack's
        # own doing); a listener would store it on SQLite and fail half-way on PostgreSQL.
        found = first_unstorable(body)
        if found is None:
            return next()
        where, problem = found
        log.warning("refused a Slack request: its %s %s", where, problem)
        error = json.dumps({"error": f"the request's {where} {problem}"})
        return BoltResponse(status=400, body=error, headers={"content-type": "application/json"})

    @app.middleware
    def log_context(body: dict[str, Any], next: Callable[[], BoltResponse]) -> BoltResponse:
        # Slack's own ids for this request, on every log line it causes.
        request_id = body.get("event_id") or body.get("trigger_id") or (body.get("container") or {}).get("message_ts")
        action = (body.get("actions") or [{}])[0].get("value") if body.get("actions") else None
        with bound_contextvars(slack_request=request_id, action_id=action):
            return next()

    for surface in (actions, autonomy, views, questions, review, rules, commands, events, installs):
        surface.register(app, services)
    return app
