"""The gate: action state machine, decisions and their authorization, policies and autonomy
levels, the hash-chained audit ledger, graduation.

Imports only `core`. Never imports `agent`, `escalations`, `bot`, Slack, Bolt or Anthropic:
people are reached through outbox rows, the directory of approvers through the
`Directory` port, tools' schemas through the `ToolCatalog` port.
"""
