"""`/humanlayer/v1` beyond the SDK's happy paths: each refusal is JSON naming the problem by its
place in the body (the SDK shows the body's text in its error); a veto window, a veto and an
expiry as the SDK reads them; an approved call handed over once, never left to lapse."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import Action, Question
from tests.bot.slack_app import ALICE, BOB, MALLORY, SlackApp
from tests.client.served import api_serving, click, new_client
from tests.client.test_humanlayer import CONFIG as HL_CONFIG
from tests.client.test_humanlayer import HANDED

CONFIG: dict[str, Any] = {
    **HL_CONFIG,
    "task_types": {
        **HL_CONFIG["task_types"],
        "flags": {
            "open_tools": {"risk": "low", "idempotent": True},
            "autonomy": "hotl",
            "veto_window": "30s",
            "approvers": [ALICE, BOB],
        },
    },
}


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url, CONFIG) as served:
        yield served


def call(
    app: SlackApp, method: str, path: str, token: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        f"{app.url}/humanlayer/v1{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def function_call(call_id: str = "call-1", **spec: Any) -> dict[str, Any]:
    """A FunctionCall as the SDK's `model_dump()` sends it: every field, unset ones null."""
    return {
        "run_id": "agent-x1",
        "call_id": call_id,
        "spec": {"fn": "send_payout", "kwargs": {"account": "acme"}, "channel": None, "reject_options": None,
                 "state": None, **spec},
        "status": None,
    }  # fmt: skip


def contact(call_id: str = "call-1", slack: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    channel = None
    if slack is not None:
        channel = {"slack": {"channel_or_user_id": None, "context_about_channel_or_user": None, "bot_token": None,
                             "allowed_responder_ids": None, "experimental_slack_blocks": None, "thread_ts": None,
                             **slack}, "sms": None, "whatsapp": None, "email": None}  # fmt: skip
    return {
        "run_id": "agent-x1",
        "call_id": call_id,
        "spec": {"msg": "Which region?", "subject": None, "channel": channel, "response_options": None,
                 "state": None, **spec},
        "status": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "place", "words"),
    [
        ({}, "run_id", "required"),
        ({**function_call(), "extra": 1}, "extra", "unknown field"),
        (function_call("a/b"), "call_id", "letters, digits"),
        ({**function_call(), "run_id": ""}, "run_id", "1 to 128"),
        (function_call(kwargs=[1]), "spec.kwargs", "JSON object"),
        (function_call(fn=None), "spec.fn", "function's name"),
        (function_call(fn="not a name!"), "spec.fn", "an open tool's name"),
        (function_call(kwargs={"note": "a\u0000b"}), "spec.kwargs.note", "NUL"),
        (function_call(priority="high"), "spec.priority", "unknown field"),
        (function_call(state={"task_type": 7}), "spec.state.task_type", "text"),
    ],
)
def test_a_function_call_problem_is_named_by_its_place(app: SlackApp, body: Any, place: str, words: str) -> None:
    token = new_client(app, "agent", ["payouts"])["token"]
    status, answer = call(app, "POST", "/function_calls", token, body)
    assert status == 422, answer
    assert words in answer["problems"][place] and place in answer["error"]
    assert app.actions() == []


@pytest.mark.parametrize(
    ("body", "place", "words"),
    [
        (contact(msg="   "), "spec.msg", "required"),
        (contact(slack={"bot_token": "xoxb-theirs"}), "spec.channel.slack.bot_token", "its own Slack app"),
        (contact(slack={"channel_or_user_id": "#general"}), "spec.channel.slack.channel_or_user_id", "Slack channel"),
        (contact(slack={"channel_or_user_id": MALLORY}), "spec.channel.slack.channel_or_user_id", "not an approver"),
        (contact(slack={"allowed_responder_ids": [ALICE, MALLORY]}), "spec.channel.slack.allowed_responder_ids",
         "not approvers of task type 'payouts', so they cannot answer: U0MALLORY"),
        (contact(slack={"thread_ts": "1700000000.000100"}), "spec.channel.slack.thread_ts", "channel_or_user_id"),
        (contact(response_options=[{"name": "a"}, {"name": "a"}]), "spec.response_options", "must differ"),
    ],
)  # fmt: skip
def test_a_contact_request_problem_is_named_by_its_place(app: SlackApp, body: Any, place: str, words: str) -> None:
    token = new_client(app, "agent", ["payouts"])["token"]
    status, answer = call(app, "POST", "/contact_requests", token, body)
    assert status == 422, answer
    assert words in answer["problems"][place]
    with app.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Question)) == 0


def test_email_and_sms_are_not_served(app: SlackApp) -> None:
    token = new_client(app, "agent", ["payouts"])["token"]
    body = contact()
    body["spec"]["channel"] = {"slack": None, "sms": None, "whatsapp": None, "email": {"address": "a@example.com"}}
    status, answer = call(app, "POST", "/contact_requests", token, body)
    assert status == 422 and "Slack only" in answer["problems"]["spec.channel.email"]


