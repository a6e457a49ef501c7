"""Every lifecycle table says only what the code does.

Each state is reachable from where rows start, and each state an edge leads to is the literal
target of at least one move in the product's source. The second check reads the source (ast)
instead of recording the moves while the flow tests run: recording would make this test's
verdict depend on which other tests ran in the same worker. It checks targets, not whole
edges (a move's source state is whatever the row holds at run time); the reachability check
and the table's comments carry the rest. A new move with a state held in a variable must be
made through one of `MOVERS`, whose callers pass the literal.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.states import MACHINES, ActionState, Machine, ProposalState, QuestionState, TaskState, TimerState

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "approvals", "agent", "escalations", "bot")
# Functions whose target-state argument is the move's target: `approvals.machine.move`, the
# helpers that pass a literal target on to it (the executor's `_end`, decisions' `_close`), and
# the gate's `_enter` (a new action's move out of `drafted`, checked and audited before its INSERT).
MOVERS = {"move", "_end", "_close", "_enter"}
ENUMS = {cls.__name__: cls for cls in (ActionState, TaskState, TimerState, ProposalState, QuestionState)}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Module-level names bound to a state enum (`S = ActionState`)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in ENUMS:
            found.update({target.id: node.value.id for target in node.targets if isinstance(target, ast.Name)})
    return found


def moved_to() -> dict[str, set[str]]:
    """Enum name → the member names the source passes as a target to a mover."""
    targets: dict[str, set[str]] = {name: set() for name in ENUMS}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            names = {**{name: name for name in ENUMS}, **_aliases(tree)}
            for call in (node for node in ast.walk(tree) if isinstance(node, ast.Call)):
                callee = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
                if callee not in MOVERS:
                    continue
                for arg in [*call.args, *(keyword.value for keyword in call.keywords)]:
                    if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id in names:
                        targets[names[arg.value.id]].add(arg.attr)
    return targets


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_state_is_reachable_from_where_rows_start(machine: Machine) -> None:
    states = set(machine.table)
    assert states == set(type(next(iter(machine.start))))  # one row per state
    assert machine.reachable() == states, f"{machine.name}: unreachable {states - machine.reachable()}"


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_edge_leads_to_a_state_some_code_moves_to(machine: Machine) -> None:
    enum = type(next(iter(machine.start)))
    in_code = {enum[name] for name in moved_to()[enum.__name__]}
    in_table = {after for afters in machine.table.values() for after in afters}
    assert in_table - in_code == set(), f"{machine.name}: edges no code makes"
    assert in_code - in_table == set(), f"{machine.name}: moves the table forbids from every state"


def test_the_scan_sees_the_moves_it_should() -> None:
    """Guards the scanner itself: a few moves known to exist, in the three shapes it reads."""
    targets = moved_to()
    assert {"EXPIRED", "CANCELLED", "SUCCEEDED", "UNKNOWN", "REJECTED"} <= targets["ActionState"]
    assert {"STALLED", "WAITING"} <= targets["TaskState"]
    assert targets["TimerState"] == {"DONE"}
    assert targets["ProposalState"] == {"PROMOTED", "DISMISSED", "STALE"}
