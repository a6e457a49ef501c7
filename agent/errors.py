"""Errors of the agent package. Each names the tool, module or value involved.

`UnknownTool` is a `LookupError` and `InvalidParams` a `ValueError` with a `problems`
attribute, which is all the gate's `ToolCatalog` port asks of a catalog's errors.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of the agent runtime's errors."""


class RetryableError(Exception):
    """Raised by a tool for a transient failure (a timeout upstream, a 503, a lock):
    the executor tries the action again later, with backoff, up to its attempt limit.

    Deliberately not an `AgentError`: it belongs to tool authors, not to the runtime.
    """


class InvalidToolDefinition(AgentError):
    """A `@tool` function cannot be turned into a tool (missing annotation, *args, bad option)."""

    def __init__(self, tool: str, problem: str) -> None:
        self.tool, self.problem = tool, problem
        super().__init__(f"tool {tool!r} is not a valid tool: {problem}")


class UnknownTool(AgentError, LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name, self.known = name, known
        listed = ", ".join(known) if known else "none"
        super().__init__(f"no tool named {name!r} (known tools: {listed})")


class InvalidParams(AgentError, ValueError):
    """Parameters that do not fit the tool's schema; `problems` maps each field to what is wrong."""

    def __init__(self, tool: str, problems: dict[str, str]) -> None:
        self.tool, self.problems = tool, problems
        listed = "; ".join(f"{field}: {problem}" for field, problem in problems.items())
        super().__init__(f"invalid parameters for tool {tool!r}: {listed}")


class DuplicateTool(AgentError):
    def __init__(self, name: str, first: str, second: str) -> None:
        self.name, self.first, self.second = name, first, second
        super().__init__(f"two tools are named {name!r}: one in {first!r}, one in {second!r}; rename one of them")


class ToolLoadError(AgentError):
    """A tool module listed in the config could not be imported, or defines no tools."""

    def __init__(self, module: str, cause: BaseException | str) -> None:
        self.module, self.cause = module, cause
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"cannot load tool module {module!r}: {reason}")


class ToolTimeout(AgentError):
    """A tool call did not return within its timeout; it may still be running, or have taken effect."""

    def __init__(self, tool: str, timeout_s: float) -> None:
        self.tool, self.timeout_s = tool, timeout_s
        super().__init__(f"tool {tool!r} did not finish within {timeout_s:g}s")
