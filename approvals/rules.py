"""Standing rules' constraints, as pure functions: what a rule allows, checked once when it is
made and on every draft it might let run sooner.

A rule constrains every parameter of its tool's schema, each one way (stored as JSON):

| constraint | written | holds for a value that… |
|---|---|---|
| `{"any": true}` | `any` | anything, or the parameter left out |
| `{"equals": v}` | `= v` | is `v` (as JSON; numbers by value, `1` is `1.0` but never `true`) |
| `{"one_of": [v, …]}` | `one of a, b` or `one of [JSON…]` | is one of them, as `equals` |
| `{"min": a, "max": b}` | `>= a`, `<= b`, `>= a and <= b` | is a number (not a boolean) within both |
| `{"regex": p}` | `~ p` | is a string that RE2 matches whole (`fullmatch`) |

A params dict matches only if every one of its parameters is constrained and every
constraint holds: nothing a rule does not name is let through. Regexes run on RE2 (linear
time, no backreferences), so a pattern an admin types cannot stall the gate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import re2

from core.canonical import canonical_json
from core.numbers import json_loads, plain_decimal

Constraint = dict[str, Any]
ANY: Constraint = {"any": True}
KINDS = ("any", "equals", "one_of", "min", "max", "regex")
MAX_REGEX = 500  # characters of a pattern
MAX_ONE_OF = 50  # values listed in `one of`
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # its C++ logger would write every bad pattern to stderr
_RE2_OPTIONS.max_mem = 1 << 20  # a pattern whose program needs more is refused, not run


class InvalidRule(ValueError):
    """A rule's constraints do not fit its tool: `problems` maps each parameter (or `rule`) to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in problems.items()))


