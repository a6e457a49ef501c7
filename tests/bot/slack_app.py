"""The whole app served on a local port, talking to the Slack emulator, driven by signed
HTTP requests exactly as Slack sends them."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from agent.model import ModelClient
from agent.scripted_model import ScriptedModel
from bot.runtime import build_services
from bot.serve import Process, assemble
from bot.server import listen
from core.config import Config
from core.db import make_engine, make_sessionmaker
from core.models import Action, Task
from core.settings import Settings
from tests.bot.slack_texts import unnamed_people
from tests.fakes.clock import FrozenClock
from tests.fakes.slack_server import SlackEmulator, seconds

SECRET = "test-signing-secret"
TOKEN = "xoxb-test"
API_TOKEN = "api-test-token"
TEAM = "T0SANDBOX"
APPROVALS = "C0APPROVALS"
REQUESTER, ALICE, BOB, MALLORY, ADMIN = "U0REQUESTER", "U0ALICE", "U0BOB", "U0MALLORY", "U0ADMIN"
ADMINS = "C0ADMINS"

CONFIG = {
    "slack": {"approvals_channel": APPROVALS, "admin_channel": ADMINS, "admins": [ADMIN]},
    "tools": {"modules": ["tests.approvals.shop_tools"]},
    "task_types": {
        "refund": {
            "description": "Refund a customer order",
            "instructions": "Refund broken orders.",
            "tools": ["lookup_order", "issue_refund"],
            "autonomy": "hitl",
            "approvers": [ALICE, BOB],
            "escalation": [{"after": "5m", "notify": "approvers"}, {"after": "30m", "then": "expire"}],
        },
        "flag": {  # small graduation numbers, as the demo has
            "tools": ["toggle_flag"],
            "autonomy": "hitl",
            "approvers": [ALICE, BOB],
            "veto_window": "30s",
            "graduation": {
                "min_samples": 3,
                "min_days": 0,
                "min_approvers": 1,
                "target": 0.3,
                "max_reject_rate": 0.5,
                "min_read_time": "0s",
                "probation": 5,
                "ceiling": "hotl",
            },
        },
        "lookup": {"tools": ["lookup_order"], "autonomy": "auto", "approvers": [ALICE, BOB]},
    },
}
SCRIPT = {
    "refund": {
        "match": r"order (?P<order_id>\d+)",
        "replies": [
            {
                "tool_use": [
                    {
                        "name": "issue_refund",
                        "input": {"order_id": "{order_id}", "amount_cents": 500},
                        "rationale": "The customer says it arrived broken.",
                        "confidence": 0.9,
                    }
                ]
            },
            {"text": "Done with order {order_id}."},
        ],
    },
    "flag": {
        "match": r"flag (?P<flag>\w+)",
        "replies": [
            {
                "tool_use": [
                    {
                        "name": "toggle_flag",
                        "input": {"flag": "{flag}", "enabled": True},
                        "rationale": "asked to",
                        "confidence": 0.95,
                    }
                ]
            },
            {"text": "Flag {flag} is on."},
        ],
    },
    "lookup": {
        "match": r"order (?P<order_id>\d+)",
        "replies": [
            {
                "tool_use": [
                    {
                        "name": "lookup_order",
                        "input": {"order_id": "{order_id}"},
                        "rationale": "asked to",
                        "confidence": 0.95,
                    }
                ]
            },
            {"text": "Order {order_id} is delivered."},
        ],
    },
}


@dataclass
class Response:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class SlackApp:
    def __init__(
        self,
        db_url: str,
        slack: SlackEmulator,
        clock: FrozenClock,
        config: Config,
        *,
        model: ModelClient | None = None,
        vault_keys: str | None = None,
        **settings_given: Any,
    ) -> None:
        self.slack, self.clock = slack, clock
        settings = Settings(
            **{
                "database_url": db_url,
                "slack_bot_token": SecretStr(TOKEN),
                "slack_signing_secret": SecretStr(SECRET),
                "slack_api_url": slack.api_url,
                "api_token": SecretStr(API_TOKEN),
                "vault_keys": SecretStr(vault_keys) if vault_keys else None,
                **settings_given,
            }
        )
        self.engine = make_engine(db_url)
        services = build_services(
            settings, config, make_sessionmaker(self.engine), clock, slack_retries=0, background_threads=1
        )
        model = model or ScriptedModel(SCRIPT)
        self.process: Process = assemble(settings, services, self.engine, model, channel_pace_s=0)
        self.services = services
        self.http = listen(self.process.server, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.http.effective_port}"  # type: ignore[union-attr]
        self.replies: list[str] = []  # the app's answers to Slack: slash command replies, form errors
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.http.run()
        except OSError:
            if not self._closing.is_set():  # closing the sockets under the loop ends it this way
                raise

    def close(self) -> None:
        self._closing.set()
        self.http.close()
        self._thread.join(timeout=10)
        self.services.background.shutdown(wait=True)
        self.engine.dispose()

    # -- what Slack sends ----------------------------------------------------------------

    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/slack/events",
    ) -> Response:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signed = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body.decode("utf-8", "replace"))
        request = urllib.request.Request(
            self.url + path,
            data=body,
            method="POST",
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": signature or signed,
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                response = Response(reply.status, reply.read().decode())
        except urllib.error.HTTPError as error:
            response = Response(error.code, error.read().decode())
        if path == "/slack/events" and response.status == 200:
            self.replies.append(response.body)
        return response

    def command(self, user: str, text: str, channel: str = APPROVALS, team: str = TEAM) -> Response:
        form = {
            "token": "legacy",
            "team_id": team,
            "team_domain": "sandbox",
            "channel_id": channel,
            "channel_name": "approvals",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/countersign",
            "text": text,
            "api_app_id": "A0APP",
            "response_url": self.slack.new_response_url(channel, None, user),
            "trigger_id": self.slack.new_trigger_id(user),
        }
        return self.post(urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded")

    def interact(self, payload: dict[str, Any], **kwargs: Any) -> Response:
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded", **kwargs)

    def click(
        self,
        user: str,
        action_id: str,
        value: str,
        block_id: str,
        message_ts: str,
        channel: str = APPROVALS,
        team: str = TEAM,
        *,
        timestamp: int | None = None,
    ) -> Response:
        """A signed click; `timestamp`: when Slack says it sent it (default: now)."""
        return self.interact(
            {
                "type": "block_actions",
                "api_app_id": "A0APP",
                "token": "legacy",
                "user": {"id": user, "username": user.lower(), "team_id": team},
                "team": {"id": team, "domain": "sandbox"},
                "container": {
                    "type": "message",
                    "message_ts": message_ts,
                    "channel_id": channel,
                    "is_ephemeral": False,
                },
                "channel": {"id": channel, "name": "approvals"},
                "message": {"ts": message_ts, "type": "message", "text": "card"},
                "trigger_id": self.slack.new_trigger_id(user),
                "response_url": self.slack.new_response_url(channel, message_ts, user),
                "actions": [
                    {
                        "type": "button",
                        "action_id": action_id,
                        "block_id": block_id,
                        "value": value,
                        "text": {"type": "plain_text", "text": action_id},
                        "action_ts": str(time.time()),
                    }
                ],
            },
            timestamp=timestamp,
        )

    def submit(self, user: str, view: dict[str, Any], values: dict[str, Any]) -> Response:
        return self.interact(
            {
                "type": "view_submission",
                "api_app_id": "A0APP",
                "token": "legacy",
                "user": {"id": user, "username": user.lower(), "team_id": TEAM},
                "team": {"id": TEAM},
                "trigger_id": self.slack.new_trigger_id(user),
                "view": {**view, "id": "V0MODAL", "state": {"values": values}},
            }
        )

    def event(self, event: dict[str, Any], event_id: str, retry: int | None = None, team: str = TEAM) -> Response:
        body = json.dumps(
            {
                "token": "legacy",
                "team_id": team,
                "api_app_id": "A0APP",
                "type": "event_callback",
                "event_id": event_id,
                "event_time": int(time.time()),
                "event": event,
            }
        ).encode()
        if not retry:
            return self.post(body, "application/json")
        # Slack signs each retry afresh, seconds or minutes after the first delivery: stamped
        # `retry` seconds on, it is the same body under a new signature (the very same signature
        # again would be a replay).
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return self.post(body, "application/json", headers=headers, timestamp=int(time.time()) + retry)

    # -- what happened -------------------------------------------------------------------

    def settle(self) -> None:
        """Run the workers until idle, and let every post-ack Slack call finish."""
        self.process.run_until_idle()
        self.services.background.submit(lambda: None).result(timeout=30)
        self.process.server.notices.join()

    def card(self, action: Action) -> Any:
        cards = [m for m in self.slack.messages(APPROVALS) if m.thread_ts is None]
        [card] = [m for m in cards if _button_value(m.blocks, action.public_id)]
        return card

    def actions(self) -> list[Action]:
        with self.services.sessions() as session:
            return list(session.scalars(select(Action).order_by(Action.id)))


def signed_command(url: str, slack: SlackEmulator, user: str, text: str, channel: str = APPROVALS) -> int:
    """Send one signed slash command to a server at `url`; its HTTP status."""
    form = {
        "command": "/countersign",
        "text": text,
        "user_id": user,
        "team_id": TEAM,
        "channel_id": channel,
        "response_url": slack.new_response_url(channel, None, user),
        "trigger_id": slack.new_trigger_id(user),
    }
    body = urllib.parse.urlencode(form).encode()
    stamp = str(int(time.time()))
    request = urllib.request.Request(
        url + "/slack/events",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body.decode()),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return int(reply.status)


def _button_value(blocks: list[dict[str, Any]] | None, value: str) -> bool:
    return value in json.dumps(blocks or [])


def decide_block(blocks: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """(block_id, {action_id: value}) of a card's decision buttons."""
    [block] = [b for b in blocks if b.get("type") == "actions" and str(b.get("block_id", "")).startswith("decide:")]
    return block["block_id"], {e["action_id"]: e["value"] for e in block["elements"]}


