"""Shared helpers of the executor tests: building actions, reading them back, checking the ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from approvals import audit
from core.models import Action, AuditEvent, OutboxMessage
from tests.factories import make_action, make_task


def add_action(sessions: sessionmaker[Session], now: datetime, tool: str, params: dict[str, Any], **fields: Any) -> str:
    """Commit an action (approved unless `state` says otherwise) and return its public id.

    `lease_owner` and `lease_until` may be given to stand for an executor that holds it.
    """
    lease = {name: fields.pop(name) for name in ("lease_owner", "lease_until", "attempts") if name in fields}
    with sessions.begin() as session:
        action = make_action(session, make_task(session, now), now, tool=tool, params=params, **fields)
        for name, value in lease.items():
            setattr(action, name, value)
        return action.public_id


def load(sessions: sessionmaker[Session], public_id: str) -> Action:
    with sessions() as session:
        return session.execute(select(Action).where(Action.public_id == public_id)).scalar_one()


def audit_kinds(sessions: sessionmaker[Session], public_id: str) -> list[str]:
    with sessions() as session:
        query = select(AuditEvent.kind).where(AuditEvent.action_public_id == public_id).order_by(AuditEvent.seq)
        return list(session.scalars(query))


def audit_events(sessions: sessionmaker[Session], public_id: str) -> list[AuditEvent]:
    with sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action_public_id == public_id).order_by(AuditEvent.seq)
        return list(session.scalars(query))


def outbox_kinds(sessions: sessionmaker[Session], public_id: str) -> list[str]:
    with sessions() as session:
        query = select(OutboxMessage.kind).where(OutboxMessage.ordering_key == public_id).order_by(OutboxMessage.id)
        return list(session.scalars(query))


def assert_chain_ok(sessions: sessionmaker[Session]) -> None:
    """Every event links to the one before and its hash covers its fields."""
    with sessions() as session:
        previous = audit.GENESIS_HASH
        for number, event in enumerate(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)), start=1):
            assert event.seq == number
            assert event.prev_hash == previous, f"event {event.seq} does not link to {previous}"
            assert event.hash == audit.compute_hash(event), f"event {event.seq} was altered"
            previous = event.hash
