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


class MalformedMessage(CoreError):
    """An outbox row whose payload does not match its kind (or whose kind no message has)."""

    def __init__(self, kind: str, problem: str) -> None:
        self.kind, self.problem = kind, problem
        super().__init__(f"outbox message {kind!r} is malformed: {problem}")


class InvalidTransition(CoreError):
    """A lifecycle (`core.states`) has no such move; nothing was changed."""

    def __init__(self, machine: str, subject: str, current: str, target: str) -> None:
        self.machine, self.subject, self.current, self.target = machine, subject, str(current), str(target)
        super().__init__(f"{machine} {subject!r} cannot go from {self.current!r} to {self.target!r}")


class StaleState(CoreError):
    """The compare-and-set lost: someone else moved the row first; nothing was changed."""

    def __init__(self, machine: str, subject: str, expected: str) -> None:
        self.machine, self.subject, self.expected = machine, subject, str(expected)
        super().__init__(f"{machine} {subject!r} is no longer {self.expected!r}")
