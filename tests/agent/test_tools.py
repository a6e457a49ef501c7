from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from pydantic import Field

from agent import RetryableError, tool
from agent.errors import DuplicateTool, InvalidParams, InvalidToolDefinition, ToolLoadError, UnknownTool
from agent.tools import ToolPolicy, ToolRegistry, load_tool_modules, spec_of

RECEIVED: list[dict[str, Any]] = []


@tool(risk="high", idempotent=True, max_autonomy="hitl", timeout="2m")
def issue_refund(
    order_id: str,
    amount_cents: Annotated[int, Field(gt=0, description="How much to refund, in cents")],
    reason: str | None = None,
    *,
    notify: bool = True,
    idempotency_key: str,
) -> dict[str, Any]:
    """Refund part or all of an order.

    The second paragraph is for humans reading the code, not for the model.
    """
    RECEIVED.append({"order_id": order_id, "amount_cents": amount_cents, "key": idempotency_key})
    return {"refunded": amount_cents}


@tool
def schedule_call(when: datetime, budget: Decimal, json: str = "{}") -> dict[str, Any]:
    """Schedule a call."""
    RECEIVED.append({"when": when, "budget": budget, "json": json})
    return {}


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """Write a uniquely named module that `import` finds and return its name."""
    name = f"tools_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_spec_comes_from_the_decorator_and_the_docstring() -> None:
    spec = spec_of(issue_refund)
    assert spec.name == "issue_refund"
    assert spec.description == "Refund part or all of an order."
    assert spec.policy == ToolPolicy(risk="high", idempotent=True, max_autonomy="hitl", timeout_s=120.0)
    assert spec.takes_idempotency_key

    bare = spec_of(schedule_call)
    assert bare.policy == ToolPolicy(risk="low", idempotent=False, max_autonomy="auto", timeout_s=30.0)
    assert not bare.takes_idempotency_key


def test_schema_comes_from_the_type_hints() -> None:
    schema = spec_of(issue_refund).json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["required"] == ["order_id", "amount_cents"]
    assert schema["additionalProperties"] is False
    properties = schema["properties"]
    assert set(properties) == {"order_id", "amount_cents", "reason", "notify"}  # no idempotency_key
    assert properties["order_id"]["type"] == "string"
    assert properties["amount_cents"]["type"] == "integer"
    assert properties["amount_cents"]["exclusiveMinimum"] == 0
    assert properties["amount_cents"]["description"] == "How much to refund, in cents"
    assert {"type": "null"} in properties["reason"]["anyOf"]
    assert properties["reason"]["default"] is None
    assert properties["notify"] == {"default": True, "title": "Notify", "type": "boolean"}


def test_validate_returns_canonical_json_params_with_defaults() -> None:
    spec = spec_of(issue_refund)
    assert spec.validate({"order_id": "1234", "amount_cents": "500"}) == {
        "order_id": "1234",
        "amount_cents": 500,
        "reason": None,
        "notify": True,
    }
    other = spec_of(schedule_call).validate({"when": "2026-01-05T09:00:00Z", "budget": "12.50"})
    assert other == {"when": "2026-01-05T09:00:00Z", "budget": "12.50", "json": "{}"}


def test_call_passes_real_python_values_and_the_idempotency_key() -> None:
    RECEIVED.clear()
    assert spec_of(issue_refund).call({"order_id": "1234", "amount_cents": 500}, "act_123") == {"refunded": 500}
    assert RECEIVED[-1] == {"order_id": "1234", "amount_cents": 500, "key": "act_123"}

    spec_of(schedule_call).call({"when": "2026-01-05T09:00:00Z", "budget": "12.50", "json": "[]"})
    assert RECEIVED[-1] == {"when": datetime(2026, 1, 5, 9, tzinfo=UTC), "budget": Decimal("12.50"), "json": "[]"}


def test_a_tool_that_takes_an_idempotency_key_is_not_called_without_one() -> None:
    with pytest.raises(InvalidParams) as caught:
        spec_of(issue_refund).call({"order_id": "1234", "amount_cents": 500})
    assert "idempotency_key" in caught.value.problems


def test_invalid_params_name_each_field_and_value() -> None:
    with pytest.raises(InvalidParams) as caught:
        spec_of(issue_refund).validate({"order_id": 1234, "amount_cents": "lots", "colour": "red"})
    problems = caught.value.problems
    assert set(problems) == {"order_id", "amount_cents", "colour"}
    assert "1234" in problems["order_id"]
    assert "valid integer" in problems["amount_cents"]
    assert "'lots'" in problems["amount_cents"]
    assert "not a parameter" in problems["colour"]
    assert "'red'" in problems["colour"]
    assert str(caught.value) == (
        "invalid parameters for tool 'issue_refund': order_id: Input should be a valid string (got 1234); "
        "amount_cents: Input should be a valid integer, unable to parse string as an integer (got 'lots'); "
        "colour: not a parameter of this tool (got 'red')"
    )
    # The gate's port: a ValueError with `problems`.
    assert isinstance(caught.value, ValueError)


def test_missing_and_out_of_range_params_are_reported() -> None:
    with pytest.raises(InvalidParams) as caught:
        spec_of(issue_refund).validate({"amount_cents": -5})
    assert caught.value.problems["order_id"] == "required, but missing"
    assert "greater than 0" in caught.value.problems["amount_cents"]
    assert "-5" in caught.value.problems["amount_cents"]


