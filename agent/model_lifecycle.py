"""Claude models that Anthropic has deprecated or retired: our own list, not the SDK's.

The `anthropic` SDK keeps a private table of deprecated models that changes shape and content
between releases (models leave it once retired), so a check that read it would pass or fail
with the installed SDK's version. This list is ours, from Anthropic's model deprecations page
(platform.claude.com/docs/en/about-claude/model-deprecations): add a row when Anthropic
announces a deprecation, and move it to `retired` on its date. Dates are those of Anthropic's
own API; Bedrock and Vertex AI keep their own schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from core.config import Config


@dataclass(frozen=True)
class Lifecycle:
    status: Literal["deprecated", "retired"]
    retires: date  # the day requests to it start failing


def _rows(status: Literal["deprecated", "retired"], retires: date, *models: str) -> dict[str, Lifecycle]:
    return dict.fromkeys(models, Lifecycle(status, retires))


MODELS: dict[str, Lifecycle] = {
    **_rows("retired", date(2024, 11, 6), "claude-1.0", "claude-1.1", "claude-1.2", "claude-1.3", "claude-instant-1.0"),
    **_rows("retired", date(2024, 11, 6), "claude-instant-1.1"),
    **_rows("retired", date(2025, 7, 21), "claude-2.0", "claude-2.1", "claude-instant-1.2"),
    **_rows("retired", date(2025, 7, 21), "claude-3-sonnet-20240229"),
    **_rows("retired", date(2025, 10, 22), "claude-3-5-sonnet-20240620", "claude-3-5-sonnet-20241022"),
    **_rows("retired", date(2025, 10, 22), "claude-3-5-sonnet-latest"),
    **_rows("retired", date(2026, 1, 5), "claude-3-opus-20240229", "claude-3-opus-latest"),
    **_rows("retired", date(2026, 2, 19), "claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest"),
    **_rows("retired", date(2026, 2, 19), "claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"),
    **_rows("retired", date(2026, 4, 20), "claude-3-haiku-20240307"),
    **_rows("deprecated", date(2026, 6, 30), "claude-mythos-preview"),
    **_rows("deprecated", date(2027, 1, 22), "claude-opus-4-5", "claude-opus-4-5-20251101"),
}


def model_problem(model: str, today: date) -> str | None:
    """Why `model` should not be configured, or None. A deprecated model past its date counts
    as retired: the list may lag behind Anthropic's page, the calendar does not."""
    lifecycle = MODELS.get(model)
    if lifecycle is None:
        return None
    if lifecycle.status == "retired" or lifecycle.retires <= today:
        return f"{model!r} is retired (since {lifecycle.retires}): requests to it fail; choose a current model"
    return f"{model!r} is deprecated (retires {lifecycle.retires}); choose a current model"


def check_models(config: Config, today: date) -> list[str]:
    """A problem for every configured model that is deprecated or retired, named by its key."""
    used = [("model.default", config.model.default), ("model.router", config.model.router)]
    used += [("model.fallback", config.model.fallback)] if config.model.fallback else []
    used += [(f"task_types.{name}.model", t.model) for name, t in config.task_types.items() if t.model]
    used += [(f"task_types.{name}.fallback", t.fallback) for name, t in config.task_types.items() if t.fallback]
    return [f"{path}: {problem}" for path, model in used if (problem := model_problem(model, today))]
