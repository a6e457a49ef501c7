"""An action whose outcome is unknown (a tool that is not idempotent timed out mid-call), resolved
by people through signed Slack requests and by the CLI: its card says what is known, the
agent gets the outcome as the tool result, the ledger says who said what, and graduation never
counts it as clean."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from agent.scripted_model import ScriptedModel
from approvals import audit
from approvals.autonomy import evidence, settle
from bot.cli import main
from core.models import Action, AuditEvent, Decision, Task
from tests.bot import unknown_tools
from tests.bot.slack_app import ALICE, APPROVALS, BOB, CONFIG, MALLORY, REQUESTER, SlackApp, decide_block, serving

LETTER = {
    "tools": ["mail_letter"],
    "autonomy": "hitl",
    "approvers": [ALICE, BOB],
    "escalation": [{"after": "30m", "then": "expire"}],
}
UNKNOWN_CONFIG: dict[str, Any] = {
    **CONFIG,
    "tools": {"modules": ["tests.approvals.shop_tools", "tests.bot.unknown_tools"]},
    "task_types": {"letter": LETTER, "letter2": {**LETTER, "quorum": 2}},
}
REPLIES = [
    {
        "tool_use": [
            {
                "name": "mail_letter",
                "input": {"customer": "{customer}"},
                "rationale": "They asked for a paper copy.",
                "confidence": 0.9,
            }
        ]
    },
    {"text": "Finished with customer {customer}."},
]
SCRIPT = {name: {"match": r"customer (?P<customer>\w+)", "replies": REPLIES} for name in ("letter", "letter2")}


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with serving(db_url, UNKNOWN_CONFIG, model=ScriptedModel(SCRIPT)) as served:
        yield served


def _unknown(app: SlackApp, task_type: str = "letter") -> tuple[Action, Any]:
    """A task whose approved letter timed out mid-call: (its action, in `unknown`; its card)."""
    assert app.command(REQUESTER, f"run {task_type} Send customer c42 a letter").status == 200
    app.settle()
    [action] = [a for a in app.actions() if a.state == "pending"]
    card = app.card(action)
    block_id, _ = decide_block(card.blocks)
    approvers = [ALICE, BOB] if task_type == "letter2" else [ALICE]
    for approver in approvers:
        assert app.click(approver, "approve", action.public_id, block_id, card.ts).status == 200
        app.settle()
    [after] = [a for a in app.actions() if a.id == action.id]
    assert after.state == "unknown", after.error
    assert unknown_tools.CALLS[action.public_id] == 1
    unknown_tools.release(action.public_id)
    return after, app.slack.message(APPROVALS, card.ts)


def resolve_on_card(
    app: SlackApp, user: str, action: Action, card: Any, button: str, note: str = "", then: str = ""
) -> Any:
    """Click `button` on the card, then submit its form; the submission's response."""
    block_id, _ = decide_block(card.blocks)
    assert app.click(user, button, action.public_id, block_id, card.ts).status == 200
    app.settle()
    modal = app.slack.views[-1].payload
    assert modal["callback_id"] == "resolve_note"
    values: dict[str, Any] = {"reason": {"reason": {"type": "plain_text_input", "value": note}}}
    if then:
        values["next"] = {"next": {"type": "radio_buttons", "selected_option": {"value": then}}}
    response = app.submit(user, modal, values)
    app.settle()
    return response


def _kinds(app: SlackApp, action: Action) -> list[tuple[str, str]]:
    with app.services.sessions.begin() as session:
        audit.chain(session)
    with app.services.sessions() as session:
        query = select(AuditEvent.kind, AuditEvent.actor).where(AuditEvent.action_public_id == action.public_id)
        return [(kind, actor) for kind, actor in session.execute(query.order_by(AuditEvent.seq))]


def _tool_result(app: SlackApp, action: Action) -> dict[str, Any]:
    with app.services.sessions() as session:
        task = session.get_one(Task, action.task_id)
        results = [
            block
            for message in task.messages
            if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]
    [result] = results
    return dict(result)


def _label(app: SlackApp, action: Action, task_type: str) -> tuple[str | None, int, int]:
    """Settle the type's evidence: (the action's outcome label, samples, clean ones)."""
    with app.services.sessions.begin() as session:
        now = app.clock.now()
        state = settle(session, task_type, app.services.config.task_types[task_type], now)
        seen = evidence(session, state, now)
        label = session.get_one(Action, action.id).outcome
    return label, seen.samples, seen.count("clean")


