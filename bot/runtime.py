"""Building the process's parts from settings: one place, used by the CLI and the server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from agent.connect import ConnectFlow
from agent.delegation import Delegation
from agent.external_tools import add_external_tools
from agent.model import ModelClient
from agent.scripted_model import ScriptedModel
from agent.tools import load_tool_modules
from agent.vault import Vault, parse_keys
from approvals.decisions import Decisions
from approvals.resolutions import Resolutions
from bot.directory import SlackDirectory
from bot.installations import Installations, SealedInstallationStore
from bot.services import Services
from bot.slack_client import make_client
from core.clock import Clock, SystemClock
from core.config import Config
from core.settings import Settings


def build_services(
    settings: Settings,
    config: Config,
    sessions: sessionmaker[Session],
    clock: Clock | None = None,
    *,
    slack_retries: int = 2,
    background_threads: int = 8,
) -> Services:
    clock = clock or SystemClock()
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = make_client(token, settings.slack_api_url, max_retries=slack_retries)
    registry = add_external_tools(load_tool_modules(config.tools.modules), config.external_tools)
    # Multi-workspace mode: user groups would need each workspace's token; the directory has none,
    # so `@group` approvers resolve to nobody there (fail closed) and approvers are listed by id.
    directory = SlackDirectory(client)
    delegation = Delegation(config, registry)
    return Services(
        config=config,
        sessions=sessions,
        registry=registry,
        clock=clock,
        directory=directory,
        decisions=Decisions(directory, registry, clock, credentials=delegation),
        client=client,
        background=ThreadPoolExecutor(max_workers=background_threads, thread_name_prefix="slack-after-ack"),
        delegation=delegation,
        resolutions=Resolutions(directory, clock),
        installations=build_installations(settings, sessions, client, clock) if settings.multi_workspace else None,
        connect=build_connect(settings, config, sessions, clock),
    )


def build_connect(
    settings: Settings, config: Config, sessions: sessionmaker[Session], clock: Clock
) -> ConnectFlow | None:
    """The sign-in flow of the providers with an `authorize_url`; None when none has one, or when
    the public URL it needs is not set (`connect_problems` names it; `serve` refuses to start)."""
    if settings.public_url is None or not any(p.authorize_url for p in config.oauth_providers.values()):
        return None
    keys = parse_keys(settings.vault_keys.get_secret_value()) if settings.vault_keys else []
    vault = Vault(sessions, keys, clock=clock) if keys else None
    return ConnectFlow(config, sessions, clock, settings.public_url, vault)


def build_installations(
    settings: Settings, sessions: sessionmaker[Session], client: WebClient, clock: Clock
) -> Installations:
    """Multi-workspace mode's installations; ValueError naming what is missing."""
    problems = settings.multi_workspace_problems()
    if problems:
        raise ValueError("; ".join(problems))
    assert settings.slack_client_id and settings.slack_client_secret and settings.vault_keys  # checked above
    engine = sessions.kw["bind"]
    vault = Vault(sessions, parse_keys(settings.vault_keys.get_secret_value()), clock=clock)
    return Installations(
        SealedInstallationStore(settings.slack_client_id, engine, vault),
        client,
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        rotation_minutes=settings.slack_token_rotation_minutes,
        admin_team=settings.slack_admin_team_id,
    )


def build_model(settings: Settings) -> tuple[ModelClient, str]:
    """The model and a line saying which it is: the scripted one when a script is set."""
    if settings.model_script:
        return ScriptedModel.from_file(settings.model_script), f"scripted model ({settings.model_script})"
    if settings.anthropic_api_key is None:
        raise ValueError("set ANTHROPIC_API_KEY (or COUNTERSIGN_MODEL_SCRIPT for the scripted model)")
    # Imported here: the anthropic SDK takes seconds of CPU to import, and most commands
    # (`--help`, `audit`, `usage`, …) never call the model.
    from agent.anthropic_model import AnthropicModel

    key = settings.anthropic_api_key.get_secret_value()
    return AnthropicModel(api_key=key, base_url=settings.anthropic_base_url), "Claude through the Anthropic API"
