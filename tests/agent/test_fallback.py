"""The fallback model, end to end: the real SDK against the fake Messages API answering 529 for
the primary model only (or for both), on the test's clock.

Past `model.fallback_after` of primary failures the next draft comes from the fallback; its
action waits for a person even on an `auto` type, its card and trace name the model, and it is
no graduation evidence. Once the primary answers a probe, the next step is drafted by it.
When both fail, the task stalls and its people are told, as without a fallback.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.traces import timeline
from approvals import autonomy
from bot.blocks.card import approval_card, card_text
from bot.presenter import card_view
from core.models import Action, Task
from tests.agent.harness import Stack, build_stack, make_config
from tests.bot.blocks.checks import assert_message_valid
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.clock import FrozenClock

PRIMARY, FALLBACK = "claude-sonnet-4-6", "claude-haiku-4-5"
MODEL = {
    "default": PRIMARY,
    "fallback": FALLBACK,
    "fallback_after": "2m",
    "fallback_probe": "30s",
    "outage_limit": "10m",
}


def _lookup(order_id: str = "1234") -> dict[str, Any]:
    return {"order_id": order_id, "rationale": "check the order", "confidence": 0.95}


@pytest.fixture
def auto_stack(sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic) -> Stack:
    return build_stack(sessions, fake_anthropic, make_config(model_section=MODEL, autonomy="auto"), FrozenClock())


def _models(fake: FakeAnthropic) -> list[str]:
    return [str(request.body.get("model")) for request in fake.requests]


def _until_drafted(stack: Stack, task_id: str, step: timedelta = timedelta(seconds=30)) -> None:
    for _ in range(40):
        stack.drive()
        if stack.actions(task_id):
            return
        stack.clock.advance(step)
    raise AssertionError("nothing was drafted")


def _card_text(stack: Stack, action: Action) -> str:
    with stack.sessions() as session:
        card = card_view(session, stack.config, stack.registry, action)
    blocks = approval_card(card)
    assert_message_valid(card_text(card), blocks)  # within Slack's limits, as every card
    return str(blocks)


def test_past_fallback_after_the_fallback_drafts_and_a_person_decides_even_on_an_auto_type(auto_stack: Stack) -> None:
    stack, fake = auto_stack, auto_stack.fake
    fake.unavailable(529, model=PRIMARY)
    fake.reply_tool_use("lookup_order", _lookup())
    task_id = stack.submit()
    started = stack.clock.now()

    stack.drive()  # the primary fails: no draft yet, and none from the fallback before 2m
    assert stack.actions(task_id) == [] and set(_models(fake)) == {PRIMARY}
    _until_drafted(stack, task_id)
    assert stack.clock.now() - started >= timedelta(minutes=2)

    [action] = stack.actions(task_id)
    assert (action.state, action.mode, action.model, action.fallback) == ("pending", "hitl", FALLBACK, True)
    assert _models(fake)[-2:] == [PRIMARY, FALLBACK]  # the primary was tried first, then the fallback
    card = _card_text(stack, action)
    assert f"Drafted by the fallback model `{FALLBACK}`" in card
    assert "A person decides because: drafted by the fallback model" in card
    with stack.sessions() as session:
        task = session.scalars(select(Task).where(Task.public_id == task_id)).one()
        calls = [entry for entry in timeline(session, task) if entry.kind == "model_call"]
    assert calls[-1].actor == FALLBACK and f"(fallback: {PRIMARY} failing)" in calls[-1].summary
    assert stack.task(task_id).state == "waiting"

    # Still failing and probed less than fallback_probe ago: the next step goes straight to the fallback.
    fake.reply_tool_use("lookup_order", _lookup("99"))
    stack.approve(action)
    asked = len(fake.requests)
    stack.drive()
    assert _models(fake)[asked:] == [FALLBACK]
    second = stack.pending(task_id)
    assert (second.model, second.fallback, second.mode) == (FALLBACK, True, "hitl")

    # The primary recovers: the next step (a probe, fallback_probe later) is drafted by it again.
    fake.restore(PRIMARY)
    fake.reply_tool_use("lookup_order", _lookup("7"))
    fake.reply_text("Orders 1234, 99 and 7 were delivered.")
    stack.clock.advance(timedelta(seconds=30))
    stack.approve(second)
    asked = len(fake.requests)
    stack.drive()
    assert _models(fake)[asked:] == [PRIMARY, PRIMARY]  # the auto lookup ran, then the final answer
    assert stack.task(task_id).state == "succeeded"
    third = stack.actions(task_id)[-1]
    assert (third.model, third.fallback, third.mode, third.state) == (PRIMARY, False, "auto", "succeeded")
    assert "fallback" not in _card_text(stack, third)


def test_fallback_drafts_are_no_graduation_evidence(auto_stack: Stack) -> None:
    stack, fake = auto_stack, auto_stack.fake
    fake.unavailable(529, model=PRIMARY)
    fake.reply_tool_use("lookup_order", _lookup())
    fake.reply_text("Order 1234 was delivered.")
    task_id = stack.submit()
    _until_drafted(stack, task_id)
    stack.clock.advance(timedelta(seconds=10))  # read before approving: a clean outcome
    stack.approve(stack.pending(task_id))
    stack.drive()
    assert stack.task(task_id).state == "succeeded"
    task_type = stack.config.task_types["refund"]
    with stack.sessions.begin() as session:
        state = autonomy.settle(session, "refund", task_type, stack.clock.now())
        [action] = session.scalars(select(Action)).all()
        assert action.outcome == "clean"  # labelled like any other, for the record
        assert autonomy.evidence(session, state, stack.clock.now()).samples == 0

    # The primary's own drafts still count.
    fake.restore()
    fake.reply_tool_use("lookup_order", _lookup("5"))
    fake.reply_text("Order 5 was delivered.")
    stack.clock.advance(timedelta(seconds=30))
    stack.submit("Please check order 5")
    stack.drive()
    with stack.sessions.begin() as session:
        state = autonomy.settle(session, "refund", task_type, stack.clock.now())
        assert autonomy.evidence(session, state, stack.clock.now()).outcomes == ("clean",)


def test_before_fallback_after_a_failing_primary_backs_off_as_without_a_fallback(auto_stack: Stack) -> None:
    fake = auto_stack.fake
    fake.unavailable(529, model=PRIMARY)
    task_id = auto_stack.submit()
    for _ in range(3):
        auto_stack.drive()
        auto_stack.clock.advance(timedelta(seconds=20))
    assert set(_models(fake)) == {PRIMARY}
    assert auto_stack.task(task_id).model_failures >= 2


def test_when_both_models_fail_the_task_stalls_and_its_people_are_told(auto_stack: Stack) -> None:
    stack, fake = auto_stack, auto_stack.fake
    fake.unavailable(529)
    task_id = stack.submit()
    for _ in range(30):
        stack.drive()
        stack.clock.advance(timedelta(seconds=30))
    task = stack.task(task_id)
    assert task.state == "stalled"
    [stalled] = stack.outbox("task.stalled")
    assert "model unavailable" in stalled.payload["reason"]
    assert {PRIMARY, FALLBACK} <= set(_models(fake))
    assert stack.actions(task_id) == []

    fake.restore()
    fake.reply_text("Back: nothing to refund.")
    stack.clock.advance(timedelta(minutes=5))  # past the longest backoff
    stack.drive()
    assert stack.task(task_id).state == "succeeded"
    assert len(stack.outbox("task.resumed")) == 1


def test_a_fallback_after_not_shorter_than_the_outage_limit_is_refused_with_its_key() -> None:
    with pytest.raises(ValueError, match=r"fallback_after.*must be shorter than outage_limit \(5m\)"):
        make_config(model_section={"fallback": FALLBACK, "fallback_after": "5m"})
    with pytest.raises(ValueError, match=r"fallback.*is the default model itself"):
        make_config(model_section={"default": PRIMARY, "fallback": PRIMARY})


def test_without_a_fallback_model_fallback_after_is_not_held_against_a_short_outage_limit() -> None:
    config = make_config(model_section={"outage_limit": "10s"})  # fallback_after keeps its 2m default
    assert config.model.fallback is None and config.model.outage_limit.total_seconds() == 10
    with pytest.raises(ValueError, match=r"fallback_after.*must be shorter than outage_limit \(10s\)"):
        make_config(model_section={"outage_limit": "10s"}, fallback=FALLBACK)  # a task type's own fallback