def edit_values(view: dict[str, Any], amount: str) -> dict[str, Any]:
    """`view.state.values` of an edit form with `amount_cents` typed over the drafted values."""
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    values = {
        name: {e["action_id"]: {"type": e["type"], "value": e.get("initial_value")}} for name, e in inputs.items()
    }
    values["amount_cents"][inputs["amount_cents"]["action_id"]]["value"] = amount
    return values


# Refunds stop after one model step: the task pauses with its Extend once and Stop buttons.
BUDGET_CONFIG: dict[str, Any] = {
    **CONFIG,
    "task_types": {**CONFIG["task_types"], "refund": {**CONFIG["task_types"]["refund"], "budget": {"max_steps": 1}}},
}


def paused_by_budget(app: SlackApp, team: str = TEAM) -> tuple[str, Any]:
    """A refund `REQUESTER` starts in `team`, approved by `ALICE` and then paused by its budget
    (`BUDGET_CONFIG`): (task id, the message with its task buttons)."""
    assert app.command(REQUESTER, "run refund Refund order 1234", team=team).status == 200
    app.settle()
    [action] = [a for a in app.actions() if a.state == "pending"]
    card = app.card(action)
    block_id, _ = decide_block(card.blocks)
    app.click(ALICE, "approve", action.public_id, block_id, card.ts, team=team)
    app.settle()
    with app.services.sessions() as session:
        task = session.get_one(Task, action.task_id)
    assert (task.state, task.paused_reason) == ("paused", "budget: 1 model steps reached the limit of 1")
    [message] = [
        m
        for m in app.slack.messages(APPROVALS)
        if "extend_budget" in json.dumps(m.blocks or []) and task.public_id in json.dumps(m.blocks)
    ]
    return task.public_id, message


