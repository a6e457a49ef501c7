"""A tool's declared undo (`@tool(undo=...)`, an external tool's `undo:`): refused at decoration
when it cannot name another tool, and checked once the registry is complete: the undo tool must
be loaded, run where the tool runs, and take `original_params` and `original_result`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent import tool
from agent.errors import InvalidToolDefinition
from agent.external_tools import add_external_tools
from agent.tools import ToolRegistry, check_undo, load_tool_modules, undo_problems
from bot.cli import main
from core.config import ExternalToolConfig

OBJECT = {"type": "object"}


@tool(undo="reverse_charge")
def charge(customer: str, cents: int) -> dict[str, Any]:
    """Charge a customer."""
    return {"customer": customer, "cents": cents}


@tool
def reverse_charge(original_params: dict[str, Any], original_result: dict[str, Any]) -> dict[str, Any]:
    """Give a charge back."""
    return {"reversed": original_result}


@tool(undo="reverse_charge_badly")
def charge_twice(customer: str) -> None:
    """Charge a customer twice."""


@tool
def reverse_charge_badly(original_params: dict[str, Any], reason: str) -> None:
    """Give a charge back, with a reason nobody can fill in."""


def test_a_declared_undo_is_on_the_spec_and_its_policy() -> None:
    registry = check_undo(ToolRegistry([charge, reverse_charge]))
    assert registry.get("charge").undo == "reverse_charge"
    assert registry.policy("charge").undo == "reverse_charge"
    assert registry.policy("reverse_charge").undo is None


@pytest.mark.parametrize("undo", ["", "  ", "itself"])
def test_undo_must_name_another_tool_at_decoration(undo: str) -> None:
    with pytest.raises(InvalidToolDefinition, match="undo must name another tool"):

        @tool(undo=undo)
        def itself(order_id: str) -> None:
            """Do something."""


def test_an_undo_tool_that_is_not_loaded_is_named_at_load() -> None:
    with pytest.raises(InvalidToolDefinition) as caught:
        check_undo(ToolRegistry([charge]))
    assert str(caught.value) == (
        "tool 'charge' is not a valid tool: undo names 'reverse_charge', which is not a loaded tool"
    )


def test_an_undo_tool_must_take_the_original_params_and_result_and_nothing_else_required() -> None:
    registry = ToolRegistry([charge_twice, reverse_charge_badly])
    assert undo_problems(registry) == [
        (
            "charge_twice",
            "undo tool 'reverse_charge_badly' must take original_params and original_result, nothing else "
            "required: it lacks original_result",
        )
    ]


def test_an_external_tools_undo_is_an_external_tool() -> None:
    good = {
        "refund_elsewhere": ExternalToolConfig(params=OBJECT, undo="reverse_elsewhere"),
        "reverse_elsewhere": ExternalToolConfig(
            params={
                "type": "object",
                "properties": {"original_params": OBJECT, "original_result": OBJECT},
                "required": ["original_params", "original_result"],
            }
        ),
    }
    registry = add_external_tools(ToolRegistry(), good)
    assert registry.policy("refund_elsewhere").undo == "reverse_elsewhere"

    with pytest.raises(InvalidToolDefinition, match="undo names 'reverse_charge', which must be an external tool"):
        add_external_tools(
            ToolRegistry([charge, reverse_charge]),
            {"refund_elsewhere": ExternalToolConfig(params=OBJECT, undo="reverse_charge")},
        )


def test_the_demo_refund_declares_its_undo() -> None:
    registry = check_undo(load_tool_modules(["examples.shop_tools"]))
    assert registry.get("issue_refund").undo == "reverse_refund"


def test_config_check_lists_an_undo_that_cannot_be_honoured(tmp_path: Path) -> None:
    path = tmp_path / "countersign.yml"
    path.write_text(
        "slack: {approvals_channel: C0APPROVALS}\n"
        "tools: {modules: [tests.approvals.shop_tools]}\n"
        "external_tools:\n"
        "  refund_elsewhere: {params: {type: object}, undo: no_such_tool}\n"
        "task_types:\n"
        "  refund: {tools: [issue_refund, refund_elsewhere], approvers: [U0ALICE], undo_window: 2h}\n"
    )
    result = CliRunner().invoke(main, ["config", "check", "--file", str(path)])
    assert result.exit_code == 1
    assert "tool 'refund_elsewhere': undo names 'no_such_tool', which is not a loaded tool" in result.output
