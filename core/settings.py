"""The process `Settings` from the environment (and `.env`), per DESIGN's table, and the checks
that decide whether a mode can start with them."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config import Config, https_url


class Settings(BaseSettings):
    """The process environment (and `.env`), per DESIGN's table; secrets never print."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    database_url: str = "sqlite:///countersign.db"
    config_path: str = Field(default="countersign.yml", validation_alias="COUNTERSIGN_CONFIG")
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str | None = None
    # Multi-workspace mode (the OAuth install flow) when both are set; Bolt's variable names.
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    # Bot scopes asked for at install, comma-separated; default: the manifest's.
    slack_scopes: str | None = None
    # The redirect URL registered with Slack; default: Slack's own choice (the app's only one).
    slack_redirect_uri: str | None = None
    # Multi-workspace mode: the workspace of `slack.admin_channel`, for messages of no task
    # (promotion proposals, autonomy changes, alerts, audit heads).
    slack_admin_team_id: str | None = None
    # With token rotation on, a bot token is refreshed this long before it expires.
    slack_token_rotation_minutes: int = Field(default=120, ge=1, le=720)
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    api_token: SecretStr | None = Field(default=None, validation_alias="COUNTERSIGN_API_TOKEN")
    # The interface `serve` listens on: loopback unless told, so /metrics and /readyz are not
    # open to a network by accident. Behind a load balancer or in a container: 0.0.0.0.
    host: str = Field(default="127.0.0.1", min_length=1, validation_alias="COUNTERSIGN_HOST")
    # Processes `serve` runs behind its port (`--workers` overrides it); unset: the machine's
    # cores on PostgreSQL, 1 on SQLite (which allows no more).
    workers: int | None = Field(default=None, ge=1, validation_alias="COUNTERSIGN_WORKERS")
    # When set, GET /metrics needs `Authorization: Bearer <token>` and /readyz names its
    # checks only to a request carrying it (to others it says only ok or not). Unset: both open.
    metrics_token: SecretStr | None = Field(default=None, validation_alias="COUNTERSIGN_METRICS_TOKEN")
    # Fernet keys of the secrets vault, comma-separated, newest first (`countersign secrets generate-key`).
    vault_keys: SecretStr | None = Field(default=None, validation_alias="COUNTERSIGN_VAULT_KEYS")
    # A YAML script for the scripted model (the offline demo); else Claude, which needs a key.
    model_script: str | None = Field(default=None, validation_alias="COUNTERSIGN_MODEL_SCRIPT")
    # The server's public base URL (https://countersign.example.com): OAuth providers send
    # people back to {public_url}/oauth/{provider}/callback after they sign in.
    public_url: str | None = Field(default=None, validation_alias="COUNTERSIGN_PUBLIC_URL")

    @property
    def multi_workspace(self) -> bool:
        return self.slack_client_id is not None or self.slack_client_secret is not None

    def multi_workspace_problems(self) -> list[str]:
        """Why multi-workspace mode cannot start (empty when it can, or when it is off)."""
        if not self.multi_workspace:
            return []
        problems = []
        if self.slack_client_id is None or self.slack_client_secret is None:
            problems.append("multi-workspace mode needs both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET")
        if self.vault_keys is None:
            problems.append(
                "multi-workspace mode keeps each workspace's Slack tokens encrypted: set COUNTERSIGN_VAULT_KEYS "
                "(`countersign secrets generate-key` makes a key)"
            )
        if self.slack_signing_secret is None:
            problems.append("multi-workspace mode serves Slack over HTTP: set SLACK_SIGNING_SECRET")
        if self.slack_bot_token is not None:
            problems.append(
                "unset SLACK_BOT_TOKEN: in multi-workspace mode each workspace's token comes from its install"
            )
        return problems


def connect_problems(settings: Settings, config: Config) -> list[str]:
    """Why people cannot connect their credentials from Slack although a provider offers it."""
    offering = sorted(name for name, provider in config.oauth_providers.items() if provider.authorize_url)
    if not offering:
        return []
    which = ", ".join(f"oauth_providers.{name}.authorize_url" for name in offering)
    problems = []
    if settings.public_url is None:
        problems.append(
            f"{which} is set, but COUNTERSIGN_PUBLIC_URL is not: set it to this server's public base URL "
            "(e.g. https://countersign.example.com), where providers send people back after they sign in"
        )
    else:
        try:
            https_url(settings.public_url)
        except PydanticCustomError:
            problems.append(
                f"COUNTERSIGN_PUBLIC_URL: not an https:// URL (http:// only for localhost): {settings.public_url!r}"
            )
    if settings.vault_keys is None:
        problems.append(f"{which} is set: the tokens people connect are kept encrypted, so set COUNTERSIGN_VAULT_KEYS")
    return problems
