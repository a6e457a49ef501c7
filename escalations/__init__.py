"""Timers and chains: SLA reminders, escalation steps, veto windows, stalled tasks, and the
sweeper that APScheduler ticks (`escalations.scheduler` is its only importer).

Imports `approvals` and `core`; never `agent`, `bot`, Slack, Bolt or Anthropic.
"""
