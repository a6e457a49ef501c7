"""Levels in the database: config changes cap them, dismissals wait a cooldown, admins set them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from approvals import autonomy, proposals
from approvals.decisions import decide
from bot.cli import main
from core.config import AutonomyLevel
from core.models import Action, AuditEvent, Proposal
from tests.approvals.conftest import ALICE, World, task_type

SMALL = {
    "min_samples": 2,
    "min_days": 0,
    "min_approvers": 1,
    "target": 0.2,
    "max_reject_rate": 0.5,
    "min_read_time": "0s",
    "cooldown": "1d",
}


def _earn(world: World, **overrides: object) -> None:
    for _ in range(2):
        action = world.draft(tool="toggle_flag", params={"flag": "x", "enabled": True}, graduation=SMALL, **overrides)
        decide(
            world.sessions,
            world.clock,
            lambda s, a=action: world.decisions.approve(s, a.public_id, ALICE, a.params_hash),
        )
        with world.sessions.begin() as session:  # the executor would run it; the outcome is what matters
            session.get(Action, action.id).state = "succeeded"


def _settle(world: World, **overrides: object) -> None:
    with world.sessions.begin() as session:
        autonomy.settle(session, "refund", task_type(graduation=SMALL, **overrides), world.clock.now(), ["U0ADMIN"])


def _proposals(world: World) -> list[Proposal]:
    with world.sessions() as session:
        return list(session.scalars(select(Proposal).order_by(Proposal.id)))


def test_a_dismissed_proposal_waits_for_its_cooldown(world: World) -> None:
    _earn(world)
    _settle(world)
    [proposal] = _proposals(world)
    assert (proposal.from_level, proposal.to_level, proposal.needed) == ("hitl", "hotl", 1)
    with pytest.raises(proposals.NotAnAdmin), world.sessions.begin() as session:
        proposals.dismiss(
            session,
            proposal.public_id,
            ALICE,
            task_type=task_type(graduation=SMALL),
            admins=["U0ADMIN"],
            directory=world.directory,
            now=world.clock.now(),
        )
    with world.sessions.begin() as session:
        proposals.dismiss(
            session,
            proposal.public_id,
            "U0ADMIN",
            task_type=task_type(graduation=SMALL),
            admins=["U0ADMIN"],
            directory=world.directory,
            now=world.clock.now(),
        )
    _settle(world)
    assert len(_proposals(world)) == 1  # cooling down
    world.clock.advance(timedelta(days=1, seconds=1))
    _settle(world)
    assert [p.state for p in _proposals(world)] == ["dismissed", "open"]


def test_changing_instructions_restarts_evidence_and_caps_at_hitl_until_an_admin_confirms(world: World) -> None:
    _settle(world, autonomy="hotl")
    with world.sessions() as session:
        assert autonomy.effective_level(session, "refund", task_type(autonomy="hotl")) == AutonomyLevel.HOTL
    changed = {"autonomy": "hotl", "instructions": "Refund only below 50 EUR."}
    _settle(world, **changed)
    with world.sessions() as session:
        assert autonomy.effective_level(session, "refund", task_type(**changed)) == AutonomyLevel.HITL
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.kind == "autonomy.config_changed")).all()
        assert "an admin confirms" in (event.note or "")
    with world.sessions.begin() as session:
        autonomy.set_level(
            session,
            "refund",
            task_type(**changed),
            AutonomyLevel.HOTL,
            actor="U0ADMIN",
            reason="reviewed the new instructions",
            now=world.clock.now(),
            admins=["U0ADMIN"],
        )
    with world.sessions() as session:
        assert autonomy.effective_level(session, "refund", task_type(**changed)) == AutonomyLevel.HOTL


def test_the_cli_shows_progress_and_lets_an_admin_set_a_level(world: World, db_url: str, tmp_path) -> None:
    config = tmp_path / "countersign.yml"
    config.write_text(
        "slack: {approvals_channel: C0A, admins: [U0ADMIN]}\n"
        "task_types:\n  refund:\n    tools: [issue_refund]\n    approvers: [U0ALICE]\n"
    )
    env = {"DATABASE_URL": db_url, "COUNTERSIGN_CONFIG": str(config)}
    shown = CliRunner().invoke(main, ["autonomy", "show"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "refund: hitl (ceiling auto)" in shown.output
    assert "0 of 100 decided actions" in shown.output
    refused = CliRunner().invoke(main, ["autonomy", "set", "refund", "hotl", "--by", ALICE, "--reason", "x"], env=env)
    assert refused.exit_code == 1 and "not listed in slack.admins" in refused.output
    done = CliRunner().invoke(
        main, ["autonomy", "set", "refund", "hotl", "--by", "U0ADMIN", "--reason", "trial"], env=env
    )
    assert done.exit_code == 0, done.output
    assert "refund: hotl (ceiling auto)" in CliRunner().invoke(main, ["autonomy", "show", "refund"], env=env).output
