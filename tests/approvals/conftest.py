from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from agent.tools import ToolRegistry, load_tool_modules
from approvals.decisions import Decisions
from approvals.gate import Draft, submit
from core.config import TaskTypeConfig
from core.models import Action
from tests.factories import make_task
from tests.fakes.clock import FrozenClock
from tests.fakes.directory import FakeDirectory

REQUESTER = "U0REQUESTER"
ALICE, BOB, CAROL, MALLORY = "U0ALICE", "U0BOB", "U0CAROL", "U0MALLORY"


def task_type(**overrides: Any) -> TaskTypeConfig:
    fields: dict[str, Any] = {
        "description": "Refund a customer order",
        "instructions": "Refund when the order qualifies.",
        "tools": ["lookup_order", "issue_refund", "toggle_flag", "send_note"],
        "autonomy": "hitl",
        "channel": "C0PAYMENTS",
        "approvers": [ALICE, BOB, "@payments-leads"],
        "quorum": 1,
        "veto_window": "10m",
        "confidence_threshold": 0.7,
    }
    fields.update(overrides)
    return TaskTypeConfig.model_validate(fields)


@dataclass
class World:
    sessions: sessionmaker[Session]
    clock: FrozenClock
    directory: FakeDirectory
    registry: ToolRegistry
    decisions: Decisions

    def draft(
        self,
        *,
        tool: str = "issue_refund",
        params: dict[str, Any] | None = None,
        confidence: float = 0.9,
        **type_overrides: Any,
    ) -> Action:
        params = params if params is not None else {"order_id": "1234", "amount_cents": 500}
        with self.sessions.begin() as session:
            task = make_task(session, self.clock.now(), requester=REQUESTER)
            return submit(
                session,
                task,
                Draft(tool, params, "customer asked", confidence),
                task_type=task_type(**type_overrides),
                catalog=self.registry,
                now=self.clock.now(),
            )


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    clock = FrozenClock()
    directory = FakeDirectory({"payments-leads": {CAROL}})
    registry = load_tool_modules(["tests.approvals.shop_tools"])
    return World(sessions, clock, directory, registry, Decisions(directory, registry, clock))