def test_the_card_of_an_unknown_action_says_what_is_known_and_offers_both_answers(app: SlackApp) -> None:
    action, card = _unknown(app)
    text = json.dumps(card.blocks)
    _, buttons = decide_block(card.blocks)
    assert buttons == {"resolve_ran": action.public_id, "resolve_not_run": action.public_id}
    assert "Outcome unknown" in text and "Did it run?" in text
    assert f"idempotency key `{action.public_id}`" in text
    assert "the call started <!date^" in text  # when, in each reader's time zone
    with app.services.sessions() as session:
        owner = session.scalars(
            select(AuditEvent.data).where(
                AuditEvent.action_public_id == action.public_id, AuditEvent.kind == "action.executing"
            )
        ).one()["lease_owner"]
    assert f"held by `{owner}`" in text


def test_it_ran_ends_it_succeeded_the_agent_is_told_and_it_counts_as_unknown(app: SlackApp) -> None:
    action, card = _unknown(app)
    task_before = _task(app, action)
    assert task_before.state == "waiting"  # the turn waits for a person

    # Refused: not an approver; the requester; each shown only on the form of who submitted it.
    refused = resolve_on_card(app, MALLORY, action, card, "resolve_ran")
    assert "not an approver" in refused.json()["errors"]["reason"]
    own = resolve_on_card(app, REQUESTER, action, card, "resolve_ran")
    assert "cannot approve it" in own.json()["errors"]["reason"]
    assert _state(app, action) == "unknown"

    done = resolve_on_card(app, ALICE, action, card, "resolve_ran", note="It is in the post room's log.")
    assert (done.status, done.body) == (200, "")
    assert _state(app, action) == "succeeded"
    assert unknown_tools.CALLS[action.public_id] == 1  # never called again

    updated = json.dumps(app.slack.message(APPROVALS, card.ts).blocks)
    assert f"<@{ALICE}> says it ran" in updated and "post room" in updated
    assert "resolve_ran" not in updated  # no buttons once resolved

    result = _tool_result(app, action)
    assert result["is_error"] is False
    assert f"A person ({ALICE}) checked and says it ran" in result["content"]
    assert "It is in the post room's log." in result["content"]
    assert _task(app, action).state == "succeeded"
    status = _closing_status(app)
    assert status.startswith(":warning: *Finished:* `mail_letter`: its outcome was unknown;")
    assert f"<@{ALICE}> says it ran" in status

    kinds = _kinds(app, action)
    assert ("decision.refused", MALLORY) in kinds and ("decision.refused", REQUESTER) in kinds
    assert ("decision.resolve_ran", ALICE) in kinds and ("action.resolved_ran", ALICE) in kinds
    assert _label(app, action, "letter") == ("unknown", 1, 0)  # evidence, never clean

    again = resolve_on_card(app, BOB, action, card, "resolve_not_run")
    assert "already succeeded" in again.json()["errors"]["reason"]


def test_it_did_not_run_ends_it_failed_and_the_agent_is_told(app: SlackApp) -> None:
    action, card = _unknown(app)
    done = resolve_on_card(app, BOB, action, card, "resolve_not_run", note="No letter left the building.", then="leave")
    assert (done.status, done.body) == (200, "")
    assert _state(app, action) == "failed"
    updated = json.dumps(app.slack.message(APPROVALS, card.ts).blocks)
    assert f"<@{BOB}> says it did not run" in updated

    result = _tool_result(app, action)
    assert result["is_error"] is True
    assert f"A person ({BOB}) checked and says it did not run" in result["content"]
    assert "No letter left the building." in result["content"]
    assert ("decision.resolve_not_run", BOB) in _kinds(app, action)
    assert f"<@{BOB}> says it did not run — “No letter left the building.”" in _closing_status(app)
    assert _label(app, action, "letter") == ("unknown", 1, 0)
    assert unknown_tools.CALLS[action.public_id] == 1


def test_run_it_again_is_a_decision_with_quorum_and_it_runs_once_more(app: SlackApp) -> None:
    action, card = _unknown(app, "letter2")
    first = resolve_on_card(app, ALICE, action, card, "resolve_not_run", then="run_again")
    assert (first.status, first.body) == (200, "")
    assert _state(app, action) == "unknown"  # 1 of 2
    assert "1 of 2 asked to run it again" in json.dumps(app.slack.message(APPROVALS, card.ts).blocks)
    twice = resolve_on_card(app, ALICE, action, card, "resolve_not_run", then="run_again")
    assert "already approved" in twice.json()["errors"]["reason"]
    own = resolve_on_card(app, REQUESTER, action, card, "resolve_not_run", then="run_again")
    assert "cannot approve it" in own.json()["errors"]["reason"]

    note = "Checked: nothing was sent."
    second = resolve_on_card(app, BOB, action, card, "resolve_not_run", note=note, then="run_again")
    assert (second.status, second.body) == (200, "")
    assert _state(app, action) == "succeeded"
    assert unknown_tools.CALLS[action.public_id] == 2  # ran once more, with the same idempotency key
    assert _tool_result(app, action)["content"] == '{"mailed": "c42"}'
    updated = json.dumps(app.slack.message(APPROVALS, card.ts).blocks)
    assert "run again by" in updated and f"<@{BOB}>" in updated

    kinds = _kinds(app, action)
    assert [actor for kind, actor in kinds if kind == "decision.run_again"] == [ALICE, BOB]
    assert ("action.run_again", BOB) in kinds
    with app.services.sessions() as session:
        hashes = set(session.scalars(select(Decision.params_hash).where(Decision.kind == "run_again")))
    assert hashes == {action.params_hash}
    assert _label(app, action, "letter2") == ("unknown", 1, 0)


