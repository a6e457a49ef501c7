"""Parameters checked against a JSON Schema (draft 2020-12): the problems named by field, as
the gate, the actions API and an edit report them. Shared by the config's external tools
(`agent.external_tools`) and the open tools of a task type (`open_tools`), whose schema each
action carries with it (`Action.params_schema`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]
from referencing.exceptions import Unresolvable

_REPR_LIMIT = 80
# What an open tool's params must be when its client sent no schema: a JSON object, nothing more.
ANY_OBJECT: dict[str, Any] = {"type": "object"}


class ParamsProblems(ValueError):
    """Parameters that do not fit the schema; `problems` maps each field to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems.items()))


def schema_problem(schema: object) -> str | None:
    """Why `schema` cannot be a tool's params schema (a JSON Schema object of `type: object`);
    None when it can."""
    if not isinstance(schema, dict):
        return "a JSON Schema object"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(part) for part in exc.path) or "(top)"
        return f"not a valid JSON Schema at {where}: {exc.message}"
    except RecursionError:
        return "nested too deeply"
    if schema.get("type") != "object":
        return f"the params schema must have type 'object': {schema.get('type')!r}"
    return None


def checked(schema: Mapping[str, Any], params: object) -> dict[str, Any]:
    """The params as given (a JSON copy), or `ParamsProblems` naming each bad field."""
    if not isinstance(params, Mapping):
        raise ParamsProblems({"(params)": f"expected an object of parameters (got {_short(params)})"})
    copy = cast(dict[str, Any], json.loads(json.dumps(dict(params))))
    problems: dict[str, list[str]] = {}
    try:
        for error in Draft202012Validator(schema).iter_errors(copy):
            for name, text in _described(error, copy):
                if text not in problems.setdefault(name, []):
                    problems[name].append(text)
    except Unresolvable as exc:  # a `$ref` to nowhere (nothing is ever fetched)
        raise ParamsProblems({"(schema)": f"cannot resolve a $ref of the schema: {exc}"}) from None
    if problems:
        raise ParamsProblems({name: "; ".join(texts) for name, texts in problems.items()})
    return copy


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


def form_schema(schema: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The schema an edit form is built from: `schema` itself, or, when it names no properties
    (an open tool whose client sent none, as Claude Code's hook), one property per drafted
    param typed by its value, so a person can still edit a command or a path. It only shapes
    the form: the edit is checked against `schema`."""
    if schema.get("properties"):
        return dict(schema)
    kinds = {str: "string", bool: "boolean", int: "integer", float: "number"}
    properties = {name: {"type": kinds[type(value)]} if type(value) in kinds else {} for name, value in params.items()}
    return {"type": "object", "properties": properties}
