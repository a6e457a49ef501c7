"""`require_approval` end to end through the served app, sync and async: the call asks, a
person decides in Slack (signed clicks), and the function runs only with what they approved."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from countersign_client import AsyncCountersign, Countersign, Expired, Rejected, require_approval
from sqlalchemy import select

from core.models import AuditEvent, UnchainedAuditEvent
from tests.bot.slack_app import ALICE, BOB, SlackApp
from tests.client.served import (
    AsyncRecording,
    Calls,
    Receiver,
    Recording,
    api_serving,
    approve_with_edits,
    card,
    click,
    new_client,
    reject,
)


@pytest.fixture
def api_app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url) as app:
        yield app


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Caller:
    """Calls a decorated `tool` of `task_type` in a thread of its own (it blocks until decided),
    as a sync function with `Countersign` or a coroutine function with `AsyncCountersign`."""

    def __init__(self, app: SlackApp, token: str, flavour: str, pool: ThreadPoolExecutor, **options: Any) -> None:
        self.app, self.token, self.flavour, self.pool = app, token, flavour, pool
        self.options = {"timeout": 20, **options}  # a test that fails ends, it does not wait on
        self.calls = Calls()
        self.ran: list[dict[str, Any]] = []

    def body(self, service: str, region: str) -> dict[str, Any]:
        self.ran.append({"service": service, "region": region})
        if service == "broken":
            raise RuntimeError("disk full")
        return {"restarted": service, "region": region}

    def start(self, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.flavour == "sync":
            return self.pool.submit(self._sync, args, kwargs)
        return self.pool.submit(asyncio.run, self._async(args, kwargs))

    def _sync(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with Countersign(self.app.url, self.token, transport=Recording(self.calls)) as client:

            @require_approval(client, **self.options)
            def restart(service: str, region: str = "eu") -> dict[str, Any]:
                return self.body(service, region)

            return restart(*args, **kwargs)

    async def _async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async with AsyncCountersign(self.app.url, self.token, transport=AsyncRecording(self.calls)) as client:

            @require_approval(client, **self.options)
            async def restart(service: str, region: str = "eu") -> dict[str, Any]:
                await asyncio.sleep(0)
                return self.body(service, region)

            return await restart(*args, **kwargs)


def _action(app: SlackApp, action_id: str) -> Any:
    [action] = [a for a in app.actions() if a.public_id == action_id]
    return action


def _audit(app: SlackApp, action_id: str) -> list[Any]:
    with app.services.sessions() as session:
        events = [*session.scalars(select(AuditEvent)), *session.scalars(select(UnchainedAuditEvent))]
    return [e for e in events if e.action_public_id == action_id]


def _run(app: SlackApp, caller: Caller, decide: Callable[[str], None], *args: Any) -> tuple[str, Future[Any]]:
    running = caller.start(*args)
    action_id = caller.calls.asked()
    decide(action_id)
    return action_id, running


def test_approved_with_an_edit_the_function_runs_with_the_edited_params_and_reports(
    api_app: SlackApp, flavour: str
) -> None:
    made = new_client(api_app, "deployer", ["ops"])
    receiver = Receiver(made["webhook_secret"], now=lambda: api_app.clock.now().timestamp())
    options = {"task_type": "ops", "tool": "restart_service", "rationale": "leak", "callback_url": receiver.url}
    with ThreadPoolExecutor(1) as pool:
        caller = Caller(api_app, made["token"], flavour, pool, **options)
        action_id, running = _run(
            api_app, caller, lambda action_id: approve_with_edits(api_app, action_id, ALICE, {"region": "us"}), "api"
        )
        result = running.result(timeout=30)
    assert caller.ran == [{"service": "api", "region": "us"}]  # the approver's edit, not the call's "eu"
    assert result == {"restarted": "api", "region": "us"}
    assert [path.rsplit("/", 1)[-1] for path in caller.calls.paths()] == [
        "actions 201",
        f"{action_id} 200",
        "claim 200",
        "result 200",
    ]
    api_app.settle()  # the card's update and the webhooks go out
    action = _action(api_app, action_id)
    assert (action.state, action.params, action.result) == (
        "succeeded",
        {"service": "api", "region": "us"},
        {"restarted": "api", "region": "us"},
    )
    assert action.decided_by == ALICE
    text = json.dumps(api_app.card(action).blocks)
    assert f"Approved with edits by <@{ALICE}>" in text and "Succeeded" in text
    events = _audit(api_app, action_id)
    assert {e.actor for e in events if e.kind == "api.call"} == {"deployer"}
    assert [e.kind for e in events if e.kind in ("action.executing", "action.succeeded")] == [
        "action.executing",
        "action.succeeded",
    ]
    assert receiver.refused == []
    assert receiver.states() == ["pending", "approved", "executing", "succeeded"]  # each once, in order
    assert len({d.delivery_id for d in receiver.deliveries}) == 4
    assert receiver.deliveries[1].payload["params"] == {"service": "api", "region": "us"}
    receiver.close()


def test_rejected_with_a_reason_raises_rejected_and_runs_nothing(api_app: SlackApp, flavour: str) -> None:
    made = new_client(api_app, "deployer", ["ops"])
    with ThreadPoolExecutor(1) as pool:
        caller = Caller(api_app, made["token"], flavour, pool, task_type="ops", tool="restart_service")
        action_id, running = _run(
            api_app, caller, lambda action_id: reject(api_app, action_id, BOB, "Not during the sale."), "db"
        )
        with pytest.raises(Rejected) as raised:
            running.result(timeout=30)
    assert raised.value.reason == "Not during the sale."
    assert str(raised.value) == "Not during the sale."
    assert raised.value.action is not None and raised.value.action.state == "rejected"
    assert caller.ran == []
    assert not any("claim" in path for path in caller.calls.paths())
    assert _action(api_app, action_id).state == "rejected"


def test_a_veto_window_runs_the_function_once_it_passed(api_app: SlackApp, flavour: str) -> None:
    made = new_client(api_app, "cacher", ["cache"])
    with ThreadPoolExecutor(1) as pool:
        caller = Caller(api_app, made["token"], flavour, pool, task_type="cache", tool="flush_cache")
        running = caller.start("web")
        action_id = caller.calls.asked()
        asked = caller.calls.first(lambda c: c.path == "/api/actions" and c.status > 0)
        assert asked.body["state"] == "scheduled"
        caller.calls.first(lambda c: c.method == "GET")  # it waits (the long-poll is sent)...
        assert caller.ran == []
        api_app.clock.advance(31)  # ...until the window passes unvetoed
        assert running.result(timeout=30) == {"restarted": "web", "region": "eu"}
    assert caller.ran == [{"service": "web", "region": "eu"}]
    assert _action(api_app, action_id).state == "succeeded"


def test_a_veto_within_the_window_raises_rejected(api_app: SlackApp, flavour: str) -> None:
    made = new_client(api_app, "cacher", ["cache"])
    with ThreadPoolExecutor(1) as pool:
        caller = Caller(api_app, made["token"], flavour, pool, task_type="cache", tool="flush_cache")
        _, running = _run(api_app, caller, lambda action_id: click(api_app, action_id, BOB, "veto"), "web")
        with pytest.raises(Rejected) as raised:
            running.result(timeout=30)
    assert raised.value.action is not None and raised.value.action.state == "vetoed"
    assert caller.ran == []


def test_expiry_by_the_escalation_chain_raises_expired(api_app: SlackApp, flavour: str) -> None:
    made = new_client(api_app, "deployer", ["ops"])
    receiver = Receiver(made["webhook_secret"], now=lambda: api_app.clock.now().timestamp())

    def expire(action_id: str) -> None:
        card(api_app, action_id)  # posted, its escalation chain started
        api_app.clock.advance(11 * 60)
        api_app.settle()

    with ThreadPoolExecutor(1) as pool:
        options = {"task_type": "ops", "tool": "restart_service", "callback_url": receiver.url}
        caller = Caller(api_app, made["token"], flavour, pool, **options)
        _, running = _run(api_app, caller, expire, "db")
        with pytest.raises(Expired) as raised:
            running.result(timeout=30)
    assert raised.value.action is not None and raised.value.action.state == "expired"
    assert caller.ran == []
    assert receiver.states() == ["pending", "expired"]
    receiver.close()


def test_a_failing_function_is_reported_failed_and_its_exception_raised(api_app: SlackApp, flavour: str) -> None:
    made = new_client(api_app, "deployer", ["ops"])
    with ThreadPoolExecutor(1) as pool:
        caller = Caller(api_app, made["token"], flavour, pool, task_type="ops", tool="restart_service")
        action_id, running = _run(
            api_app, caller, lambda action_id: click(api_app, action_id, ALICE, "approve"), "broken"
        )
        with pytest.raises(RuntimeError, match="disk full"):
            running.result(timeout=30)
    action = _action(api_app, action_id)
    assert (action.state, action.error) == ("failed", "RuntimeError: disk full")
    assert caller.calls.seen[-1].path.endswith("/result") and caller.calls.seen[-1].status == 200


def test_the_decorator_needs_the_client_of_its_kind(api_app: SlackApp) -> None:
    async def coroutine_function() -> None: ...

    def plain_function() -> None: ...

    with Countersign(api_app.url, "t") as client, pytest.raises(TypeError, match="needs an AsyncCountersign"):
        require_approval(client, task_type="ops", tool="restart_service")(coroutine_function)  # type: ignore[arg-type]

    async def wrong() -> None:
        async with AsyncCountersign(api_app.url, "t") as client:
            require_approval(client, task_type="ops", tool="restart_service")(plain_function)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="needs a Countersign"):
        asyncio.run(wrong())
