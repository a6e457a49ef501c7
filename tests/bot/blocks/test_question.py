"""A question's message and its answer form: valid Block Kit within Slack's limits, the
client's and the person's text escaped (no pings, no links), the Answer button only while open."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from approvals.errors import AlreadyAnswered, AnswerRequired, NotAResponder
from bot import action_ids
from bot.blocks.question import answer_modal, answer_refused, question_message
from bot.blocks.views import QuestionView
from tests.bot.blocks.checks import assert_message_valid, assert_view_valid, block_text, buttons, live_tokens

HOSTILE = "Deploy now? <!channel> <https://evil.example|click> & <@U0BOSS> " + "x" * 12_000
OPEN = QuestionView(
    question_public_id="qst_1",
    task_type="payouts",
    asker="agent",
    subject="Release <!here> " + "y" * 400,
    text=HOSTILE,
    state="open",
    approvers=("U0ALICE", "@leads"),
    options=(("yes", "Ship it"), ("no", "Wait " + "z" * 200)),
)
ANSWERED = replace(
    OPEN,
    state="answered",
    answer="Yes <!everyone>, but\n" + "a\n" * 100,
    option="yes",
    answered_by="U0ALICE",
    answered_at=datetime(2026, 11, 3, 9, 30, tzinfo=UTC),
)


def test_an_open_question_has_its_answer_button_and_acts_on_nothing_it_quotes() -> None:
    text, blocks = question_message(OPEN)
    assert_message_valid(text, blocks)
    assert buttons(blocks) == [(action_ids.ANSWER_QUESTION, "qst_1", "primary")]
    assert live_tokens(blocks) == set()
    assert "&lt;!channel&gt;" in block_text(blocks, "question")
    assert "Any approver of `payouts` may answer" in block_text(blocks, "who")


def test_named_responders_are_mentioned() -> None:
    _, blocks = question_message(replace(OPEN, responders=("U0ALICE",)))
    assert live_tokens(blocks) == {"<@U0ALICE>"}
    assert "Only <@U0ALICE> may answer" in block_text(blocks, "who")


def test_an_answered_question_shows_who_said_what_instead_of_the_button() -> None:
    text, blocks = question_message(ANSWERED)
    assert_message_valid(text, blocks)
    assert buttons(blocks) == []
    answer = block_text(blocks, "answer")
    assert answer.startswith(":white_check_mark: Answered by <@U0ALICE> <!date^")
    assert "(picked *Ship it*)" in answer and "&lt;!everyone&gt;" in answer
    assert {token for token in live_tokens(blocks) if not token.startswith("<!date^")} == {"<@U0ALICE>"}


def test_the_answer_form_is_a_valid_modal() -> None:
    modal = answer_modal(OPEN, '{"question_id": "qst_1"}')
    assert_view_valid(modal)
    assert modal["callback_id"] == action_ids.ANSWER_MODAL
    [options] = [b for b in modal["blocks"] if b["block_id"] == "option"]
    assert [o["value"] for o in options["element"]["options"]] == ["0", "1"]
    assert live_tokens(modal) == set()
    assert_view_valid(answer_modal(replace(OPEN, options=()), "{}"))


def test_refusals_say_why_in_the_clickers_words() -> None:
    assert "You may not answer" in answer_refused(NotAResponder("qst_1", "U0SAM", "payouts"), "payouts")
    at = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    assert "already answered by <@U0ALICE>" in answer_refused(AlreadyAnswered("qst_1", "U0BOB", "U0ALICE", at))
    assert "Type an answer" in answer_refused(AnswerRequired("qst_1", "U0BOB"))
