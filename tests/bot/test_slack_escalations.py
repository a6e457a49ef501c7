"""Escalations as people see them: a DM with Acknowledge, a note on the card, expiry."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.bot.slack_app import ALICE, APPROVALS, BOB, REQUESTER, SlackApp, decide_block


def test_reminders_arrive_as_dms_and_expiry_updates_the_card_and_tells_the_requester(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    slack_app.command(REQUESTER, "run refund Refund order 4242")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)

    slack_app.clock.advance(timedelta(minutes=5))
    slack_app.settle()
    [permalink] = slack.calls_to("chat.getPermalink")
    assert (permalink["channel"], permalink["message_ts"]) == (APPROVALS, card.ts)
    link = f"https://countersign-sandbox.slack.com/archives/{APPROVALS}/p{card.ts.replace('.', '')}"
    for user in (ALICE, BOB):
        [ping] = slack.messages(slack.dm(user))
        block_id, buttons = decide_block(ping.blocks)
        assert buttons == {"acknowledge": action.public_id}
        # The reminder names the action by what it does, and links its card.
        assert "*The refund of order 4242* (refund) is waiting for a decision." in json.dumps(ping.blocks)
        assert f"<{link}|its card>" in json.dumps(ping.blocks)
    assert any("Reminded" in reply.text for reply in slack.thread(APPROVALS, card.ts))

    ping = slack.messages(slack.dm(BOB))[0]
    assert slack_app.click(BOB, "acknowledge", action.public_id, block_id, ping.ts, channel=slack.dm(BOB)).status == 200
    slack_app.settle()
    assert any(f"<@{BOB}> is on it" in reply.text for reply in slack.thread(APPROVALS, card.ts))
    # Each reminder DM changed in place: Bob's says the card is his, Alice's who has it; no button is left.
    [bobs] = slack.messages(slack.dm(BOB))
    assert bobs.ts == ping.ts and bobs.text == "Acknowledged — the card is yours"
    shown = json.dumps(bobs.blocks, ensure_ascii=False)
    assert "Acknowledged — the card is yours." in shown and f"<{link}|its card>" in shown
    [alices] = slack.messages(slack.dm(ALICE))
    assert f"Acknowledged by <@{BOB}>" in json.dumps(alices.blocks)
    assert all(block["type"] != "actions" for block in bobs.blocks + alices.blocks)

    slack_app.clock.advance(timedelta(minutes=25))
    slack_app.settle()
    [after] = slack_app.actions()
    assert after.state == "expired"
    assert "Expired" in json.dumps(slack.message(APPROVALS, card.ts).blocks)
    [notice] = slack.messages(slack.dm(REQUESTER))
    assert "expired" in notice.text
    assert "did not run" in notice.text


def test_a_warning_before_the_expiry_says_how_long_is_left(slack_app: SlackApp) -> None:
    """The refund chain expires after 30 min and says nothing of a warning: it gets one a quarter
    of that before (22:30), to the approvers its last reminder went to."""
    slack = slack_app.slack
    slack_app.command(REQUESTER, "run refund Refund order 5151")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    slack_app.clock.advance(timedelta(minutes=22))
    slack_app.settle()
    assert [len(slack.messages(slack.dm(user))) for user in (ALICE, BOB)] == [1, 1]  # the 5 min reminder
    slack_app.clock.advance(timedelta(minutes=1))
    slack_app.settle()
    for user in (ALICE, BOB):
        _, warning = slack.messages(slack.dm(user))
        assert "expires in 7 min unless someone decides" in warning.text
        shown = json.dumps(warning.blocks)
        assert "*The refund of order 5151* (refund) expires in 7 min unless someone decides (<!date^" in shown
        _, buttons = decide_block(warning.blocks)
        assert buttons == {"acknowledge": action.public_id}
    [note] = [r for r in slack.thread(APPROVALS, card.ts) if "Warned" in r.text]
    assert note.text.startswith(f":hourglass: Warned <@{ALICE}>, <@{BOB}>: it expires <!date^")
    slack_app.clock.advance(timedelta(minutes=7))
    slack_app.settle()
    assert slack_app.actions()[0].state == "expired"