def test_the_cli_resolves_both_ways_and_refuses_who_may_not(app: SlackApp, db_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": db_url, "COUNTERSIGN_CONFIG": str(tmp_path / "none.yml")}
    runner = CliRunner()
    ran, _ = _unknown(app)
    refused = runner.invoke(main, ["actions", "resolve", ran.public_id, "ran", "--by", MALLORY], env=env)
    assert refused.exit_code == 1 and "not an approver" in refused.output
    own = runner.invoke(main, ["actions", "resolve", ran.public_id, "ran", "--by", REQUESTER], env=env)
    assert own.exit_code == 1 and "cannot approve it" in own.output
    wrong = runner.invoke(main, ["actions", "resolve", ran.public_id, "ran", "--by", ALICE, "--run-again"], env=env)
    assert wrong.exit_code == 1 and "goes with not-run" in wrong.output
    done = runner.invoke(main, ["actions", "resolve", ran.public_id, "ran", "--by", ALICE, "--note", "seen"], env=env)
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"{ran.public_id}: succeeded (resolved by {ALICE})"
    app.settle()
    assert (
        f"A person ({ALICE}) checked and says it ran; what it returned is not known. Their note: seen"
        in _tool_result(app, ran)["content"]
    )

    not_run, _ = _unknown(app)
    args = ["actions", "resolve", not_run.public_id, "not-run", "--by", BOB]
    done = runner.invoke(main, args, env=env)
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"{not_run.public_id}: failed (resolved by {BOB})"
    again = runner.invoke(main, args, env=env)
    assert again.exit_code == 1 and "already failed" in again.output
    app.settle()
    assert "says it did not run" in _tool_result(app, not_run)["content"]

    rerun, _ = _unknown(app)
    done = runner.invoke(main, ["actions", "resolve", rerun.public_id, "not-run", "--by", BOB, "--run-again"], env=env)
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"{rerun.public_id}: approved (resolved by {BOB})"
    app.settle()
    assert _state(app, rerun) == "succeeded" and unknown_tools.CALLS[rerun.public_id] == 2

    missing = runner.invoke(main, ["actions", "resolve", "act_nope", "ran", "--by", ALICE], env=env)
    assert missing.exit_code == 1 and "no action 'act_nope'" in missing.output
    kinds = _kinds(app, ran)
    assert ("decision.resolve_ran", ALICE) in kinds and ("decision.refused", MALLORY) in kinds
    assert [_label(app, a, "letter")[0] for a in (ran, not_run, rerun)] == ["unknown"] * 3


def test_the_closing_message_says_it_was_rejected_by_whom_and_why_not_done(app: SlackApp) -> None:
    assert app.command(REQUESTER, "run letter Send customer c7 a letter").status == 200
    app.settle()
    [action] = app.actions()
    card = app.card(action)
    block_id, _ = decide_block(card.blocks)
    assert app.click(BOB, "reject", action.public_id, block_id, card.ts).status == 200
    app.settle()
    reason = {"reason": {"reason": {"type": "plain_text_input", "value": "They asked for email instead."}}}
    assert app.submit(BOB, app.slack.views[-1].payload, reason).status == 200
    app.settle()
    status = _closing_status(app)
    assert status == f":warning: *Finished:* `mail_letter` was rejected by <@{BOB}> — “They asked for email instead.”"
    assert "Done" not in status


def test_the_closing_message_says_it_expired(app: SlackApp) -> None:
    assert app.command(REQUESTER, "run letter Send customer c8 a letter").status == 200
    app.settle()
    app.clock.advance(31 * 60)
    app.settle()
    assert [a.state for a in app.actions()] == ["expired"]
    expected = ":warning: *Finished:* `mail_letter` expired: nobody decided in time, so it did not run"
    assert _closing_status(app) == expected


def _closing_status(app: SlackApp) -> str:
    """The status line of the task's closing message (the one with the agent's final answer)."""
    [closing] = [m for m in app.slack.messages(APPROVALS) if "Finished with customer" in json.dumps(m.blocks)]
    [status] = [b for b in closing.blocks if b.get("block_id") == "status"]
    return str(status["text"]["text"])


def _state(app: SlackApp, action: Action) -> str:
    with app.services.sessions() as session:
        return session.get_one(Action, action.id).state


def _task(app: SlackApp, action: Action) -> Task:
    with app.services.sessions() as session:
        return session.get_one(Task, action.task_id)
