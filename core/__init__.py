"""The small shared kernel: configuration, database engine and schema, clock, ids,
canonical JSON and the outbox table's writer.

It imports nothing from the other countersign packages (agent, approvals, escalations,
bot), nor Slack, Bolt or Anthropic.
"""
