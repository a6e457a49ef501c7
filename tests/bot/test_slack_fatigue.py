"""Fatigue signals as people and tools see them, through signed Slack requests on both
databases: the admins' App Home, `/metrics` (labels bounded by the config), the alert in the
admin channel, `countersign approvers`; and the high-risk card's layout and confirm dialog."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from approvals.decisions import decide
from bot.approver_metrics import ApproverCollector
from bot.cli import main
from core.config import Config
from escalations import alerts
from tests.approvals.conftest import CAROL, World, world
from tests.bot.slack_app import ADMIN, ADMINS, ALICE, BOB, CONFIG, REQUESTER, SlackApp, decide_block, serving

__all__ = ["world"]  # the fixture, for the tests that drive the domain directly
FAST = {**CONFIG, "alerts": {"fast_approval_share": 0.5, "fast_approval_min": 2}}


def _approve_refunds(app: SlackApp, who: str, count: int, *, read_s: float = 0.0) -> None:
    for order in range(count):
        app.command(REQUESTER, f"run refund Refund order {900 + order}")
        app.settle()
        [action] = [a for a in app.actions() if a.state == "pending"]
        app.clock.advance(read_s)
        card = app.card(action)
        block_id, _ = decide_block(card.blocks)
        assert app.click(who, "approve", action.public_id, block_id, card.ts).status == 200
        app.settle()


def _home(app: SlackApp, user: str) -> dict[str, Any]:
    app.event({"type": "app_home_opened", "user": user, "tab": "home"}, f"Ev{user}{len(app.slack.calls)}")
    app.settle()
    home = app.slack.home(user)
    assert home is not None
    return home.payload


def test_admins_see_each_approvers_signals_in_app_home_and_others_do_not(slack_app: SlackApp) -> None:
    _approve_refunds(slack_app, ALICE, 2)  # at once: faster than the 5 s read time
    _approve_refunds(slack_app, BOB, 1, read_s=40)
    blocks = {b.get("block_id"): b for b in _home(slack_app, ADMIN)["blocks"]}
    assert blocks["approvers"]["text"]["text"] == "Approvers, last 30 days"
    listed = blocks["approvers_list"]["text"]["text"]
    assert (
        f"<@{ALICE}>: 2 decisions, 100% approved, median 0 s card to click, 100% fast, longest fast streak 2" in listed
    )
    assert f"<@{BOB}>: 1 decisions, 100% approved, median 40 s card to click, 0% fast" in listed
    assert "approvers" not in {b.get("block_id") for b in _home(slack_app, ALICE)["blocks"]}


def test_metrics_label_only_the_approvers_the_config_names(slack_app: SlackApp) -> None:
    _approve_refunds(slack_app, ALICE, 2)
    with urllib.request.urlopen(slack_app.url + "/metrics", timeout=10) as reply:
        body = reply.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("countersign_approver_fast_share", (("approver", ALICE),))] == 1.0
    assert samples[("countersign_approver_decisions", (("approver", ALICE),))] == 2.0
    assert samples[("countersign_approver_fast_streak", (("approver", ALICE),))] == 2.0
    assert samples[("countersign_approvers_flagged", ())] == 0.0  # 2 approvals: under the default minimum of 10
    approvers = {dict(labels).get("approver") for name, labels in samples if name.startswith("countersign_approver_")}
    assert approvers <= {ALICE, BOB, ADMIN, "other", None}


def test_people_who_decide_through_a_group_are_pooled_as_other(world: World) -> None:
    config = Config.model_validate(
        {
            "slack": {"approvals_channel": "C0APPROVALS"},
            "task_types": {"refund": {"tools": ["issue_refund"], "approvers": ["U0ALICE", "@payments-leads"]}},
        }
    )
    action = world.draft()
    decide(
        world.sessions, world.clock, lambda s: world.decisions.approve(s, action.public_id, CAROL, action.params_hash)
    )
    families = {f.name: f for f in ApproverCollector(world.sessions, config, world.clock).collect()}
    [sample] = families["countersign_approver_decisions"].samples
    assert (sample.labels, sample.value) == ({"approver": "other"}, 1.0)  # never CAROL's id


def test_the_admin_channel_is_told_when_someone_approves_too_fast(db_url: str) -> None:
    with serving(db_url, FAST) as app:
        _approve_refunds(app, ALICE, 2)
        with app.services.sessions.begin() as session:
            assert alerts.check(session, app.services.config, app.clock.now()) == 1
        app.settle()
        [told] = [m for m in app.slack.messages(ADMINS) if "Fast approvals" in m.text]
        assert told.text.startswith(f"Fast approvals: <@{ALICE}> approved 2 of 2 approvals (100%) faster than")


def test_countersign_approvers_prints_each_approvers_signals(world: World, db_url: str, tmp_path: Path) -> None:
    world.clock._now = datetime.now(UTC) - timedelta(minutes=5)  # the command reads the last days of the real clock
    for _ in range(2):
        action = world.draft()
        world.clock.advance(1)
        decide(
            world.sessions,
            world.clock,
            lambda s, a=action: world.decisions.approve(s, a.public_id, ALICE, a.params_hash),
        )
    path = tmp_path / "countersign.yml"
    path.write_text(json.dumps(CONFIG))  # YAML is a superset of JSON
    env = {"DATABASE_URL": db_url, "COUNTERSIGN_CONFIG": str(path)}
    result = CliRunner().invoke(main, ["approvers", "--days", "30"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{ALICE}: 2 decisions, 100% approved, median 1.0s card to click, 100% fast")
    assert "(2 of 2 approvals), longest fast streak 2 (now 2)" in result.output
    as_json = CliRunner().invoke(main, ["approvers", "--json"], env=env)
    [line] = as_json.output.splitlines()
    assert json.loads(line) == {
        "approver": ALICE,
        "days": 30,
        "decisions": 2,
        "approvals": 2,
        "approval_rate": 1.0,
        "median_read_s": 1.0,
        "fast": 2,
        "fast_share": 1.0,
        "longest_fast_streak": 2,
        "current_fast_streak": 2,
        "flagged": False,
    }
    assert CliRunner().invoke(main, ["approvers", "--days", "0"], env=env).exit_code == 2  # at least a day


def test_a_high_risk_card_puts_its_consequence_first_and_approve_asks_to_confirm(slack_app: SlackApp) -> None:
    slack_app.command(REQUESTER, "run refund Refund order 4321")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    assert [b.get("block_id") for b in card.blocks[:2]] == ["header", "consequence"]
    consequence = card.blocks[1]["text"]["text"]
    assert consequence == ":rotating_light: *The refund of order 4321* · *Amount cents: 5.00 (500 cents)*"
    _, buttons = decide_block(card.blocks)
    [approve] = [e for b in card.blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == "approve"]
    assert approve["confirm"]["text"]["text"] == "The refund of order 4321: Amount cents 5.00 (500 cents). Approve it?"
    assert "approve" in buttons
