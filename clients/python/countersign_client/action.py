"""An action as the server describes it, and what its state means to a caller."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from countersign_client.errors import Expired, NotApproved, Rejected

# Nobody has decided yet: a wait goes on. `scheduled` is a veto window: the server says
# `runnable` once it passed unvetoed.
UNDECIDED = frozenset({"drafted", "pending", "scheduled"})
# Approved to run (a person approved, or the level lets it run): claim it.
RUNNABLE = frozenset({"approved"})
# A person said no.
REFUSED_BY_PERSON = frozenset({"rejected", "vetoed"})


@dataclass(frozen=True)
class Action:
    """One action: `params` are the approved ones (a person's edits applied) once decided;
    `None` where the server's answer carried none (the answer to a request). `run_at`: the end
    of its veto window while it is `scheduled`."""

    action_id: str
    state: str
    params: Mapping[str, Any] | None = None
    params_hash: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    url: str | None = None
    run_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def runnable(self) -> bool:
        """Whether it may be claimed now: approved, or its veto window passed unvetoed (as the
        server said when it answered)."""
        return self.state in RUNNABLE or self.raw.get("runnable") is True

    @property
    def decided(self) -> bool:
        """Whether a wait for this action is over."""
        return self.state not in UNDECIDED or self.runnable

    @classmethod
    def from_json(cls, body: object) -> Action:
        """The action in a server answer; `ValueError` naming what is missing."""
        if not isinstance(body, Mapping):
            raise ValueError(f"expected an action as a JSON object, got {type(body).__name__}")
        action_id, state = body.get("action_id"), body.get("state")
        if not isinstance(action_id, str) or not isinstance(state, str):
            raise ValueError(f"an action needs text `action_id` and `state`, got {action_id!r} and {state!r}")
        params = body.get("params")
        return cls(
            action_id=action_id,
            state=state,
            params=dict(params) if isinstance(params, Mapping) else None,
            params_hash=_text(body.get("params_hash")),
            decided_by=_text(body.get("decided_by")),
            decided_at=_time(body.get("decided_at")),
            reason=_text(body.get("reason")),
            url=_text(body.get("url")),
            run_at=_time(body.get("run_at")),
            raw=dict(body),
        )


def outcome(action: Action) -> Action:
    """`action` when it may run now; else the error saying why not (`Rejected` with the
    person's reason, `Expired`, or `NotApproved` for any other end)."""
    if action.runnable:
        return action
    if action.state in REFUSED_BY_PERSON:
        raise Rejected(action.reason or action.state, action)
    if action.state == "expired":
        raise Expired(action)
    raise NotApproved(f"{action.action_id} is {action.state}, not approved to run", action)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
