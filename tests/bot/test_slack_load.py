"""Bursts and outages: forty people click at once; Slack rate-limits and fails for 30 s."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta

import pytest

from bot.sandbox.faults import Hold
from tests.approvals import shop_tools
from tests.bot.slack_app import ALICE, APPROVALS, BOB, REQUESTER, SlackApp, decide_block

pytestmark = pytest.mark.slow


def test_forty_concurrent_approve_clicks_one_execution_one_outcome_update(slack_app: SlackApp) -> None:
    # Exactly once under concurrency: on a machine slow enough, some of forty clicks would be
    # shed for the time they wait (`bot.admission`, tests/bot/test_slack_overload.py); not here.
    slack_app.services.admission.budget_s = 60.0
    slack_app.command(REQUESTER, "run refund Refund order 1234")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    block_id, _ = decide_block(card.blocks)
    start, statuses = threading.Barrier(40), Counter[int]()

    def click(index: int) -> None:
        start.wait()
        statuses[slack_app.click((ALICE, BOB)[index % 2], "approve", action.public_id, block_id, card.ts).status] += 1

    threads = [threading.Thread(target=click, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slack_app.settle()

    assert statuses == {200: 40}
    assert shop_tools.CALLS[action.public_id] == 1
    outcome_updates = [c for c in slack_app.slack.calls_to("chat.update") if "Approved" in json.dumps(c)]
    assert len({c["ts"] for c in outcome_updates}) == 1
    told = [e for e in slack_app.slack.ephemerals() if "already" in e.text]
    assert len(told) == 39


def test_a_slack_outage_delays_messages_but_loses_none_and_keeps_their_order(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    slack_app.command(REQUESTER, "run refund Refund order 1234")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    block_id, _ = decide_block(card.blocks)

    slack.fail_for(30, status=429)
    assert slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
    slack_app.settle()  # the tool runs; its messages wait
    assert slack_app.actions()[0].state == "succeeded"
    assert slack.faulted_calls
    assert slack.message(APPROVALS, card.ts).versions[-1] == slack.message(APPROVALS, card.ts).versions[0]

    slack.clear_faults()
    slack.fail_for(30, status=500)
    slack_app.clock.advance(timedelta(seconds=5))
    slack_app.settle()
    slack.clear_faults()
    slack_app.clock.advance(timedelta(minutes=10))
    slack_app.settle()

    updated = slack.message(APPROVALS, card.ts)
    states = [json.dumps(version.blocks) for version in updated.versions]
    assert "Approved" in states[-1] or "Succeeded" in states[-1]
    assert len(slack.calls_to("chat.postMessage")) == len(
        {(c["channel"], c.get("thread_ts"), c["text"]) for c in slack.calls_to("chat.postMessage")}
    )
    [final] = [m for m in slack.messages(APPROVALS) if "Done with order 1234" in json.dumps(m.blocks)]
    assert final.ts > card.ts


def _landed(held: Hold) -> None:
    """Let the held call through and wait until the emulator applied it: on a condition, not
    on a guess of how long a busy machine takes."""
    held.release()
    assert held.landed.wait(30), f"the held {held.method} never landed"


def test_a_post_slack_never_answered_but_made_is_not_posted_again(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    slack_app.services.client.timeout = 1  # the app gives up on Slack after 1 s, not 10
    slack_app.command(REQUESTER, "run refund Refund order 1234")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    block_id, _ = decide_block(card.blocks)

    held = slack.hold("chat.postMessage")  # the result reply in the card's thread
    assert slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
    slack_app.settle()  # the app gave up on the held post after 1 s
    assert held.arrived.is_set()
    _landed(held)
    assert [call.get("thread_ts") for call in slack.calls_to("chat.postMessage")][-1] == card.ts
    slack_app.clock.advance(timedelta(seconds=61))  # the unanswered row waits, then checks
    slack_app.settle()

    replies = [m for m in slack.thread(APPROVALS, card.ts) if m.ts != card.ts]
    assert [m.text for m in replies] == [":large_green_circle: The refund of order 1234 succeeded."]
    assert len(slack.calls_to("conversations.replies")) >= 1  # it looked before posting again
    done = [m for m in slack.messages(APPROVALS) if "Done with order 1234" in json.dumps(m.blocks)]
    assert len(done) == 1


def test_a_card_update_that_lands_late_is_followed_by_the_current_card(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    slack_app.services.client.timeout = 1
    slack_app.command(REQUESTER, "run refund Refund order 1234")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    block_id, _ = decide_block(card.blocks)

    held = slack.hold("chat.update")
    assert slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
    slack_app.settle()  # the app gave up on the held update after 1 s
    assert held.arrived.is_set()
    slack_app.clock.advance(timedelta(seconds=5))
    slack_app.settle()
    assert slack.calls_to("chat.update") == []  # nothing newer overtakes the unanswered update
    _landed(held)
    assert [call["ts"] for call in slack.calls_to("chat.update")] == [card.ts]
    slack_app.clock.advance(timedelta(seconds=61))
    slack_app.settle()

    versions = slack.message(APPROVALS, card.ts).versions
    assert len(versions) >= 3  # posted, the late update, the current one after it
    assert "Succeeded" in versions[-1].text
    replies = [m for m in slack.thread(APPROVALS, card.ts) if m.ts != card.ts]
    assert len(replies) == 1
