import pytest

from bot import action_ids
from bot.blocks.task import task_message
from bot.blocks.views import ActionOutcomeView
from tests.bot.blocks.checks import assert_message_valid, block, block_text, buttons, live_tokens
from tests.bot.blocks.factories import REQUESTER, make_task

HOSTILE = "<!channel> <@U0MALLORY> <https://evil.example|bank> &"

TASKS = {
    "budget": make_task(state="paused", kind="budget", reason="It used its 8 steps."),
    "loop": make_task(state="paused", kind="loop", reason="The same lookup_order call three times."),
    "paused": make_task(state="paused", reason="Stopped by a person."),
    "stalled": make_task(state="stalled", kind="model_unavailable", reason="Anthropic answered 529 for 10 minutes."),
    "resumed": make_task(state="running", kind="model_unavailable"),
    "waiting": make_task(state="waiting"),
    "succeeded": make_task(state="succeeded", final_text="Refunded 5.00 USD for order A1."),
    "failed": make_task(state="failed", reason="The tool failed after 3 tries."),
    "cancelled": make_task(state="cancelled", reason="Stopped by <@U0ADMIN>."),
    "choose": make_task(state="paused", candidates=("refund", "restart-service")),
    "no_requester": make_task(state="succeeded", requester=None, final_text="Done."),
}


@pytest.mark.parametrize("name", TASKS)
def test_every_task_message_is_valid(name):
    text, blocks = task_message(TASKS[name])
    assert_message_valid(text, blocks)
    assert "tsk_1" in text


def test_budget_pause_offers_extend_once_and_stop():
    text, blocks = task_message(TASKS["budget"])
    assert "paused" in text
    assert "It used its 8 steps." in block_text(blocks, "status")
    assert block_text(blocks, "usage") == "8 steps · 51,234 tokens · $0.51"
    assert buttons(blocks) == [
        (action_ids.EXTEND_BUDGET, "tsk_1", "primary"),
        (action_ids.STOP_TASK, "tsk_1", "danger"),
    ]
    stop = block(blocks, "task_controls")["elements"][1]
    assert stop["confirm"]["style"] == "danger" and stop["confirm"]["confirm"]["text"] == "Stop it"


@pytest.mark.parametrize("name", ["loop", "paused"])
def test_other_pauses_offer_only_stop(name):
    _, blocks = task_message(TASKS[name])
    assert buttons(blocks) == [(action_ids.STOP_TASK, "tsk_1", "danger")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("loop", "going in circles"),
        ("stalled", "*Paused: model unavailable.* Anthropic answered 529 for 10 minutes."),
        ("resumed", ":arrow_forward: *Resumed.*"),
        ("waiting", "Waiting for decisions"),
        ("failed", ":x: *Failed.* The tool failed after 3 tries."),
        ("cancelled", "*Cancelled.* Stopped by &lt;@U0ADMIN&gt;."),
    ],
)
def test_status_lines(name, expected):
    _, blocks = task_message(TASKS[name])
    assert expected in block_text(blocks, "status")


@pytest.mark.parametrize("name", ["stalled", "resumed", "waiting", "succeeded", "failed", "cancelled"])
def test_no_buttons_where_nobody_needs_to_act(name):
    assert buttons(task_message(TASKS[name])[1]) == []


def test_the_requester_is_mentioned():
    assert f"<@{REQUESTER}>" in block_text(task_message(TASKS["succeeded"])[1], "task")
    assert "<@" not in block_text(task_message(TASKS["no_requester"])[1], "task")


def test_final_answer_is_escaped():
    _, blocks = task_message(make_task(state="succeeded", final_text=HOSTILE))
    assert live_tokens(blocks) == {f"<@{REQUESTER}>"}
    assert (
        block_text(blocks, "answer_0") == "&lt;!channel&gt; &lt;@U0MALLORY&gt; &lt;https://evil.example|bank&gt; &amp;"
    )
    assert block(blocks, "answer_0")["text"]["verbatim"] is True


def test_a_huge_final_answer_is_split_and_truncated():
    answer = ("A line of the answer with <tags> & such.\n" * 3000)[:100_000]
    text, blocks = task_message(make_task(state="succeeded", final_text=answer))
    assert_message_valid(text, blocks)
    parts = [b for b in blocks if b["block_id"].startswith("answer_")]
    assert len(parts) == 3
    assert all(not t.startswith("\n") for b in parts for t in [b["text"]["text"]])
    assert parts[-1]["text"]["text"].endswith("…")


