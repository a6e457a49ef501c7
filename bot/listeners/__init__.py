"""Bolt listeners, one module per Slack surface; each exposes `register(app, services)`.

Every listener acks within milliseconds: it verifies the click, makes one domain call (one
database transaction: state change + audit + outbox), acks, and hands anything slower
(modals, ephemeral notices, App Home) to `services.background`.
"""

from bot.listeners import actions, autonomy, commands, events, installs, views

__all__ = ["actions", "autonomy", "commands", "events", "installs", "views"]
