"""External tools: tools declared in the config (`external_tools`) that run outside
countersign. A client of the actions API asks for one, waits for the decision, claims the
approved action, runs it and reports the result; countersign never calls them.

Each is an `ExternalToolSpec` in the same `ToolRegistry` as the `@tool` tools, so the gate,
the cards and the edit modal treat both alike; its parameters are checked against the JSON
Schema of its config entry. The executor never runs one (`agent.executor` claims only
actions drafted by an agent) and the model is never offered one (`agent.conversation`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from agent.errors import DuplicateTool, InvalidParams, ToolLoadError
from agent.tools import ToolPolicy, ToolRegistry, ToolSpec, check_undo, load_tool_modules, undo_problems
from core.config import ExternalToolConfig, OpenToolsConfig
from core.json_params import ParamsProblems, checked

MODULE = "(external)"


class _NoParams(BaseModel):
    """Stands in for the pydantic model an external tool does not have (its schema is JSON Schema)."""


def _not_callable(**_: Any) -> Any:
    raise RuntimeError("an external tool runs outside countersign: a client of the actions API claims it")


@dataclass(frozen=True, eq=False)
class ExternalToolSpec(ToolSpec):
    schema: Mapping[str, Any] = field(default_factory=dict)
    external: ClassVar[bool] = True

    def json_schema(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self.schema))
        return copy

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The params as given (a JSON copy), or `InvalidParams` naming each bad field."""
        try:
            return checked(self.schema, params)
        except ParamsProblems as exc:
            raise InvalidParams(self.name, exc.problems) from None

    def call(self, params: Mapping[str, Any], idempotency_key: str | None = None, secrets: Any = None) -> Any:
        return _not_callable()


def external_spec(name: str, config: ExternalToolConfig) -> ExternalToolSpec:
    return ExternalToolSpec(
        name=name,
        description=config.description,
        module=MODULE,
        function=_not_callable,
        params_model=_NoParams,
        arguments={},
        risk=config.risk,
        idempotent=config.idempotent,
        max_autonomy=config.max_autonomy.value,
        timeout_s=0.0,
        takes_idempotency_key=False,
        schema=config.params,
        undo=config.undo,
    )


def add_external_tools(registry: ToolRegistry, tools: Mapping[str, ExternalToolConfig]) -> ToolRegistry:
    """Register each external tool (`DuplicateTool` if a `@tool` has the same name) and check every
    declared undo of the now complete registry (`InvalidToolDefinition`); returns `registry`."""
    for name, config in tools.items():
        registry.register(external_spec(name, config))
    return check_undo(registry)


def open_spec(name: str, config: OpenToolsConfig, schema: Mapping[str, Any]) -> ExternalToolSpec:
    """An open tool of a task type (`open_tools`) as one action's client brought it: its policy
    from the config (a read-only one is low risk and idempotent), its params checked by `schema`."""
    risk, idempotent, max_autonomy = config.policy_of(name)
    if config.is_read_only(name):
        risk, idempotent = "low", True
    return ExternalToolSpec(
        name=name,
        description="",
        module=MODULE,
        function=_not_callable,
        params_model=_NoParams,
        arguments={},
        risk=risk,
        idempotent=idempotent,
        max_autonomy=max_autonomy.value,
        timeout_s=0.0,
        takes_idempotency_key=False,
        schema=schema,
    )


class WithOpenTool:
    """The gate's tool catalog for one request of an open tool: the registry, and that tool."""

    def __init__(self, registry: ToolRegistry, spec: ExternalToolSpec) -> None:
        self.registry, self.spec = registry, spec

    def policy(self, name: str) -> ToolPolicy:
        return self.spec.policy if name == self.spec.name else self.registry.policy(name)

    def validate(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.spec.validate(params) if name == self.spec.name else self.registry.validate(name, params)

    def definition_hash(self, name: str) -> str:
        """An open tool's definition is the schema its client sent with this action."""
        return self.spec.definition_hash if name == self.spec.name else self.registry.definition_hash(name)


def check_tool_modules(
    modules: Iterable[str], external: Mapping[str, ExternalToolConfig] | None = None
) -> tuple[ToolRegistry, list[str]]:
    """As `load_tool_modules` (and `add_external_tools`), but every module is tried: the registry
    of the tools that did load, and a problem for each module that did not, each duplicate and
    each declared undo the registry cannot honour."""
    registry, problems = ToolRegistry(), []
    for module in dict.fromkeys(modules):
        try:
            loaded = load_tool_modules([module])
        except ToolLoadError as exc:
            problems.append(str(exc))
            continue
        for spec in loaded:
            try:
                registry.register(spec)
            except DuplicateTool as exc:
                problems.append(str(exc))
    for name, config in (external or {}).items():
        try:
            registry.register(external_spec(name, config))
        except DuplicateTool as exc:
            problems.append(str(exc))
    problems += [f"tool {name!r}: {problem}" for name, problem in undo_problems(registry)]
    return registry, problems
