"""The action lifecycle: one StrEnum and one transition table (see DESIGN.md)."""

from __future__ import annotations

from enum import StrEnum

from approvals.errors import InvalidTransition


class ActionState(StrEnum):
    DRAFTED = "drafted"
    PENDING = "pending"  # waits for approval (hitl, or low confidence)
    SCHEDULED = "scheduled"  # hotl: runs at run_at unless vetoed
    APPROVED = "approved"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # crashed mid-run and the tool is not idempotent: a person resolves it
    ESCALATED = "escalated"
    REJECTED = "rejected"
    VETOED = "vetoed"
    EXPIRED = "expired"
    REFUSED = "refused"  # out-of-scope tool or invalid params: never reaches a person
    CANCELLED = "cancelled"


S = ActionState

TRANSITIONS: dict[ActionState, frozenset[ActionState]] = {
    S.DRAFTED: frozenset({S.PENDING, S.SCHEDULED, S.EXECUTING, S.REFUSED, S.CANCELLED}),
    S.PENDING: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED, S.CANCELLED}),
    # back to pending: re-gated when its task type is demoted during the veto window
    S.SCHEDULED: frozenset({S.EXECUTING, S.VETOED, S.CANCELLED, S.PENDING}),
    S.APPROVED: frozenset({S.EXECUTING, S.CANCELLED}),
    S.EXECUTING: frozenset({S.SUCCEEDED, S.FAILED, S.UNKNOWN}),
    S.FAILED: frozenset({S.ESCALATED}),
    S.UNKNOWN: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset(),
    S.ESCALATED: frozenset(),
    S.REJECTED: frozenset(),
    S.VETOED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REFUSED: frozenset(),
    S.CANCELLED: frozenset(),
}

# States in which a person's decision is still awaited.
OPEN_FOR_DECISION = frozenset({S.PENDING, S.SCHEDULED})


def check_transition(action_id: str, current: str, target: ActionState) -> None:
    """Raise `InvalidTransition` unless the table allows current → target."""
    if target not in TRANSITIONS[ActionState(current)]:
        raise InvalidTransition(action_id, current, target)
