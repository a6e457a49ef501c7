"""A task type's current autonomy level: held in the database, started from config."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.config import AutonomyLevel
from core.models import AutonomyState


def current_level(session: Session, task_type: str, start: AutonomyLevel) -> AutonomyLevel:
    state = session.get(AutonomyState, task_type)
    return AutonomyLevel(state.level) if state else start
