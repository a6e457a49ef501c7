"""The whole app served on a local port (tests/bot's `serving`) with external tools, API
clients made as `countersign api-client create` makes them, a transport that lets a test see
what the client sent and got, and the Slack side of a decision driven by signed clicks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
from countersign_client import Delivery, InvalidSignature, verify_webhook
from cryptography.fernet import Fernet

from agent.vault import Vault, parse_keys
from bot import api_clients
from tests.bot.slack_app import ALICE, BOB, CONFIG, SlackApp, decide_block, serving

KEY = Fernet.generate_key().decode()
SCHEMA = {
    "type": "object",
    "properties": {"service": {"type": "string"}, "region": {"type": "string"}},
    "required": ["service"],
    "additionalProperties": False,
}
API_CONFIG: dict[str, Any] = {
    **CONFIG,
    "external_tools": {
        "restart_service": {"description": "Restart a production service", "params": SCHEMA, "risk": "high"},
        # medium risk, not idempotent: at most hotl, so its veto window stands
        "flush_cache": {"params": SCHEMA, "risk": "medium"},
    },
    "api": {"webhook_hosts": ["127.0.0.1"]},
    "task_types": {
        **CONFIG["task_types"],
        "ops": {
            "tools": ["restart_service"],
            "autonomy": "hitl",
            "approvers": [ALICE, BOB],
            "escalation": [{"after": "10m", "then": "expire"}],
        },
        "cache": {"tools": ["flush_cache"], "autonomy": "hotl", "approvers": [ALICE, BOB], "veto_window": "30s"},
    },
}

# A task type whose tools its clients bring (mcp-gate, the Claude Code hook): `read_*` read-only.
OPEN_CONFIG: dict[str, Any] = {
    **API_CONFIG,
    "task_types": {
        **API_CONFIG["task_types"],
        "notes": {
            "open_tools": {"read_only": ["read_*"], "overrides": {"archive_*": {"risk": "low", "idempotent": True}}},
            "autonomy": "hitl",
            "approvers": [ALICE, BOB],
            "escalation": [{"after": "10m", "then": "expire"}],
        },
        "coding": {"open_tools": {}, "autonomy": "hitl", "approvers": [ALICE, BOB]},
        "github": {"open_tools": {"risk": "medium"}, "autonomy": "hitl", "approvers": [BOB]},
    },
}


def new_client(app: SlackApp, name: str, task_types: list[str] | None = None) -> dict[str, str]:
    """{"name", "token", "webhook_secret"} of a new API client, as `api-client create` prints."""
    vault = Vault(app.services.sessions, parse_keys(KEY))
    with app.services.sessions.begin() as session:
        known = sorted(app.services.config.task_types)
        return api_clients.create(session, vault, name, task_types, known, app.clock.now())


@contextmanager
def api_serving(db_url: str, config: dict[str, Any] = API_CONFIG) -> Iterator[SlackApp]:
    with serving(db_url, config, vault_keys=KEY) as app:
        try:
            yield app
        finally:
            app.process.server.waiters.close()


@dataclass
class Call:
    method: str
    path: str
    status: int  # 0: sent, not answered yet
    body: Any


@dataclass
class Calls:
    """What a client sent and got, in order; a test waits on it instead of sleeping."""

    seen: list[Call] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def sent(self, request: httpx2.Request) -> None:
        with self.changed:
            self.seen.append(Call(request.method, request.url.path, 0, None))
            self.changed.notify_all()

    def add(self, request: httpx2.Request, response: httpx2.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        with self.changed:
            self.seen.append(Call(request.method, request.url.path, response.status_code, body))
            self.changed.notify_all()

    def first(self, matches: Callable[[Call], bool], timeout_s: float = 20) -> Call:
        with self.changed:
            found = self.changed.wait_for(lambda: next((c for c in self.seen if matches(c)), None), timeout_s)
        if found is None:
            raise AssertionError(f"no such call within {timeout_s} s; seen {[(c.method, c.path) for c in self.seen]}")
        return found

    def asked(self, timeout_s: float = 20) -> str:
        """The id of the action the client's first POST /api/actions made."""
        call = self.first(lambda c: c.method == "POST" and c.path == "/api/actions" and c.status > 0, timeout_s)
        assert call.status in (200, 201), call
        return str(call.body["action_id"])

    def paths(self) -> list[str]:
        """The answered calls."""
        return [f"{c.method} {c.path} {c.status}" for c in self.seen if c.status]


class Recording(httpx2.BaseTransport):
    def __init__(self, calls: Calls) -> None:
        self.calls, self.inner = calls, httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.calls.sent(request)
        response = self.inner.handle_request(request)
        response.read()
        self.calls.add(request, response)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncRecording(httpx2.AsyncBaseTransport):
    def __init__(self, calls: Calls) -> None:
        self.calls, self.inner = calls, httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.calls.sent(request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.calls.add(request, response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- the Slack side -------------------------------------------------------------------------


def card(app: SlackApp, action_id: str) -> tuple[Any, str, Any]:
    """(the action's row, the block id of its buttons, its card) once the card is posted."""
    app.settle()
    [action] = [a for a in app.actions() if a.public_id == action_id]
    posted = app.card(action)
    block_id, _ = decide_block(posted.blocks)
    return action, block_id, posted


def approve_with_edits(app: SlackApp, action_id: str, user: str, edits: dict[str, str]) -> None:
    """`user` clicks Edit, types `edits` over the drafted values and submits (approve with edits)."""
    _, block_id, posted = card(app, action_id)
    views_before = len(app.slack.views)
    assert app.click(user, "edit", action_id, block_id, posted.ts).status == 200
    app.settle()
    modal = app.slack.views[views_before]
    inputs = {b["block_id"]: b["element"] for b in modal.payload["blocks"] if b["type"] == "input"}
    values = {
        name: {element["action_id"]: {"type": element["type"], "value": element.get("initial_value")}}
        for name, element in inputs.items()
    }
    for name, value in edits.items():
        values[name][inputs[name]["action_id"]]["value"] = value
    answer = app.submit(user, modal.payload, values)
    assert (answer.status, answer.body) == (200, ""), answer


def reject(app: SlackApp, action_id: str, user: str, reason: str) -> None:
    _, block_id, posted = card(app, action_id)
    views_before = len(app.slack.views)
    assert app.click(user, "reject", action_id, block_id, posted.ts).status == 200
    app.settle()
    modal = app.slack.views[views_before]
    typed = {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
    assert app.submit(user, modal.payload, typed).status == 200


def click(app: SlackApp, action_id: str, user: str, button: str) -> None:
    _, block_id, posted = card(app, action_id)
    assert app.click(user, button, action_id, block_id, posted.ts).status == 200


# -- the webhook receiver -------------------------------------------------------------------


class Receiver:
    """A local webhook endpoint that verifies each delivery with `verify_webhook` under the
    sender's clock (`now`), answering 400 to any it refuses."""

    def __init__(self, secret: str, now: Callable[[], float]) -> None:
        self.secret, self.now = secret, now
        self.deliveries: list[Delivery] = []
        self.refused: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    delivery = verify_webhook(received.secret, dict(self.headers), body, now=received.now())
                except InvalidSignature as bad:
                    received.refused.append(str(bad))
                    self.send_response(400)
                else:
                    received.deliveries.append(delivery)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/countersign"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def states(self) -> list[str]:
        return [delivery.state for delivery in self.deliveries]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
