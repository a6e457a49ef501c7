"""Undo (issue #20 item 3), through signed Slack requests on both databases: the receipt of a
run offers Undo within its type's `undo_window`; Undo drafts the compensating action, which runs
only once someone other than who asked approves it; the ledger links both; the undone run counts
against its type like a veto; late, repeated and concurrent clicks make no second compensation."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from agent.scripted_model import ScriptedModel
from approvals import audit
from approvals.autonomy import evidence, settle
from core.models import Action, AuditEvent, AutonomyState
from tests.bot import undo_tools
from tests.bot.slack_app import (
    ALICE,
    API_TOKEN,
    APPROVALS,
    BOB,
    CONFIG,
    MALLORY,
    REQUESTER,
    SlackApp,
    decide_block,
    serving,
)

PAYOUT = {
    "tools": ["pay_out"],
    "autonomy": "hitl",
    "approvers": [ALICE, BOB],
    "undo_window": "30m",
    "escalation": [{"after": "2h", "then": "expire"}],
    "graduation": {"min_read_time": "0s"},
}
UNDO_CONFIG: dict[str, Any] = {
    **CONFIG,
    "tools": {"modules": ["tests.approvals.shop_tools", "tests.bot.undo_tools"]},
    "task_types": {
        "payout": PAYOUT,
        "autopay": {**PAYOUT, "autonomy": "auto", "graduation": {"min_read_time": "0s", "ceiling": "auto"}},
    },
}
REPLIES = [
    {
        "tool_use": [
            {
                "name": "pay_out",
                "input": {"order_id": "{order_id}", "amount_cents": 1200},
                "rationale": "It arrived broken.",
                "confidence": 0.95,
            }
        ]
    },
    {"text": "Paid out order {order_id}."},
]
SCRIPT = {name: {"match": r"order (?P<order_id>\d+)", "replies": REPLIES} for name in ("payout", "autopay")}


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with serving(db_url, UNDO_CONFIG, model=ScriptedModel(SCRIPT)) as served:
        yield served


def _ran(app: SlackApp, task_type: str = "payout") -> tuple[Action, Any]:
    """A payout REQUESTER asked for and ALICE approved (an autopay runs on its own), run and
    succeeded: (the action, its receipt)."""
    assert app.command(REQUESTER, f"run {task_type} Pay back order 1001").status == 200
    app.settle()
    [action] = [a for a in app.actions() if a.tool == "pay_out" and a.state in ("pending", "succeeded")][-1:]
    card = app.card(action)
    if action.state == "pending":
        block_id, _ = decide_block(card.blocks)
        assert app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
        app.settle()
    [after] = [a for a in app.actions() if a.id == action.id]
    assert after.state == "succeeded"
    return after, app.slack.message(APPROVALS, card.ts)


def _click_undo(app: SlackApp, user: str, action: Action, card: Any) -> str:
    """`user` clicks the receipt's Undo; what they were told only to them ("" if nothing)."""
    block_id, buttons = decide_block(card.blocks)
    told = len(app.slack.ephemerals(user))
    assert app.click(user, "undo", buttons.get("undo", action.public_id), block_id, card.ts).status == 200
    app.settle()
    answers = app.slack.ephemerals(user)[told:]
    return answers[-1].text if answers else ""


def _card(app: SlackApp, action: Action) -> Any:
    """The card whose buttons act on `action` (a receipt may name its undo too)."""
    cards = [m for m in app.slack.messages(APPROVALS) if m.thread_ts is None and m.blocks]
    [card] = [
        m
        for m in cards
        if any(b.get("block_id") == "meta" and f"action `{action.public_id}`" in json.dumps(b) for b in m.blocks)
    ]
    return card


def _compensations(app: SlackApp, action: Action) -> list[Action]:
    return [a for a in app.actions() if a.undo_of == action.id]


def _events(app: SlackApp, action_public_id: str) -> list[AuditEvent]:
    with app.services.sessions.begin() as session:
        audit.chain(session)
    with app.services.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action_public_id == action_public_id).order_by(AuditEvent.seq)
        return list(session.scalars(query))


