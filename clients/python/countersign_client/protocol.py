"""The wire format both clients share: paths, request bodies, answers turned into `Action`s
or errors, and the plan of a wait (how long each long-poll asks for)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx2

from countersign_client.action import Action
from countersign_client.errors import APIError, CountersignError, Unreachable, api_error

MAX_WAIT_S = 60  # the most one GET ?wait= may ask for
WAIT_SLACK_S = 15.0  # how much longer than its wait a long-poll's answer may take to arrive
# A long-poll that failed on the way (the server restarting, a proxy's 502) is tried again
# after these pauses, as long as the caller's time allows; the last one repeats.
RETRY_PAUSES_S = (0.5, 1.0, 2.0, 5.0)
RETRYABLE_STATUS = frozenset({502, 503, 504})
# A long-poll answered undecided well before its wait was over (a server that cannot hold more
# waiters answers at once): pause this long before asking again rather than ask in a tight loop.
EARLY_PAUSE_S = 1.0

Status = Literal["succeeded", "failed"]
ActionRef = Action | str


def action_id(action: ActionRef) -> str:
    return action.action_id if isinstance(action, Action) else action


def action_path(action: ActionRef, suffix: str = "") -> str:
    # Quoted whole: an id never reaches another path of the server, whatever it holds.
    return f"/api/actions/{quote(action_id(action), safe='')}{suffix}"


def request_body(
    task_type: str,
    tool: str,
    params: Mapping[str, Any],
    *,
    rationale: str | None,
    confidence: float | None,
    requester: str | None,
    external_id: str | None,
    callback_url: str | None,
    schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"task_type": task_type, "tool": tool, "params": dict(params)}
    optional = {
        "rationale": rationale,
        "confidence": confidence,
        "requester": requester,
        "external_id": external_id,
        "callback_url": callback_url,
        "schema": dict(schema) if schema is not None else None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def result_body(status: Status, result: object, error: str | None) -> dict[str, Any]:
    if status not in ("succeeded", "failed"):
        raise ValueError(f"status must be 'succeeded' or 'failed', not {status!r}")
    body: dict[str, Any] = {"status": status}
    if result is not None:
        body["result"] = result
    if error is not None:
        body["error"] = error
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    """JSON of a request body; a `TypeError` naming the value JSON cannot carry."""
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot send as JSON: {exc}") from exc


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}


def answer(response: httpx2.Response) -> Any:
    """The JSON of a 2xx answer; else the `APIError` for its status and the server's words."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if response.is_success:
        if isinstance(body, str):
            raise CountersignError(f"{response.status_code}: the server's answer is not JSON: {body[:200]!r}")
        return body
    raise api_error(response.status_code, body)


def action_answer(response: httpx2.Response) -> Action:
    body = answer(response)
    try:
        return Action.from_json(body)
    except ValueError as exc:
        raise CountersignError(f"{response.status_code}: {exc}") from exc


def retryable(error: Exception) -> bool:
    """Whether a failed long-poll may be asked again (a GET changes nothing)."""
    if isinstance(error, APIError):
        return error.status in RETRYABLE_STATUS
    return isinstance(error, Unreachable)


class WaitPlan:
    """The time left of one `wait`: each long-poll asks for what is left, at most a minute."""

    def __init__(self, timeout_s: float | None) -> None:
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"timeout must be at least 0 seconds, not {timeout_s!r}")
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.failures = 0

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def over(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def next_wait(self) -> int:
        """Seconds to ask the next long-poll for (whole seconds, rounded up: a wait ends at
        most a second after its timeout)."""
        left = self.left()
        return MAX_WAIT_S if left is None else max(1, min(MAX_WAIT_S, math.ceil(left)))

    def pause_after_failure(self) -> float | None:
        """How long to pause before asking again after a failed long-poll; `None` when the
        time is up (the failure is then raised)."""
        pause = RETRY_PAUSES_S[min(self.failures, len(RETRY_PAUSES_S) - 1)]
        self.failures += 1
        left = self.left()
        if left is not None and left <= pause:
            return None
        return pause

    def answered(self, asked_s: int, took_s: float) -> float:
        """After an undecided answer: how long to pause before the next long-poll (0: none)."""
        self.failures = 0
        if took_s >= asked_s / 2:
            return 0.0
        left = self.left()
        return EARLY_PAUSE_S if left is None else max(0.0, min(EARLY_PAUSE_S, left))
