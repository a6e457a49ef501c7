"""What the Slack listeners and the outbox sender share: built once by `bot.runtime.build_services`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from agent.connect import ConnectFlow
from agent.delegation import Delegation
from agent.tools import ToolRegistry
from approvals.decisions import Decisions
from approvals.ports import Directory
from approvals.resolutions import Resolutions
from bot.admission import Admission
from bot.installations import Installations
from core.clock import Clock
from core.config import Config


@dataclass
class Services:
    config: Config
    sessions: sessionmaker[Session]
    registry: ToolRegistry
    clock: Clock
    directory: Directory
    decisions: Decisions
    # The app's client: the bot token of `SLACK_BOT_TOKEN` in single-workspace mode; without a
    # token in multi-workspace mode, where Bolt gives each request its workspace's token.
    client: WebClient
    # Slack calls made after the ack (ephemeral refusals, modals, App Home), off the request thread.
    background: ThreadPoolExecutor
    delegation: Delegation  # whose credentials each task type's tools run with
    resolutions: Resolutions  # people resolving actions whose outcome is unknown
    # Multi-workspace mode (SLACK_CLIENT_ID): each workspace's installation and tokens.
    installations: Installations | None = None
    # People connecting their own credentials from Slack (oauth_providers with authorize_url).
    connect: ConnectFlow | None = None
    # Whether a click's decision may still start under load (`bot.admission`).
    admission: Admission = field(default_factory=Admission)

    def client_for(self, team_id: str | None) -> WebClient:
        """A client that speaks to workspace `team_id`: the app's client in single-workspace mode;
        in multi-workspace mode one with that workspace's bot token (`NotInstalled` if it has none)."""
        if self.installations is None:
            return self.client
        return self.installations.client_for(team_id)