def task_state(app: SlackApp, task_id: str) -> str:
    with app.services.sessions() as session:
        return session.scalars(select(Task.state).where(Task.public_id == task_id)).one()


@contextmanager
def serving(db_url: str, config: dict[str, Any] = CONFIG, **settings_given: Any) -> Iterator[SlackApp]:
    """The app with `config` (and `Settings` fields `settings_given`) on `db_url`, the emulator
    holding its channels and people: the `slack_app` fixture's, for a test that needs another
    config or settings, or must set something up (logging) before the app is built."""
    clock = FrozenClock(FrozenClock().now().replace(year=2026, month=11))
    with SlackEmulator(now=seconds(clock)) as slack:
        slack.add_channel(APPROVALS, "approvals")
        slack.add_channel(ADMINS, "admins")
        for user in (REQUESTER, ALICE, BOB, MALLORY, ADMIN):
            slack.add_user(user, user.lower())
        app = SlackApp(db_url, slack, clock, Config.model_validate(config), **settings_given)
        try:
            yield app
        finally:
            app.close()
        # Every flow a test drove: nobody read a bare user id where a name belongs.
        unnamed = unnamed_people(slack.calls, app.replies)
        assert not unnamed, "texts sent to Slack show bare user ids:\n" + "\n".join(unnamed)


@pytest.fixture
def slack_app(db_url: str) -> Iterator[SlackApp]:
    with serving(db_url) as app:
        yield app
