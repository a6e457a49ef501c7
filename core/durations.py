"""Durations as people write them in config and on the command line: `30s`, `15m`, `2h`, `7d`,
`1h30m`, or a plain number of seconds. Owns parsing and formatting them, and the `Duration`
pydantic type; imports nothing from the rest of countersign.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
# Units in falling order, each at most once, so `30m1h` or `1h1h` (likely typos) are refused.
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?d)?(?:\d+(?:\.\d+)?h)?(?:\d+(?:\.\d+)?m)?(?:\d+(?:\.\d+)?s)?")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_HINT = "use forms like 30s, 15m, 2h, 7d"


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse `30s`, `15m`, `2h`, `7d`, `1h30m` or a number of seconds; zero is allowed.

    Raises ValueError naming the value for anything else: negative, empty, `15 minutes`, `1x`.
    """
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, bool):
        # YAML turns `yes`/`on` into True; a bool is never a meant duration.
        raise ValueError(f"not a duration: {text!r} ({_HINT})")
    elif isinstance(text, int | float):
        seconds = float(text)
    elif isinstance(text, str):
        seconds = _parse_text(text)
    else:
        raise ValueError(f"not a duration: {text!r} ({_HINT})")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"not a duration: {text!r} ({_HINT})")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {text!r}")
    return timedelta(seconds=seconds)


def _parse_text(text: str) -> float:
    compact = re.sub(r"\s+", "", text).lower()
    if _NUMBER.fullmatch(compact):
        return float(compact)
    if compact.startswith("-") and (_NUMBER.fullmatch(compact[1:]) or _WHOLE.fullmatch(compact[1:])):
        raise ValueError(f"a duration cannot be negative: {text!r}")
    if not compact or not _WHOLE.fullmatch(compact):
        raise ValueError(f"not a duration: {text!r} ({_HINT})")
    return sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in _PART.findall(compact))


def format_duration(value: timedelta) -> str:
    """The shortest config spelling of `value`, e.g. `1h30m`; `0s` for zero."""
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    remaining = abs(total)
    parts: list[str] = []
    for unit, size in _UNIT_SECONDS.items():
        if unit == "s":
            if remaining or not parts:
                parts.append(f"{remaining:g}s")
        elif remaining >= size:
            count, remaining = divmod(remaining, size)
            parts.append(f"{int(count)}{unit}")
    return sign + "".join(parts)


def _validate(value: object) -> timedelta:
    try:
        if not isinstance(value, str | int | float | timedelta):
            raise ValueError(f"not a duration: {value!r} ({_HINT})")
        return parse_duration(value)
    except ValueError as exc:
        # A custom error keeps pydantic from prefixing "Value error, " to our message.
        raise PydanticCustomError("duration", "{message}", {"message": str(exc)}) from None


Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A `timedelta` field that accepts the spellings `parse_duration` does."""


def seconds_from_peer(value: object, *, most: float) -> float | None:
    """A wait or lifetime in seconds as another server sent it (`Retry-After`, `expires_in`),
    clamped to [0, most]; None when it is no number (`"soon"`, `"inf"`, `"nan"`). Huge ones
    (`10**400`, a 400-digit header) are clamped rather than handed to `timedelta`, which
    overflows past 999,999,999 days."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, int):
        return float(min(max(value, 0), most))
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isinf(seconds) and isinstance(value, str) and value.strip().lstrip("+").isdigit():
        return most  # a count of seconds too long for a float: "as long as you like"
    return min(max(seconds, 0.0), most) if math.isfinite(seconds) else None
