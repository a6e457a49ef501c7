"""Writing outbox rows: the messages a state change causes, committed with it.

Domain packages describe *what* to tell people (`kind` + payload of ids and facts);
`bot/` renders and delivers it. Nothing here knows about Slack.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.models import OutboxMessage


def enqueue(session: Session, kind: str, ordering_key: str, payload: dict[str, Any], now: datetime) -> OutboxMessage:
    message = OutboxMessage(kind=kind, ordering_key=ordering_key, payload=payload, created_at=now, available_at=now)
    session.add(message)
    return message
