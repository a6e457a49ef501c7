"""The agent runtime: the tool registry (`@tool`), the exactly-once executor of approved
actions, the model client and the drafting loop (budgets, loop detection, traces).

May import `approvals` and `core`. Never imports `escalations` (its sibling), `bot`, Slack or
Bolt: people are reached through outbox rows. The only package that imports `anthropic`,
and only in `agent.anthropic_model`, which nothing imports before a Claude model is built.
"""

from agent.errors import RetryableError
from agent.tools import Secrets, tool

__all__ = ["RetryableError", "Secrets", "tool"]
