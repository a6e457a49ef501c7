"""The actions API end to end through the served app: external actions as cards, decided by
signed Slack clicks, waited on, claimed, reported, and their webhooks signed and in order."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from agent.vault import Vault, parse_keys
from bot import api_clients
from core.db import make_engine
from core.models import AuditEvent, UnchainedAuditEvent
from tests.bot.slack_app import ALICE, API_TOKEN, BOB, CONFIG, REQUESTER, SlackApp, decide_block, serving
from tests.bot.test_slack_unknown import resolve_on_card

KEY = Fernet.generate_key().decode()
API_CONFIG: dict[str, Any] = {
    **CONFIG,
    "external_tools": {
        "restart_service": {
            "description": "Restart a production service",
            "params": {
                "type": "object",
                "properties": {"service": {"type": "string"}, "region": {"type": "string"}},
                "required": ["service"],
                "additionalProperties": False,
            },
            "risk": "high",
        },
        "flush_cache": {"params": {"type": "object", "properties": {"service": {"type": "string"}}}, "risk": "low"},
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
        "ops-hotl": {
            "tools": ["flush_cache", "restart_service"],
            "autonomy": "hotl",
            "approvers": [ALICE],
            "veto_window": "30s",
        },
    },
}


class Receiver:
    """A local webhook receiver that checks each delivery's signature."""

    def __init__(self, secret: str) -> None:
        self.secret, self.got, self.bad = secret, [], []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers["X-Countersign-Timestamp"]
                mac = hmac.new(received.secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
                if hmac.compare_digest(self.headers["X-Countersign-Signature"], f"v1={mac}"):
                    received.got.append((self.headers["X-Countersign-Delivery"], json.loads(body)))
                else:
                    received.bad.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def states(self) -> list[str]:
        return [payload["state"] for _, payload in self.got]


def call(app: SlackApp, method: str, path: str, token: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(app.url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=70) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def new_client(app: SlackApp, name: str, task_types: list[str] | None = None) -> dict[str, str]:
    vault = Vault(app.services.sessions, parse_keys(KEY))
    with app.services.sessions.begin() as session:
        known = sorted(app.services.config.task_types)
        return api_clients.create(session, vault, name, task_types, known, app.clock.now())


@pytest.fixture
def api_app(db_url: str) -> Iterator[SlackApp]:
    with serving(db_url, API_CONFIG, vault_keys=KEY) as app:
        yield app


def _audit(app: SlackApp) -> list[Any]:
    with app.services.sessions() as session:
        return [*session.scalars(select(AuditEvent)), *session.scalars(select(UnchainedAuditEvent))]


def test_external_action_card_edit_approve_long_poll_claim_result_and_webhooks(api_app: SlackApp) -> None:
    client = new_client(api_app, "deployer", ["ops"])
    receiver = Receiver(client["webhook_secret"])
    request = {
        "task_type": "ops",
        "tool": "restart_service",
        "params": {"service": "api"},
        "rationale": "Memory leak; restart clears it.",
        "confidence": 0.9,
        "requester": REQUESTER,
        "external_id": "deploy-1",
        "callback_url": receiver.url,
    }
    status, created = call(api_app, "POST", "/api/actions", client["token"], request)
    assert status == 201, created
    assert created["state"] == "pending" and created["action_id"].startswith("act_")
    again = call(api_app, "POST", "/api/actions", client["token"], request)
    assert again == (200, created)
    action_id = created["action_id"]
    api_app.settle()
    [action] = [a for a in api_app.actions() if a.public_id == action_id]
    card = api_app.card(action)
    block_id, buttons = decide_block(card.blocks)
    assert "approve" in buttons
    assert "actions API by client 'deployer'" in json.dumps(card.blocks)

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(call, api_app, "GET", f"/api/actions/{action_id}?wait=30", client["token"])
        api_app.click(ALICE, "edit", action_id, block_id, card.ts)
        api_app.settle()
        [modal] = api_app.slack.views
        inputs = {b["block_id"]: b["element"] for b in modal.payload["blocks"] if b["type"] == "input"}
        values = {
            name: {e["action_id"]: {"type": e["type"], "value": e.get("initial_value")}} for name, e in inputs.items()
        }
        values["service"][inputs["service"]["action_id"]]["value"] = "api-canary"
        assert api_app.submit(ALICE, modal.payload, values).status == 200
        api_app.settle()
        status, decided = waiting.result(timeout=30)
    assert status == 200
    assert decided["state"] == "approved"
    assert decided["params"]["service"] == "api-canary"
    assert decided["decided_by"] == ALICE

    assert call(api_app, "POST", f"/api/actions/{action_id}/claim", client["token"])[0] == 200
    assert call(api_app, "POST", f"/api/actions/{action_id}/claim", client["token"])[0] == 409
    status, ended = call(
        api_app,
        "POST",
        f"/api/actions/{action_id}/result",
        client["token"],
        {"status": "succeeded", "result": {"ok": 1}},
    )
    assert (status, ended["state"]) == (200, "succeeded")
    assert call(api_app, "POST", f"/api/actions/{action_id}/result", client["token"], {"status": "failed"})[0] == 409
    api_app.settle()
    assert "succeeded" in json.dumps(api_app.card(action).blocks).lower() or api_app.slack.messages

    events = _audit(api_app)
    assert any(e.kind == "api.call" and e.actor == "deployer" for e in events)
    assert any(e.kind == "action.succeeded" and e.action_public_id == action_id for e in events)
    assert receiver.bad == []
    assert receiver.states() == ["pending", "approved", "executing", "succeeded"]
    assert len({delivery for delivery, _ in receiver.got}) == 4


def test_reject_reason_is_seen_by_the_long_poll(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    _, created = call(
        api_app,
        "POST",
        "/api/actions",
        client["token"],
        {"task_type": "ops", "tool": "restart_service", "params": {"service": "db"}},
    )
    api_app.settle()
    [action] = [a for a in api_app.actions() if a.public_id == created["action_id"]]
    card = api_app.card(action)
    block_id, _ = decide_block(card.blocks)
    api_app.click(BOB, "reject", action.public_id, block_id, card.ts)
    api_app.settle()
    [modal] = api_app.slack.views
    reason = {"reason": {"reason": {"type": "plain_text_input", "value": "Not during the sale."}}}
    assert api_app.submit(BOB, modal.payload, reason).status == 200
    api_app.settle()
    status, seen = call(api_app, "GET", f"/api/actions/{action.public_id}?wait=5", client["token"])
    assert (status, seen["state"], seen["reason"]) == (200, "rejected", "Not during the sale.")
    assert call(api_app, "POST", f"/api/actions/{action.public_id}/claim", client["token"])[0] == 409


def test_expiry_is_seen_by_the_long_poll(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    _, created = call(
        api_app,
        "POST",
        "/api/actions",
        client["token"],
        {"task_type": "ops", "tool": "restart_service", "params": {"service": "db"}},
    )
    api_app.settle()
    api_app.clock.advance(11 * 60)
    api_app.settle()
    status, seen = call(api_app, "GET", f"/api/actions/{created['action_id']}?wait=1", client["token"])
    assert (status, seen["state"]) == (200, "expired")


def test_veto_window_then_claim(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    _, created = call(
        api_app, "POST", "/api/actions", client["token"],
        {"task_type": "ops-hotl", "tool": "flush_cache", "params": {"service": "db"}},
    )  # fmt: skip
    assert created["state"] == "scheduled"
    action_id = created["action_id"]
    status, refused = call(api_app, "POST", f"/api/actions/{action_id}/claim", client["token"])
    assert status == 409 and "veto window" in refused["error"]
    api_app.clock.advance(31)
    api_app.settle()  # the executor must leave it alone
    status, seen = call(api_app, "GET", f"/api/actions/{action_id}", client["token"])
    assert seen["state"] == "scheduled"
    assert call(api_app, "POST", f"/api/actions/{action_id}/claim", client["token"])[0] == 200


def test_fifty_concurrent_claims_exactly_one_wins(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    _, created = call(
        api_app, "POST", "/api/actions", client["token"],
        {"task_type": "ops-hotl", "tool": "flush_cache", "params": {"service": "db"}},
    )  # fmt: skip
    api_app.clock.advance(31)
    path = f"/api/actions/{created['action_id']}/claim"
    with ThreadPoolExecutor(25) as pool:
        statuses = list(pool.map(lambda _: call(api_app, "POST", path, client["token"])[0], range(50)))
    assert sorted(statuses).count(200) == 1
    assert statuses.count(409) == 49


def test_clients_see_only_their_actions_and_task_types(api_app: SlackApp) -> None:
    mine, other = new_client(api_app, "mine", ["ops"]), new_client(api_app, "other", ["ops"])
    body = {"task_type": "ops", "tool": "restart_service", "params": {"service": "db"}}
    _, created = call(api_app, "POST", "/api/actions", mine["token"], body)
    path = f"/api/actions/{created['action_id']}"
    assert call(api_app, "GET", path, other["token"])[0] == 404
    assert call(api_app, "POST", path + "/claim", other["token"])[0] == 404
    assert call(api_app, "POST", path + "/result", other["token"], {"status": "succeeded"})[0] == 404
    assert call(api_app, "POST", "/api/actions", mine["token"], {**body, "task_type": "ops-hotl"})[0] == 403
    assert call(api_app, "GET", path, "wrong")[0] == 401
    # COUNTERSIGN_API_TOKEN is a client of every task type
    assert call(api_app, "POST", "/api/actions", API_TOKEN, {**body, "task_type": "ops-hotl"})[0] == 201


def test_bad_bodies_name_the_field(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    token = client["token"]
    status, answer = call(api_app, "POST", "/api/actions", token, {"task_type": "nope", "tool": "x", "params": {}})
    assert status == 422 and "task_type" in answer["problems"]
    status, answer = call(
        api_app, "POST", "/api/actions", token, {"task_type": "ops", "tool": "issue_refund", "params": {}}
    )
    assert status == 422 and "tool" in answer["problems"]
    status, answer = call(
        api_app, "POST", "/api/actions", token,
        {"task_type": "ops", "tool": "restart_service", "params": {"svc": 1}, "confidence": 2, "bogus": 1},
    )  # fmt: skip
    assert status == 422
    assert {"params.service", "params.svc", "confidence", "bogus"} <= set(answer["problems"])
    status, answer = call(
        api_app, "POST", "/api/actions", token,
        {"task_type": "ops", "tool": "restart_service", "params": {"service": "a"}, "callback_url": "http://10.0.0.1/x"},
    )  # fmt: skip
    assert status == 422 and "callback_url" in answer["problems"]
    _, created = call(
        api_app,
        "POST",
        "/api/actions",
        token,
        {"task_type": "ops", "tool": "restart_service", "params": {"service": "a"}},
    )
    assert call(api_app, "GET", f"/api/actions/{created['action_id']}?wait=61", token)[0] == 422
    assert call(api_app, "GET", f"/api/actions/{created['action_id']}?wait=x", token)[0] == 422
    status, answer = call(api_app, "POST", f"/api/actions/{created['action_id']}/result", token, {"status": "done"})
    assert status == 422 and "status" in answer["problems"]
    # No such action: that is the answer, whatever the body (found by the fuzz scenario).
    assert call(api_app, "POST", "/api/actions/act_doesnotexist00/result", token, {})[0] == 404


def test_more_long_polls_than_threads_wait_parked_and_all_see_the_decision(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    body = {"task_type": "ops", "tool": "restart_service", "params": {"service": "db"}}
    ids = [call(api_app, "POST", "/api/actions", client["token"], body)[1]["action_id"] for _ in range(40)]
    waiters = api_app.process.server.waiters
    with ThreadPoolExecutor(len(ids)) as pool:
        polls = [pool.submit(call, api_app, "GET", f"/api/actions/{i}?wait=30", client["token"]) for i in ids]
        while waiters.parked() < len(ids):  # more than the server's 32 threads, none taken
            assert not any(poll.done() for poll in polls)
            threading.Event().wait(0.01)
        assert call(api_app, "GET", f"/api/actions/{ids[0]}", client["token"])[1]["state"] == "pending"
        hashes = {action.public_id: action.params_hash for action in api_app.actions()}
        with api_app.services.sessions.begin() as session:
            for public_id in ids:
                api_app.services.decisions.approve(session, public_id, ALICE, hashes[public_id])
        answers = [poll.result(timeout=30) for poll in polls]
    assert {(status, answer["state"]) for status, answer in answers} == {(200, "approved")}
    assert waiters.parked() == 0


def test_a_claim_whose_lease_runs_out_without_a_result_becomes_unknown(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    body = {"task_type": "ops-hotl", "tool": "flush_cache", "params": {"service": "db"}}
    _, created = call(api_app, "POST", "/api/actions", client["token"], body)
    api_app.clock.advance(31)
    path = f"/api/actions/{created['action_id']}"
    assert call(api_app, "POST", path + "/claim", client["token"])[0] == 200
    api_app.clock.advance(11 * 60)  # api.claim_lease: 10m
    api_app.settle()
    _, seen = call(api_app, "GET", path, client["token"])
    assert seen["state"] == "unknown" and "not re-run" in seen["reason"]
    assert call(api_app, "POST", path + "/result", client["token"], {"status": "succeeded"})[0] == 409


def test_a_decision_made_by_another_process_reaches_the_parked_long_poll(api_app: SlackApp, db_url: str) -> None:
    client = new_client(api_app, "ops-bot")
    body = {"task_type": "ops", "tool": "restart_service", "params": {"service": "db"}}
    _, created = call(api_app, "POST", "/api/actions", client["token"], body)
    waiters = api_app.process.server.waiters
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(call, api_app, "GET", f"/api/actions/{created['action_id']}?wait=30", client["token"])
        while waiters.parked() < 1:
            threading.Event().wait(0.01)
        # Another process's commit: nothing in this process is told, only the poller's query sees it.
        other = make_engine(db_url)
        try:
            with other.begin() as connection:
                connection.execute(
                    text("UPDATE actions SET state = 'approved', decided_by = :who WHERE public_id = :id"),
                    {"who": BOB, "id": created["action_id"]},
                )
        finally:
            other.dispose()
        status, seen = poll.result(timeout=10)
    assert (status, seen["state"], seen["decided_by"]) == (200, "approved", BOB)


def test_webhooks_are_retried_until_2xx_in_order_with_the_same_delivery_id(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    receiver = Receiver(client["webhook_secret"])
    failures = {"left": 2}
    accept = receiver.server.RequestHandlerClass.do_POST

    def flaky(handler: BaseHTTPRequestHandler) -> None:
        if failures["left"]:
            failures["left"] -= 1
            handler.rfile.read(int(handler.headers["Content-Length"]))
            receiver.bad.append(handler.headers["X-Countersign-Delivery"])
            handler.send_response(503)
            handler.end_headers()
            return
        accept(handler)

    receiver.server.RequestHandlerClass.do_POST = flaky  # type: ignore[method-assign]
    body = {
        "task_type": "ops-hotl",
        "tool": "flush_cache",
        "params": {"service": "db"},
        "callback_url": receiver.url,
    }
    _, created = call(api_app, "POST", "/api/actions", client["token"], body)
    api_app.settle()
    assert receiver.got == [] and len(receiver.bad) == 1
    api_app.clock.advance(1.5)
    api_app.settle()
    api_app.clock.advance(3)
    api_app.settle()
    assert len(set(receiver.bad)) == 1  # the same delivery, twice refused
    assert [payload["state"] for _, payload in receiver.got] == ["scheduled"]
    assert receiver.got[0][0] == receiver.bad[0]
    api_app.clock.advance(31)
    call(api_app, "POST", f"/api/actions/{created['action_id']}/claim", client["token"])
    call(
        api_app,
        "POST",
        f"/api/actions/{created['action_id']}/result",
        client["token"],
        {"status": "failed", "error": "boom"},
    )
    api_app.settle()
    assert receiver.states() == ["scheduled", "executing", "failed"]
    assert receiver.got[-1][1]["reason"] == "boom"


def test_the_same_external_id_at_once_makes_one_action(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    body = {"task_type": "ops", "tool": "restart_service", "params": {"service": "db"}, "external_id": "same"}
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: call(api_app, "POST", "/api/actions", client["token"], body), range(10)))
    assert sorted(status for status, _ in answers) == [200] * 9 + [201]
    assert len({answer["action_id"] for _, answer in answers}) == 1
    assert call(api_app, "POST", "/api/actions", client["token"], {**body, "confidence": None})[0] == 200


def test_an_unknown_api_action_run_again_goes_back_to_its_client_to_claim(api_app: SlackApp) -> None:
    client = new_client(api_app, "ops-bot")
    body = {"task_type": "ops-hotl", "tool": "flush_cache", "params": {"service": "db"}}
    _, created = call(api_app, "POST", "/api/actions", client["token"], body)
    api_app.clock.advance(31)
    path = f"/api/actions/{created['action_id']}"
    assert call(api_app, "POST", path + "/claim", client["token"])[0] == 200
    api_app.clock.advance(11 * 60)
    api_app.settle()
    [action] = [a for a in api_app.actions() if a.public_id == created["action_id"]]
    assert action.state == "unknown"
    card = api_app.card(action)
    note = "It never flushed."
    answer = resolve_on_card(api_app, ALICE, action, card, "resolve_not_run", note=note, then="run_again")
    assert (answer.status, answer.body) == (200, "")
    _, seen = call(api_app, "GET", path, client["token"])
    assert seen["state"] == "approved"  # its client claims it again; the executor never runs it
    assert call(api_app, "POST", path + "/claim", client["token"])[0] == 200
    assert call(api_app, "POST", path + "/result", client["token"], {"status": "succeeded"})[0] == 200
    assert call(api_app, "GET", path, client["token"])[1]["state"] == "succeeded"
