"""Standing rules through signed Slack requests, on both databases: "Approve, and allow
similar…" on a pending card opens a form prefilled from the action's params; submitting it
approves the action and makes the rule; the next matching draft runs one level up with a
receipt naming the rule, a non-matching one does not, nor one after the expiry or a revocation;
an incident revokes it; `rules: false` hides the button and refuses a forged click."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main
from bot.sandbox.records import View
from core.models import Action, AuditEvent, StandingRule
from tests.bot.slack_app import ALICE, BOB, CONFIG, SlackApp, decide_block, serving

RULES_CONFIG: dict[str, Any] = {**CONFIG, "slack": {**CONFIG["slack"], "admins": [ALICE]}}
NO_RULES: dict[str, Any] = {
    **RULES_CONFIG,
    "task_types": {**CONFIG["task_types"], "flag": {**CONFIG["task_types"]["flag"], "rules": False}},
}


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with serving(db_url, RULES_CONFIG) as served:
        yield served


def _run(app: SlackApp, text: str) -> Action:
    before = {a.id for a in app.actions()}
    assert app.command("U0REQUESTER", text).status == 200
    app.settle()
    [action] = [a for a in app.actions() if a.id not in before]
    return action


def _open_form(app: SlackApp, user: str, action: Action) -> View:
    card = app.card(action)
    block_id, buttons = decide_block(card.blocks)
    assert buttons["allow_similar"] == action.public_id
    opened = len(app.slack.views)
    assert app.click(user, "allow_similar", action.public_id, block_id, card.ts).status == 200
    app.settle()
    assert len(app.slack.views) == opened + 1, "no form opened"
    return app.slack.views[-1]


def _values(form: View, **typed: str) -> dict[str, Any]:
    """The form's `state.values`: each input as prefilled, with `typed` (by block id) over it."""
    values: dict[str, Any] = {}
    for block in form.payload["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        value = typed.get(block["block_id"].replace("param:", ""), element.get("initial_value"))
        values[block["block_id"]] = {element["action_id"]: {"type": element["type"], "value": value}}
    return values


def _rule(app: SlackApp) -> StandingRule:
    with app.services.sessions() as session:
        [rule] = session.scalars(select(StandingRule)).all()
        return rule


def _events(app: SlackApp, kind: str) -> list[AuditEvent]:
    with app.services.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.seq)))


def _context(app: SlackApp, action: Action, block_id: str) -> str | None:
    found = [b for b in app.card(action).blocks if b.get("block_id") == block_id]
    return json.dumps(found[0]) if found else None


def _make_rule(app: SlackApp, **typed: str) -> tuple[Action, StandingRule]:
    first = _run(app, "run flag Turn on flag beta")
    assert first.state == "pending"
    form = _open_form(app, ALICE, first)
    assert form.payload["callback_id"] == "allow_similar_rule"
    prefilled = {
        b["block_id"]: b["element"].get("initial_value") for b in form.payload["blocks"] if b["type"] == "input"
    }
    assert prefilled == {"param:flag": "= beta", "param:enabled": "= true", "expires": "7d", "max_uses": None}
    response = app.submit(ALICE, form.payload, _values(form, **typed))
    assert response.status == 200 and response.body in ("", "{}"), response.body
    app.settle()
    return first, _rule(app)


def test_a_rule_lets_the_next_matching_draft_run_with_a_receipt_naming_it(app: SlackApp) -> None:
    first, rule = _make_rule(app, flag="~ beta(-.*)?")
    with app.services.sessions() as session:
        assert session.get_one(Action, first.id).state == "succeeded"  # approved by Alice as she made it
    assert (rule.created_by, rule.constraints["flag"], rule.max_uses) == (ALICE, {"regex": "beta(-.*)?"}, None)
    assert rule.expires_at == app.clock.now() + timedelta(days=7)
    made = _context(app, first, "rule")
    assert made is not None and rule.public_id in made
    [created] = _events(app, "rule.created")
    assert (created.actor, created.action_public_id) == (ALICE, first.public_id)

    allowed = _run(app, "run flag Turn on flag beta-2")
    assert (allowed.state, allowed.mode) == ("scheduled", "hotl")
    receipt = _context(app, allowed, "rule")
    assert receipt is not None and f"Allowed by standing rule `{rule.public_id}`" in receipt
    [used] = _events(app, "rule.used")
    assert used.action_public_id == allowed.public_id and used.data is not None and used.data["rule"] == rule.public_id

    other = _run(app, "run flag Turn on flag gamma")
    assert other.state == "pending" and _context(app, other, "rule") is None

    app.clock.advance(timedelta(days=7, seconds=1))
    expired = _run(app, "run flag Turn on flag beta-3")
    assert expired.state == "pending"


