"""Rows for tests, built with the real models (no shortcuts past the schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.canonical import params_hash
from core.ids import new_id
from core.models import Action, Task


def make_task(session: Session, now: datetime, *, task_type: str = "refund", requester: str = "U0REQUESTER") -> Task:
    task = Task(
        public_id=new_id("tsk"),
        task_type=task_type,
        requester=requester,
        request_text="Please refund order 1234",
        state="running",
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    session.flush()
    return task


def make_action(
    session: Session,
    task: Task,
    now: datetime,
    *,
    tool: str = "issue_refund",
    params: dict[str, Any] | None = None,
    state: str = "approved",
    mode: str = "hitl",
    risk: str = "high",
    idempotent: bool = True,
    approvers: list[str] | None = None,
    quorum: int = 1,
    timeout_s: float = 30.0,
    run_at: datetime | None = None,
) -> Action:
    params = params if params is not None else {"order_id": "1234", "amount_cents": 500}
    action = Action(
        public_id=new_id("act"),
        task_id=task.id,
        task_type=task.task_type,
        tool=tool,
        params=params,
        params_hash=params_hash(params),
        rationale="customer asked",
        confidence=0.9,
        risk=risk,
        idempotent=idempotent,
        mode=mode,
        state=state,
        requester=task.requester,
        approvers=approvers if approvers is not None else ["U0ALICE", "U0BOB"],
        quorum=quorum,
        timeout_s=timeout_s,
        run_at=run_at,
        created_at=now,
        updated_at=now,
    )
    session.add(action)
    session.flush()
    return action
