"""Events: `@countersign …` in a channel starts a task; opening the App Home shows it.

Slack retries an event it thinks we missed (`X-Slack-Retry-Num`); the `event_id` is stored
with the task in one transaction, so a retry finds it and changes nothing."""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from slack_bolt import App
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agent.tasks import TaskError, submit_task
from bot.listeners.payloads import slack_id
from bot.presenter import publish_home
from bot.services import Services
from core import outbox
from core.messages import TaskStarted
from core.models import SlackEvent

log = logging.getLogger(__name__)
MENTION = re.compile(r"<@[UW][A-Z0-9]+(\|[^>]*)?>")


def register(app: App, services: Services) -> None:
    @app.event("app_mention")
    def mention(body: dict[str, Any], event: dict[str, Any]) -> None:
        # Slack escapes &, < and > in message text; the request is kept as the person typed it
        # (the card escapes it again when it shows it).
        text = html.unescape(MENTION.sub("", event.get("text") or "")).strip()
        first, _, rest = text.partition(" ")
        task_type = first if first in services.config.task_types else None
        request = rest.strip() if task_type else text
        event_id, channel, user = body.get("event_id"), slack_id(event.get("channel")), slack_id(event.get("user"))
        thread_ts = event.get("thread_ts") or event.get("ts")
        if not isinstance(event_id, str) or len(event_id) > 64 or not channel or not user or not request:
            log.info("mention without a usable event id, channel or user: ignored")
            return
        now = services.clock.now()
        try:
            with services.sessions.begin() as session:
                if session.scalars(select(SlackEvent).where(SlackEvent.event_id == event_id)).first():
                    return  # a retry of an event we already acted on
                session.add(SlackEvent(event_id=event_id, received_at=now))
                task = submit_task(
                    session,
                    services.config,
                    task_type,
                    request,
                    now=now,
                    requester=user,
                    team_id=body.get("team_id"),
                    channel=channel,
                    thread_ts=thread_ts,
                )
                outbox.enqueue(session, TaskStarted(task.public_id), now)
        except IntegrityError:
            log.info("event %s was handled concurrently; ignoring the retry", event_id)
        except TaskError as problem:
            log.info("mention not started: %s", problem)

    @app.event("app_home_opened")
    def home(body: dict[str, Any], event: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab", "home") == "home" and user:
            services.background.submit(publish_home, services, user, slack_id(body.get("team_id")))
