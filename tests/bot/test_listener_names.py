"""Listeners have names: a stack trace through a click names the handler (`approve`,
`stop_task`, …), never `<lambda>`, and no listener runs SQL of its own (the domain reads)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LISTENERS = sorted((Path(__file__).resolve().parents[2] / "bot" / "listeners").glob("*.py"))


@pytest.mark.parametrize("path", LISTENERS, ids=lambda path: path.name)
def test_no_lambda_in_a_listener_module(path: Path) -> None:
    lambdas = [node.lineno for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Lambda)]
    assert lambdas == [], f"{path.name}: lambdas at lines {lambdas}; give the handler a name"


@pytest.mark.parametrize("name", ["actions.py", "autonomy.py", "views.py", "review.py"])
def test_button_and_form_listeners_leave_queries_to_the_domain(name: str) -> None:
    tree = ast.parse((LISTENERS[0].parent / name).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not imported & {"select", "update", "text", "visible_tasks"}, f"{name} builds its own SQL"