def properties(schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found = schema.get("properties")
    return {str(k): (v if isinstance(v, dict) else {}) for k, v in found.items()} if isinstance(found, dict) else {}


def json_type(prop: Mapping[str, Any]) -> str | None:
    """The parameter's JSON type when it is one plain type (`string`, `integer`, …); else None."""
    kind = prop.get("type")
    return kind if isinstance(kind, str) else None


def fits(value: Any, prop: Mapping[str, Any]) -> bool:
    """Whether `value` is of the parameter's JSON type (anything JSON when it has no one type)."""
    kind = json_type(prop)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return _is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def compile_regex(pattern: str) -> Any:
    """The RE2 program of `pattern`; ValueError naming the pattern when RE2 refuses it."""
    if len(pattern) > MAX_REGEX:
        raise ValueError(f"a pattern of at most {MAX_REGEX} characters, got {len(pattern)}")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a regular expression RE2 accepts: {pattern!r} ({reason})") from None


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: numbers by value (`1` is `1.0`), never a boolean for a number."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, bool) != isinstance(b, bool) or _is_number(a) != _is_number(b):
        return False
    return canonical_json(a) == canonical_json(b)


def holds(constraint: Mapping[str, Any], present: bool, value: Any = None) -> bool:
    """Whether one parameter's value (`present`: it was given at all) meets its constraint."""
    if constraint.get("any") is True:
        return True
    if not present:
        return False
    if "equals" in constraint:
        return same(value, constraint["equals"])
    if "one_of" in constraint:
        return any(same(value, allowed) for allowed in constraint["one_of"])
    if "regex" in constraint:
        return isinstance(value, str) and compile_regex(constraint["regex"]).fullmatch(value) is not None
    if "min" in constraint or "max" in constraint:
        if not _is_number(value):
            return False
        low, high = constraint.get("min"), constraint.get("max")
        return (low is None or value >= low) and (high is None or value <= high)
    return False  # a constraint of no known kind allows nothing


def matches(constraints: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> bool:
    """Whether a rule allows `params`: every parameter given is constrained, every constraint holds."""
    if not set(params) <= set(constraints):
        return False
    return all(holds(constraint, name in params, params.get(name)) for name, constraint in constraints.items())


def validate(constraints: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Constraint]:
    """The constraints as stored, checked against the tool's params schema: one per parameter,
    each of a kind the parameter's type allows. `InvalidRule` names every problem at once."""
    props = properties(schema)
    problems: dict[str, str] = {}
    checked: dict[str, Constraint] = {}
    for name in constraints:
        if name not in props:
            problems[name] = f"not a parameter of the tool (its parameters: {', '.join(props) or 'none'})"
    for name, prop in props.items():
        if name not in constraints:
            problems[name] = "no constraint given: write `any` to allow every value"
            continue
        try:
            checked[name] = _checked(constraints[name], prop)
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise InvalidRule(problems)
    return checked


def _checked(constraint: Any, prop: Mapping[str, Any]) -> Constraint:
    if not isinstance(constraint, dict) or not constraint:
        raise ValueError(f"not a constraint: {constraint!r}")
    unknown = sorted(set(constraint) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown constraint {unknown[0]!r} (known: {', '.join(KINDS)})")
    kind = json_type(prop) or "any JSON value"
    if "any" in constraint:
        if constraint != ANY:
            raise ValueError("`any` stands alone")
        return dict(ANY)
    if "equals" in constraint:
        if len(constraint) != 1:
            raise ValueError("`=` stands alone")
        if not fits(constraint["equals"], prop):
            raise ValueError(f"the parameter is a {kind}: {constraint['equals']!r}")
        return {"equals": constraint["equals"]}
    if "one_of" in constraint:
        values = constraint["one_of"]
        if len(constraint) != 1 or not isinstance(values, list) or not values:
            raise ValueError("`one of` lists one value or more, and stands alone")
        if len(values) > MAX_ONE_OF:
            raise ValueError(f"`one of` lists at most {MAX_ONE_OF} values, got {len(values)}")
        wrong = [value for value in values if not fits(value, prop)]
        if wrong:
            raise ValueError(f"the parameter is a {kind}: {wrong[0]!r}")
        return {"one_of": list(values)}
    if "regex" in constraint:
        pattern = constraint["regex"]
        if len(constraint) != 1 or not isinstance(pattern, str):
            raise ValueError("`~` takes one pattern, and stands alone")
        if json_type(prop) != "string":
            raise ValueError(f"a pattern applies to text; the parameter is a {kind}")
        compile_regex(pattern)
        return {"regex": pattern}
    if json_type(prop) not in ("integer", "number"):
        raise ValueError(f"`>=` and `<=` apply to numbers; the parameter is a {kind}")
    bounds = {key: constraint[key] for key in ("min", "max") if key in constraint}
    for key, bound in bounds.items():
        if not _is_number(bound):
            raise ValueError(f"`{'>=' if key == 'min' else '<='}` takes a number: {bound!r}")
    if len(bounds) == 2 and bounds["min"] > bounds["max"]:
        raise ValueError(f"`>= {bounds['min']}` and `<= {bounds['max']}` allow nothing")
    return bounds


# -- the text people write in the form, and read in lists -------------------------------------


def parse(text: str, prop: Mapping[str, Any]) -> Constraint:
    """One parameter's constraint from the form's text (the table above); ValueError saying what
    was expected. The result still goes through `validate`."""
    written = text.strip()
    if written.lower() == "any":
        return dict(ANY)
    if written.startswith("~"):
        return {"regex": written[1:].strip()}
    if written.startswith("="):
        return {"equals": _value(written[1:].strip(), prop)}
    if written.lower().startswith("one of"):
        rest = written[len("one of") :].strip().lstrip(":").strip()
        if rest.startswith("["):
            try:
                values = json_loads(rest)
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"`one of [...]` takes a JSON list: {rest!r} ({exc})") from None
            if not isinstance(values, list):
                raise ValueError(f"`one of [...]` takes a JSON list: {rest!r}")
            return {"one_of": values}
        return {"one_of": [_value(part.strip(), prop) for part in rest.split(",")]}
    if written.startswith((">=", "<=")):
        bounds: Constraint = {}
        for part in written.split(" and "):
            part = part.strip()
            key = {">=": "min", "<=": "max"}.get(part[:2])
            if key is None or key in bounds:
                raise ValueError(f"write bounds as `>= a`, `<= b` or `>= a and <= b`: {written!r}")
            bounds[key] = _number(part[2:].strip())
        return bounds
    raise ValueError(f"write `any`, `= value`, `one of a, b`, `>= n`, `<= n` or `~ pattern`: {written!r}")


def _value(text: str, prop: Mapping[str, Any]) -> Any:
    """A value as written: text as it stands for a text parameter (JSON when quoted), else JSON."""
    if json_type(prop) == "string" and not text.startswith('"'):
        return text
    if json_type(prop) in ("integer", "number"):
        return _number(text)
    try:
        return json_loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not a JSON value: {text!r} ({exc})") from None


def _number(text: str) -> int | float:
    number = plain_decimal(text)  # ASCII, bounded: the same rule as every number from a form
    return int(number) if number == number.to_integral_value() and "." not in text else float(number)


def describe(constraint: Mapping[str, Any]) -> str:
    """A constraint as people write it (`parse` reads it back)."""
    if constraint.get("any") is True:
        return "any"
    if "equals" in constraint:
        return f"= {_shown(constraint['equals'])}"
    if "one_of" in constraint:
        values = constraint["one_of"]
        plain = all(isinstance(v, str) and _bare(v) and "," not in v for v in values) or all(
            _is_number(v) for v in values
        )
        return "one of " + (", ".join(_shown(v) for v in values) if plain else json.dumps(values, ensure_ascii=False))
    if "regex" in constraint:
        return f"~ {constraint['regex']}"
    bounds = [f"{op} {_shown(constraint[key])}" for key, op in (("min", ">="), ("max", "<=")) if key in constraint]
    return " and ".join(bounds) or "nothing"


def _shown(value: Any) -> str:
    if isinstance(value, str) and _bare(value):
        return value
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return str(Decimal(repr(value)))  # 5.0 stays a float when read back
    return json.dumps(value, ensure_ascii=False)


def _bare(text: str) -> bool:
    """Text that reads back as itself after `= `: no quotes first, no spaces around, one line."""
    return bool(text) and text == text.strip() and "\n" not in text and not text.startswith('"')


def summary(constraints: Mapping[str, Mapping[str, Any]]) -> str:
    """`order_id = 1001, amount_cents <= 500` (parameters allowed any value are left out)."""
    shown = [f"{name} {describe(c)}" for name, c in constraints.items() if c.get("any") is not True]
    return ", ".join(shown) or "any parameters"
