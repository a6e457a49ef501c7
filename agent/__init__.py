"""The agent runtime: the tool registry (`@tool`), the exactly-once executor of approved
actions, the model client and the drafting loop (budgets, loop detection, traces).

May import `approvals`, `escalations` and `core`. Never imports `bot`, Slack or Bolt: people
are reached through outbox rows. The only package that imports `anthropic`.
"""

from agent.errors import RetryableError
from agent.tools import Secrets, tool

__all__ = ["RetryableError", "Secrets", "tool"]
