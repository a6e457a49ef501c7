"""Undo on cards: a receipt offers it while its window is open and nobody asked; then it says
who asked and how the undo stands; a compensation's card says what it undoes."""

from datetime import timedelta

from bot import action_ids
from bot.blocks.card import approval_card, card_text
from tests.bot.blocks.checks import assert_message_valid, block_text, buttons
from tests.bot.blocks.factories import APPROVER, NOW, make_card

UNTIL = NOW + timedelta(hours=1)
UNDO = (action_ids.UNDO, "act_1", None)
REPORT_INCIDENT = (action_ids.REPORT_INCIDENT, "act_1", "danger")


def _receipt(**changes):
    base = {"state": "succeeded", "mode": "hitl", "decided_by": APPROVER, "decided_at": NOW}
    return make_card(**{**base, "result": {"ok": True}, "undo_until": UNTIL, "rendered_at": NOW, **changes})


def test_a_receipt_offers_undo_until_its_window_ends_and_asks_to_confirm():
    blocks = approval_card(_receipt())
    assert_message_valid(card_text(_receipt()), blocks)
    assert buttons(blocks) == [UNDO]
    [undo] = [e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == "undo"]
    assert undo["confirm"]["title"]["text"] == "Undo this run?"
    assert "Undo is offered until <!date^" in block_text(blocks, "undo")


def test_an_autonomous_receipt_offers_both_report_and_undo():
    assert buttons(approval_card(_receipt(mode="auto", decided_by=None))) == [REPORT_INCIDENT, UNDO]


def test_a_receipt_drawn_after_the_window_has_no_undo():
    blocks = approval_card(_receipt(rendered_at=UNTIL))
    assert buttons(blocks) == []
    assert not [b for b in blocks if b.get("block_id") == "undo"]


def test_once_asked_the_receipt_names_the_undo_and_how_it_stands():
    asked = _receipt(undo_action="act_2", undo_state="pending", undo_asked_by="U0BOB")
    assert buttons(approval_card(asked)) == []
    assert block_text(approval_card(asked), "undo") == (
        ":leftwards_arrow_with_hook: Undo asked for by <@U0BOB>: action `act_2` (approval needed)."
    )
    done = _receipt(undo_action="act_2", undo_state="succeeded", undo_asked_by="U0BOB")
    assert "*Undone*: its undo (action `act_2`), asked for by <@U0BOB>, succeeded." in block_text(
        approval_card(done), "undo"
    )


def test_a_compensation_says_what_it_undoes():
    card = make_card(undoes="act_1", undoes_tool="issue_refund", undoes_summary="the refund of order <!here>")
    blocks = approval_card(card)
    assert_message_valid(card_text(card), blocks)
    text = block_text(blocks, "undo")
    assert text.startswith(":leftwards_arrow_with_hook: *Undoes* the refund of order &lt;!here&gt; (action `act_1`)")
