"""An approval binds to the tool's definition as well as its params: a deploy that changes the
tool while an action waits re-asks its approvers (audited), the card says so, and a click on a
card drawn before the change approves nothing. Through signed Slack requests, on both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from core.config import Config
from core.models import Action, AuditEvent, Decision
from tests.bot.slack_app import (
    ADMIN,
    ADMINS,
    ALICE,
    APPROVALS,
    BOB,
    CONFIG,
    MALLORY,
    REQUESTER,
    SlackApp,
    decide_block,
)
from tests.bot.slack_texts import unnamed_people
from tests.fakes.clock import FrozenClock
from tests.fakes.slack_server import SlackEmulator, seconds


def _config(module: str, **refund: Any) -> Config:
    task_types = {"refund": {**CONFIG["task_types"]["refund"], "tools": ["issue_refund"], **refund}}
    return Config.model_validate({**CONFIG, "tools": {"modules": [module]}, "task_types": task_types})


V1 = _config("tests.bot.refund_tools_v1", quorum=2)
V2 = _config("tests.bot.refund_tools_v2", quorum=2)


@contextmanager
def workspace() -> Iterator[tuple[SlackEmulator, FrozenClock]]:
    """One Slack workspace that outlives the app's restarts (a deploy is a restart)."""
    clock = FrozenClock(FrozenClock().now().replace(year=2026, month=11))
    with SlackEmulator(now=seconds(clock)) as slack:
        slack.add_channel(APPROVALS, "approvals")
        slack.add_channel(ADMINS, "admins")
        for user in (REQUESTER, ALICE, BOB, MALLORY, ADMIN):
            slack.add_user(user, user.lower())
        yield slack, clock


@contextmanager
def started(db_url: str, slack: SlackEmulator, clock: FrozenClock, config: Config) -> Iterator[SlackApp]:
    app = SlackApp(db_url, slack, clock, config)
    try:
        yield app
    finally:
        app.close()
    unnamed = unnamed_people(slack.calls, app.replies)
    assert not unnamed, "texts sent to Slack show bare user ids:\n" + "\n".join(unnamed)


def _action(app: SlackApp, public_id: str) -> Action:
    with app.services.sessions() as session:
        return session.scalars(select(Action).where(Action.public_id == public_id)).one()


def test_a_deploy_that_changes_the_tool_re_asks_and_a_card_drawn_before_approves_nothing(db_url: str) -> None:
    with workspace() as (slack, clock):
        with started(db_url, slack, clock, V1) as app:
            assert app.command(REQUESTER, "run refund Refund order 1001").status == 200
            app.settle()
            [action] = app.actions()
            drafted = action.tool_hash
            assert len(drafted) == 64
            card = app.card(action)
            old_block, _ = decide_block(card.blocks)
            assert drafted in old_block  # the click is bound to the definition shown
            assert app.click(ALICE, "approve", action.public_id, old_block, card.ts).status == 200
            app.settle()
            assert _action(app, action.public_id).state == "pending"  # 1 of 2

        with started(db_url, slack, clock, V2) as app:  # the deploy: the same tool, a new description
            app.settle()
            after = _action(app, action.public_id)
            assert after.state == "pending" and after.tool_hash not in ("", drafted)
            assert after.tool_changed_at == clock.now()
            with app.services.sessions() as session:
                [changed] = session.scalars(select(AuditEvent).where(AuditEvent.kind == "action.tool_changed")).all()
            assert changed.action_public_id == action.public_id
            assert changed.data == {"from": drafted, "to": after.tool_hash, "approvals_dropped": 1}
            # The card, updated in place, says so; its buttons now carry the new definition.
            redrawn = slack.message(APPROVALS, card.ts)
            shown = json.dumps(redrawn.blocks)
            assert "Tool changed since drafted" in shown and "approvals given before no longer count" in shown
            new_block, _ = decide_block(redrawn.blocks)
            assert after.tool_hash in new_block and new_block != old_block
            app.event({"type": "app_home_opened", "user": BOB, "tab": "home"}, "EvHOMEBOB")
            app.settle()
            home = slack.home(BOB)
            assert home is not None and "Tool changed since drafted" in json.dumps(home.payload)

            # Bob clicks Approve on the card as it was drawn before the deploy: refused, told only to him.
            assert app.click(BOB, "approve", action.public_id, old_block, card.ts).status == 200
            app.settle()
            assert "changed since you saw it" in slack.ephemerals(BOB)[-1].text
            assert _action(app, action.public_id).state == "pending"
            # Alice's approval of the old definition no longer counts: Bob's alone is 1 of 2, and
            # Alice may approve again, now of what the card shows.
            assert app.click(BOB, "approve", action.public_id, new_block, card.ts).status == 200
            app.settle()
            assert _action(app, action.public_id).state == "pending"
            assert app.click(ALICE, "approve", action.public_id, new_block, card.ts).status == 200
            app.settle()
            assert _action(app, action.public_id).state == "succeeded"
            with app.services.sessions() as session:
                decisions = session.execute(
                    select(Decision.actor, Decision.tool_hash).where(
                        Decision.action_id == action.id, Decision.kind == "approve"
                    )
                ).all()
            assert sorted(decisions) == sorted([(ALICE, drafted), (BOB, after.tool_hash), (ALICE, after.tool_hash)])


def test_a_restart_with_the_same_definition_re_asks_nothing(db_url: str) -> None:
    with workspace() as (slack, clock):
        with started(db_url, slack, clock, V1) as app:
            app.command(REQUESTER, "run refund Refund order 1002")
            app.settle()
            [action] = app.actions()
            card = app.card(action)
            block, _ = decide_block(card.blocks)
        with started(db_url, slack, clock, V1) as app:
            app.settle()
            assert _action(app, action.public_id).tool_changed_at is None
            assert "Tool changed" not in json.dumps(slack.message(APPROVALS, card.ts).blocks)
            app.click(ALICE, "approve", action.public_id, block, card.ts)
            app.click(BOB, "approve", action.public_id, block, card.ts)
            app.settle()
            assert _action(app, action.public_id).state == "succeeded"