def test_undo_drafts_the_compensation_which_runs_only_after_another_person_approves_it(app: SlackApp) -> None:
    action, receipt = _ran(app)
    _, buttons = decide_block(receipt.blocks)
    assert buttons == {"undo": action.public_id}  # an approved run: Undo, and nothing to report
    assert "Undo is offered until <!date^" in json.dumps(receipt.blocks)

    assert "may not undo" in _click_undo(app, MALLORY, action, receipt)  # neither approver nor requester
    assert _compensations(app, action) == []

    assert _click_undo(app, BOB, action, receipt) == ""
    [undo] = _compensations(app, action)
    assert (undo.tool, undo.state, undo.mode, undo.requester) == ("take_back_payout", "pending", "hitl", BOB)
    assert undo.params == {"original_params": action.params, "original_result": action.result}
    assert not [call for call in undo_tools.TAKEN_BACK if call["key"] == undo.public_id]  # not before approval

    # The receipt now says who asked and drops Undo; the compensation's card says what it undoes.
    updated = app.slack.message(APPROVALS, receipt.ts)
    text = json.dumps(updated.blocks)
    assert f"Undo asked for by <@{BOB}>: action `{undo.public_id}` (approval needed)" in text
    assert '"undo"' not in json.dumps([b for b in updated.blocks if b.get("type") == "actions"])
    card = _card(app, undo)
    card_text = json.dumps(card.blocks)
    assert f"*Undoes* the payout of order 1001 (action `{action.public_id}`)" in card_text

    # Who asked for the undo cannot approve it; someone else can, and only then it runs.
    block_id, undo_buttons = decide_block(card.blocks)
    assert set(undo_buttons) >= {"approve", "reject"}
    assert app.click(BOB, "approve", undo.public_id, block_id, card.ts).status == 200
    app.settle()
    assert "cannot approve it" in app.slack.ephemerals(BOB)[-1].text
    [still] = _compensations(app, action)
    assert still.state == "pending"
    assert not [call for call in undo_tools.TAKEN_BACK if call["key"] == undo.public_id]

    assert app.click(ALICE, "approve", undo.public_id, block_id, card.ts).status == 200
    app.settle()
    [done] = _compensations(app, action)
    assert done.state == "succeeded"
    [call] = [call for call in undo_tools.TAKEN_BACK if call["key"] == undo.public_id]
    assert call["params"] == {"order_id": "1001", "amount_cents": 1200}
    assert call["result"] == {"order_id": "1001", "paid_cents": 1200}
    assert undo_tools.PAID[action.public_id] == 1  # the original ran once, and only once

    # The ledger links the two, both ways.
    [asked] = [e for e in _events(app, action.public_id) if e.kind == "action.undo_requested"]
    assert (asked.actor, (asked.data or {})["compensation"]) == (BOB, undo.public_id)
    [drafted] = [e for e in _events(app, undo.public_id) if e.kind == "action.drafted"]
    assert (drafted.data or {})["undo_of"] == action.public_id
    [undone] = [e for e in _events(app, action.public_id) if e.kind == "action.undone"]
    assert (undone.data or {})["compensation"] == undo.public_id
    # `/countersign audit` names them too, on each side.
    shown = app.command(ALICE, f"audit {action.public_id}").body
    assert f"action.undo_requested by <@{BOB}> · its undo `{undo.public_id}`" in shown
    lines = app.command(ALICE, f"audit {undo.public_id}").body.splitlines()
    [drafted_line] = [line for line in lines if "action.drafted" in line]
    assert drafted_line.endswith(f"action.drafted by system · undoes `{action.public_id}`"), drafted_line

    # The receipt says it was undone.
    assert "*Undone*: its undo" in json.dumps(app.slack.message(APPROVALS, receipt.ts).blocks)


def test_an_undone_run_counts_against_its_type_like_a_veto(app: SlackApp) -> None:
    action, receipt = _ran(app)
    config = app.services.config.task_types["payout"]
    with app.services.sessions.begin() as session:
        state = settle(session, "payout", config, app.clock.now())
        before = evidence(session, state, app.clock.now())
    assert before.outcomes == ("clean",)

    _click_undo(app, REQUESTER, action, receipt)  # the original's requester may ask too
    [undo] = _compensations(app, action)
    card = _card(app, undo)
    block_id, _ = decide_block(card.blocks)
    assert app.click(ALICE, "approve", undo.public_id, block_id, card.ts).status == 200
    app.settle()

    with app.services.sessions.begin() as session:
        state = settle(session, "payout", config, app.clock.now())
        after = evidence(session, state, app.clock.now())
        assert session.get_one(Action, action.id).outcome == "undone"
        assert session.get_one(Action, undo.id).outcome is not None  # labelled, but no evidence
    assert after.outcomes == ("undone",)  # the compensation is not a sample of the type's own
    assert after.count("clean") == 0