def test_hostile_reasons_and_requests_are_escaped():
    for view in (
        make_task(state="paused", kind="budget", reason=HOSTILE),
        make_task(state="failed", reason=HOSTILE),
        make_task(state="paused", candidates=("refund",), request_text=HOSTILE),
    ):
        text, blocks = task_message(view)
        assert_message_valid(text, blocks)
        assert live_tokens(blocks) == {f"<@{REQUESTER}>"}


def test_choosing_a_type_offers_one_button_per_candidate():
    text, blocks = task_message(TASKS["choose"])
    assert "choose a task type" in text
    assert buttons(blocks) == [
        (action_ids.CHOOSE_TYPE, "tsk_1:refund", None),
        (action_ids.CHOOSE_TYPE, "tsk_1:restart-service", None),
    ]
    assert ">Refund order A1: the mug arrived broken." in block_text(blocks, "choose")


def test_many_candidates_are_split_into_actions_blocks_of_25():
    candidates = tuple(f"type-{i}" for i in range(60))
    text, blocks = task_message(make_task(state="paused", candidates=candidates))
    assert_message_valid(text, blocks)
    sizes = [len(b["elements"]) for b in blocks if b["type"] == "actions"]
    assert sizes == [25, 25, 10]
    assert [value for _, value, _ in buttons(blocks)] == [f"tsk_1:{c}" for c in candidates]


APPROVER = "U0APPROVER"
CLOSINGS = {
    "succeeded": (ActionOutcomeView(tool="issue_refund", state="succeeded"), ":white_check_mark: *Done.*"),
    "failed": (
        ActionOutcomeView(tool="issue_refund", state="failed", error="PaymentError: card declined"),
        ":warning: *Finished:* `issue_refund` failed: PaymentError: card declined",
    ),
    "rejected": (
        ActionOutcomeView(tool="issue_refund", state="rejected", decided_by=APPROVER, note="Refunded already."),
        f":warning: *Finished:* `issue_refund` was rejected by <@{APPROVER}> — “Refunded already.”",
    ),
    "vetoed": (
        ActionOutcomeView(tool="issue_refund", state="vetoed", decided_by=APPROVER),
        f":warning: *Finished:* `issue_refund` was vetoed by <@{APPROVER}> before it ran",
    ),
    "expired": (
        ActionOutcomeView(tool="issue_refund", state="expired"),
        ":warning: *Finished:* `issue_refund` expired: nobody decided in time, so it did not run",
    ),
    "unknown": (
        ActionOutcomeView(tool="mail_letter", state="unknown"),
        ":warning: *Finished:* `mail_letter`: outcome unknown; a person must say whether it ran",
    ),
    "unknown_resolved_ran": (
        ActionOutcomeView(
            tool="mail_letter", state="succeeded", resolution="resolve_ran", resolved_by=APPROVER, note="in the log"
        ),
        f":warning: *Finished:* `mail_letter`: its outcome was unknown; <@{APPROVER}> says it ran — “in the log”",
    ),
    "unknown_resolved_not_run": (
        ActionOutcomeView(tool="mail_letter", state="failed", resolution="resolve_not_run", resolved_by=APPROVER),
        f":warning: *Finished:* `mail_letter`: its outcome was unknown; <@{APPROVER}> says it did not run",
    ),
}


@pytest.mark.parametrize("outcome", CLOSINGS)
def test_the_closing_message_says_how_its_actions_ended_never_done_unless_they_ran(outcome):
    action, status = CLOSINGS[outcome]
    # What the agent wrote cannot stand in for what happened: it may say "done" after a veto.
    view = make_task(state="succeeded", final_text="Done, unless it was vetoed.", actions=(action,))
    text, blocks = task_message(view)
    assert_message_valid(text, blocks)
    assert block_text(blocks, "status") == status
    if outcome == "succeeded":
        assert "done" in text and all(b["block_id"] != "actions" for b in blocks)
    else:
        assert "Done." not in block_text(blocks, "status") and "done" not in text
        assert block_text(blocks, "actions").endswith(status.removeprefix(":warning: *Finished:* "))


def test_the_closing_message_lists_every_action_when_one_did_not_run():
    ran = ActionOutcomeView(tool="lookup_order", state="succeeded")
    vetoed = ActionOutcomeView(tool="issue_refund", state="vetoed", decided_by=APPROVER, note=HOSTILE)
    _, blocks = task_message(make_task(state="succeeded", final_text="ok", actions=(ran, vetoed)))
    lines = block_text(blocks, "actions").splitlines()
    assert lines[0] == ":large_green_circle: `lookup_order` ran"
    assert lines[1].startswith(f":no_entry: `issue_refund` was vetoed by <@{APPROVER}>")
    assert live_tokens([block(blocks, "actions")]) == {f"<@{APPROVER}>"}  # the reason's tokens are inert