def test_a_revoked_rule_allows_nothing_and_the_cli_lists_and_revokes(
    app: SlackApp, db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, rule = _make_rule(app, max_uses="5", expires="90d")  # the CLI reads the real time, not the app's clock
    config = tmp_path / "countersign.yml"
    config.write_text(json.dumps(RULES_CONFIG))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COUNTERSIGN_CONFIG", str(config))
    runner = CliRunner()
    listed = runner.invoke(main, ["rules", "list", "--type", "flag"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith(f"{rule.public_id} live flag toggle_flag: flag = beta, enabled = true; 0/5 uses")
    as_json = runner.invoke(main, ["rules", "list", "--json"])
    assert [json.loads(line)["id"] for line in as_json.output.splitlines()] == [rule.public_id]
    assert runner.invoke(main, ["rules", "revoke", rule.public_id, "--by", BOB]).exit_code != 0  # not an admin
    unknown = runner.invoke(main, ["rules", "revoke", "rule_unknown", "--by", ALICE])
    assert unknown.exit_code != 0 and "no standing rule 'rule_unknown'" in unknown.output
    revoked = runner.invoke(main, ["rules", "revoke", rule.public_id, "--by", ALICE, "--reason", "done"])
    assert revoked.exit_code == 0, revoked.output
    [event] = _events(app, "rule.revoked")
    assert (event.actor, event.note) == (ALICE, "done")
    assert _run(app, "run flag Turn on flag beta").state == "pending"
    assert "revoked flag" in runner.invoke(main, ["rules", "list"]).output


def test_an_incident_on_the_type_revokes_its_rules(app: SlackApp) -> None:
    _, rule = _make_rule(app)
    allowed = _run(app, "run flag Turn on flag beta")
    assert allowed.state == "scheduled"
    app.clock.advance(timedelta(seconds=31))  # the veto window ends: it runs
    app.settle()
    receipt = app.card(allowed)
    block_id, buttons = decide_block(receipt.blocks)
    assert buttons == {"report_incident": allowed.public_id}
    assert app.click(BOB, "report_incident", allowed.public_id, block_id, receipt.ts).status == 200
    app.settle()
    [revoked] = _events(app, "rule.revoked")
    assert revoked.actor == "system" and revoked.data == {"rule": rule.public_id, "uses": 1}
    assert _run(app, "run flag Turn on flag beta").state == "pending"


def test_form_errors_name_the_problem_and_nothing_is_written(app: SlackApp) -> None:
    action = _run(app, "run flag Turn on flag beta")
    form = _open_form(app, ALICE, action)
    answer = app.submit(ALICE, form.payload, _values(form, flag="~ (unclosed", expires="soon", enabled="")).json()
    assert answer["response_action"] == "errors"
    errors = answer["errors"]
    assert "RE2" in errors["param:flag"] and "duration" in errors["expires"] and "any" in errors["param:enabled"]
    app.settle()
    with app.services.sessions() as session:
        assert session.scalars(select(StandingRule)).all() == []
        assert session.get_one(Action, action.id).state == "pending"


def test_only_admins_get_the_form(app: SlackApp) -> None:
    action = _run(app, "run flag Turn on flag beta")
    card = app.card(action)
    block_id, _ = decide_block(card.blocks)
    opened = len(app.slack.views)
    assert app.click(BOB, "allow_similar", action.public_id, block_id, card.ts).status == 200
    app.settle()
    assert len(app.slack.views) == opened
    assert any("only admins make standing rules" in e.text for e in app.slack.ephemerals(BOB))
    [refused] = _events(app, "decision.refused")
    assert refused.actor == BOB and refused.data is not None and refused.data["attempted"] == "allow_similar"


def test_a_high_risk_refund_offers_no_rule(app: SlackApp) -> None:
    refund = _run(app, "run refund Refund order 1001")
    _, buttons = decide_block(app.card(refund).blocks)
    assert "allow_similar" not in buttons  # issue_refund always needs a person: a rule could not help


def test_rules_false_hides_the_button_and_refuses_a_forged_click(db_url: str) -> None:
    with serving(db_url, NO_RULES) as app:
        action = _run(app, "run flag Turn on flag beta")
        card = app.card(action)
        block_id, buttons = decide_block(card.blocks)
        assert "allow_similar" not in buttons and "approve" in buttons
        opened = len(app.slack.views)
        assert app.click(ALICE, "allow_similar", action.public_id, block_id, card.ts).status == 200
        app.settle()
        assert len(app.slack.views) == opened
        assert any("does not allow standing rules" in e.text for e in app.slack.ephemerals(ALICE))
        with app.services.sessions() as session:
            assert session.get_one(Action, action.id).state == "pending"
            assert session.scalars(select(StandingRule)).all() == []
