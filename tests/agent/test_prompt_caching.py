"""Prompt caching end to end: the real `anthropic` SDK against the fake Messages API, which
accounts cache reads and writes as the API does (`tests.fakes.anthropic_server.PromptCache`).

A task's later steps read everything the step before sent; the breakpoints sit on the stable
prefix (last tool, system prompt, the previous step's end, this request's end); cache reads
and writes are priced at their own rates in the trace, `usage`, the task's cost and /metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.caching import MAX_BREAKPOINTS
from agent.model import Usage
from agent.pricing import Price, cost_usd
from approvals.usage import Usage as Used
from bot.cli import main
from core.config import Config
from core.models import TraceEvent
from tests.agent.harness import Stack, build_stack, make_config
from tests.fakes.anthropic_server import FakeAnthropic, prompt_blocks
from tests.fakes.clock import FrozenClock

MODEL = "claude-sonnet-4-6"
SONNET = Price(3.0, 15.0)  # list price; cache reads 10% of input, 5-minute writes 125%
STEPS = 5


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def fake(clock: FrozenClock) -> Iterator[FakeAnthropic]:
    # The fake's cache lives on the test's clock: moving it past 5 minutes expires the cache.
    with FakeAnthropic(clock=lambda: clock.now().timestamp()) as server:
        yield server


def _stack(sessions: sessionmaker[Session], fake: FakeAnthropic, clock: FrozenClock, **refund: Any) -> Stack:
    return build_stack(sessions, fake, make_config(**refund), clock)


def _five_steps(stack: Stack) -> str:
    """A task of four autonomous lookups and a final answer: five model calls."""
    for number in range(1, STEPS):
        stack.fake.reply_tool_use(
            "lookup_order", {"order_id": f"A{number}", "rationale": "check it", "confidence": 0.95}
        )
    stack.fake.reply_text("All four orders were delivered.")
    task_id = stack.submit("Check orders A1 to A4")
    stack.drive()
    task = stack.task(task_id)
    assert (task.state, task.steps) == ("succeeded", STEPS)
    return task_id


def _calls(stack: Stack, task_id: str) -> list[TraceEvent]:
    task = stack.task(task_id)
    with stack.sessions() as session:
        query = select(TraceEvent).where(TraceEvent.task_id == task.id, TraceEvent.kind == "model_call")
        return list(session.scalars(query.order_by(TraceEvent.id)))


def _tokens(direction: str) -> float:
    labels = {"task_type": "refund", "model": MODEL, "direction": direction}
    return REGISTRY.get_sample_value("countersign_model_tokens_total", labels) or 0.0


def test_a_five_step_task_reads_the_cached_prefix_in_every_later_call(
    sessions: sessionmaker[Session], fake: FakeAnthropic, clock: FrozenClock
) -> None:
    stack = _stack(sessions, fake, clock, autonomy="auto")
    before = {direction: _tokens(direction) for direction in ("input", "cache_read", "cache_write", "output")}
    task_id = _five_steps(stack)

    calls = _calls(stack, task_id)
    assert len(calls) == STEPS
    first, later = calls[0], calls[1:]
    assert first.cache_read_tokens == 0 and first.cache_creation_tokens > 0  # the first call writes it all
    for previous, call in zip(calls, later, strict=False):
        # Everything the previous call sent is read; only its reply and the new tool result are written.
        assert call.cache_read_tokens == previous.cache_read_tokens + previous.cache_creation_tokens
        assert call.cache_creation_tokens > 0
    assert all(call.input_tokens == 0 for call in calls)  # nothing after the last breakpoint

    # Each call is priced at the rates of its own token kinds, and the task's cost is their sum.
    for call in calls:
        expected = (
            call.input_tokens * 3.0
            + call.cache_read_tokens * 0.3
            + call.cache_creation_tokens * 3.75
            + call.output_tokens * 15.0
        ) / 1_000_000
        assert call.cost_usd == pytest.approx(expected)
    task = stack.task(task_id)
    assert task.cost_usd == pytest.approx(sum(call.cost_usd for call in calls))
    prompt = sum(call.input_tokens + call.cache_read_tokens + call.cache_creation_tokens for call in calls)
    assert task.input_tokens == prompt  # budgets count cached prompt tokens too
    uncached = cost_usd(MODEL, Usage(prompt, sum(call.output_tokens for call in calls)), {MODEL: SONNET})
    assert task.cost_usd < uncached

    # /metrics: the four kinds of tokens, each counted once.
    grown = {direction: _tokens(direction) - before[direction] for direction in before}
    assert grown == {
        "input": 0,
        "cache_read": sum(call.cache_read_tokens for call in calls),
        "cache_write": sum(call.cache_creation_tokens for call in calls),
        "output": sum(call.output_tokens for call in calls),
    }


def test_trace_and_usage_show_cache_reads_writes_and_the_hit_share(
    sessions: sessionmaker[Session], db_url: str, fake: FakeAnthropic, clock: FrozenClock
) -> None:
    stack = _stack(sessions, fake, clock, autonomy="auto")
    task_id = _five_steps(stack)
    calls = _calls(stack, task_id)
    used = Used(
        calls=len(calls),
        input_tokens=sum(call.input_tokens for call in calls),
        output_tokens=sum(call.output_tokens for call in calls),
        cache_read_tokens=sum(call.cache_read_tokens for call in calls),
        cache_write_tokens=sum(call.cache_creation_tokens for call in calls),
        cost_usd=sum(call.cost_usd for call in calls),
    )
    assert 0.5 < used.cache_hit_share < 1

    env = {"DATABASE_URL": db_url}
    traced = CliRunner().invoke(main, ["trace", task_id], env=env)
    assert traced.exit_code == 0, traced.output
    lines = traced.output.splitlines()
    model_lines = [line for line in lines if " model_call " in line]
    assert len(model_lines) == STEPS
    for call, line in zip(calls, model_lines, strict=True):
        assert f"cache read {call.cache_read_tokens} / write {call.cache_creation_tokens}" in line
        assert f"${call.cost_usd:.4f}" in line
    assert lines[-1] == (
        f"total: {STEPS} model calls · in 0 · cache read {used.cache_read_tokens} / write "
        f"{used.cache_write_tokens} · out {used.output_tokens} tokens · cache hits {used.cache_hit_share:.0%} · "
        f"${used.cost_usd:.4f}"
    )

    usage = CliRunner().invoke(main, ["usage", "--day", clock.now().date().isoformat()], env=env)
    assert usage.exit_code == 0, usage.output
    [row] = [line for line in usage.output.splitlines() if line.startswith("refund") and MODEL in line]
    assert row.split() == [
        "refund",
        MODEL,
        str(STEPS),
        "calls",
        "0",
        "in",
        str(used.cache_read_tokens),
        "cache",
        "read",
        str(used.cache_write_tokens),
        "cache",
        "write",
        str(used.output_tokens),
        "out",
        f"${used.cost_usd:.4f}",
    ]
    shares = usage.output.split("per task type:\n", 1)[1].splitlines()
    assert shares[0].split() == [
        "refund",
        f"{used.cache_hit_share:.0%}",
        "of",
        str(used.prompt_tokens),
        "prompt",
        "tokens",
        f"${used.cost_usd:.4f}",
    ]


def test_the_breakpoints_stay_on_the_stable_prefix(
    sessions: sessionmaker[Session], fake: FakeAnthropic, clock: FrozenClock
) -> None:
    stack = _stack(sessions, fake, clock, autonomy="auto")
    task_id = _five_steps(stack)
    requests = fake.requests
    assert len(requests) == STEPS
    tools = len(requests[0].tools)
    assert tools == 2

    previous: list[Any] = []
    for number, request in enumerate(requests):
        blocks = prompt_blocks(request.body)
        marks = [index for index, block in enumerate(blocks) if block.marked]
        assert len(marks) <= MAX_BREAKPOINTS
        # The last tool, the system prompt (one block after the tools), the previous request's
        # last block (from the second step on) and this request's last block.
        expected = [tools - 1, tools] + ([len(previous) - 1] if previous else []) + [len(blocks) - 1]
        assert marks == expected, f"request {number + 1}: breakpoints at {marks}, expected {expected}"
        assert request.tools[-1]["cache_control"] == {"type": "ephemeral"}
        assert request.system[-1]["cache_control"] == {"type": "ephemeral"}
        # Byte for byte (marks aside), this request begins with everything the previous one sent.
        assert [block.key for block in blocks[: len(previous)]] == [block.key for block in previous]
        previous = blocks

    # The tools and instructions are sent alike in every step, and the stored conversation holds no mark.
    assert len({json.dumps([r.tools, r.system_text]) for r in requests}) == 1
    assert "cache_control" not in json.dumps(stack.task(task_id).messages)


def test_the_cache_lives_five_minutes_after_its_last_use(
    sessions: sessionmaker[Session], fake: FakeAnthropic, clock: FrozenClock
) -> None:
    stack = _stack(sessions, fake, clock)  # hitl: each lookup waits for a person
    for number in (1, 2):
        fake.reply_tool_use("lookup_order", {"order_id": f"A{number}", "rationale": "check", "confidence": 0.9})
    fake.reply_text("Both delivered.")
    task_id = stack.submit("Check orders A1 and A2")
    stack.drive()

    clock.advance(timedelta(minutes=4))  # within the lifetime: the next step reads
    stack.approve(stack.pending(task_id))
    stack.drive()
    clock.advance(timedelta(minutes=6))  # past it: the next step writes everything again
    stack.approve(stack.pending(task_id))
    stack.drive()

    first, second, third = _calls(stack, task_id)
    assert second.cache_read_tokens == first.cache_read_tokens + first.cache_creation_tokens
    assert third.cache_read_tokens == 0
    # The whole prompt (the second call's and what the turn added) is written again.
    assert third.cache_creation_tokens > second.cache_read_tokens + second.cache_creation_tokens
    assert third.input_tokens == 0
    assert stack.task(task_id).state == "succeeded"


def test_prompt_caching_off_sends_no_breakpoint(
    sessions: sessionmaker[Session], fake: FakeAnthropic, clock: FrozenClock
) -> None:
    base = make_config(autonomy="auto").model_dump(mode="json")
    base["model"]["prompt_caching"] = False
    stack = build_stack(sessions, fake, Config.model_validate(base), clock)
    task_id = _five_steps(stack)
    assert not any("cache_control" in json.dumps(request.body) for request in fake.requests)
    calls = _calls(stack, task_id)
    assert all(call.cache_read_tokens == call.cache_creation_tokens == 0 for call in calls)
    assert all(call.input_tokens > 0 for call in calls)


def test_configured_cache_prices_are_used(
    sessions: sessionmaker[Session], fake: FakeAnthropic, clock: FrozenClock
) -> None:
    base = make_config(autonomy="auto").model_dump(mode="json")
    base["model"]["prices"] = {MODEL: {"input": 2.0, "output": 10.0, "cache_read": 0.5, "cache_write": 4.0}}
    stack = build_stack(sessions, fake, Config.model_validate(base), clock)
    task_id = _five_steps(stack)
    for call in _calls(stack, task_id):
        expected = (call.cache_read_tokens * 0.5 + call.cache_creation_tokens * 4.0 + call.output_tokens * 10.0) / 1e6
        assert call.cost_usd == pytest.approx(expected)
