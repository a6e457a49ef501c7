"""Names, not ids: refusals name the action by what it does and people as mentions; and the
check every `serving()` app runs at its end (no bare user id reaches Slack) catches one."""

from __future__ import annotations

from datetime import timedelta

from bot.blocks.refusals import as_plain
from bot.blocks.text import mention_ids
from tests.bot.slack_app import ALICE, APPROVALS, BOB, MALLORY, REQUESTER, SlackApp, decide_block
from tests.bot.slack_texts import bare_user_ids, unnamed_people


def test_refusals_say_you_name_the_action_by_what_it_does_and_people_by_mention(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    assert slack_app.command(REQUESTER, "run refund Refund order 1001").status == 200
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    block_id, _ = decide_block(card.blocks)
    what = f"the refund of order 1001 (action `{action.public_id}`)"

    for user in (MALLORY, REQUESTER):
        assert slack_app.click(user, "approve", action.public_id, block_id, card.ts).status == 200
    slack_app.settle()
    told = {e.user: e.text for e in slack.ephemerals()}
    assert told[MALLORY] == f":no_entry_sign: You are not an approver of {what}: your click changed nothing."
    assert told[REQUESTER] == f":no_entry_sign: You requested {what}, so you cannot approve it: someone else must."

    slack_app.clock.advance(timedelta(seconds=3))
    assert slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
    slack_app.settle()
    assert slack_app.click(BOB, "approve", action.public_id, block_id, card.ts).status == 200
    slack_app.settle()
    late = [e.text for e in slack.ephemerals(BOB)][-1]
    assert late.startswith(f":information_source: The refund of order 1001 (action `{action.public_id}`) already ")
    assert f": decided by <@{ALICE}> <!date^" in late
    for text in (*told.values(), late):
        assert not bare_user_ids(text), text


def test_the_check_finds_bare_ids_and_only_those() -> None:
    assert bare_user_ids("U0STRANGER is not an approver") == ["U0STRANGER"]
    assert bare_user_ids("promoted by W0ADMIN2 on proposal prp_1") == ["W0ADMIN2"]
    assert bare_user_ids("<@U0ALICE> and <@U0BOB|bob> approved <!date^1^{time}|x>") == []
    assert bare_user_ids("URGENT: UNDO the WIDGET upgrade, order 1001") == []  # words, not ids
    calls = [
        ("chat.postMessage", {"channel": "C0APPROVALS", "text": "ok", "blocks": [{"text": {"text": "U0BOB did it"}}]}),
        ("chat.postMessage", {"channel": "C0APPROVALS", "text": "<@U0BOB> did it", "user": "U0BOB"}),
        ("conversations.open", {"users": "U0BOB"}),
    ]
    assert unnamed_people(calls, ['{"text": "U0ALICE is not an admin"}']) == [
        "chat.postMessage: 'U0BOB did it'",
        "answer: 'U0ALICE is not an admin'",
    ]


def test_our_own_texts_turn_ids_into_mentions_and_plain_places_get_names() -> None:
    assert mention_ids("promoted by U0ADMIN and U0ALICE on proposal prp_1") == (
        "promoted by <@U0ADMIN> and <@U0ALICE> on proposal prp_1"
    )
    assert mention_ids("<@U0ADMIN> stays; URGENT and U2 too") == "<@U0ADMIN> stays; URGENT and U2 too"
    assert (
        mention_ids("by U0BOB: run `secrets connect --owner U0BOB`")
        == "by <@U0BOB>: run `secrets connect --owner U0BOB`"
    )
    text = ":information_source: It is already approved by <@U0ALICE> <!date^1^{date}|2024-05-01> &amp; more."
    names = {"U0ALICE": "Alice"}
    assert as_plain(text, names.get) == "It is already approved by @Alice 2024-05-01 & more."
    assert as_plain("by <@U0NOBODY>", names.get) == "by @someone"
    assert APPROVALS  # the fixture's channel, where the card was
