"""The autonomy job: every task type on its first tick, then only the types with outcomes to
label plus a rotation that reaches every type once a minute, never every type every second."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.config import Config
from escalations.jobs import Settler
from tests.fakes.clock import FrozenClock

TYPES = 128


def _config() -> Config:
    kind = {"tools": ["lookup_order"], "autonomy": "hitl", "approvers": ["U0ALICE"]}
    return Config.model_validate(
        {"slack": {"approvals_channel": "C0APPROVALS"}, "task_types": {f"type_{n:03d}": kind for n in range(TYPES)}}
    )


def test_an_idle_tick_settles_a_few_types_and_a_minute_of_ticks_settles_them_all(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    settler = Settler(sessions, _config(), FrozenClock(), tick_s=1.0, every_s=60.0)
    assert settler() == TYPES  # the first tick: every type (config changes land at once)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    settled = [settler() for _ in range(60)]
    assert max(settled) == 3  # ceil(128 / 60): not 128 a second
    assert sum(settled) >= TYPES  # the rotation reached every type within the minute
    assert len(commits) <= sum(settled)  # one transaction per settled type, none per idle type
