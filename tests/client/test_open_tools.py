"""Open tools (`open_tools` on a task type): `POST /api/actions` takes a tool the config does not
declare, checked by the schema its client sends (kept with the action, so an edit is checked by
it too), with the policy and read-only list of the config; refused clearly otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError

from agent.tasks import TaskError, submit_task
from approvals.errors import InvalidEdit
from core.config import Config
from tests.bot.slack_app import ALICE, APPROVALS, CONFIG, SlackApp
from tests.client.served import OPEN_CONFIG, api_serving, card, new_client

NOTE = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "body": {"type": "string", "maxLength": 50}},
    "required": ["title", "body"],
}


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url, OPEN_CONFIG) as served:
        yield served


def ask(app: SlackApp, token: str, **body: Any) -> httpx2.Response:
    request = {"task_type": "notes", "tool": "write_note", "params": {"title": "a", "body": "b"}, **body}
    return httpx2.post(f"{app.url}/api/actions", json=request, headers={"Authorization": f"Bearer {token}"})


def test_an_open_tool_with_its_schema_gets_a_card_and_keeps_the_schema(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    answer = ask(app, token, schema=NOTE)
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "pending"
    action, _, posted = card(app, answer.json()["action_id"])
    assert (action.tool, action.risk, action.params_schema) == ("write_note", "high", NOTE)
    assert "write_note" in str(posted.blocks)


def test_without_a_schema_any_object_of_params_is_taken(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    answer = ask(app, token, tool="Bash", params={"command": "ls"})
    assert answer.status_code == 201, answer.text
    [action] = app.actions()
    assert action.params_schema == {"type": "object"}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"params": {"title": "a"}, "schema": NOTE}, "params.body", "required"),
        ({"params": {"title": "a", "body": "x" * 51}, "schema": NOTE}, "params.body", "too long"),
        ({"schema": {"type": "array"}}, "schema", "type 'object'"),
        (
            {"schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}},
            "schema",
            "not a valid JSON Schema",
        ),
        (
            {"schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/none"}}}, "params": {"a": 1}},
            "params.(schema)",
            "$ref",
        ),
        ({"tool": "flush_cache"}, "tool", "declared tool"),
        ({"tool": "rm -rf"}, "tool", "open tool's name"),
        ({"task_type": "ops", "tool": "write_note"}, "tool", "not on task type"),
        (
            {"task_type": "ops", "tool": "restart_service", "params": {"service": "a"}, "schema": NOTE},
            "schema",
            "only for an open tool",
        ),
    ],
)
def test_refusals_name_the_problem(app: SlackApp, body: dict[str, Any], field: str, words: str) -> None:
    token = new_client(app, "laptop", ["notes", "ops"])["token"]
    answer = ask(app, token, **body)
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["problems"][field]
    assert app.actions() == []


def test_a_read_only_open_tool_is_approved_at_once_without_a_card(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    answer = ask(app, token, tool="read_note", params={"title": "a"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "approved"
    app.settle()
    [action] = app.actions()
    assert (action.mode, action.risk, action.idempotent) == ("auto", "low", True)
    assert '"approve"' not in json.dumps([m.blocks for m in app.slack.messages(APPROVALS)])  # no card


def test_an_override_sets_the_policy_but_not_past_the_task_types_level(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    answer = ask(app, token, tool="archive_note", params={"title": "a"})
    assert answer.json()["state"] == "pending"  # low risk, idempotent: still the type's hitl
    [action] = app.actions()
    assert (action.risk, action.idempotent) == ("low", True)


def test_an_edit_is_checked_by_the_actions_own_schema(app: SlackApp) -> None:
    token = new_client(app, "laptop", ["notes"])["token"]
    asked = ask(app, token, schema=NOTE).json()
    with app.services.sessions.begin() as session, pytest.raises(InvalidEdit, match="too long"):
        app.services.decisions.approve_with_edits(
            session, asked["action_id"], ALICE, asked["params_hash"], {"title": "a", "body": "y" * 60}
        )


def test_a_task_type_needs_tools_or_open_tools() -> None:
    config = {**CONFIG, "task_types": {"bare": {"autonomy": "auto"}}}
    with pytest.raises(ValidationError, match="open_tools"):
        Config.model_validate(config)


def test_no_agent_task_starts_on_a_task_type_of_open_tools_only(app: SlackApp) -> None:
    with app.services.sessions.begin() as session, pytest.raises(TaskError, match="only open tools"):
        submit_task(session, app.services.config, "coding", "tidy the repo", now=app.clock.now())
