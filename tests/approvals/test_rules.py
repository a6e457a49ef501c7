"""Standing rules' constraints (`approvals.rules`): what each allows, how they are written and
checked, and the property that matters: a rule never allows more than its constraints say."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approvals import rules
from approvals.rules import InvalidRule

SCHEMA = {
    "properties": {
        "flag": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "enabled": {"type": "boolean"},
        "tags": {"type": "array"},
    }
}
STRING, INTEGER, NUMBER = SCHEMA["properties"]["flag"], SCHEMA["properties"]["count"], SCHEMA["properties"]["ratio"]


def test_each_constraint_allows_exactly_what_it_says() -> None:
    assert rules.holds({"any": True}, False) and rules.holds({"any": True}, True, object())
    assert rules.holds({"equals": 5}, True, 5) and rules.holds({"equals": 5}, True, 5.0)
    assert not rules.holds({"equals": 1}, True, True) and not rules.holds({"equals": True}, True, 1)
    assert not rules.holds({"equals": "5"}, True, 5) and not rules.holds({"equals": 5}, False)
    assert rules.holds({"one_of": ["a", "b"]}, True, "b") and not rules.holds({"one_of": ["a"]}, True, "ab")
    assert rules.holds({"min": 1, "max": 5}, True, 5) and not rules.holds({"max": 5}, True, 5.01)
    assert not rules.holds({"min": 0}, True, True) and not rules.holds({"max": 5}, True, "3")
    assert rules.holds({"regex": "be.*"}, True, "beta") and not rules.holds({"regex": "be"}, True, "beta")
    assert not rules.holds({"regex": ".*"}, True, 5) and not rules.holds({"unknown": 1}, True, 1)


def test_a_rule_matches_only_params_whose_every_parameter_it_constrains() -> None:
    constraints = {"flag": {"equals": "beta"}, "count": {"any": True}}
    assert rules.matches(constraints, {"flag": "beta"}) and rules.matches(constraints, {"flag": "beta", "count": 9})
    assert not rules.matches(constraints, {"flag": "beta", "extra": 1})  # nothing it does not name
    assert not rules.matches(constraints, {"count": 9})  # a constrained parameter left out


def test_the_form_text_reads_into_constraints_and_back() -> None:
    assert rules.parse("any", STRING) == {"any": True}
    assert rules.parse("= new checkout", STRING) == {"equals": "new checkout"}
    assert rules.parse('= " padded "', STRING) == {"equals": " padded "}
    assert rules.parse("= 1001", STRING) == {"equals": "1001"}  # text stays text
    assert rules.parse("= 500", INTEGER) == {"equals": 500}
    assert rules.parse("one of a, b", STRING) == {"one_of": ["a", "b"]}
    assert rules.parse('one of ["a,b", "c"]', STRING) == {"one_of": ["a,b", "c"]}
    assert rules.parse(">= 1 and <= 5000", INTEGER) == {"min": 1, "max": 5000}
    assert rules.parse("<= 2.5", NUMBER) == {"max": 2.5}
    assert rules.parse("~ new-.*", STRING) == {"regex": "new-.*"}
    for text, problem in (("maybe", "write `any`"), ("<= 1 and <= 2", "write bounds"), ("= 1e999", "exponent")):
        with pytest.raises(ValueError, match=problem):
            rules.parse(text, INTEGER)
    with pytest.raises(ValueError, match="one of"):
        rules.parse("one of [1", INTEGER)


def test_validation_names_every_problem() -> None:
    with pytest.raises(InvalidRule) as invalid:
        rules.validate(
            {
                "flag": {"regex": "(a)\\1"},
                "count": {"min": 5, "max": 1},
                "ratio": {"regex": "1"},
                "enabled": {"equals": "yes"},
                "colour": {"any": True},
            },
            SCHEMA,
        )
    problems = invalid.value.problems
    assert set(problems) == {"flag", "count", "ratio", "enabled", "colour", "tags"}
    assert "RE2" in problems["flag"] and "allow nothing" in problems["count"]
    assert "applies to text" in problems["ratio"] and "boolean" in problems["enabled"]
    assert "not a parameter" in problems["colour"] and "`any`" in problems["tags"]
    with pytest.raises(InvalidRule, match="at most 500"):
        rules.validate({"flag": {"regex": "a" * 501}}, {"properties": {"flag": STRING}})


# -- the property: constraints never widen ------------------------------------------------------

_texts = st.text(alphabet="abc-1", max_size=6)
# Numbers a form reads back (`core.numbers`: exponents within ±30).
_numbers = st.one_of(st.integers(-50, 50), st.floats(-50, 50).filter(lambda x: x == 0 or abs(x) > 1e-9))
_values = st.one_of(_texts, _numbers, st.booleans(), st.none())
_patterns = st.sampled_from(["a.*", "b+", "[ab]-1", "(a|c)*", "", "1?"])


def _constraint(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    if kind == "string":
        return st.one_of(
            st.just({"any": True}),
            st.builds(lambda v: {"equals": v}, _texts),
            st.builds(lambda vs: {"one_of": vs}, st.lists(_texts, min_size=1, max_size=3)),
            st.builds(lambda p: {"regex": p}, _patterns),
        )
    return st.one_of(
        st.just({"any": True}),
        st.builds(lambda v: {"equals": v}, _numbers),
        st.builds(lambda vs: {"one_of": vs}, st.lists(_numbers, min_size=1, max_size=3)),
        st.builds(lambda lo: {"min": lo}, _numbers),
        st.builds(lambda hi: {"max": hi}, _numbers),
        st.builds(lambda lo, width: {"min": lo, "max": lo + width}, _numbers, st.integers(0, 20)),
    )


def _oracle(constraint: dict[str, Any], present: bool, value: Any) -> bool:
    """What the constraint allows, said again independently of `approvals.rules`."""
    if "any" in constraint:
        return True
    if not present:
        return False
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if "equals" in constraint or "one_of" in constraint:
        allowed = constraint.get("one_of", [constraint.get("equals")])
        return any(
            (is_number and isinstance(a, int | float) and not isinstance(a, bool) and a == value)
            or (isinstance(a, str) and isinstance(value, str) and a == value)
            for a in allowed
        )
    if "regex" in constraint:
        return isinstance(value, str) and re.fullmatch(constraint["regex"], value) is not None
    if not is_number or not math.isfinite(value):
        return False
    return constraint.get("min", -math.inf) <= value <= constraint.get("max", math.inf)


@st.composite
def _rule_and_params(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    constraints = {"flag": draw(_constraint("string")), "count": draw(_constraint("number"))}
    params: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["flag", "count", "extra"]), unique=True)):
        params[name] = draw(_values)
    return constraints, params


@settings(max_examples=400, deadline=None)
@given(_rule_and_params())
def test_a_rule_matches_exactly_when_every_constraint_holds(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    constraints, params = case
    expected = set(params) <= set(constraints) and all(
        _oracle(c, name in params, params.get(name)) for name, c in constraints.items()
    )
    assert rules.matches(constraints, params) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(_constraint("string").map(lambda c: (c, STRING)), _constraint("number").map(lambda c: (c, NUMBER))))
def test_what_the_form_shows_reads_back_as_the_same_constraint(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    constraint, prop = case
    written = rules.describe(constraint)
    read = rules.parse(written, prop)
    for value in ["a", "b-1", "", "abc", 0, 1, -3.5, 7.0, 50, True, None]:
        assert rules.holds(read, True, value) == rules.holds(constraint, True, value), (written, value)
