"""The whole app on a Socket Mode connection: the process `serve` assembles, behind
`bot.socket_mode.SocketMode` (slack_sdk's built-in client), connected through the Web API
emulator's `apps.connections.open` to the fake Socket Mode server, and driven by envelopes
that carry what Slack sends (`bot.sandbox.signed`'s payloads)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from agent.scripted_model import ScriptedModel
from agent.worker import Wakeup
from bot.runtime import build_services
from bot.sandbox.signed import block_actions_payload, button_action, event_callback, slash_command_form
from bot.serve import Process, assemble
from bot.socket_mode import SocketMode
from core.config import Config
from core.db import make_engine, make_sessionmaker
from core.models import Action
from core.settings import Settings
from tests.bot.slack_app import ADMIN, ADMINS, ALICE, APPROVALS, BOB, CONFIG, MALLORY, REQUESTER, SCRIPT, TEAM, TOKEN
from tests.bot.slack_texts import unnamed_people
from tests.fakes.clock import FrozenClock
from tests.fakes.slack_server import Message, SlackEmulator, seconds
from tests.fakes.socket_mode_server import Envelope, SocketModeServer

JsonDict = dict[str, Any]


def command_payload(slack: SlackEmulator, user: str, text: str, channel: str = APPROVALS) -> JsonDict:
    """A `/countersign` command's fields, as a `slash_commands` envelope carries them."""
    return slash_command_form(
        team_id=TEAM,
        user_id=user,
        channel_id=channel,
        text=text,
        response_url=slack.new_response_url(channel, None, user),
        trigger_id=slack.new_trigger_id(user),
    )


def click_payload(
    slack: SlackEmulator, user: str, action_id: str, value: str, block_id: str, card: Message
) -> JsonDict:
    """A click on a button of `card` (in #approvals), as an `interactive` envelope carries it."""
    element = {"type": "button", "action_id": action_id, "value": value, "text": {"type": "plain_text", "text": "x"}}
    return block_actions_payload(
        team_id=TEAM,
        user_id=user,
        actions=[button_action(element, block_id)],
        trigger_id=slack.new_trigger_id(user),
        message={"type": "message", "ts": card.ts, "text": card.text},
        channel_id=card.channel,
        response_url=slack.new_response_url(card.channel, card.ts, user),
    )


def mention_payload(slack: SlackEmulator, user: str, text: str, event_id: str, channel: str = APPROVALS) -> JsonDict:
    """`@countersign TEXT` posted in `channel`, as an `events_api` envelope carries it."""
    said = f"<@U0BOT> {text}"
    ts = slack.call("chat.postMessage", {"channel": channel, "text": said}, TOKEN).body["ts"]
    event = {"type": "app_mention", "user": user, "channel": channel, "ts": ts, "event_ts": ts, "text": said}
    return event_callback(event, team_id=TEAM, event_id=event_id)


class SocketApp:
    """`sockets` is Slack's side: send envelopes there, read the app's acks there."""

    def __init__(
        self, db_url: str, slack: SlackEmulator, sockets: SocketModeServer, clock: FrozenClock, config: Config
    ) -> None:
        self.slack, self.sockets = slack, sockets
        settings = Settings(
            database_url=db_url,
            slack_bot_token=SecretStr(TOKEN),
            slack_app_token=SecretStr(sockets.app_token),
            slack_api_url=slack.api_url,
        )  # and no signing secret: Socket Mode needs none
        self.engine = make_engine(db_url)
        self.services = build_services(
            settings, config, make_sessionmaker(self.engine), clock, slack_retries=0, background_threads=1
        )
        self.process: Process = assemble(settings, self.services, self.engine, ScriptedModel(SCRIPT), channel_pace_s=0)
        self.wakeup = Wakeup(min_interval_s=0)  # what `serve` passes: its background loops' wakeup
        self.socket = SocketMode(self.process.app, sockets.app_token, wakeup=self.wakeup)
        self.socket.connect()  # type: ignore[no-untyped-call]
        sockets.link(1)

    def close(self) -> None:
        self.socket.close()
        self.services.background.shutdown(wait=True)
        self.engine.dispose()

    # -- what Slack sends ----------------------------------------------------------------
    def command(self, user: str, text: str, **options: Any) -> str:
        """A `/countersign TEXT` envelope; its id (`sockets.ack(id).payload` is the reply)."""
        return self.sockets.send(
            "slash_commands", command_payload(self.slack, user, text), accepts_response_payload=True, **options
        )

    def click(self, user: str, action_id: str, value: str, block_id: str, card: Message, **options: Any) -> str:
        return self.sockets.send(
            "interactive", click_payload(self.slack, user, action_id, value, block_id, card), **options
        )

    def mention(self, user: str, text: str, event_id: str, **options: Any) -> str:
        return self.sockets.send("events_api", mention_payload(self.slack, user, text, event_id), **options)

    # -- what happened -------------------------------------------------------------------
    def settle(self) -> None:
        """Run the workers until idle, and let every post-ack Slack call finish."""
        self.process.run_until_idle()
        self.services.background.submit(lambda: None).result(timeout=30)

    def actions(self) -> list[Action]:
        with self.services.sessions() as session:
            return list(session.scalars(select(Action).order_by(Action.id)))

    def card(self, action: Action) -> Message:
        [card] = [
            m
            for m in self.slack.messages(APPROVALS)
            if m.thread_ts is None and action.public_id in json.dumps(m.blocks or [])
        ]
        return card

    def replies(self) -> list[str]:
        """What the app answered in its acks (a command's reply), as text."""
        return [json.dumps(ack.payload) for ack in self.sockets.acks if ack.payload is not None]

    def unanswered(self) -> list[Envelope]:
        return self.sockets.unanswered()


@contextmanager
def socket_serving(db_url: str, config: dict[str, Any] = CONFIG) -> Iterator[SocketApp]:
    """The app on Socket Mode with `config` on `db_url`, the emulator holding its channels and
    people. On the way out: every envelope was acked by its id, and nobody read a bare user id."""
    clock = FrozenClock(FrozenClock().now().replace(year=2026, month=11))
    with SlackEmulator(now=seconds(clock)) as slack, SocketModeServer(slack) as sockets:
        slack.add_channel(APPROVALS, "approvals")
        slack.add_channel(ADMINS, "admins")
        for user in (REQUESTER, ALICE, BOB, MALLORY, ADMIN):
            slack.add_user(user, user.lower())
        app = SocketApp(db_url, slack, sockets, clock, Config.model_validate(config))
        try:
            yield app
        finally:
            app.close()
        assert sockets.unanswered() == [], "envelopes the app never acked"
        assert sockets.strays == [], "acks of no envelope sent"
        unnamed = unnamed_people(slack.calls, app.replies())
        assert not unnamed, "texts sent to Slack show bare user ids:\n" + "\n".join(unnamed)
