"""A tool that is not idempotent and whose first call per action hangs past its timeout: the
action's outcome is then unknown, for a person to resolve. Later calls return at once."""

from __future__ import annotations

import threading
from collections import Counter

from agent import tool

CALLS: Counter[str] = Counter()
_RELEASE: dict[str, threading.Event] = {}
_LOCK = threading.Lock()


@tool(risk="medium", idempotent=False, max_autonomy="hitl", timeout=0.2)
def mail_letter(customer: str, *, idempotency_key: str) -> dict[str, str]:
    """Mail a printed letter to a customer (it cannot be taken back, nor safely sent twice)."""
    with _LOCK:
        CALLS[idempotency_key] += 1
        first = CALLS[idempotency_key] == 1
        release = _RELEASE.setdefault(idempotency_key, threading.Event())
    if first:
        release.wait(30)  # past the 0.2 s timeout: the executor records `unknown`, the test releases it
    return {"mailed": customer}


def release(key: str) -> None:
    """Let a hung first call return (its late result is ignored)."""
    with _LOCK:
        _RELEASE.setdefault(key, threading.Event()).set()
