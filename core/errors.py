"""Errors of the core package."""

from __future__ import annotations


class CoreError(Exception):
    """Base of core's errors."""


class ConfigError(CoreError):
    """The configuration file or environment is invalid; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class DatabaseOwned(CoreError):
    """A second process tried to own a SQLite database another process serves."""

    def __init__(self, path: str, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"the SQLite database {path!r} is already served by another process ({holder}); "
            "SQLite allows one serving process: stop it, or use PostgreSQL for several"
        )


class DatabaseBusy(CoreError):
    """A SQLite write could not start in time: another writer held the database too long."""
