"""Graduated autonomy end to end through signed Slack requests: evidence → proposal →
admin sign-off → the type runs after a veto window → a veto demotes it → approvals again."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from core.models import Action, AutonomyState, Decision
from tests.approvals import shop_tools
from tests.bot.slack_app import ADMIN, ADMINS, ALICE, APPROVALS, BOB, REQUESTER, SlackApp, decide_block


def _run(app: SlackApp, text: str) -> Action:
    before = {a.id for a in app.actions()}
    assert app.command(REQUESTER, text).status == 200
    app.settle()
    [action] = [a for a in app.actions() if a.id not in before]
    return action


def _level(app: SlackApp, task_type: str) -> str:
    with app.services.sessions() as session:
        state = session.get(AutonomyState, task_type)
        return state.level if state else "none"


def _click(app: SlackApp, user: str, action_id: str, value: str, message) -> int:
    block = next(b for b in message.blocks if b.get("type") == "actions")
    return app.click(user, action_id, value, block["block_id"], message.ts, channel=message.channel).status


def test_clean_approvals_earn_a_proposal_an_admin_promotes_and_a_veto_takes_it_back(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    for index in range(3):
        action = _run(slack_app, f"run flag Turn on flag f{index}")
        assert action.state == "pending"
        card = slack_app.card(action)
        block_id, _ = decide_block(card.blocks)
        assert slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
        slack_app.settle()

    [proposal] = slack.messages(ADMINS)
    assert "hitl → hotl" in json.dumps(proposal.blocks, ensure_ascii=False)
    proposal_id = next(b for b in proposal.blocks if b.get("type") == "actions")["elements"][0]["value"]

    assert _click(slack_app, ALICE, "promote", proposal_id, proposal) == 200
    slack_app.settle()
    assert any("not an admin" in e.text for e in slack.ephemerals(ALICE))
    assert _level(slack_app, "flag") == "hitl"

    slack_app.clock.advance(timedelta(seconds=1))  # the promotion comes after the evidence
    assert _click(slack_app, ADMIN, "promote", proposal_id, proposal) == 200
    slack_app.settle()
    assert _level(slack_app, "flag") == "hotl"
    assert f"Promoted by <@{ADMIN}>" in json.dumps(slack.message(ADMINS, proposal.ts).blocks, ensure_ascii=False)
    assert any("hitl → *hotl*" in m.text for m in slack.messages(APPROVALS))
    assert any(f"promoted by <@{ADMIN}> on proposal {proposal_id}" in m.text for m in slack.messages(APPROVALS))
    # The evidence that earned hotl stands next to the next level's, which starts from nothing.
    shown = slack_app.command(ALICE, "autonomy flag").body
    assert "*Earned hitl → hotl* <!date^" in shown and f"promoted by <@{ADMIN}>" in shown
    earned, toward = shown.split("\n")[2:4]
    assert "3 outcomes (3 clean, 0 rejected, 0 vetoed)" in earned
    assert toward.startswith("*At its ceiling.*") and "0 outcomes (0 clean" in toward

    unattended = _run(slack_app, "run flag Turn on flag f9")
    assert unattended.state == "scheduled"
    slack_app.clock.advance(timedelta(seconds=31))
    slack_app.settle()
    assert shop_tools.CALLS[unattended.public_id] == 1  # ran after its veto window, nobody approved

    vetoed = _run(slack_app, "run flag Turn on flag f10")
    card = slack_app.card(vetoed)
    block_id, buttons = decide_block(card.blocks)
    assert set(buttons) == {"veto", "acknowledge"}
    assert slack_app.click(BOB, "veto", vetoed.public_id, block_id, card.ts).status == 200
    slack_app.settle()
    assert _level(slack_app, "flag") == "hitl"  # a veto during probation: one level down
    assert shop_tools.CALLS[vetoed.public_id] == 0
    # The task's closing message says it was vetoed and by whom, whatever the agent wrote ("… is on").
    [closing] = [m for m in slack.messages(APPROVALS) if "Flag f10 is on." in json.dumps(m.blocks)]
    [status] = [b["text"]["text"] for b in closing.blocks if b.get("block_id") == "status"]
    assert status == f":warning: *Finished:* `toggle_flag` was vetoed by <@{BOB}> before it ran"

    waits = _run(slack_app, "run flag Turn on flag f11")
    assert waits.state == "pending"


def test_an_incident_on_an_autonomous_receipt_demotes_to_hitl_and_freezes_promotion(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    ran = _run(slack_app, "run lookup Where is order 77?")
    assert ran.state == "succeeded"
    receipt = slack_app.card(ran)
    assert _click(slack_app, BOB, "report_incident", ran.public_id, receipt) == 200
    slack_app.settle()
    with slack_app.services.sessions() as session:
        state = session.get(AutonomyState, "lookup")
        assert state is not None
        assert state.level == "hitl"
        assert state.frozen_until == slack_app.clock.now() + timedelta(days=14)
        assert session.scalars(select(Action.outcome).where(Action.id == ran.id)).one() == "incident"
    assert any("*hitl*" in m.text and "incident" in m.text for m in slack.messages(APPROVALS))
    assert _run(slack_app, "run lookup Where is order 78?").state == "pending"


def test_spot_checks_and_reports_are_for_people_who_saw_the_run(slack_app: SlackApp) -> None:
    ran = _run(slack_app, "run lookup Where is order 79?")
    receipt = slack_app.card(ran)
    assert _click(slack_app, "U0STRANGER", "review_ok", ran.public_id, receipt) == 200
    assert _click(slack_app, "U0STRANGER", "report_incident", ran.public_id, receipt) == 200
    slack_app.settle()
    with slack_app.services.sessions() as session:
        kinds = session.scalars(select(Decision.kind).where(Decision.action_id == ran.id)).all()
    assert kinds == []
    assert _level(slack_app, "lookup") == "auto"
    assert _click(slack_app, BOB, "review_ok", ran.public_id, receipt) == 200
    slack_app.settle()
    with slack_app.services.sessions() as session:
        assert session.scalars(select(Decision.kind).where(Decision.action_id == ran.id)).all() == ["review_ok"]


def test_the_proposal_lists_a_rejected_action_once_whatever_other_decisions_it_has(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    rejected = _run(slack_app, "run flag Turn on flag r0")
    card = slack_app.card(rejected)
    block_id, _ = decide_block(card.blocks)
    # Acknowledged first, then rejected: two decisions on one action.
    assert slack_app.click(ALICE, "acknowledge", rejected.public_id, block_id, card.ts).status == 200
    slack_app.settle()
    card = slack_app.card(rejected)
    block_id, _ = decide_block(card.blocks)
    assert slack_app.click(BOB, "reject", rejected.public_id, block_id, card.ts).status == 200
    slack_app.settle()
    [modal] = slack.views
    reason = {"reason": {"reason": {"type": "plain_text_input", "value": "Not that flag."}}}
    assert slack_app.submit(BOB, modal.payload, reason).status == 200
    slack_app.settle()
    for index in range(3):
        action = _run(slack_app, f"run flag Turn on flag c{index}")
        card = slack_app.card(action)
        block_id, _ = decide_block(card.blocks)
        assert slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
        slack_app.settle()

    [proposal] = slack.messages(ADMINS)
    [recent] = [b["text"]["text"] for b in proposal.blocks if b.get("block_id") == "recent"]
    assert recent.count(rejected.public_id) == 1, recent
    assert "rejected: Not that flag." in recent
