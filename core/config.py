"""The configuration: `load_config` reads `countersign.yml` (YAML + `COUNTERSIGN__…` overrides,
errors naming key path, line and value) into the model of `core.config_models`, whose names
(and the values of `core.config_values`) are imported from here. The process environment is
`core.settings`. Imports nothing from the other countersign packages.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any, cast

import yaml
from pydantic import ValidationError

from core.config_models import (
    AlertsConfig,
    ApiConfig,
    AuditConfig,
    Budget,
    BusinessHours,
    Config,
    EscalationStep,
    ExternalToolConfig,
    GraduationConfig,
    ModelConfig,
    ModelPrice,
    OAuthProvider,
    OpenToolsConfig,
    SlackConfig,
    TaskTypeConfig,
    ToolsConfig,
)
from core.config_values import AutonomyLevel, KeyPath, dotted, highest, https_url, is_user_id, lowest, origin_of
from core.durations import Duration, parse_duration
from core.errors import ConfigError

__all__ = [
    "AlertsConfig",
    "ApiConfig",
    "AuditConfig",
    "AutonomyLevel",
    "Budget",
    "BusinessHours",
    "Config",
    "Duration",
    "EscalationStep",
    "ExternalToolConfig",
    "GraduationConfig",
    "ModelConfig",
    "ModelPrice",
    "OAuthProvider",
    "OpenToolsConfig",
    "SlackConfig",
    "TaskTypeConfig",
    "ToolsConfig",
    "check_tool_names",
    "dotted",
    "highest",
    "https_url",
    "is_user_id",
    "load_config",
    "lowest",
    "parse_duration",
]

ENV_PREFIX = "COUNTERSIGN__"
_OWN_ERRORS = {"schema", "duration", "person", "notify", "name", "rules", "zone", "clock", "url"}


def check_tool_names(config: Config, known: Collection[str]) -> list[str]:
    """Problems for every task-type tool not in `known` (the registry's names)."""
    listing = ", ".join(sorted(known)) or "none"
    return [
        f"{dotted(path)}{config.where(path)}: unknown tool {tool!r} (known: {listing})"
        for name, task_type in config.task_types.items()
        for index, tool in enumerate(task_type.tools)
        if tool not in known
        for path in [("task_types", name, "tools", index)]
    ]


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] = os.environ) -> Config:
    """Read, override from `COUNTERSIGN__…` variables, and validate; ConfigError lists every problem."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ConfigError([f"{os.fspath(path)}: no such config file (set COUNTERSIGN_CONFIG)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{os.fspath(path)}: cannot read the config file: {exc}"]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" (line {mark.line + 1})" if mark else ""
        reason = exc.problem or exc.context
        raise ConfigError([f"{os.fspath(path)}{line}: not valid YAML: {reason}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{os.fspath(path)}: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if data is None:
        expected = "expected a mapping with slack, model, tools and task_types"
        raise ConfigError([f"{os.fspath(path)}: the config file is empty; {expected}"])
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{os.fspath(path)} (line 1): the top level must be a mapping of keys "
                f"(slack, task_types, …), got {type(data).__name__}: {_short(data)}"
            ]
        )
    assert node is not None
    origins: dict[KeyPath, str] = {}
    problems = _map_lines(node, (), origins, set())
    data, env_problems = _apply_env(data, environ, origins)
    problems += env_problems
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _describe_all(exc, origins)
    if problems:
        raise ConfigError(problems)
    config._origins.update(origins)
    return config


def _map_lines(node: yaml.Node, path: KeyPath, origins: dict[KeyPath, str], done: set[int]) -> list[str]:
    """Record `line N` for every key path under `node`; return duplicate-key problems."""
    if id(node) in done:  # an alias: walking it again would re-walk (and maybe loop) the anchor
        return []
    done.add(id(node))
    origins.setdefault(path, f"line {node.start_mark.line + 1}")
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in first:
                where = f"{dotted((*path, key))} (line {line})"
                problems.append(f"{where}: duplicate key (first at line {first[key]}): {key!r}")
            first.setdefault(key, line)
            origins[(*path, key)] = f"line {line}"
            problems += _map_lines(value_node, (*path, key), origins, done)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _map_lines(item, (*path, index), origins, done)
    return problems


def _apply_env(
    data: dict[Any, Any], environ: Mapping[str, str], origins: dict[KeyPath, str]
) -> tuple[dict[Any, Any], list[str]]:
    """Overlay `COUNTERSIGN__A__B=value` (value read as YAML) onto a copy of `data`."""
    problems: list[str] = []
    root = dict(data)
    # Sorted, so a whole-section variable applies before the finer ones inside it.
    for name in sorted(key for key in environ if key.upper().startswith(ENV_PREFIX)):
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            example = "COUNTERSIGN__SLACK__APPROVALS_CHANNEL"
            problems.append(f"{name}: not a config path (use COUNTERSIGN__SECTION__KEY, e.g. {example})")
            continue
        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            problems.append(f"{name}: not a YAML value: {environ[name]!r}")
            continue
        target, path = root, cast(KeyPath, ())
        for key in keys[:-1]:
            key = _same_key(target, key)
            path = (*path, key)
            child = target.get(key, {})
            if not isinstance(child, dict):
                not_mapping = f"{dotted(path)} is not a mapping, so it has no {keys[-1]!r}"
                problems.append(f"{name}: {not_mapping}: {_short(child)}")
                break
            # Copy on the way down: YAML anchors may share this dict with another key.
            target[key] = target = dict(child)
        else:
            path = (*path, _same_key(target, keys[-1]))
            target[path[-1]] = value
            for known in [known for known in origins if known[: len(path)] == path]:
                del origins[known]
            origins[path] = f"env {name}"
    return root, problems


def _same_key(mapping: dict[Any, Any], key: str) -> str:
    """The existing key an upper-cased env name means: `restart-service` for `RESTART_SERVICE`."""
    if key in mapping:
        return key
    return next((k for k in mapping if isinstance(k, str) and k.lower().replace("-", "_") == key), key)


def _describe_all(exc: ValidationError, origins: dict[KeyPath, str]) -> list[str]:
    problems: list[str] = []
    for error in exc.errors():
        loc: KeyPath = tuple(part for part in error["loc"] if part != "[key]")
        ctx = error.get("ctx") or {}
        if error["type"] == "rules":
            found = [((*loc, *sub), message) for sub, message in ctx["problems"]]
        elif error["type"] == "extra_forbidden":
            found = [(loc, "unknown key")]
        elif error["type"] == "missing":
            found = [(loc, "required key is missing")]
        elif error["type"] in _OWN_ERRORS:
            found = [(loc, error["msg"])]
        else:
            found = [(loc, f"{error['msg']}, got {_short(error['input'])}")]
        for path, message in found:
            problems.append(f"{dotted(path) or '(top level)'}{origin_of(path, origins)}: {message}")
    return problems


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
