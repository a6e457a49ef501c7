"""The offline Slack sandbox: an emulator of Slack's Web API that keeps a workspace's state
(channels, messages and threads, ephemeral messages, modals, App Home), used as the fake Slack
in tests and, by `countersign demo`, to render what the app posted without a real workspace.

It imports only the standard library and `slack_sdk` (for Block Kit validation); never
`approvals`, `agent`, `escalations` or `core`, so it can stand in for Slack under any of them.
"""

from bot.sandbox.slack_api import Reply, SlackEmulator
from bot.sandbox.workspace import Ephemeral, Message, SlackError, Version, View, Workspace

__all__ = ["Ephemeral", "Message", "Reply", "SlackEmulator", "SlackError", "Version", "View", "Workspace"]
