"""Structured logs with structlog: JSON lines in production, readable in a terminal.

Every line about a task or an action carries `task_id` / `action_id` (bound with
`structlog.contextvars` where the work happens), and a redaction step removes any configured
secret (tokens, signing secret, API keys, the task API token) from every field, whatever the
code that logged it: a secret must never reach a log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"


class Redactor:
    """A structlog processor that replaces each known secret value with `[redacted]`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if self.secrets:
            for key, value in event.items():
                event[key] = self.scrub(value)
        return event

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value


def configure(*, json: bool | None = None, level: int = logging.INFO, secrets: Iterable[str] = ()) -> Redactor:
    """Route both structlog and the standard library's loggers (Bolt, slack_sdk, SQLAlchemy)
    through one pipeline; JSON unless stderr is a terminal."""
    redactor = Redactor(secrets)
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        # Fields passed as `extra=` (the audit head's seq and hash) become JSON keys.
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return redactor


def secrets_of(settings: Any) -> list[str]:
    """The secret values in the process settings (SecretStr fields), for the redactor."""
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            # A list setting (the vault's keys) is redacted key by key too.
            secret = value.get_secret_value()
            values += [secret, *(part.strip() for part in secret.split(",") if "," in secret)]
    return values
