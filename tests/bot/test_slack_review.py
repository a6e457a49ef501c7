"""Review many at once, through signed Slack requests on both databases: App Home and the
reminder offer "Review N waiting"; the modal shows every item with its own unchecked checkbox;
"Approve selected" approves exactly the checked ones, each its own decision and audit event;
an item changed or decided since the modal opened is refused with its reason, never approved."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.sandbox.records import View
from core.models import Action, AuditEvent
from tests.bot.slack_app import ALICE, APPROVALS, BOB, REQUESTER, TEAM, SlackApp, decide_block, edit_values


def _refunds(app: SlackApp, count: int, first: int = 1001) -> list[Action]:
    for order in range(first, first + count):
        assert app.command(REQUESTER, f"run refund Refund order {order}").status == 200
    app.settle()
    return [a for a in app.actions() if a.state == "pending"]


def _home_click(app: SlackApp, user: str, block_id: str, button: dict[str, Any]) -> None:
    """A click on an App Home button, as Slack sends it (no channel, no response_url)."""
    action = {"type": "button", "action_id": button["action_id"], "block_id": block_id, "action_ts": str(time.time())}
    if "value" in button:
        action["value"] = button["value"]
    response = app.interact(
        {
            "type": "block_actions",
            "api_app_id": "A0APP",
            "token": "legacy",
            "user": {"id": user, "username": user.lower(), "team_id": TEAM},
            "team": {"id": TEAM, "domain": "sandbox"},
            "container": {"type": "view", "view_id": "V0HOME"},
            "trigger_id": app.slack.new_trigger_id(user),
            "actions": [action],
        }
    )
    assert response.status == 200


def _open_review(app: SlackApp, user: str) -> View:
    app.event({"type": "app_home_opened", "user": user, "tab": "home", "channel": "D0HOME"}, f"Ev{time.time_ns()}")
    app.settle()
    home = app.slack.home(user)
    assert home is not None
    [review] = [b for b in home.payload["blocks"] if b.get("block_id") == "review"]
    [everything, *_] = review["elements"]
    _home_click(app, user, "review", everything)
    app.settle()
    return app.slack.views[-1]


def _items(modal: View) -> list[str]:
    """The public ids of the items shown, by their checkboxes, in order."""
    return [
        option["value"]
        for block in modal.payload["blocks"]
        if block["type"] == "input"
        for option in block["element"]["options"]
    ]


def _check(modal: View, ids: list[str]) -> dict[str, Any]:
    """`view.state.values` with `ids` checked (in whichever of the checkbox groups holds them)."""
    values: dict[str, Any] = {}
    for block in modal.payload["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        picked = [option for option in element["options"] if option["value"] in ids]
        values[block["block_id"]] = {element["action_id"]: {"type": "checkboxes", "selected_options": picked}}
    return values


def _approve_events(app: SlackApp) -> list[tuple[str | None, str]]:
    with app.services.sessions() as session:
        rows = session.execute(
            select(AuditEvent.action_public_id, AuditEvent.actor).where(AuditEvent.kind == "decision.approve")
        ).all()
    return [(row[0], row[1]) for row in rows]


def test_a_review_approving_3_of_5_shown_approves_exactly_those_and_leaves_2_pending(slack_app: SlackApp) -> None:
    actions = _refunds(slack_app, 5)
    assert len(actions) == 5
    modal = _open_review(slack_app, ALICE)
    payload = modal.payload
    assert payload["callback_id"] == "review_batch"
    assert payload["title"]["text"] == "Review 5 waiting" and payload["submit"]["text"] == "Approve selected"
    # Every item is shown (what it does, its params, confidence, requester), each with its own
    # checkbox, none checked; one group for the refunds.
    shown = json.dumps(payload["blocks"], ensure_ascii=False)
    for order in range(1001, 1006):
        assert f"The refund of order {order}" in shown
        assert f'\\"order_id\\": \\"{order}\\"' in shown
    assert "confidence 90%" in shown and f"<@{REQUESTER}>" in shown
    assert sorted(_items(modal)) == sorted(a.public_id for a in actions)
    inputs = [b for b in payload["blocks"] if b["type"] == "input"]
    assert all("initial_options" not in b["element"] and b.get("optional") for b in inputs)
    assert "*refund* · `issue_refund` · 5 waiting" in shown

    checked = [actions[0].public_id, actions[2].public_id, actions[4].public_id]
    response = slack_app.submit(ALICE, payload, _check(modal, checked))
    assert response.status == 200
    answer = response.json()
    assert answer["response_action"] == "update"
    assert "Approved (3)" in json.dumps(answer["view"]) and "Not approved" not in json.dumps(answer["view"])
    slack_app.settle()
    states = {a.public_id: a.state for a in slack_app.actions()}
    assert {a for a, s in states.items() if s == "succeeded"} == set(checked)
    assert {a for a, s in states.items() if s == "pending"} == {actions[1].public_id, actions[3].public_id}
    # Each approved item is its own decision, with its own audit event, by the reviewer.
    assert sorted(_approve_events(slack_app)) == sorted((a, ALICE) for a in checked)
    # Each card updated in place names the approver.
    for action in actions:
        card = slack_app.card(action)
        approved = "Approved by" in json.dumps(card.blocks)
        assert approved == (action.public_id in checked)


def test_nothing_checked_is_refused_on_the_form(slack_app: SlackApp) -> None:
    actions = _refunds(slack_app, 2)
    modal = _open_review(slack_app, ALICE)
    answer = slack_app.submit(ALICE, modal.payload, _check(modal, [])).json()
    assert answer["response_action"] == "errors"
    assert "none is checked for you" in json.dumps(answer["errors"])
    assert {a.state for a in slack_app.actions()} == {"pending"} and len(actions) == 2


def test_a_stale_review_approves_only_what_it_showed_as_it_was(slack_app: SlackApp) -> None:
    actions = _refunds(slack_app, 4)
    edited, decided, untouched, own = actions
    modal = _open_review(slack_app, ALICE)
    # Meanwhile: Bob edits one (new params), approves another, and a value the review never
    # showed is slipped in (a forged form): none of these may be approved by Alice's submit.
    card = slack_app.card(edited)
    block_id, _ = decide_block(card.blocks)
    slack_app.click(BOB, "edit", edited.public_id, block_id, card.ts)
    slack_app.settle()
    edit_modal = slack_app.slack.views[-1]
    assert slack_app.submit(BOB, edit_modal.payload, edit_values(edit_modal.payload, "300")).status == 200
    card = slack_app.card(decided)
    block_id, _ = decide_block(card.blocks)
    slack_app.click(BOB, "approve", decided.public_id, block_id, card.ts)
    slack_app.settle()

    values = _check(modal, [a.public_id for a in actions])
    first = next(iter(values))
    forged = {"text": {"type": "plain_text", "text": "x"}, "value": "act_notshown0000000"}
    values[first]["review_pick"]["selected_options"].append(forged)
    answer = slack_app.submit(ALICE, modal.payload, values).json()
    slack_app.settle()
    result = json.dumps(answer["view"])
    states = {a.public_id: a.state for a in slack_app.actions()}
    # Bob's edit approved the edited one with his params (quorum 1); Alice's check of it saw the
    # old params: refused. The one Bob approved: refused as decided. Only the untouched ones are hers.
    assert states[untouched.public_id] == states[own.public_id] == "succeeded"
    assert sorted(e for e in _approve_events(slack_app) if e[1] == ALICE) == sorted(
        [(untouched.public_id, ALICE), (own.public_id, ALICE)]
    )
    assert "Approved (2)" in result and "Not approved (3)" in result
    assert "already" in result  # the ones Bob decided first
    assert "was not shown in this review" in result
    with slack_app.services.sessions() as session:
        refusals = session.scalars(
            select(AuditEvent.data).where(AuditEvent.kind == "decision.refused", AuditEvent.actor == ALICE)
        ).all()
    assert sorted(r["code"] for r in refusals if r) == ["already_decided", "already_decided", "not_shown"]


def test_an_item_edited_while_waiting_for_a_second_approval_is_refused_as_changed(db_url: str) -> None:
    from tests.bot.slack_app import CONFIG, serving

    quorum = {**CONFIG, "task_types": {**CONFIG["task_types"]}}
    quorum["task_types"]["refund"] = {**CONFIG["task_types"]["refund"], "quorum": 2}
    with serving(db_url, quorum) as app:
        [action, other] = _refunds(app, 2)
        modal = _open_review(app, ALICE)
        card = app.card(action)
        block_id, _ = decide_block(card.blocks)
        app.click(BOB, "edit", action.public_id, block_id, card.ts)
        app.settle()
        edit_modal = app.slack.views[-1]
        assert app.submit(BOB, edit_modal.payload, edit_values(edit_modal.payload, "300")).status == 200
        answer = app.submit(ALICE, modal.payload, _check(modal, [action.public_id, other.public_id])).json()
        result = json.dumps(answer["view"])
        assert "The parameters of" in result and "changed since you saw them" in result
        assert "your approval counts, 1 of 2" in result
        app.settle()
        states = {a.public_id: a.state for a in app.actions()}
        assert states == {action.public_id: "pending", other.public_id: "pending"}


def test_the_reminder_offers_a_review_of_its_task_type(slack_app: SlackApp) -> None:
    actions = _refunds(slack_app, 3)
    slack_app.clock.advance(timedelta(minutes=5))
    slack_app.settle()
    dms = slack_app.slack.messages(slack_app.slack.dm(ALICE))
    assert len(dms) == 3  # one reminder per action
    [review] = [b for b in dms[-1].blocks if b.get("block_id") == "review"]
    [button] = review["elements"]
    assert (button["action_id"], button["value"], button["text"]["text"]) == (
        "review_waiting",
        "refund",
        "Review 3 waiting",
    )
    slack_app.click(ALICE, "review_waiting", "refund", "review", dms[-1].ts, channel=slack_app.slack.dm(ALICE))
    slack_app.settle()
    modal = slack_app.slack.views[-1]
    assert modal.payload["title"]["text"] == "Review 3 refund"
    assert sorted(_items(modal)) == sorted(a.public_id for a in actions)


def test_the_requester_and_strangers_are_offered_nothing_to_review(slack_app: SlackApp) -> None:
    _refunds(slack_app, 3)
    for user in (REQUESTER, "U0MALLORY"):
        slack_app.event({"type": "app_home_opened", "user": user, "tab": "home"}, f"Ev{user}")
        slack_app.settle()
        home = slack_app.slack.home(user)
        assert home is not None
        assert all(b.get("block_id") != "review" for b in home.payload["blocks"])
    # A click anyway (a forged button) opens a review with nothing to approve.
    _home_click(slack_app, REQUESTER, "review", {"action_id": "review_waiting"})
    slack_app.settle()
    modal = slack_app.slack.views[-1]
    assert _items(modal) == [] and "submit" not in modal.payload
    assert APPROVALS  # the cards stay where they are
