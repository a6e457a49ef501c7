"""Which model drafts a step while the primary fails: the fallback model, and when to go back.

A task type's primary model (`task_types.X.model`, else `model.default`) that has failed
(`ModelUnavailable`: 429/529/5xx, timeouts, connection errors) for `model.fallback_after`
hands its steps to the fallback (`task_types.X.fallback`, else `model.fallback`). From then on
each new step tries the primary first again if it was last tried `model.fallback_probe` ago
or longer (a probe), else goes straight to the fallback: a step never waits for a failing
primary more than once per probe interval, and the first step after the primary answers a
probe is back on it. When the fallback fails too, the step fails as before (backoff, then the
stall after `model.outage_limit`).

What counts as "failed for": the earliest failure of the primary this process has seen without
an answer since (`ModelHealth`, shared by the runner's threads), or the task's own
`unavailable_since`, whichever is earlier; another process learns of an outage by its own
calls. The router model has no fallback: an unrouted task waits for it (or is stalled).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime

from agent.model import ModelClient, ModelReply, ModelRequest, ModelUnavailable
from core.config import Config, TaskTypeConfig


@dataclass(frozen=True)
class Drafted:
    """A reply and whether it came from the fallback (`primary` names the model that failed)."""

    reply: ModelReply
    fallback: bool = False
    primary: str | None = None


class ModelHealth:
    """Since when each model has failed without answering, and when it was last tried."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing_since: dict[str, datetime] = {}
        self._tried: dict[str, datetime] = {}

    def failing_since(self, model: str) -> datetime | None:
        with self._lock:
            return self._failing_since.get(model)

    def tried(self, model: str, now: datetime) -> None:
        with self._lock:
            self._tried[model] = now

    def last_tried(self, model: str) -> datetime | None:
        with self._lock:
            return self._tried.get(model)

    def failed(self, model: str, now: datetime) -> None:
        with self._lock:
            self._failing_since.setdefault(model, now)

    def answered(self, model: str) -> None:
        with self._lock:
            self._failing_since.pop(model, None)


def fallback_model(config: Config, task_type: TaskTypeConfig) -> str | None:
    """The task type's fallback, or None (none configured, or it is the primary itself)."""
    fallback = task_type.fallback or config.model.fallback
    primary = task_type.model or config.model.default
    return fallback if fallback and fallback != primary else None


class FallbackDrafting:
    """Asks the primary, or the fallback while the primary fails (see the module's docstring)."""

    def __init__(self, model: ModelClient, config: Config, health: ModelHealth | None = None) -> None:
        self.model, self.config = model, config
        self.health = health or ModelHealth()

    def complete(
        self, request: ModelRequest, fallback: str | None, now: datetime, task_since: datetime | None
    ) -> Drafted:
        """Raises `ModelUnavailable` when the model that was asked last failed (the primary
        before `fallback_after`, else the fallback)."""
        primary = request.model
        if fallback is None:
            return Drafted(self._ask(request, now))
        after, probe = self.config.model.fallback_after, self.config.model.fallback_probe
        since = self._down_since(primary, task_since)
        on_fallback = since is not None and now - since >= after
        last = self.health.last_tried(primary)
        if not on_fallback or last is None or now - last >= probe:
            try:
                return Drafted(self._ask(request, now))
            except ModelUnavailable:
                since = self._down_since(primary, task_since)
                if since is None or now - since < after:
                    raise
        return Drafted(self._ask(replace(request, model=fallback), now), fallback=True, primary=primary)

    def _ask(self, request: ModelRequest, now: datetime) -> ModelReply:
        self.health.tried(request.model, now)
        try:
            reply = self.model.complete(request)
        except ModelUnavailable:
            self.health.failed(request.model, now)
            raise
        self.health.answered(request.model)
        return reply

    def _down_since(self, model: str, task_since: datetime | None) -> datetime | None:
        known = [at for at in (self.health.failing_since(model), task_since) if at is not None]
        return min(known) if known else None
