"""A request without a task type: the router model places it, or the requester is asked."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from agent.tasks import TaskError, TaskNotFound, choose_task_type, submit_task
from approvals.usage import Routed, daily_routing
from bot.cli import main
from core.config import Config
from tests.agent.harness import REQUESTER, Stack, build_stack, make_config
from tests.fakes.anthropic_server import FakeAnthropic


def _two_types() -> Config:
    base = make_config().model_dump(mode="json")
    base["task_types"]["refund"]["description"] = "Refund a customer order"
    base["task_types"]["lookup"] = {
        "description": "Look up an order's status",
        "tools": ["lookup_order"],
        "autonomy": "auto",
    }
    return Config.model_validate(base)


@pytest.fixture
def router_stack(sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic) -> Stack:
    return build_stack(sessions, fake_anthropic, _two_types())


def _submit_untyped(stack: Stack, text: str) -> str:
    with stack.sessions.begin() as session:
        return submit_task(session, stack.config, None, text, now=stack.clock.now(), requester=REQUESTER).public_id


def test_the_router_places_a_request_and_the_task_runs_as_that_type(router_stack: Stack) -> None:
    stack = router_stack
    stack.fake.reply_tool_use("choose_task_type", {"task_type": "lookup", "confidence": 0.92})
    stack.fake.reply_text("Order 1234 was delivered.")
    task_id = _submit_untyped(stack, "Where is order 1234?")
    stack.drive()
    task = stack.task(task_id)
    assert (task.task_type, task.state, task.final_text) == ("lookup", "succeeded", "Order 1234 was delivered.")
    routing, drafting = stack.fake.requests
    assert routing.body["model"] == "claude-haiku-4-5"
    assert routing.tools[0]["input_schema"]["properties"]["task_type"]["enum"] == ["lookup", "refund", "unsure"]
    assert "Look up an order's status" in routing.system_text
    assert routing.system[-1]["cache_control"] == {"type": "ephemeral"}  # the same for every request
    assert routing.messages[0]["content"] == "Where is order 1234?"  # the request itself is not marked
    assert drafting.body["model"] == "claude-sonnet-4-6"
    assert task.steps == 2  # the router's call counts toward the task's usage


@pytest.mark.parametrize(
    "answer",
    [
        {"task_type": "unsure", "confidence": 0.9},
        {"task_type": "refund", "confidence": 0.3},
        {"task_type": "delete_everything", "confidence": 1.0},
        {"task_type": "refund", "confidence": 10**400},  # no float holds it: counts as 0, not a crash
    ],
    ids=["unsure", "low", "unknown type", "confidence 1e400"],
)
def test_when_the_router_is_unsure_the_requester_chooses(router_stack: Stack, answer: dict[str, object]) -> None:
    stack = router_stack
    stack.fake.reply_tool_use("choose_task_type", answer)
    task_id = _submit_untyped(stack, "hmm, something about my order")
    stack.drive()
    task = stack.task(task_id)
    assert (task.state, task.task_type) == ("paused", "")
    [question] = stack.outbox("task.choose_type")
    assert question.payload["candidates"] == ["lookup", "refund"]
    assert question.payload["requester"] == REQUESTER

    with pytest.raises(TaskError, match="only the requester"), stack.sessions.begin() as session:
        choose_task_type(session, stack.config, task_id, "lookup", "U0STRANGER", stack.clock.now())
    with stack.sessions.begin() as session:
        choose_task_type(session, stack.config, task_id, "lookup", REQUESTER, stack.clock.now())
    stack.fake.reply_text("Done.")
    stack.drive()
    assert stack.task(task_id).state == "succeeded"


def test_the_type_of_a_task_is_chosen_only_from_its_own_workspace(router_stack: Stack) -> None:
    stack = router_stack
    stack.fake.reply_tool_use("choose_task_type", {"task_type": "unsure", "confidence": 0.9})
    with stack.sessions.begin() as session:
        task_id = submit_task(
            session, stack.config, None, "about my order", now=stack.clock.now(), requester=REQUESTER, team_id="T0A"
        ).public_id
    stack.drive()
    with pytest.raises(TaskNotFound, match="in your workspace"), stack.sessions.begin() as session:
        choose_task_type(session, stack.config, task_id, "lookup", REQUESTER, stack.clock.now(), team_id="T0B")
    assert (stack.task(task_id).state, stack.task(task_id).task_type) == ("paused", "")
    with stack.sessions.begin() as session:
        choose_task_type(session, stack.config, task_id, "lookup", REQUESTER, stack.clock.now(), team_id="T0A")
    assert stack.task(task_id).task_type == "lookup"


def test_usage_reports_per_type_how_often_the_routers_choice_was_kept(router_stack: Stack, db_url: str) -> None:
    stack = router_stack
    for order in ("1", "2"):
        stack.fake.reply_tool_use("choose_task_type", {"task_type": "lookup", "confidence": 0.9})
        stack.fake.reply_text(f"Order {order} was delivered.")
        _submit_untyped(stack, f"Where is order {order}?")
        stack.drive()
    stack.fake.reply_tool_use("choose_task_type", {"task_type": "unsure", "confidence": 0.9})
    asked = _submit_untyped(stack, "something about my order")
    stack.drive()
    with stack.sessions.begin() as session:
        choose_task_type(session, stack.config, asked, "refund", REQUESTER, stack.clock.now())
    stack.fake.reply_text("Nothing to refund.")
    stack.drive()
    stack.fake.reply_tool_use("choose_task_type", {"task_type": "refund", "confidence": 0.2})
    _submit_untyped(stack, "hmm")
    stack.drive()

    day = stack.clock.now().date()
    with stack.sessions() as session:
        routing = daily_routing(session, day)
    assert routing.per_type == {"lookup": Routed(kept=2), "refund": Routed(asked=1)}
    assert (routing.waiting, routing.usage.calls) == (1, 4)
    assert routing.usage.cost_usd > 0

    printed = CliRunner().invoke(main, ["usage", "--day", day.isoformat()], env={"DATABASE_URL": db_url})
    assert printed.exit_code == 0, printed.output
    assert "router (requests without a type): 4 calls" in printed.output
    assert re.search(r"lookup\s+kept\s+2\s+changed\s+0\s+chosen by the requester\s+0", printed.output)
    assert re.search(r"refund\s+kept\s+0\s+changed\s+0\s+chosen by the requester\s+1", printed.output)
    assert "1 unsure, the requester not answered yet" in printed.output