def test_an_autonomous_run_offers_undo_and_undone_it_counts_as_a_veto(app: SlackApp) -> None:
    action, receipt = _ran(app, "autopay")
    _, buttons = decide_block(receipt.blocks)
    assert buttons == {"report_incident": action.public_id, "undo": action.public_id}
    _click_undo(app, ALICE, action, receipt)
    [undo] = _compensations(app, action)
    assert (undo.state, undo.mode) == ("pending", "hitl")  # an auto type's undo still waits for a person
    card = _card(app, undo)
    block_id, _ = decide_block(card.blocks)
    assert app.click(BOB, "approve", undo.public_id, block_id, card.ts).status == 200
    app.settle()
    with app.services.sessions() as session:
        assert session.get_one(Action, action.id).outcome == "undone"
        stats = session.get_one(AutonomyState, "autopay")
    assert stats.level == "auto"  # one veto-like outcome is evidence, not yet a demotion


def test_a_click_after_the_window_is_refused_and_makes_nothing(app: SlackApp) -> None:
    action, receipt = _ran(app)
    app.clock.advance(timedelta(minutes=30))
    told = _click_undo(app, ALICE, action, receipt)
    assert "undo window" in told and "ended" in told
    assert _compensations(app, action) == []
    [refused] = [e for e in _events(app, action.public_id) if e.kind == "decision.refused"]
    assert (refused.actor, (refused.data or {})["code"]) == (ALICE, "undo_window_passed")


def test_a_second_click_is_refused_naming_the_first_undo(app: SlackApp) -> None:
    action, receipt = _ran(app)
    assert _click_undo(app, ALICE, action, receipt) == ""
    [undo] = _compensations(app, action)
    told = _click_undo(app, BOB, action, receipt)
    assert "already undone or its undo is pending" in told and undo.public_id in told
    assert len(_compensations(app, action)) == 1


def test_concurrent_clicks_make_exactly_one_compensating_action(app: SlackApp) -> None:
    action, receipt = _ran(app)
    block_id, _ = decide_block(receipt.blocks)
    clicks = 12
    start, statuses = threading.Barrier(clicks), []

    def click(index: int) -> None:
        start.wait()
        user = (ALICE, BOB, REQUESTER)[index % 3]
        statuses.append(app.click(user, "undo", action.public_id, block_id, receipt.ts).status)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(clicks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    app.settle()
    assert statuses == [200] * clicks
    assert len(_compensations(app, action)) == 1
    asked = [e for e in _events(app, action.public_id) if e.kind == "action.undo_requested"]
    assert len(asked) == 1
    # Every other click was told why not (already asked for, or busy: click again).
    told = [e.text for user in (ALICE, BOB, REQUESTER) for e in app.slack.ephemerals(user)]
    assert len(told) == clicks - 1


OBJECT = {"type": "object"}
EXTERNAL_CONFIG: dict[str, Any] = {
    **CONFIG,
    "external_tools": {
        "restart_service": {
            "params": {"type": "object", "properties": {"service": {"type": "string"}}},
            "undo": "stop_service",
        },
        "stop_service": {
            "params": {
                "type": "object",
                "properties": {"original_params": OBJECT, "original_result": OBJECT},
                "required": ["original_params", "original_result"],
            }
        },
    },
    "task_types": {"ops": {"tools": ["restart_service"], "autonomy": "hitl", "approvers": [ALICE, BOB]}},
}


def _api(app: SlackApp, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(app.url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {API_TOKEN}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_external_tools_undo_goes_to_the_client_that_ran_it(db_url: str) -> None:
    with serving(db_url, EXTERNAL_CONFIG) as app:
        body = {"task_type": "ops", "tool": "restart_service", "params": {"service": "api"}, "requester": REQUESTER}
        status, created = _api(app, "POST", "/api/actions", body)
        assert (status, created["state"]) == (201, "pending")
        app.settle()
        [action] = app.actions()
        card = _card(app, action)
        block_id, _ = decide_block(card.blocks)
        assert app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
        app.settle()
        assert _api(app, "POST", f"/api/actions/{action.public_id}/claim")[0] == 200
        done = {"status": "succeeded", "result": {"restarted": "api"}}
        assert _api(app, "POST", f"/api/actions/{action.public_id}/result", done)[0] == 200
        app.settle()

        receipt = _card(app, action)
        [action] = [a for a in app.actions() if a.id == action.id]
        assert _click_undo(app, BOB, action, receipt) == ""
        [undo] = _compensations(app, action)
        assert (undo.tool, undo.state, undo.api_client_id) == ("stop_service", "pending", action.api_client_id)
        card = _card(app, undo)
        block_id, _ = decide_block(card.blocks)
        assert app.click(ALICE, "approve", undo.public_id, block_id, card.ts).status == 200
        app.settle()
        status, seen = _api(app, "GET", f"/api/actions/{undo.public_id}")
        assert (status, seen["state"], seen["runnable"]) == (200, "approved", True)  # its client runs it
        assert seen["params"] == {"original_params": {"service": "api"}, "original_result": {"restarted": "api"}}
