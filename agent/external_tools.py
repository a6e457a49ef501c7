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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from pydantic import BaseModel

from agent.errors import InvalidParams
from agent.tools import ToolRegistry, ToolSpec
from core.config import ExternalToolConfig

MODULE = "(external)"
_REPR_LIMIT = 80


class _NoParams(BaseModel):
    """Stands in for the pydantic model an external tool does not have (its schema is JSON Schema)."""


def _not_callable(**_: Any) -> Any:
    raise RuntimeError("an external tool runs outside countersign: a client of the actions API claims it")


@dataclass(frozen=True, eq=False)
class ExternalToolSpec(ToolSpec):
    schema: Mapping[str, Any] = field(default_factory=dict)

    def json_schema(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self.schema))
        return copy

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The params as given (a JSON copy), or `InvalidParams` naming each bad field."""
        if not isinstance(params, Mapping):
            raise InvalidParams(self.name, {"(params)": f"expected an object of parameters (got {_short(params)})"})
        copy = cast(dict[str, Any], json.loads(json.dumps(dict(params))))
        problems: dict[str, list[str]] = {}
        for error in Draft202012Validator(self.schema).iter_errors(copy):
            for name, text in _described(error, copy):
                if text not in problems.setdefault(name, []):
                    problems[name].append(text)
        if problems:
            raise InvalidParams(self.name, {name: "; ".join(texts) for name, texts in problems.items()})
        return copy

    def call(self, params: Mapping[str, Any], idempotency_key: str | None = None, secrets: Any = None) -> Any:
        return _not_callable()


def _described(error: Any, params: dict[str, Any]) -> list[tuple[str, str]]:
    path = [str(part) for part in error.absolute_path]
    if not path and error.validator == "required":
        return [(str(name), "required, but missing") for name in error.validator_value if name not in params]
    if not path and error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        return [(name, "not a parameter of this tool") for name in params if name not in allowed]
    if not path:
        return [("(params)", error.message)]
    where = f"at {'.'.join(path[1:])}: " if len(path) > 1 else ""
    return [(path[0], f"{where}{error.message}")]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


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
    )


def add_external_tools(registry: ToolRegistry, tools: Mapping[str, ExternalToolConfig]) -> ToolRegistry:
    """Register each external tool (`DuplicateTool` if a `@tool` has the same name); returns `registry`."""
    for name, config in tools.items():
        registry.register(external_spec(name, config))
    return registry
