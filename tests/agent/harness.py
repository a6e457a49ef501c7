"""A whole agent stack on a real database, with the real `anthropic` SDK pointed at the
local fake Messages API: submit a task, drive the workers, decide as people would."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.anthropic_model import AnthropicModel
from agent.executor import Executor
from agent.runner import AgentRunner
from agent.tasks import submit_task
from agent.tools import ToolRegistry, load_tool_modules
from approvals.decisions import Decisions, Outcome, decide
from core.config import Config
from core.models import Action, OutboxMessage, Task
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.clock import FrozenClock
from tests.fakes.directory import FakeDirectory

REQUESTER, ALICE, BOB = "U0REQUESTER", "U0ALICE", "U0BOB"


def make_config(*, model_section: dict[str, Any] | None = None, **refund: Any) -> Config:
    """The `refund` task type (`refund` overrides its keys) and, optionally, a `model` section."""
    task_type: dict[str, Any] = {
        "instructions": "You handle refund requests for the shop.",
        "tools": ["lookup_order", "issue_refund"],
        "autonomy": "hitl",
        "approvers": [ALICE, BOB],
        "budget": {"max_steps": 8, "max_tokens": 50_000, "max_cost_usd": 0.5},
    }
    task_type.update(refund)
    return Config.model_validate(
        {
            "slack": {"approvals_channel": "C0APPROVALS", "admins": ["U0ADMIN"]},
            "tools": {"modules": ["tests.approvals.shop_tools"]},
            "task_types": {"refund": task_type},
            **({"model": model_section} if model_section is not None else {}),
        }
    )


@dataclass
class Stack:
    sessions: sessionmaker[Session]
    clock: FrozenClock
    config: Config
    registry: ToolRegistry
    fake: FakeAnthropic
    runner: AgentRunner
    executor: Executor
    decisions: Decisions

    def submit(self, text: str = "Please refund order 1234, it arrived broken") -> str:
        with self.sessions.begin() as session:
            return submit_task(
                session, self.config, "refund", text, now=self.clock.now(), requester=REQUESTER
            ).public_id

    def drive(self, limit: int = 100) -> None:
        """Run the drafting loop and the executor until neither has anything to do."""
        for _ in range(limit):
            if not (self.runner.run_until_idle() + self.executor.run_until_idle()):
                return
        raise AssertionError("the workers never went idle")

    def task(self, task_id: str) -> Task:
        with self.sessions() as session:
            return session.scalars(select(Task).where(Task.public_id == task_id)).one()

    def actions(self, task_id: str) -> list[Action]:
        with self.sessions() as session:
            task = session.scalars(select(Task).where(Task.public_id == task_id)).one()
            return list(session.scalars(select(Action).where(Action.task_id == task.id).order_by(Action.id)))

    def pending(self, task_id: str) -> Action:
        [action] = [a for a in self.actions(task_id) if a.state == "pending"]
        return action

    def approve(self, action: Action, actor: str = ALICE) -> Outcome:
        return decide(
            self.sessions, self.clock, lambda s: self.decisions.approve(s, action.public_id, actor, action.params_hash)
        )

    def reject(self, action: Action, reason: str, actor: str = BOB) -> Outcome:
        return decide(self.sessions, self.clock, lambda s: self.decisions.reject(s, action.public_id, actor, reason))

    def outbox(self, kind: str) -> list[OutboxMessage]:
        with self.sessions() as session:
            return list(
                session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id))
            )


def build_stack(
    sessions: sessionmaker[Session], fake: FakeAnthropic, config: Config, clock: FrozenClock | None = None
) -> Stack:
    clock = clock or FrozenClock()
    registry = load_tool_modules(config.tools.modules)
    client = anthropic.Anthropic(api_key="test-key", base_url=fake.url, max_retries=0, timeout=5.0)
    runner = AgentRunner(sessions, config, registry, AnthropicModel(client), clock)
    executor = Executor(sessions, registry, clock)
    decisions = Decisions(FakeDirectory(), registry, clock)
    return Stack(sessions, clock, config, registry, fake, runner, executor, decisions)


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def stack(sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic) -> Stack:
    return build_stack(sessions, fake_anthropic, make_config())
