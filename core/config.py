"""The configuration: `load_config` reads `countersign.yml` (YAML + `COUNTERSIGN__…` overrides,
errors naming key path, line and value) into the model of `core.config_models`, whose names
(and the values of `core.config_values`) are imported from here. The process environment is
`core.settings`. Imports nothing from the other countersign packages.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
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
    "Salvaged",
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
    "salvage_config",
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
    data, origins, problems = _read(path, environ)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _describe_all(exc, origins)
    if problems:
        raise ConfigError(problems)
    config._origins.update(origins)
    return config


@dataclass(frozen=True)
class Salvaged:
    """What `config check` makes of a config file: every problem of reading and validating it,
    and the config with its invalid parts left out (`None` when not even that is possible), so
    the checks that need a config (tool modules, tool names, models) run on the rest."""

    config: Config | None
    problems: list[str]
    removed: tuple[KeyPath, ...]  # the key paths left out

    def removed_under(self, *prefix: str) -> bool:
        return any(path[: len(prefix)] == prefix for path in self.removed)

    def removed_names(self, section: str) -> set[str]:
        """The entries of a named section (`external_tools`) left out whole or in part."""
        return {str(path[1]) for path in self.removed if len(path) > 1 and path[0] == section}


SALVAGE_ROUNDS = 20


def salvage_config(path: str | os.PathLike[str], environ: Mapping[str, str] = os.environ) -> Salvaged:
    """Every problem `load_config` would raise, and more: each invalid value is left out (its
    default takes its place, or its whole entry goes when a required key is bad) and the rest
    validated again, so a check that cross-field rules make only once fields are valid is made
    too. Problems caused by leaving something out are not reported."""
    try:
        data, origins, problems = _read(path, environ)
    except ConfigError as exc:
        return Salvaged(None, exc.problems, ())
    pruned: Any = copy.deepcopy(data)
    removed: list[KeyPath] = []
    for _ in range(SALVAGE_ROUNDS):
        try:
            config = Config.model_validate(pruned)
        except ValidationError as exc:
            errors = [e for e in exc.errors() if not _caused_by_removal(e, removed)]
            problems += [p for p in _describe_all_of(errors, origins) if p not in problems]
            paths = sorted({path for e in exc.errors() for path in _to_remove(e, pruned)}, reverse=True)
            if not paths or () in paths:
                return Salvaged(None, problems, tuple(removed))
            for target in paths:
                _delete(pruned, target)
            removed += paths
            continue
        config._origins.update(origins)
        return Salvaged(config, problems, tuple(removed))
    return Salvaged(None, problems, tuple(removed))


def _caused_by_removal(error: Any, removed: list[KeyPath]) -> bool:
    loc = tuple(part for part in error["loc"] if part != "[key]")
    return error["type"] == "missing" and any(loc[: len(path)] == path for path in removed)


def _to_remove(error: Any, data: Any) -> list[KeyPath]:
    """The key paths to leave out for a validation error: the bad value, or (a required key
    missing) the entry that needs it; for a rule over several keys, those it names."""
    loc: KeyPath = tuple(part for part in error["loc"] if part != "[key]")
    if error["type"] == "rules":
        subs = [tuple(sub) for sub, _message in (error.get("ctx") or {}).get("problems", [])]
        found = [_existing(data, (*loc, *sub)) for sub in subs] or [_existing(data, loc)]
    elif error["type"] == "missing":
        found = [_existing(data, loc[:-1])]
    else:
        found = [_existing(data, loc)]
    return found


def _existing(data: Any, path: KeyPath) -> KeyPath:
    """The longest prefix of `path` that names something in `data` (`()`: not even its first key)."""
    node, found = data, cast(KeyPath, ())
    for part in path:
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_list or (isinstance(node, dict) and part in node)):
            break
        node, found = node[part], (*found, part)
    return found


def _delete(data: Any, path: KeyPath) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        del node[path[-1]]


def _read(
    path: str | os.PathLike[str], environ: Mapping[str, str]
) -> tuple[dict[Any, Any], dict[KeyPath, str], list[str]]:
    """The file's mapping with the `COUNTERSIGN__…` overrides applied, each key path's origin,
    and the problems found so far; ConfigError when there is nothing to validate."""
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
    return data, origins, problems + env_problems


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
    return _describe_all_of(exc.errors(), origins)


def _describe_all_of(errors: Any, origins: dict[KeyPath, str]) -> list[str]:
    problems: list[str] = []
    for error in errors:
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
