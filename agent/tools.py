"""The tool registry: `@tool` turns a typed Python function into a tool an agent may ask to run.

The decorator builds a pydantic model of the function's parameters from its type hints and
records a `ToolSpec` in a module-level catalog, keyed by the module that defines it.
`load_tool_modules` imports the modules the config lists and returns a `ToolRegistry` of
exactly the tools they define. The registry is also the gate's `ToolCatalog` port
(`policy`, `validate`).

A tool that needs credentials declares them (`@tool(secrets=["stripe_api_key"])`) and takes a
`secrets` parameter: the executor passes a `Secrets` mapping of exactly those, from the vault,
at call time. It is never part of the parameter schema, so the model can neither see nor set it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal, TypeVar, cast, get_args, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, ValidationError, create_model

from agent.errors import DuplicateTool, InvalidParams, InvalidToolDefinition, ToolLoadError, UnknownTool
from core.canonical import tool_hash
from core.durations import parse_duration

__all__ = [
    "IDEMPOTENCY_KEY",
    "SECRETS",
    "SECRET_NAME",
    "Secrets",
    "ToolPolicy",
    "ToolRegistry",
    "ToolSpec",
    "check_undo",
    "load_tool_modules",
    "spec_of",
    "summarize",
    "tool",
    "undo_problems",
]

Risk = Literal["low", "medium", "high"]
Autonomy = Literal["hitl", "hotl", "auto"]
RISKS: tuple[str, ...] = get_args(Risk)
AUTONOMY_LEVELS: tuple[str, ...] = get_args(Autonomy)
IDEMPOTENCY_KEY = "idempotency_key"
SECRETS = "secrets"
SECRET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")
_SPEC_ATTRIBUTE = "__countersign_tool__"
_REPR_LIMIT = 80

F = TypeVar("F", bound=Callable[..., Any])

# Every tool defined so far, by defining module, then by name. Redefining a tool in the same
# module (a reload) replaces it; the same name in two modules only clashes once both are loaded.
_DEFINED: dict[str, dict[str, ToolSpec]] = {}


class Secrets(Mapping[str, str]):
    """The secrets a tool declared, by name, as the executor passes them; no repr shows a value."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            declared = ", ".join(self._values) or "none"
            raise KeyError(f"{name!r} is not a declared secret of this tool (declared: {declared})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({', '.join(f'{name}=***' for name in self._values)})"


@dataclass(frozen=True)
class ToolPolicy:
    """What the gate needs to know about a tool to route an action."""

    risk: Risk
    idempotent: bool
    max_autonomy: Autonomy
    timeout_s: float
    secrets: tuple[str, ...] = ()  # the secrets it declared (by name)
    undo: str | None = None  # the tool that compensates a run of it (`@tool(undo=...)`)


@dataclass(frozen=True, eq=False)
class ToolSpec:
    """One tool: its schema, its policy and the function behind it."""

    name: str
    description: str
    module: str
    function: Callable[..., Any]
    params_model: type[BaseModel]
    # Model field name -> the function's parameter name (fields are aliased, so a parameter
    # may be called `json` or `schema` without clashing with BaseModel's attributes).
    arguments: Mapping[str, str]
    risk: Risk
    idempotent: bool
    max_autonomy: Autonomy
    timeout_s: float
    takes_idempotency_key: bool
    secrets: tuple[str, ...] = ()  # names the tool declared; passed as `secrets` at call time
    external: ClassVar[bool] = False  # runs outside countersign (`agent.external_tools`)
    summary: str | None = None  # what a call does, for people: "the refund of order {order_id}"
    undo: str | None = None  # the tool whose call compensates one of this (`approvals.undo`)

    @property
    def policy(self) -> ToolPolicy:
        return ToolPolicy(self.risk, self.idempotent, self.max_autonomy, self.timeout_s, self.secrets, self.undo)

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the parameters, for the model's `input_schema`."""
        schema = self.params_model.model_json_schema()
        schema.pop("title", None)
        return schema

    @cached_property
    def definition_hash(self) -> str:
        """What approvals of it bind to besides the params: its name, schema and description
        (`core.canonical.tool_hash`). In code for a `@tool`, so it changes with a deploy."""
        return tool_hash(self.name, self.json_schema(), self.description)

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Canonical JSON-mode params (defaults filled in), or `InvalidParams` naming each bad field."""
        return self._parse(params).model_dump(mode="json", by_alias=True)

    def call(
        self, params: Mapping[str, Any], idempotency_key: str | None = None, secrets: Mapping[str, str] | None = None
    ) -> Any:
        """Validate `params` and run the tool with real Python values (and its declared secrets)."""
        parsed = self._parse(params)
        kwargs = {self.arguments[field]: getattr(parsed, field) for field in type(parsed).model_fields}
        if self.takes_idempotency_key:
            if not idempotency_key:
                raise InvalidParams(self.name, {IDEMPOTENCY_KEY: "the tool needs one, but none was given"})
            kwargs[IDEMPOTENCY_KEY] = idempotency_key
        if self.secrets:
            given = secrets or {}
            missing = [name for name in self.secrets if name not in given]
            if missing:
                raise InvalidParams(self.name, {SECRETS: f"the tool needs {', '.join(missing)}, but none was given"})
            kwargs[SECRETS] = Secrets({name: given[name] for name in self.secrets})
        return self.function(**kwargs)

    def _parse(self, params: Mapping[str, Any]) -> BaseModel:
        if not isinstance(params, Mapping):
            raise InvalidParams(self.name, {"(params)": f"expected an object of parameters (got {_short(params)})"})
        try:
            return self.params_model.model_validate(dict(params))
        except ValidationError as exc:
            raise InvalidParams(self.name, _problems(exc)) from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _problems(error: ValidationError) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        field = location[0] if location else "(params)"
        where = f"at {'.'.join(location[1:])}: " if len(location) > 1 else ""
        if item["type"] == "missing":
            text = f"{where}required, but missing"
        elif item["type"] == "extra_forbidden":
            text = f"not a parameter of this tool (got {_short(item['input'])})"
        else:
            text = f"{where}{item['msg']} (got {_short(item['input'])})"
        if text not in found.setdefault(field, []):
            found[field].append(text)
    return {field: "; ".join(texts) for field, texts in found.items()}


@overload
def tool(function: F, /) -> F: ...


@overload
def tool(
    *,
    risk: Risk = "low",
    idempotent: bool = False,
    max_autonomy: Autonomy = "auto",
    timeout: float | str = 30,
    secrets: Sequence[str] = (),
    summary: str | None = None,
    undo: str | None = None,
) -> Callable[[F], F]: ...


def tool(
    function: F | None = None,
    /,
    *,
    risk: Risk = "low",
    idempotent: bool = False,
    max_autonomy: Autonomy = "auto",
    timeout: float | str = 30,
    secrets: Sequence[str] = (),
    summary: str | None = None,
    undo: str | None = None,
) -> F | Callable[[F], F]:
    """Declare a tool: `@tool` or `@tool(risk="high", idempotent=True, max_autonomy="hitl", timeout="2m")`.

    The parameter schema comes from the type hints; a parameter named `idempotency_key` is left
    out of it and receives the action's public id at run time. With `secrets=["name", ...]`, a
    parameter named `secrets` is left out too and receives those secrets as a `Secrets` mapping.
    `summary` says what one call does, for people, with parameters in braces: `"the refund of
    order {order_id}"` (cards, reminders and refusals name the action by it; without one they
    show the tool's name and its first parameters). `undo` names the tool that compensates a
    run of this one (`approvals.undo`): it takes `original_params` and `original_result` and is
    checked when the registry is complete (`undo_problems`). The function is returned as is.
    """

    def decorate(fn: F) -> F:
        spec = _build_spec(
            fn,
            risk=risk,
            idempotent=idempotent,
            max_autonomy=max_autonomy,
            timeout=timeout,
            secrets=secrets,
            summary=summary,
            undo=undo,
        )
        _DEFINED.setdefault(spec.module, {})[spec.name] = spec
        setattr(fn, _SPEC_ATTRIBUTE, spec)
        return fn

    return decorate(function) if function is not None else decorate


def spec_of(function: Callable[..., Any]) -> ToolSpec:
    """The `ToolSpec` of a function decorated with `@tool`."""
    spec = getattr(function, _SPEC_ATTRIBUTE, None)
    if not isinstance(spec, ToolSpec):
        raise InvalidToolDefinition(getattr(function, "__name__", repr(function)), "it is not decorated with @tool")
    return spec


def _build_spec(
    fn: Callable[..., Any],
    *,
    risk: str,
    idempotent: bool,
    max_autonomy: str,
    timeout: float | str,
    secrets: Sequence[str] = (),
    summary: str | None = None,
    undo: str | None = None,
) -> ToolSpec:
    name = getattr(fn, "__name__", None)
    if not callable(fn) or not isinstance(name, str):
        raise InvalidToolDefinition(repr(fn), "@tool decorates functions")
    if risk not in RISKS:
        raise InvalidToolDefinition(name, f"risk must be one of {', '.join(RISKS)} (got {risk!r})")
    if max_autonomy not in AUTONOMY_LEVELS:
        raise InvalidToolDefinition(
            name, f"max_autonomy must be one of {', '.join(AUTONOMY_LEVELS)} (got {max_autonomy!r})"
        )
    if not isinstance(idempotent, bool):
        raise InvalidToolDefinition(name, f"idempotent must be True or False (got {idempotent!r})")
    try:
        timeout_s = parse_duration(timeout).total_seconds()
    except ValueError as exc:
        raise InvalidToolDefinition(name, f"timeout: {exc}") from None
    if timeout_s <= 0:
        raise InvalidToolDefinition(name, f"timeout must be positive (got {timeout!r})")
    if undo is not None and (not isinstance(undo, str) or not undo.strip() or undo == name):
        raise InvalidToolDefinition(name, f"undo must name another tool (got {undo!r})")
    declared = _declared_secrets(fn, name, secrets)
    model, arguments, takes_key = _params_model(fn, name, skip_secrets=bool(declared))
    _check_summary(name, summary, set(arguments.values()))
    return ToolSpec(
        name=name,
        description=_first_paragraph(inspect.getdoc(fn)),
        module=fn.__module__,
        function=fn,
        params_model=model,
        arguments=arguments,
        risk=cast(Risk, risk),
        idempotent=idempotent,
        max_autonomy=cast(Autonomy, max_autonomy),
        timeout_s=timeout_s,
        takes_idempotency_key=takes_key,
        secrets=declared,
        summary=summary,
        undo=undo,
    )


def _check_summary(name: str, summary: str | None, parameters: set[str]) -> None:
    """A summary names only the tool's parameters, by name (`{order_id}`), nothing else."""
    if summary is None:
        return
    if not isinstance(summary, str) or not summary.strip():
        raise InvalidToolDefinition(name, f"summary must be a non-empty string (got {summary!r})")
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(summary) if field is not None]
    except ValueError as exc:
        raise InvalidToolDefinition(name, f"summary {summary!r} is not a format string: {exc}") from None
    for field in fields:
        if field not in parameters:
            known = ", ".join(sorted(parameters)) or "none"
            raise InvalidToolDefinition(name, f"summary names {{{field}}}, not one of its parameters ({known})")


SUMMARY_VALUE_LIMIT = 60


def summarize(params: Mapping[str, Any], summary: str | None) -> str:
    """What one call does, in plain text: the tool's `summary` filled in with `params`; "" when
    the tool has none (or edited params lack one of its fields): people then see the tool's name."""
    if not summary:
        return ""
    values = {key: _summary_value(value) for key, value in params.items()}
    try:
        return summary.format_map(values)
    except (KeyError, ValueError, IndexError, AttributeError):
        return ""


def _summary_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_VALUE_LIMIT else text[: SUMMARY_VALUE_LIMIT - 1] + "…"


def _declared_secrets(fn: Callable[..., Any], name: str, secrets: Sequence[str]) -> tuple[str, ...]:
    if isinstance(secrets, str) or not isinstance(secrets, Sequence):
        raise InvalidToolDefinition(name, f"secrets must be a list of secret names (got {secrets!r})")
    for secret in secrets:
        if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret):
            raise InvalidToolDefinition(name, f"not a secret name: {secret!r} (letters, digits, '_', '.', '-')")
    takes_secrets = SECRETS in inspect.signature(fn).parameters
    if secrets and not takes_secrets:
        raise InvalidToolDefinition(name, f"it declares secrets but has no {SECRETS!r} parameter to receive them")
    if takes_secrets and not secrets:
        raise InvalidToolDefinition(
            name, f"a parameter named {SECRETS!r} receives declared secrets: add @tool(secrets=[...]) or rename it"
        )
    return tuple(dict.fromkeys(secrets))


