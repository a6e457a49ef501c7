"""`verify_webhook`: check a delivery's signature before trusting a byte of it.

Each delivery carries `X-Countersign-Timestamp` (Unix seconds), `X-Countersign-Delivery` (a
unique id: the same id again is a retry of a delivery already received, to be dropped) and
`X-Countersign-Signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`, keyed by the API
client's webhook secret (its UTF-8 bytes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from countersign_client.errors import InvalidSignature

TIMESTAMP = "X-Countersign-Timestamp"
DELIVERY = "X-Countersign-Delivery"
SIGNATURE = "X-Countersign-Signature"


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: one state change of one action."""

    delivery_id: str
    timestamp: int
    action_id: str
    state: str
    at: str
    payload: Mapping[str, Any] = field(repr=False)


def signature(secret: str, timestamp: str | int, body: bytes | str) -> str:
    """The `X-Countersign-Signature` value of a body sent at `timestamp`."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance_s: float = 300,
    *,
    now: float | None = None,
) -> Delivery:
    """The delivery in `body` (the raw request body, exactly as received) once its headers
    prove it came from countersign within `tolerance_s` seconds of `now` (default: this
    clock); else `InvalidSignature` saying which check failed. `headers` may be any mapping;
    their names are matched without regard to case."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    by_name = {name.lower(): value for name, value in headers.items()}
    stamp, delivery_id, signed = (_header(by_name, name) for name in (TIMESTAMP, DELIVERY, SIGNATURE))
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise InvalidSignature(f"{TIMESTAMP} is not Unix seconds: {stamp[:40]!r}")
    age = (time.time() if now is None else now) - int(stamp)
    if abs(age) > tolerance_s:
        raise InvalidSignature(f"{TIMESTAMP} is {abs(age):.0f} s from now, more than the {tolerance_s:g} s allowed")
    expected = signature(secret, stamp, body)
    # Several signatures (`v1=a, v1=b`, as while a secret is being rotated) are each tried.
    offered = [part.strip() for part in signed.split(",")]
    if not any(hmac.compare_digest(candidate.encode(), expected.encode()) for candidate in offered):
        raise InvalidSignature(f"{SIGNATURE} does not match the body signed with this secret")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSignature(f"the signed body is not JSON: {exc}") from exc
    if not isinstance(payload, Mapping):
        raise InvalidSignature("the signed body is not a JSON object")
    fields = {key: payload.get(key) for key in ("action_id", "state", "at")}
    missing = [key for key, value in fields.items() if not isinstance(value, str)]
    if missing:
        raise InvalidSignature(f"the signed body lacks {', '.join(missing)}")
    return Delivery(
        delivery_id=delivery_id,
        timestamp=int(stamp),
        action_id=str(fields["action_id"]),
        state=str(fields["state"]),
        at=str(fields["at"]),
        payload=payload,
    )


def _header(by_name: Mapping[str, str], name: str) -> str:
    value = by_name.get(name.lower())
    if not value:
        raise InvalidSignature(f"the {name} header is missing")
    return value
