"""What the Slack listeners and the outbox sender share: built once by `bot.app.build`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from agent.delegation import Delegation
from agent.tools import ToolRegistry
from approvals.decisions import Decisions
from approvals.ports import Directory
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
    client: WebClient
    # Slack calls made after the ack (ephemeral refusals, modals, App Home), off the request thread.
    background: ThreadPoolExecutor
    delegation: Delegation  # whose credentials each task type's tools run with