def test_routes_and_bodies_outside_the_api_are_refused_in_json(app: SlackApp) -> None:
    token = new_client(app, "agent", ["payouts"])["token"]
    other = new_client(app, "other", ["payouts"])["token"]
    assert call(app, "GET", "/function_calls", token)[0] == 405
    assert call(app, "POST", "/contact_requests/call-1", token, {})[0] == 405
    status, answer = call(app, "POST", "/agent/function_calls/call-1/respond", token, {})
    assert status == 404 and "no route" in answer["error"]
    assert call(app, "POST", "/function_calls", token, raw=b"{not json")[0] == 422
    assert call(app, "POST", "/function_calls", token, function_call("call-mine"))[0] == 201
    status, answer = call(app, "GET", "/function_calls/call-mine", other)  # another client's: not there
    assert status == 404 and "no function call 'call-mine'" in answer["error"]
    assert call(app, "GET", "/contact_requests/call-mine", token)[0] == 404
    assert call(app, "GET", "/function_calls/call-mine", "cs_wrong")[0] == 401


def test_a_task_type_not_the_clients_is_403(app: SlackApp) -> None:
    token = new_client(app, "agent", ["payouts"])["token"]
    status, answer = call(app, "POST", "/function_calls", token, function_call(state={"task_type": "flags"}))
    assert status == 403 and "'flags'" in answer["error"]


def test_a_veto_window_then_the_hand_over_which_never_lapses(app: SlackApp) -> None:
    token = new_client(app, "agent", ["flags"])["token"]
    status, answer = call(app, "POST", "/function_calls", token, function_call(fn="enable_flag"))
    assert status == 201 and answer["status"]["approved"] is None
    assert answer["spec"] == function_call(fn="enable_flag")["spec"] and answer["run_id"] == "agent-x1"
    app.clock.advance(timedelta(seconds=29))
    assert call(app, "GET", "/function_calls/call-1", token)[1]["status"]["approved"] is None
    app.clock.advance(timedelta(seconds=2))  # nobody vetoed: the next read hands it over
    status, answer = call(app, "GET", "/function_calls/call-1", token)
    assert (status, answer["status"]["approved"], answer["status"]["comment"]) == (200, True, None)
    [action] = app.actions()
    assert (action.state, action.result, action.lease_until) == ("succeeded", HANDED, None)
    app.clock.advance(timedelta(hours=2))  # far past any claim lease
    app.settle()
    assert app.actions()[0].state == "succeeded"
    assert call(app, "GET", "/function_calls/call-1", token)[1]["status"]["approved"] is True


def test_a_veto_without_a_reason_still_gives_the_sdk_a_comment(app: SlackApp) -> None:
    token = new_client(app, "agent", ["flags"])["token"]
    call(app, "POST", "/function_calls", token, function_call(fn="enable_flag"))
    [action] = app.actions()
    click(app, action.public_id, ALICE, "veto")
    app.settle()
    status = call(app, "GET", "/function_calls/call-1", token)[1]["status"]
    assert (status["approved"], status["comment"]) == (False, f"vetoed by {ALICE}, no reason given")


def test_an_expired_call_is_a_rejection_saying_so(app: SlackApp) -> None:
    token = new_client(app, "agent", ["payouts"])["token"]
    call(app, "POST", "/function_calls", token, function_call())
    app.clock.advance(timedelta(minutes=11))
    app.settle()
    status = call(app, "GET", "/function_calls/call-1", token)[1]["status"]
    assert status["approved"] is False and "expired" in status["comment"]
    with app.services.sessions() as session:
        assert session.scalar(select(Action.state)) == "expired"


def test_a_read_only_function_is_handed_over_at_once(app: SlackApp) -> None:
    token = new_client(app, "agent", ["payouts"])["token"]
    status, answer = call(app, "POST", "/function_calls", token, function_call(fn="get_balance"))
    assert (status, answer["status"]["approved"]) == (201, True)
    assert app.actions()[0].result == HANDED


def test_the_same_call_posted_at_once_by_many_threads_is_one_action(app: SlackApp) -> None:
    token = new_client(app, "agent", ["payouts"])["token"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: call(app, "POST", "/function_calls", token, function_call("call-twin")), range(8))
        )
    assert sorted(status for status, _ in answers).count(201) == 1
    assert {status for status, _ in answers} <= {200, 201}
    assert {answer["call_id"] for _, answer in answers} == {"call-twin"}
    assert len(app.actions()) == 1


def test_a_declared_external_tool_checks_the_kwargs_by_its_schema(app: SlackApp) -> None:
    token = new_client(app, "agent", ["ops"])["token"]
    status, answer = call(
        app, "POST", "/function_calls", token, function_call(fn="restart_service", kwargs={"service": 1})
    )
    assert status == 422 and "spec.kwargs.service" in answer["problems"], answer
    body = function_call(fn="restart_service", kwargs={"service": "api"})
    assert call(app, "POST", "/function_calls", token, body)[0] == 201
    [action] = app.actions()
    assert (action.tool, action.params, action.state, action.editable) == (
        "restart_service",
        {"service": "api"},
        "pending",
        False,
    )
