"""Every error the client raises, each a `CountersignError`.

The server's refusals (`APIError` and one subclass per status a caller handles differently)
carry the server's own words: `error`, and for a 422 the `problems` it found, by field.
An action that ended without approval raises a `NotApproved` (`Rejected`, `Expired`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from countersign_client.action import Action


class CountersignError(Exception):
    """Anything this client raises on purpose."""


class Unreachable(CountersignError):
    """The server could not be reached, or did not answer in time (no status to report)."""


class APIError(CountersignError):
    """The server refused a request: its status, its `error` text and, when it named them,
    its `problems` (field → what is wrong)."""

    def __init__(self, status: int, error: str, problems: Mapping[str, Any] | None = None) -> None:
        self.status, self.error = status, error
        self.problems: dict[str, Any] = dict(problems or {})
        detail = "; ".join(f"{field}: {problem}" for field, problem in self.problems.items())
        super().__init__(f"{status}: {error}" + (f" ({detail})" if detail else ""))


class Unauthorized(APIError):
    """401: the token is missing, wrong or revoked."""


class Forbidden(APIError):
    """403: the token's client was not given this task type."""


class NotFound(APIError):
    """404: no such action for this client (another client's actions do not exist for it)."""


class Conflict(APIError):
    """409: the action is not in a state for this (already claimed, not approved, already
    reported)."""


class Invalid(APIError):
    """422: the request names an unknown task type or tool, or its params do not match the
    tool's schema; `problems` names each."""


class ServerError(APIError):
    """5xx: the server failed; the request may or may not have taken effect."""


STATUS_ERRORS: dict[int, type[APIError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
}


def api_error(status: int, body: object) -> APIError:
    """The error for a refused request, from the server's JSON answer (or its raw text)."""
    error, problems = f"HTTP {status}", None
    if isinstance(body, Mapping):
        if isinstance(body.get("error"), str):
            error = body["error"]
        if isinstance(body.get("problems"), Mapping):
            problems = body["problems"]
    elif isinstance(body, str) and body.strip():
        error = body.strip()[:500]
    kind = STATUS_ERRORS.get(status, ServerError if status >= 500 else APIError)
    return kind(status, error, problems)


class WaitTimedOut(CountersignError):
    """Nobody decided within the time the caller was willing to wait; `action` is the last
    state seen (still `pending` or `scheduled`)."""

    def __init__(self, action: Action) -> None:
        self.action = action
        super().__init__(f"{action.action_id} is still {action.state}")


class NotApproved(CountersignError):
    """The action ended without being approved to run: `action` says how."""

    def __init__(self, message: str, action: Action | None = None) -> None:
        self.action = action
        super().__init__(message)


class Rejected(NotApproved):
    """A person rejected (or vetoed) the action; `reason` is theirs, word for word."""

    def __init__(self, reason: str, action: Action | None = None) -> None:
        self.reason = reason
        super().__init__(reason, action)


class Expired(NotApproved):
    """Nobody decided before the task type's escalation chain expired the action."""

    def __init__(self, action: Action | None = None) -> None:
        super().__init__(f"{action.action_id if action else 'the action'} expired undecided", action)


class InvalidSignature(CountersignError):
    """A webhook delivery that must not be trusted: missing headers, a stale timestamp, or a
    signature that does not match the body."""
