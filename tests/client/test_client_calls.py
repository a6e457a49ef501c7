"""The client's calls against the served app: each refusal is the error of its status with
the server's own words, one claim in fifty wins, a wait that runs out says so."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from countersign_client import (
    Action,
    AsyncCountersign,
    Conflict,
    Countersign,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    Unreachable,
    WaitTimedOut,
)

from tests.bot.slack_app import API_TOKEN, SlackApp
from tests.client.served import api_serving, new_client


@pytest.fixture
def api_app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url) as app:
        yield app


@pytest.fixture
def client(api_app: SlackApp) -> Iterator[Countersign]:
    made = new_client(api_app, "deployer", ["ops", "cache"])
    with Countersign(api_app.url, made["token"]) as countersign:
        yield countersign


def test_a_request_answers_the_action_and_the_same_external_id_answers_it_again(client: Countersign) -> None:
    action = client.request("ops", "restart_service", {"service": "api"}, rationale="leak", external_id="inc-1")
    assert action.state == "pending" and action.action_id.startswith("act_")
    assert action.params_hash and action.url == f"/api/actions/{action.action_id}"
    again = client.request("ops", "restart_service", {"service": "api"}, external_id="inc-1")
    assert again == action
    got = client.get(action.action_id)
    assert (got.state, got.params, got.runnable, got.decided) == ("pending", {"service": "api"}, False, False)


def test_a_wrong_token_is_unauthorized(api_app: SlackApp) -> None:
    with Countersign(api_app.url, "cs_not-a-token") as stranger, pytest.raises(Unauthorized) as raised:
        stranger.request("ops", "restart_service", {"service": "api"})
    assert raised.value.status == 401
    assert raised.value.error == "missing, wrong or revoked bearer token"


def test_a_task_type_the_client_was_not_given_is_forbidden(api_app: SlackApp) -> None:
    made = new_client(api_app, "narrow", ["cache"])
    with Countersign(api_app.url, made["token"]) as narrow, pytest.raises(Forbidden, match="'ops'"):
        narrow.request("ops", "restart_service", {"service": "api"})


def test_invalid_requests_name_each_problem(client: Countersign) -> None:
    with pytest.raises(Invalid) as raised:
        client.request("ops", "restart_service", {"svc": "api"}, confidence=2)
    assert raised.value.status == 422
    assert {"params.service", "params.svc", "confidence"} <= set(raised.value.problems)
    assert "params.service" in str(raised.value)
    with pytest.raises(Invalid) as unknown:
        client.request("nope", "restart_service", {})
    assert "unknown task type 'nope'" in unknown.value.problems["task_type"]
    with pytest.raises(Invalid, match="callback_url"):
        client.request("ops", "restart_service", {"service": "a"}, callback_url="http://169.254.169.254/latest")


def test_another_clients_action_is_not_found(api_app: SlackApp, client: Countersign) -> None:
    action = client.request("ops", "restart_service", {"service": "api"})
    other = new_client(api_app, "other", ["ops"])
    with Countersign(api_app.url, other["token"]) as intruder:
        for attempt in (intruder.get, intruder.claim, lambda a: intruder.report(a, "succeeded")):
            with pytest.raises(NotFound) as raised:
                attempt(action)
            assert raised.value.error == f"no action {action.action_id}"
    with pytest.raises(NotFound):
        client.get("act_doesnotexist")


def test_claiming_or_reporting_what_is_not_runnable_is_a_conflict(client: Countersign) -> None:
    action = client.request("ops", "restart_service", {"service": "api"})
    with pytest.raises(Conflict, match="pending: it waits for approval"):
        client.claim(action)
    with pytest.raises(Conflict, match="not executing under your claim"):
        client.report(action, "succeeded", result={"ok": True})


def test_fifty_concurrent_claims_one_wins(api_app: SlackApp, client: Countersign) -> None:
    action = client.request("cache", "flush_cache", {"service": "web"})
    assert (action.state, client.get(action).runnable) == ("scheduled", False)
    api_app.clock.advance(31)
    assert client.get(action).runnable

    def claim(_: int) -> str:
        try:
            return client.claim(action).state
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(25) as pool:
        outcomes = list(pool.map(claim, range(50)))
    assert sorted(outcomes) == ["conflict"] * 49 + ["executing"]
    done = client.report(action, "succeeded", result={"flushed": 3})
    assert done.state == "succeeded"


def test_a_wait_that_runs_out_raises_with_the_last_state(client: Countersign) -> None:
    action = client.request("ops", "restart_service", {"service": "api"})
    with pytest.raises(WaitTimedOut) as raised:
        client.wait(action, timeout=0.5)
    assert raised.value.action.state == "pending"
    decided = Action(action.action_id, "rejected")
    assert client.wait(decided, timeout=0) is decided  # nothing to wait for


def test_bad_waits_and_results_are_refused_before_sending(client: Countersign) -> None:
    with pytest.raises(ValueError, match=r"wait_s must be 1\.\.60"):
        client.get("act_x", wait_s=61)
    with pytest.raises(ValueError, match="timeout must be at least 0"):
        client.wait("act_x", timeout=-1)
    with pytest.raises(ValueError, match="status must be 'succeeded' or 'failed'"):
        client.report("act_x", "done")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot send as JSON"):
        client.request("ops", "restart_service", {"service": object()})


def test_a_server_that_is_not_there_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with Countersign(f"http://127.0.0.1:{port}", "t", timeout_s=2) as client, pytest.raises(Unreachable):
            client.get("act_x")


def test_the_env_token_is_a_client_of_every_task_type(api_app: SlackApp) -> None:
    with Countersign(api_app.url, API_TOKEN) as client:
        assert client.request("cache", "flush_cache", {"service": "web"}).state == "scheduled"


def test_the_async_client_makes_the_same_calls(api_app: SlackApp) -> None:
    made = new_client(api_app, "deployer", ["ops", "cache"])

    async def calls() -> tuple[Action, Action, str]:
        async with AsyncCountersign(api_app.url, made["token"]) as client:
            action = await client.request("cache", "flush_cache", {"service": "web"}, external_id="x-1")
            api_app.clock.advance(31)
            runnable = await client.wait(action, timeout=10)
            claimed = await client.claim(runnable)
            try:
                await client.claim(runnable)
            except Conflict as exc:
                refused = exc.error
            await client.report(claimed, "failed", error="disk full")
            return runnable, await client.get(action), refused

    runnable, ended, refused = asyncio.run(calls())
    assert runnable.runnable and runnable.state == "scheduled" and runnable.run_at is not None
    assert (ended.state, ended.reason) == ("failed", "disk full")
    assert "already claimed" in refused