def test_params_must_be_an_object() -> None:
    with pytest.raises(InvalidParams) as caught:
        spec_of(issue_refund).validate(["1234"])  # type: ignore[arg-type]
    assert "(params)" in caught.value.problems


def test_a_parameter_without_annotation_is_refused_at_decoration() -> None:
    with pytest.raises(InvalidToolDefinition, match="'amount' has no type annotation"):

        @tool
        def refund(order_id: str, amount):
            """Refund."""


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"risk": "extreme"}, "risk must be one of low, medium, high (got 'extreme')"),
        ({"max_autonomy": "yolo"}, "max_autonomy must be one of hitl, hotl, auto (got 'yolo')"),
        ({"timeout": "soon"}, "timeout: not a duration: 'soon'"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_options_are_refused_at_decoration(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidToolDefinition, match=problem.replace("(", r"\(").replace(")", r"\)")):

        @tool(**options)
        def refund(order_id: str) -> None:
            """Refund."""


def test_var_args_are_refused_at_decoration() -> None:
    with pytest.raises(InvalidToolDefinition, match="cannot be described by a schema"):

        @tool
        def refund(*order_ids: str) -> None:
            """Refund."""


def test_registry_gets_tools_by_name_and_names_the_known_ones_for_an_unknown_one() -> None:
    registry = ToolRegistry([issue_refund, schedule_call])
    assert registry.names() == ["issue_refund", "schedule_call"]
    assert registry.get("issue_refund") is spec_of(issue_refund)
    assert registry.policy("issue_refund").max_autonomy == "hitl"
    assert registry.validate("issue_refund", {"order_id": "1", "amount_cents": 1})["notify"] is True
    with pytest.raises(UnknownTool, match=r"no tool named 'refund_all' \(known tools: issue_refund, schedule_call\)"):
        registry.get("refund_all")
    with pytest.raises(LookupError):  # the gate's port
        registry.policy("refund_all")


def test_load_tool_modules_returns_exactly_the_tools_of_the_listed_modules() -> None:
    registry = load_tool_modules(["tests.agent.sample_tools"])
    assert "record_call" in registry
    assert "issue_refund" not in registry  # defined here, in a module that is not listed
    assert all(spec.module == "tests.agent.sample_tools" for spec in registry)
    assert load_tool_modules(["tests.agent.sample_tools", "tests.agent.sample_tools"]).names() == registry.names()


def test_two_tools_with_the_same_name_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = 'from agent import tool\n\n@tool\ndef lookup_order(order_id: str) -> str:\n    """Look up."""\n'
    first, second = _module(tmp_path, monkeypatch, source), _module(tmp_path, monkeypatch, source)
    assert load_tool_modules([first]).names() == ["lookup_order"]
    with pytest.raises(DuplicateTool) as caught:
        load_tool_modules([first, second])
    assert caught.value.name == "lookup_order"
    assert str(caught.value) == (
        f"two tools are named 'lookup_order': one in {first!r}, one in {second!r}; rename one of them"
    )


def test_a_module_that_fails_to_import_is_named_with_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _module(tmp_path, monkeypatch, 'raise RuntimeError("no API key for the shop")\n')
    with pytest.raises(ToolLoadError) as caught:
        load_tool_modules(["tests.agent.sample_tools", broken])
    assert caught.value.module == broken
    assert str(caught.value) == f"cannot load tool module {broken!r}: RuntimeError: no API key for the shop"

    with pytest.raises(ToolLoadError, match=r"'shop_tools_typo'.*ModuleNotFoundError"):
        load_tool_modules(["shop_tools_typo"])


def test_a_module_without_tools_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = _module(tmp_path, monkeypatch, "VALUE = 1\n")
    with pytest.raises(ToolLoadError, match="defines no @tool functions"):
        load_tool_modules([empty])


def test_retryable_error_is_exported_for_tool_authors() -> None:
    assert issubclass(RetryableError, Exception)


def test_a_summary_names_a_call_by_what_it_does() -> None:
    @tool(summary="the refund of order {order_id}")
    def refund_order(order_id: str, amount_cents: int) -> None:
        """Refund an order."""

    registry = ToolRegistry([refund_order])
    assert spec_of(refund_order).summary == "the refund of order {order_id}"
    assert registry.summarize("refund_order", {"order_id": "1001", "amount_cents": 2400}) == "the refund of order 1001"
    long = "x " * 100
    assert registry.summarize("refund_order", {"order_id": long}).endswith("…")  # one line, cut short
    assert registry.summarize("refund_order", {"amount_cents": 1}) == ""  # a field missing: people see the tool
    assert registry.summarize("issue_refund", {"order_id": "1"}) == ""  # a tool without one
    assert registry.summarize("not_here", {}) == ""


@pytest.mark.parametrize(
    ("summary", "problem"),
    [
        ("the refund of {order}", "summary names {order}, not one of its parameters (order_id)"),
        ("the refund of {order_id.real}", "summary names {order_id.real}"),
        ("the refund of {order_id", "is not a format string"),
        ("  ", "summary must be a non-empty string"),
    ],
)
def test_a_summary_may_name_only_the_tools_parameters(summary: str, problem: str) -> None:
    with pytest.raises(InvalidToolDefinition, match=problem.replace("(", r"\(").replace(")", r"\)")):

        @tool(summary=summary)
        def refund_order(order_id: str) -> None:
            """Refund an order."""
