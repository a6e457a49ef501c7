"""Multi-workspace mode: a workspace that uninstalls the app or revokes its bot token.

Its installation is deleted (so no token of it is kept or used), and its unfinished tasks are
stopped with every action not yet running (`agent.tasks.stop_task`: cancelled, audited). A
person there can no longer see a card or press Veto, so nothing of it may run unseen. Messages
still queued for it are dropped by the outbox sender (`NotInstalled`). Installing again starts
afresh; stopped tasks stay stopped. Both events need no authorization (Bolt skips it for them).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltContext
from sqlalchemy import select

from agent.tasks import stop_task
from approvals import audit
from bot.services import Services
from core.ids import SYSTEM
from core.models import Task
from core.states import FINISHED

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    if services.installations is None:
        return
    store = services.installations.store

    @app.event("tokens_revoked")
    def tokens_revoked(event: dict[str, Any], context: BoltContext) -> None:
        tokens = event.get("tokens") or {}
        for user in tokens.get("oauth") or []:
            store.delete_installation(enterprise_id=context.enterprise_id, team_id=context.team_id, user_id=user)
        if tokens.get("bot"):
            store.delete_bot(enterprise_id=context.enterprise_id, team_id=context.team_id)
            stop_workspace(services, context.team_id, "tokens_revoked")

    @app.event("app_uninstalled")
    def app_uninstalled(context: BoltContext) -> None:
        store.delete_all(enterprise_id=context.enterprise_id, team_id=context.team_id)
        stop_workspace(services, context.team_id, "app_uninstalled")


def stop_workspace(services: Services, team_id: str | None, why: str) -> int:
    """Stop every unfinished task of workspace `team_id`; how many were stopped. Idempotent."""
    if not team_id:
        return 0
    reason = f"countersign lost its access to this workspace ({why})"
    now = services.clock.now()
    with services.sessions.begin() as session:
        open_tasks = session.scalars(
            select(Task.public_id).where(Task.team_id == team_id, Task.state.not_in(list(FINISHED))).order_by(Task.id)
        ).all()
        for task_public_id in open_tasks:
            stop_task(session, task_public_id, SYSTEM, now, reason)
        data = {"team_id": team_id, "event": why, "tasks_stopped": len(open_tasks)}
        audit.record(
            session, audit.AuditEntry(kind="workspace.access_lost", actor=SYSTEM, at=now, note=reason, data=data)
        )
    log.warning("workspace %s: %s; %d unfinished task(s) stopped", team_id, why, len(open_tasks))
    return len(open_tasks)
