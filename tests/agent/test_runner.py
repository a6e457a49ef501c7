"""The drafting loop end to end: real SDK → fake Messages API, real database, real gate."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from tests.agent.harness import ALICE, BOB, Stack, build_stack, make_config
from tests.approvals import shop_tools
from tests.fakes.anthropic_server import text_block


def _lookup(order_id: str = "1234", confidence: float = 0.95) -> dict[str, object]:
    return {"order_id": order_id, "rationale": "check the order exists", "confidence": confidence}


def _refund(amount: int = 500) -> dict[str, object]:
    return {"order_id": "1234", "amount_cents": amount, "rationale": "arrived broken", "confidence": 0.9}


def _runs(stack: Stack, task_id: str) -> int:
    return sum(shop_tools.CALLS[action.public_id] for action in stack.actions(task_id))


def test_a_multi_step_task_runs_through_two_approvals_to_the_final_answer(stack: Stack) -> None:
    fake = stack.fake
    lookup_id = fake.reply_tool_use("lookup_order", _lookup(), text="Let me check the order.")
    refund_id = fake.reply_tool_use("issue_refund", _refund())
    fake.reply_text("Refunded $5.00 on order 1234.")
    task_id = stack.submit()

    stack.drive()
    assert stack.task(task_id).state == "waiting"
    lookup = stack.pending(task_id)
    assert (lookup.tool, lookup.params, lookup.rationale, lookup.confidence) == (
        "lookup_order",
        {"order_id": "1234"},
        "check the order exists",
        0.95,
    )
    stack.approve(lookup)
    stack.drive()

    refund = stack.pending(task_id)
    assert refund.params == {"order_id": "1234", "amount_cents": 500}
    stack.approve(refund, BOB)
    stack.drive()

    task = stack.task(task_id)
    assert (task.state, task.final_text, task.steps) == ("succeeded", "Refunded $5.00 on order 1234.", 3)
    assert shop_tools.CALLS[refund.public_id] == 1
    assert [r.tool_use_id for r in stack.actions(task_id)] == [lookup_id, refund_id]
    assert len(stack.outbox("task.finished")) == 1

    first, second, third = fake.requests
    assert first.system_text.endswith("You handle refund requests for the shop.")
    [opening] = first.messages
    assert opening["content"][0]["text"] == "Please refund order 1234, it arrived broken"
    assert [tool["name"] for tool in first.tools] == ["lookup_order", "issue_refund"]
    for tool in first.tools:
        assert {"rationale", "confidence"} <= set(tool["input_schema"]["required"])
    result = second.messages[-1]["content"][0]
    assert result["tool_use_id"] == lookup_id
    assert result["is_error"] is False
    assert '"status": "delivered"' in result["content"]
    assert third.messages[-1]["content"][0]["tool_use_id"] == refund_id


def test_a_rejection_reason_reaches_the_model_word_for_word(stack: Stack) -> None:
    stack.fake.reply_tool_use("issue_refund", _refund(5000))
    stack.fake.reply_text("Understood, no refund.")
    task_id = stack.submit()
    stack.drive()
    stack.reject(stack.pending(task_id), "Order 1234 was refunded last week — do not refund twice.")
    stack.drive()
    result = stack.fake.requests[-1].messages[-1]["content"][0]
    assert result["is_error"] is True
    assert "Order 1234 was refunded last week — do not refund twice." in result["content"]
    assert stack.task(task_id).state == "succeeded"
    assert _runs(stack, task_id) == 0


def test_several_tool_uses_in_one_reply_are_decided_separately_and_answered_together(stack: Stack) -> None:
    ids = stack.fake.reply_blocks(
        [
            {"type": "tool_use", "name": "lookup_order", "input": _lookup("1")},
            {"type": "tool_use", "name": "lookup_order", "input": _lookup("2")},
        ]
    )
    stack.fake.reply_text("Both checked.")
    task_id = stack.submit()
    stack.drive()
    first, second = stack.actions(task_id)
    stack.approve(second)
    stack.drive()
    assert stack.task(task_id).state == "waiting"  # the first is still undecided
    stack.reject(first, "not needed")
    stack.drive()
    results = stack.fake.requests[-1].messages[-1]["content"]
    assert [r["tool_use_id"] for r in results] == ids
    assert [r["is_error"] for r in results] == [True, False]
    assert stack.task(task_id).state == "succeeded"


def test_an_out_of_scope_tool_or_invalid_params_go_back_to_the_model_and_never_run(stack: Stack) -> None:
    stack.fake.reply_tool_use("toggle_flag", {"flag": "x", "enabled": True, "rationale": "r", "confidence": 1})
    stack.fake.reply_tool_use(
        "issue_refund", {"order_id": "1234", "amount_cents": "lots", "rationale": "r", "confidence": 1}
    )
    stack.fake.reply_text("I could not do it.")
    task_id = stack.submit()
    stack.drive()
    assert [a.state for a in stack.actions(task_id)] == ["refused", "refused"]
    assert stack.outbox("action.card") == []
    second, third = stack.fake.requests[1:]
    assert "not allowed" in second.messages[-1]["content"][0]["content"]
    assert "amount_cents" in third.messages[-1]["content"][0]["content"]
    assert stack.task(task_id).state == "succeeded"
    assert _runs(stack, task_id) == 0


def test_refusals_piling_up_stop_the_task_and_escalate(stack: Stack) -> None:
    for _ in range(3):
        stack.fake.reply_tool_use("toggle_flag", {"flag": "x", "enabled": True, "rationale": "r", "confidence": 1})
    task_id = stack.submit()
    stack.drive()
    task = stack.task(task_id)
    assert task.state == "paused"
    assert task.paused_reason is not None and "3 refused calls" in task.paused_reason
    [escalation] = stack.outbox("task.paused")
    assert escalation.payload["kind"] == "loop"
    assert stack.fake.pending == 0


def test_the_same_draft_three_times_is_a_loop(stack: Stack) -> None:
    for _ in range(3):
        stack.fake.reply_tool_use("issue_refund", _refund())
    task_id = stack.submit()
    for _ in range(2):
        stack.drive()
        stack.reject(stack.pending(task_id), "no")
    stack.drive()
    task = stack.task(task_id)
    assert task.state == "paused"
    assert task.paused_reason is not None and "issue_refund drafted 3 times" in task.paused_reason
    assert len(stack.actions(task_id)) == 2  # the third draft never became an action
    assert len(stack.outbox("task.paused")) == 1


def test_budget_exhaustion_pauses_and_a_person_may_extend_once(sessions, fake_anthropic) -> None:
    from agent.tasks import TaskError, extend_budget

    stack = build_stack(sessions, fake_anthropic, make_config(budget={"max_steps": 1}))
    stack.fake.reply_tool_use("lookup_order", _lookup())
    stack.fake.reply_tool_use("lookup_order", _lookup("2"))
    task_id = stack.submit()
    stack.drive()
    stack.approve(stack.pending(task_id))
    stack.drive()
    task = stack.task(task_id)
    assert task.state == "paused"
    assert task.paused_reason == "budget: 1 model steps reached the limit of 1"
    assert len(stack.fake.requests) == 1  # the model was not asked again
    assert stack.outbox("task.paused")[0].payload["kind"] == "budget"

    with stack.sessions.begin() as session:
        extend_budget(session, task_id, ALICE, stack.clock.now())
    stack.drive()
    stack.approve(stack.pending(task_id))
    stack.drive()
    assert stack.task(task_id).state == "paused"
    with pytest.raises(TaskError, match="already extended once"), stack.sessions.begin() as session:
        extend_budget(session, task_id, ALICE, stack.clock.now())


def test_a_model_outage_stalls_the_task_escalates_once_and_it_resumes_on_its_own(stack: Stack) -> None:
    stack.fake.unavailable(529)
    task_id = stack.submit()
    for _ in range(12):
        stack.drive()
        stack.clock.advance(timedelta(minutes=1))
    task = stack.task(task_id)
    assert task.state == "stalled"
    assert task.model_failures >= 3
    [stalled] = stack.outbox("task.stalled")
    assert "model unavailable" in stalled.payload["reason"]
    assert stack.actions(task_id) == []

    stack.fake.restore()
    stack.fake.reply_text("Back again: nothing to refund.")
    stack.clock.advance(timedelta(minutes=5))
    stack.drive()
    task = stack.task(task_id)
    assert task.state == "succeeded"
    assert len(stack.outbox("task.resumed")) == 1
    assert len(stack.outbox("task.stalled")) == 1


def test_a_task_kept_waiting_by_a_hung_model_call_is_stalled_on_time_and_resumes(stack: Stack) -> None:
    """No call fails while one hangs, yet past the outage limit its people hear of it."""
    stack.fake.hang(1.5, then={"content": [text_block("Checked: nothing to refund.")]})
    task_id = stack.submit()
    caller = threading.Thread(target=stack.runner.run_once)
    caller.start()
    deadline = time.monotonic() + 10
    while not stack.fake.requests:  # the call is in flight (the fake holds it on its own time)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert stack.runner.stall_overdue() == 0  # not yet past the limit

    stack.clock.advance(stack.config.model.outage_limit + timedelta(seconds=1))
    assert stack.runner.stall_overdue() == 1
    assert stack.task(task_id).state == "stalled"
    [stalled] = stack.outbox("task.stalled")
    assert "no answer from the model" in stalled.payload["reason"]

    caller.join(timeout=10)
    stack.drive()
    assert stack.task(task_id).state == "succeeded"
    assert len(stack.outbox("task.resumed")) == 1
    assert stack.runner.stall_overdue() == 0


def test_tasks_queued_behind_busy_workers_past_the_limit_are_stalled_once(stack: Stack) -> None:
    first, second = stack.submit(), stack.submit("Please refund order 99")
    stack.clock.advance(stack.config.model.outage_limit + timedelta(seconds=1))
    third = stack.submit("Please refund order 7")
    assert stack.runner.stall_overdue() == 2
    assert stack.runner.stall_overdue() == 0
    assert [stack.task(t).state for t in (first, second, third)] == ["stalled", "stalled", "running"]
    assert len(stack.outbox("task.stalled")) == 2


@pytest.mark.parametrize("confidence", [10**400, -(10**400)], ids=["1e400", "-1e400"])
def test_a_confidence_no_float_can_hold_counts_as_zero(stack: Stack, confidence: int) -> None:
    # float() of such an integer raises OverflowError; the draft must still reach a person.
    stack.fake.reply_tool_use("lookup_order", {**_lookup(), "confidence": confidence})
    task_id = stack.submit()
    stack.drive()
    assert stack.task(task_id).state == "waiting"
    assert stack.pending(task_id).confidence == 0.0
