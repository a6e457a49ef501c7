"""An OpenAI Agents SDK agent whose function tool runs only once a person approves it in Slack.

The model drafts the call; countersign posts its card; the tool runs with the approved
parameters (a person's edits applied) and its result is recorded. Rejected, vetoed, expired or
not decided within `wait_s`: the tool does not run and the model reads why as the tool's output.
(The SDK's own `needs_approval` is not used: its approval cannot carry a person's edits.)
"""

from typing import Any

from agents import Agent, Model, RunContextWrapper, default_tool_error_function, function_tool
from countersign_client import AsyncCountersign, NotApproved, WaitTimedOut, require_approval


def not_run(context: RunContextWrapper[Any], error: Exception) -> str:
    """The tool output the model reads instead of a result."""
    if isinstance(error, NotApproved | WaitTimedOut):
        return f"Not run, not approved: {error}"
    return default_tool_error_function(context, error)


def build_agent(client: AsyncCountersign, model: str | Model, wait_s: float = 3600) -> Agent[Any]:
    @function_tool(failure_error_function=not_run)
    @require_approval(client, task_type="ops", tool="restart_service", timeout=wait_s)
    async def restart_service(service: str, region: str = "eu") -> str:
        """Restart a production service in a region."""
        return f"restarted {service} in {region}"  # your code that acts, with the APPROVED params

    return Agent(name="ops", instructions="You keep production running.", tools=[restart_service], model=model)