def _params_model(
    fn: Callable[..., Any], name: str, *, skip_secrets: bool = False
) -> tuple[type[BaseModel], dict[str, str], bool]:
    try:
        hints = get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as exc:
        raise InvalidToolDefinition(name, f"cannot resolve its type hints: {exc}") from None
    fields: dict[str, Any] = {}
    arguments: dict[str, str] = {}
    takes_key = False
    for index, parameter in enumerate(inspect.signature(fn).parameters.values()):
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise InvalidToolDefinition(name, f"*{parameter.name} / **{parameter.name} cannot be described by a schema")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise InvalidToolDefinition(name, f"parameter {parameter.name!r} is positional-only; tools take keywords")
        if parameter.name == IDEMPOTENCY_KEY:
            takes_key = True
            continue
        if parameter.name == SECRETS and skip_secrets:
            continue
        if parameter.name not in hints:
            raise InvalidToolDefinition(name, f"parameter {parameter.name!r} has no type annotation")
        default = ... if parameter.default is parameter.empty else parameter.default
        field = f"p{index}"
        fields[field] = (hints[parameter.name], Field(default, alias=parameter.name))
        arguments[field] = parameter.name
    config = ConfigDict(extra="forbid", protected_namespaces=())
    try:
        model: type[BaseModel] = create_model(f"{name}_params", __config__=config, **fields)
        model.model_json_schema()  # fail at decoration, not when the model first asks for it
    except (PydanticUserError, TypeError, ValueError) as exc:
        raise InvalidToolDefinition(name, f"its parameters have no JSON schema: {exc}") from None
    return model, arguments, takes_key


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


