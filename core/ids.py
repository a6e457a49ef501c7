"""Public ids: short, prefixed, roughly time-ordered, safe to show in Slack."""

from __future__ import annotations

import secrets
import time

SYSTEM = "system"  # the actor of every change no person made (the ledger's `actor`)
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """`act_01jd3k9x2m4q7r8s` style: 8 chars of milliseconds, then 8 random chars."""
    millis = int(time.time() * 1000)
    return f"{prefix}_{_base32(millis, 8)}{_base32(secrets.randbits(40), 8)}"
