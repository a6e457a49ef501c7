"""Standing rules in the gate, on both databases: a matching draft runs one level up (never past
the tool's caps), a use is counted once and atomically (two drafts at once cannot overrun
`max_uses`, on PostgreSQL's row locks), expiry and revocation end it, an incident revokes the
type's rules, and graduation counts a rule's runs apart from people's approvals."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from approvals import autonomy, machine, proposals, standing
from approvals.decisions import decide
from approvals.errors import SelfApproval
from approvals.rules import InvalidRule
from core.ids import SYSTEM
from core.models import Action, AuditEvent, StandingRule
from core.states import ActionState
from tests.approvals.conftest import ALICE, BOB, REQUESTER, World, task_type
from tests.approvals.test_gate_autonomy import _waiting_on_a_lock

FLAG = {"tool": "toggle_flag", "params": {"flag": "beta", "enabled": True}}
ADMINS = [ALICE]
BETA_ONLY = {"flag": {"regex": "be.*"}, "enabled": {"equals": True}}


def _allow(world: World, action: Action, constraints: dict[str, Any], *, max_uses: int | None = None,
           actor: str = ALICE, expires_in: timedelta = timedelta(days=7), admins: list[str] = ADMINS,
           **overrides: Any) -> StandingRule:  # fmt: skip
    schema = world.registry.get(action.tool).json_schema()

    def call(session: Session) -> StandingRule:
        _, rule = standing.allow_similar(
            session, world.decisions, action.public_id, actor, action.params_hash,
            constraints=constraints, schema=schema, expires_in=expires_in, max_uses=max_uses,
            task_types={"refund": task_type(**overrides)}, admins=admins, now=world.clock.now(),
        )  # fmt: skip
        return rule

    return decide(world.sessions, world.clock, call, actor=actor)


def _flag(world: World, flag: str = "beta", **overrides: Any) -> Action:
    return world.draft(tool="toggle_flag", params={"flag": flag, "enabled": True}, **overrides)


def _events(world: World, kind: str) -> list[AuditEvent]:
    with world.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.seq)))


def _uses(world: World, rule: StandingRule) -> int:
    with world.sessions() as session:
        return session.get_one(StandingRule, rule.id).uses


def test_a_rule_runs_matching_drafts_one_level_up_until_it_is_used_up(world: World) -> None:
    first = _flag(world)
    assert first.state == ActionState.PENDING
    rule = _allow(world, first, BETA_ONLY, max_uses=2)
    with world.sessions() as session:
        assert session.get_one(Action, first.id).state == ActionState.APPROVED  # approved as it was made
    [created] = _events(world, "rule.created")
    assert created.actor == ALICE and created.action_public_id == first.public_id
    assert created.data is not None and created.data["rule"] == rule.public_id and rule.public_id.startswith("rule_")

    allowed = _flag(world, "beta-2")
    assert (allowed.state, allowed.mode, allowed.standing_rule_id) == (ActionState.SCHEDULED, "hotl", rule.id)
    assert _flag(world, "gamma").state == ActionState.PENDING  # the regex does not allow it
    assert world.draft(tool="toggle_flag", params={"flag": "beta", "enabled": False}).state == ActionState.PENDING
    assert _flag(world, "beta").state == ActionState.SCHEDULED
    assert _flag(world, "beta").state == ActionState.PENDING  # two uses, both spent
    assert _uses(world, rule) == 2
    used = _events(world, "rule.used")
    assert [e.data["rule"] for e in used if e.data] == [rule.public_id] * 2
    scheduled = [e for e in _events(world, "action.scheduled") if e.action_public_id == allowed.public_id]
    assert scheduled[0].data is not None and scheduled[0].data["rule"] == rule.public_id


def test_an_expired_or_revoked_rule_allows_nothing(world: World) -> None:
    rule = _allow(world, _flag(world), BETA_ONLY, expires_in=timedelta(hours=1))
    world.clock.advance(timedelta(minutes=59))
    assert _flag(world).state == ActionState.SCHEDULED
    world.clock.advance(timedelta(minutes=2))
    assert _flag(world).state == ActionState.PENDING
    other = _allow(world, _flag(world), BETA_ONLY)
    with world.sessions.begin() as session:
        standing.revoke(session, other.public_id, ALICE, world.clock.now(), "enough")
    assert _flag(world).state == ActionState.PENDING
    with world.sessions.begin() as session, pytest.raises(standing.RuleAlreadyRevoked):
        standing.revoke(session, other.public_id, ALICE, world.clock.now())
    with world.sessions.begin() as session, pytest.raises(standing.RuleNotFound):
        standing.revoke(session, "rule_nope", ALICE, world.clock.now())
    [revoked] = _events(world, "rule.revoked")
    assert (revoked.actor, revoked.note, revoked.data) == (ALICE, "enough", {"rule": other.public_id, "uses": 0})
    assert _uses(world, rule) == 1


def test_a_rule_never_lifts_past_the_tools_caps_or_low_confidence(world: World) -> None:
    refund = world.draft()  # issue_refund: high risk, max_autonomy hitl
    with pytest.raises(standing.RuleRefused, match="always needs a person's approval"):
        _allow(world, refund, {"order_id": {"any": True}, "amount_cents": {"any": True}})
    rule = _allow(world, _flag(world), {"flag": {"any": True}, "enabled": {"any": True}})
    assert _flag(world, confidence=0.2).state == ActionState.PENDING  # low confidence: a person decides
    ceiling = _flag(world, autonomy="hotl")  # already hotl; the ceiling (auto by default) allows one more
    assert (ceiling.state, ceiling.standing_rule_id) == (ActionState.EXECUTING, rule.id)
    capped = _flag(world, autonomy="hotl", graduation={"ceiling": "hotl"})
    assert (capped.state, capped.standing_rule_id) == (ActionState.SCHEDULED, None)
    assert _uses(world, rule) == 1  # only the draft it lifted counted


def test_who_may_make_a_rule_and_what_it_must_say(world: World) -> None:
    action = _flag(world)
    with pytest.raises(standing.RuleRefused, match="not an admin"):
        _allow(world, action, BETA_ONLY, actor=BOB)
    with pytest.raises(standing.RuleRefused, match="does not allow standing rules"):
        _allow(world, action, BETA_ONLY, rules=False)
    with pytest.raises(InvalidRule) as invalid:
        _allow(world, action, {"flag": {"regex": "(unclosed"}, "colour": {"equals": "red"}})
    assert set(invalid.value.problems) == {"flag", "colour", "enabled"}
    assert "RE2" in invalid.value.problems["flag"] and "any" in invalid.value.problems["enabled"]
    with pytest.raises(InvalidRule, match="max_uses"):
        _allow(world, action, BETA_ONLY, max_uses=0)
    with world.sessions() as session:  # nothing half-written: still pending, no rule, no approval
        assert session.get_one(Action, action.id).state == ActionState.PENDING
        assert session.scalars(select(StandingRule)).all() == []
    assert [e.data and e.data["attempted"] for e in _events(world, "decision.refused")] == ["allow_similar"] * 2


def test_the_requester_cannot_make_a_rule_from_their_own_request(world: World) -> None:
    action = _flag(world)
    with pytest.raises(SelfApproval):
        _allow(world, action, BETA_ONLY, actor=REQUESTER, admins=[REQUESTER])
    with world.sessions() as session:
        assert session.scalars(select(StandingRule)).all() == []


def _run(world: World, action: Action) -> None:
    """The executor's part: the veto window ends, the run succeeds."""
    with world.sessions.begin() as session:
        row = session.get_one(Action, action.id)
        machine.move(session, row, ActionState.EXECUTING, actor=SYSTEM, now=world.clock.now())
        machine.move(session, row, ActionState.SUCCEEDED, actor=SYSTEM, now=world.clock.now())


