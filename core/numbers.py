"""Numbers in text someone else wrote (a modal's field, a JSON value in it): plain decimal
literals of bounded size, turned into exact `Decimal`s. Imports nothing from the rest of
countersign.

Why bounded: `Decimal("1e700000")` is instant, but `int()` of it builds a 700,000-digit
integer with the GIL held, freezing every thread of the server for seconds (`1e1000000`
took over a minute). So the text is checked before it becomes a number: at most
`MAX_LENGTH` characters and an exponent within ±`MAX_EXPONENT`, which bounds any value to
about 70 digits. Anything but ASCII digits with an optional leading `-`, one `.` and an
exponent (`+5`, `.5`, `1_000`, Unicode digits, hex, `inf`, `nan`) is refused: Slack's number
input sends none of them, and `Decimal` would accept several.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

__all__ = [
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "NotAPlainNumber",
    "NumberOutOfBounds",
    "NumberRefused",
    "json_loads",
    "plain_decimal",
]

MAX_LENGTH = 40
MAX_EXPONENT = 30
SHOWN = 50  # how much of a refused text its error repeats
_PLAIN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE](?P<exponent>[+-]?[0-9]+))?")


class NumberRefused(ValueError):
    """The text was not turned into a number; `problem` says why, for the person who typed it."""

    def __init__(self, text: str, problem: str) -> None:
        self.text, self.problem = text, problem
        shown = text if len(text) <= SHOWN else text[:SHOWN] + "…"
        super().__init__(f"{shown!r} is not a number we accept: {problem}")


class NotAPlainNumber(NumberRefused):
    """Not a decimal literal at all (`12abc`, `0x10`, `inf`)."""


class NumberOutOfBounds(NumberRefused):
    """A decimal literal, but longer than `MAX_LENGTH` or with an exponent beyond ±`MAX_EXPONENT`."""


def plain_decimal(text: str) -> Decimal:
    """The exact value of `text`, a plain decimal literal like `42`, `-2.5` or `1.5e3`."""
    if len(text) > MAX_LENGTH:  # first, so that nothing below works on a long text
        raise NumberOutOfBounds(text, f"at most {MAX_LENGTH} characters (this has {len(text):,})")
    match = _PLAIN.fullmatch(text)
    if match is None:
        raise NotAPlainNumber(text, "write digits with an optional leading -, one . and an exponent, like 1.5e3")
    exponent = int(match["exponent"] or 0)  # at most 40 digits: cheap
    if abs(exponent) > MAX_EXPONENT:
        raise NumberOutOfBounds(text, f"the exponent must be between -{MAX_EXPONENT} and {MAX_EXPONENT}")
    return Decimal(text)


def json_loads(text: str) -> Any:
    """`json.loads` with every number read by `plain_decimal`: `NumberRefused` for one out of
    bounds, NaN or an infinity. Callers bound the text's length (depth raises `RecursionError`)."""
    return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)


def _int(text: str) -> int:
    return int(plain_decimal(text))


def _float(text: str) -> float:
    return float(plain_decimal(text))


def _constant(text: str) -> Any:
    raise NotAPlainNumber(text, "NaN and infinities are not numbers a tool can take")
