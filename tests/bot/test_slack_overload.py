"""Overload: a click whose decision cannot start within its budget is acked at once, records
nothing, and only the clicker is told to click again (`bot.admission`). Driven through the real
app with signed requests; the budget is spent by Slack's signed timestamp, by the decision slots
held, or by a row lock held, never by sleeping."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bot.admission import DECISION_SLOTS
from core.models import Action, AuditEvent, Decision
from tests.bot.slack_app import ALICE, BOB, REQUESTER, SlackApp, decide_block

BUSY = "countersign is busy; nothing was recorded"


def _pending(app: SlackApp) -> tuple[Action, str, str]:
    """A refund waiting for approval: (action, its card's block id, the card's ts)."""
    assert app.command(REQUESTER, "run refund Refund order 1234, it arrived broken").status == 200
    app.settle()
    [action] = app.actions()
    card = app.card(action)
    block_id, _ = decide_block(card.blocks)
    return action, block_id, card.ts


def _shed(app: SlackApp, kind: str, reason: str) -> float:
    """`countersign_clicks_shed_total{kind, reason}` as the app's /metrics shows it."""
    with urllib.request.urlopen(app.url + "/metrics", timeout=10) as reply:
        page = reply.read().decode()
    pattern = rf'^countersign_clicks_shed_total{{kind="{kind}",reason="{reason}"}} ([\d.e+]+)$'
    found = re.search(pattern, page, re.M)
    return float(found[1]) if found else 0.0


def _written(app: SlackApp) -> tuple[int, int]:
    """(decision rows, audit events) in the database."""
    with app.services.sessions() as session:
        decisions = session.scalar(select(func.count()).select_from(Decision)) or 0
        events = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return decisions, events


def _told(app: SlackApp) -> dict[str, list[str]]:
    """Who was told they were shed (ephemeral messages saying countersign is busy)."""
    told: dict[str, list[str]] = {}
    for message in app.slack.ephemerals():
        if BUSY in message.text:
            told.setdefault(message.user, []).append(message.text)
    return told


@contextmanager
def _slots_taken(app: SlackApp, budget_s: float, stamp: int) -> Iterator[None]:
    """Every decision slot held by someone else, a budget of `budget_s`, and Slack's clock read
    as `stamp` (so that the click's age is only what it waits here)."""
    admission = app.services.admission
    budget, wall = admission.budget_s, admission.wall
    admission.budget_s, admission.wall = budget_s, lambda: float(stamp)
    for _ in range(DECISION_SLOTS):
        assert admission.slots.acquire(timeout=5)
    try:
        yield
    finally:
        for _ in range(DECISION_SLOTS):
            admission.slots.release()
        admission.budget_s, admission.wall = budget, wall


def test_a_click_slack_sent_longer_ago_than_the_budget_is_acked_and_not_decided(slack_app: SlackApp) -> None:
    app = slack_app
    action, block_id, ts = _pending(app)  # the command's request shows the clocks agree
    before, shed_before = _written(app), _shed(app, "approve", "late")

    # Signed 10 s ago (within Slack's 5 minutes): it waited somewhere longer than its budget.
    late = app.click(ALICE, "approve", action.public_id, block_id, ts, timestamp=int(time.time()) - 10)
    assert (late.status, late.body) == (200, "")
    app.settle()

    assert _written(app) == before  # no decision row, no audit event: nothing half-written
    assert [a.state for a in app.actions()] == ["pending"]
    assert list(_told(app)) == [ALICE]  # the clicker, and only them
    assert "click again" in _told(app)[ALICE][0]
    assert _shed(app, "approve", "late") == shed_before + 1

    # Clicking again, in time, decides.
    assert app.click(ALICE, "approve", action.public_id, block_id, ts).status == 200
    app.settle()
    assert app.actions()[0].state == "succeeded"
    assert _written(app)[0] == 1


def test_a_click_that_gets_no_decision_slot_within_its_budget_is_shed(slack_app: SlackApp) -> None:
    app = slack_app
    action, block_id, ts = _pending(app)
    before, shed_before = _written(app), _shed(app, "veto", "busy")

    stamp = int(time.time())
    with _slots_taken(app, budget_s=0.2, stamp=stamp):
        vetoed = app.click(BOB, "veto", action.public_id, block_id, ts, timestamp=stamp)
    assert (vetoed.status, vetoed.body) == (200, "")
    app.settle()

    assert _written(app) == before
    assert [a.state for a in app.actions()] == ["pending"]
    assert list(_told(app)) == [BOB]
    assert _shed(app, "veto", "busy") == shed_before + 1


def test_a_modal_submission_without_a_turn_says_so_on_the_form(slack_app: SlackApp) -> None:
    app = slack_app
    action, block_id, ts = _pending(app)
    assert app.click(BOB, "reject", action.public_id, block_id, ts).status == 200
    app.settle()
    [modal] = app.slack.views
    reason: dict[str, Any] = {"reason": {"reason": {"type": "plain_text_input", "value": "Refunded already."}}}
    before, shed_before = _written(app), _shed(app, "reject", "busy")

    with _slots_taken(app, budget_s=0.2, stamp=int(time.time())):
        answer = app.submit(BOB, modal.payload, reason)
    assert answer.json()["response_action"] == "errors"  # the form stays open, to submit again
    assert BUSY in answer.json()["errors"]["reason"]
    assert _written(app) == before
    assert _shed(app, "reject", "busy") == shed_before + 1

    assert (app.submit(BOB, modal.payload, reason).body, app.actions()[0].state) == ("", "rejected")


def test_a_row_lock_held_past_the_budget_sheds_the_decision_whole(slack_app: SlackApp, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's row locks (SQLite's write turn: the next test)")
    app = slack_app
    action, block_id, ts = _pending(app)
    before, shed_before = _written(app), _shed(app, "approve", "busy")
    admission = app.services.admission
    stamp = int(time.time())
    admission.budget_s, admission.wall = 0.3, lambda: float(stamp)

    # Someone else holds the action's row (an operator's long transaction, a stuck replica).
    with app.engine.connect() as other, other.begin():
        other.execute(text("SELECT id FROM actions WHERE id = :id FOR UPDATE"), {"id": action.id})
        clicked = app.click(ALICE, "approve", action.public_id, block_id, ts, timestamp=stamp)
    assert (clicked.status, clicked.body) == (200, "")
    app.settle()

    assert _written(app) == before
    assert [a.state for a in app.actions()] == ["pending"]
    assert list(_told(app)) == [ALICE]
    assert _shed(app, "approve", "busy") == shed_before + 1


def test_sqlite_write_turn_held_past_the_budget_sheds_the_click_at_once(slack_app: SlackApp, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's one write turn")
    app = slack_app
    action, block_id, ts = _pending(app)
    before, shed_before = _written(app), _shed(app, "approve", "busy")
    admission = app.services.admission
    stamp = int(time.time())
    admission.budget_s, admission.wall = 0.3, lambda: float(stamp)

    # A writer of this process (a worker's batch) holds the write turn: even the replay check
    # cannot be written within the budget, so the click is acked and shed before it can act.
    with app.services.sessions.begin() as other:
        other.execute(select(func.count()).select_from(Action))
        clicked = app.click(ALICE, "approve", action.public_id, block_id, ts, timestamp=stamp)
    assert (clicked.status, clicked.body) == (200, "")
    app.settle()
    assert _written(app) == before
    assert [a.state for a in app.actions()] == ["pending"]
    assert list(_told(app)) == [ALICE]
    assert _shed(app, "approve", "busy") == shed_before + 1