def test_rule_runs_are_evidence_apart_and_an_incident_revokes_the_types_rules(world: World) -> None:
    rule = _allow(world, _flag(world), BETA_ONLY)
    allowed = _flag(world)
    _run(world, allowed)
    kind = task_type()
    with world.sessions.begin() as session:
        state = autonomy.settle(session, "refund", kind, world.clock.now())
        found = autonomy.evidence(session, state, world.clock.now())
        assert session.get_one(Action, allowed.id).outcome == "by_rule"
    assert found.by_rule == 1 and "by_rule" not in found.outcomes  # not a person's clean approval
    with world.sessions.begin() as session:
        proposals.report_incident(
            session, allowed.public_id, BOB, task_type=kind, admins=ADMINS, directory=world.directory,
            now=world.clock.now(), note="wrong flag",
        )  # fmt: skip
    [revoked] = _events(world, "rule.revoked")
    assert revoked.actor == SYSTEM and revoked.data == {"rule": rule.public_id, "uses": 1}
    assert revoked.note is not None and "incident" in revoked.note
    assert _flag(world).state == ActionState.PENDING


def test_two_drafts_at_once_cannot_overrun_max_uses(
    world: World, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serializes writers")
    rule = _allow(world, _flag(world), BETA_ONLY, max_uses=1)
    drafted: list[Action] = []
    with sessions.begin() as session:  # one draft's use counted, not yet committed
        counted = standing.use(session, [session.get_one(StandingRule, rule.id)], world.clock.now())
        assert counted is not None and counted.uses == 1
        second = threading.Thread(target=lambda: drafted.append(_flag(world)))
        second.start()
        assert _waiting_on_a_lock(engine), "the second draft's use did not wait for the first"
    second.join(10)
    assert [(a.state, a.standing_rule_id) for a in drafted] == [(ActionState.PENDING, None)]
    assert _uses(world, rule) == 1
