"""`approvals.tool_definitions.recheck`: what a start does to actions whose tool changed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from agent.external_tools import WithOpenTool, open_spec
from agent.tools import load_tool_modules
from approvals import tool_definitions
from approvals.decisions import decide
from approvals.errors import ToolChanged
from approvals.gate import Draft, submit
from core.config import Config, OpenToolsConfig
from core.models import Action, AuditEvent, Timer
from tests.approvals.conftest import ALICE, BOB, World, task_type
from tests.factories import make_task

CHANGED = load_tool_modules(["tests.approvals.changed_tools"])


def _config(**refund: Any) -> Config:
    return Config.model_validate(
        {"slack": {"approvals_channel": "C0APPROVALS"}, "task_types": {"refund": task_type(**refund).model_dump()}}
    )


def _recheck(world: World, config: Config, catalog: Any = CHANGED) -> list[str]:
    with world.sessions.begin() as session:
        return tool_definitions.recheck(session, catalog, config, world.clock.now())


def _approve(world: World, action: Action, actor: str) -> None:
    def approve(session: Any) -> object:
        return world.decisions.approve(session, action.public_id, actor, action.params_hash)

    decide(world.sessions, world.clock, approve)


def _reload(world: World, action: Action) -> Action:
    with world.sessions() as session:
        return session.scalars(select(Action).where(Action.id == action.id)).one()


def test_each_tool_has_one_definition_hash_that_changes_with_its_schema_or_description(world: World) -> None:
    before, after = world.registry, CHANGED
    assert before.definition_hash("lookup_order") == after.definition_hash("lookup_order")
    assert before.definition_hash("toggle_flag") != after.definition_hash("toggle_flag")  # description
    assert before.definition_hash("issue_refund") != after.definition_hash("issue_refund")  # schema
    assert before.definition_hash("issue_refund") != before.definition_hash("toggle_flag")
    with pytest.raises(LookupError):
        before.definition_hash("no_such_tool")


def test_a_pending_action_is_re_asked_once_and_its_earlier_approvals_stop_counting(world: World) -> None:
    action = world.draft(quorum=2)
    assert action.tool_hash == world.registry.definition_hash("issue_refund")
    _approve(world, action, ALICE)
    world.clock.advance(60)

    assert _recheck(world, _config(quorum=2)) == [action.public_id]
    assert _recheck(world, _config(quorum=2)) == []  # the new definition is now the one it waits under
    changed = _reload(world, action)
    assert (changed.state, changed.tool_hash, changed.tool_changed_at) == (
        "pending",
        CHANGED.definition_hash("issue_refund"),
        world.clock.now(),
    )
    # A click bound to the old definition is refused; one without a definition (a card drawn
    # before cards showed it) too, since the definition moved.
    for seen in (action.tool_hash, None):
        with pytest.raises(ToolChanged):
            decide(
                world.sessions,
                world.clock,
                lambda s, seen=seen: world.decisions.approve(
                    s, action.public_id, BOB, action.params_hash, seen_tool=seen
                ),
            )
    outcome = decide(
        world.sessions,
        world.clock,
        lambda s: world.decisions.approve(s, action.public_id, BOB, action.params_hash, seen_tool=changed.tool_hash),
    )
    assert (outcome.approvals, outcome.state) == (1, "pending")  # Alice's earlier one no longer counts
    outcome = decide(
        world.sessions,
        world.clock,
        lambda s: world.decisions.approve(s, action.public_id, ALICE, action.params_hash, seen_tool=changed.tool_hash),
    )
    assert (outcome.approvals, outcome.state) == (2, "approved")


def test_an_action_in_its_veto_window_goes_back_to_approval(world: World) -> None:
    action = world.draft(tool="toggle_flag", params={"flag": "checkout", "enabled": True}, autonomy="hotl")
    assert action.state == "scheduled"
    assert _recheck(world, _config(autonomy="hotl")) == [action.public_id]
    back = _reload(world, action)
    assert (back.state, back.run_at) == ("pending", None)
    with world.sessions() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.kind == "action.tool_changed")).all()
        timers = session.scalars(select(Timer).where(Timer.action_id == action.id)).all()
    assert (event.from_state, event.to_state) == ("scheduled", "pending")
    assert "veto window no longer applies" in (event.note or "")
    assert timers == []  # the config's chain is empty here: nothing to arm


def test_unchanged_tools_open_tools_and_decided_actions_are_left_alone(world: World) -> None:
    same = world.draft(tool="lookup_order", params={"order_id": "1"})
    decided = world.draft()
    _approve(world, decided, ALICE)
    # An open tool's definition came with its action: the schema its client sent.
    policy = OpenToolsConfig()
    spec = open_spec("run_shell", policy, {"type": "object"})
    with world.sessions.begin() as session:
        task = make_task(session, world.clock.now())
        kind = task_type(tools=[], open_tools={})
        opened = submit(
            session, task, Draft("run_shell", {"cmd": "ls"}, "asked", 0.9), task_type=kind,
            catalog=WithOpenTool(world.registry, spec), now=world.clock.now(), external={"external_id": "x"},
            open_tool=True,
        )  # fmt: skip
        opened.params_schema = {"type": "object"}
    assert opened.state == "pending" and opened.tool_hash == spec.definition_hash
    assert _recheck(world, _config()) == []
    assert _reload(world, same).tool_changed_at is None
    assert _reload(world, decided).tool_changed_at is None