class ToolRegistry:
    """A set of tools with unique names: what one process may run."""

    def __init__(self, tools: Iterable[ToolSpec | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, ToolSpec] = {}
        for item in tools:
            self.register(item)

    def register(self, item: ToolSpec | Callable[..., Any]) -> ToolSpec:
        spec = item if isinstance(item, ToolSpec) else spec_of(item)
        existing = self._tools.get(spec.name)
        if existing is not None and existing is not spec:
            raise DuplicateTool(spec.name, existing.module, spec.module)
        self._tools[spec.name] = spec
        return spec

    def get(self, name: str) -> ToolSpec:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool(name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter([self._tools[name] for name in self.names()])

    def __len__(self) -> int:
        return len(self._tools)

    # The gate's ToolCatalog port.
    def policy(self, name: str) -> ToolPolicy:
        return self.get(name).policy

    def validate(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return self.get(name).validate(params)

    def definition_hash(self, name: str) -> str:
        return self.get(name).definition_hash

    def summarize(self, name: str, params: Mapping[str, Any]) -> str:
        """What a call of `name` does, for people; "" for a tool without a summary (or not here)."""
        spec = self._tools.get(name)
        return summarize(params, spec.summary if spec else None)


# What an undo tool takes: the original action's params and the result its run returned.
UNDO_INPUTS = ("original_params", "original_result")


def undo_problems(registry: ToolRegistry) -> list[tuple[str, str]]:
    """(tool, problem) for each declared undo the complete registry cannot honour: the undo tool
    must be in it, run where the tool runs (a `@tool`'s by the executor, an external tool's by
    the client that ran the original) and take exactly `original_params` and `original_result`."""
    problems: list[tuple[str, str]] = []
    for spec in registry:
        if spec.undo is None:
            continue
        if spec.undo not in registry:
            problems.append((spec.name, f"undo names {spec.undo!r}, which is not a loaded tool"))
            continue
        undo = registry.get(spec.undo)
        if undo.external != spec.external:
            kind = "an external tool" if spec.external else "a @tool"
            problems.append((spec.name, f"undo names {spec.undo!r}, which must be {kind} as {spec.name!r} is"))
            continue
        schema = undo.json_schema()
        given = set(schema.get("properties") or {})
        extra = sorted(set(schema.get("required") or []) - set(UNDO_INPUTS))
        missing = [name for name in UNDO_INPUTS if name not in given]
        if missing or extra:
            takes = f"it lacks {', '.join(missing)}" if missing else f"it also requires {', '.join(extra)}"
            wanted = " and ".join(UNDO_INPUTS)
            problems.append((spec.name, f"undo tool {spec.undo!r} must take {wanted}, nothing else required: {takes}"))
    return problems


def check_undo(registry: ToolRegistry) -> ToolRegistry:
    """`registry`, once every declared undo is honoured; else `InvalidToolDefinition` naming the first."""
    for name, problem in undo_problems(registry):
        raise InvalidToolDefinition(name, problem)
    return registry


def load_tool_modules(modules: Iterable[str]) -> ToolRegistry:
    """Import each module by name and return a registry of exactly the tools they define.

    Raises `ToolLoadError` naming a module that fails to import or defines no tools, and
    `DuplicateTool` when two of the modules define tools of the same name.
    """
    registry = ToolRegistry()
    for module in dict.fromkeys(modules):
        try:
            importlib.import_module(module)
        except Exception as exc:
            _DEFINED.pop(module, None)
            raise ToolLoadError(module, exc) from exc
        defined = _DEFINED.get(module)
        if not defined:
            raise ToolLoadError(module, "it defines no @tool functions")
        for spec in defined.values():
            registry.register(spec)
    return registry
