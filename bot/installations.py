"""Multi-workspace mode: installations from Slack's OAuth flow, their tokens sealed by the vault,
and a Web API client per workspace.

slack_sdk's `SQLAlchemyInstallationStore` does the bookkeeping on our tables
(`core.models.slack_installations`, `slack_bots`, from migration 0007); `SealedInstallationStore`
wraps it so that every token, refresh token and webhook URL is sealed with the vault's keys
(`COUNTERSIGN_VAULT_KEYS`) before it is written and opened after it is read. Each ciphertext is
bound to its team, user and column, so one copied onto another row is refused.

`Installations.client_for(team)` is how work done outside a Slack request (the outbox) reaches a
workspace: the newest bot token of that team, refreshed first when Slack's token rotation is on
and it expires soon, on a client configured like the app's (base URL, retries, timeout).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from slack_bolt.authorization.authorize import InstallationStoreAuthorize
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.oauth.installation_store import Bot, Installation, InstallationStore
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation import TokenRotator
from sqlalchemy import Engine, MetaData, Table, desc, select

from agent.vault import Vault
from core.models import slack_bots, slack_installations, slack_oauth_states

log = logging.getLogger(__name__)
INSTALLATION_SECRETS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token", "incoming_webhook_url")
BOT_SECRETS = ("bot_token", "bot_refresh_token")
STATE_EXPIRATION_S = 600
INSTALL_PATH, REDIRECT_PATH = "/slack/install", "/slack/oauth_redirect"
# What manifest.yml asks for; SLACK_SCOPES replaces it.
DEFAULT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "commands",
    "groups:history",
    "im:history",
    "im:write",
    "usergroups:read",
    "users:read",
)


class NotInstalled(Exception):
    """No usable installation for a workspace: never installed, uninstalled, or its token revoked."""

    def __init__(self, team_id: str | None) -> None:
        self.team_id = team_id
        super().__init__(
            f"countersign is not installed in workspace {team_id!r} (or its token was revoked)"
            if team_id
            else "no workspace for a message of no task: set SLACK_ADMIN_TEAM_ID (the admin channel's workspace)"
        )


class _Tables(SQLAlchemyInstallationStore):
    """slack_sdk's store on the tables Alembic creates, reading their naive times as UTC (slack_sdk
    writes UTC; `datetime.timestamp()` would read a naive one in the process's local zone)."""

    @classmethod
    def build_installations_table(cls, metadata: MetaData, table_name: str) -> Table:
        return slack_installations

    @classmethod
    def build_bots_table(cls, metadata: MetaData, table_name: str) -> Table:
        return slack_bots

    @classmethod
    def build_installation_entity(cls, row: Any) -> Installation:
        return super().build_installation_entity(_as_utc(row))

    @classmethod
    def build_bot_entity(cls, row: Any) -> Bot:
        return super().build_bot_entity(_as_utc(row))


class OAuthStates(SQLAlchemyOAuthStateStore):
    """The OAuth `state` values handed out by /slack/install, on the `slack_oauth_states` table."""

    @classmethod
    def build_oauth_states_table(cls, metadata: MetaData, table_name: str) -> Table:
        return slack_oauth_states


def oauth_state_store(engine: Engine) -> OAuthStates:
    return OAuthStates(expiration_seconds=STATE_EXPIRATION_S, engine=engine)


class SealedInstallationStore(InstallationStore):
    """An `InstallationStore` whose rows never hold a token in plain text."""

    def __init__(self, client_id: str, engine: Engine, vault: Vault) -> None:
        self.client_id, self.vault = client_id, vault
        self.tables = _Tables(client_id=client_id, engine=engine, logger=log)
        self.engine = engine

    @property
    def logger(self) -> logging.Logger:
        return log

    def save(self, installation: Installation) -> None:
        self.tables.save(self._sealed(installation, INSTALLATION_SECRETS))

    def save_bot(self, bot: Bot) -> None:
        self.tables.save_bot(self._sealed(bot, BOT_SECRETS))

    def find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        bot = self.tables.find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        return None if bot is None else self._opened(bot, BOT_SECRETS)

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        found = self.tables.find_installation(
            enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, is_enterprise_install=is_enterprise_install
        )
        return None if found is None else self._opened(found, INSTALLATION_SECRETS)

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        self.tables.delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    def delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        self.tables.delete_installation(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id)

    def team_bot(self, team_id: str) -> Bot | None:
        """The newest bot installation of a workspace, whatever its Enterprise Grid org."""
        query = (
            select(slack_bots)
            .where(
                slack_bots.c.client_id == self.client_id,
                slack_bots.c.team_id == team_id,
                slack_bots.c.bot_token.is_not(None),
            )
            .order_by(desc(slack_bots.c.installed_at))
            .limit(1)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else self._opened(self.tables.build_bot_entity(row), BOT_SECRETS)

    def reseal_all(self, batch_size: int = 100) -> int:
        """Re-encrypt every stored token under the vault's newest key (`secrets rotate-key`)."""
        resealed = 0
        for table, columns in ((slack_installations, INSTALLATION_SECRETS), (slack_bots, BOT_SECRETS)):
            after = 0
            while True:
                with self.engine.begin() as connection:
                    rows = (
                        connection.execute(
                            select(table).where(table.c.id > after).order_by(table.c.id).limit(batch_size)
                        )
                        .mappings()
                        .all()
                    )
                    if not rows:
                        break
                    for row in rows:
                        values = {c: self.vault.reseal(row[c]) for c in columns if row[c] is not None}
                        if values:
                            connection.execute(table.update().where(table.c.id == row["id"]).values(**values))
                            resealed += 1
                    after = rows[-1]["id"]
        return resealed

    # -- sealing --------------------------------------------------------------------------------

    def _sealed(self, entity: Any, fields: tuple[str, ...]) -> Any:
        copy = type(entity)(**entity.to_dict_for_copying())
        for name in fields:
            value = getattr(entity, name, None)
            if value is not None:
                setattr(copy, name, self.vault.seal_bound(value, _binding(entity, name)))
        return copy

    def _opened(self, entity: Any, fields: tuple[str, ...]) -> Any:
        for name in fields:
            value = getattr(entity, name, None)
            if value is not None:
                setattr(entity, name, self.vault.open_bound(value, _binding(entity, name)))
        return entity


def _binding(entity: Any, field: str) -> Mapping[str, str | None]:
    # Bot tokens belong to the workspace; user tokens to one person in it.
    user = getattr(entity, "user_id", None) if field.startswith(("user_", "incoming_")) else None
    return {
        "what": f"slack.{field}",
        "enterprise_id": entity.enterprise_id,
        "team_id": entity.team_id,
        "user_id": user,
    }


def _as_utc(row: Any) -> dict[str, Any]:
    return {
        key: value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value
        for key, value in dict(row).items()
    }


class Installations:
    """Per-workspace Web API clients for work done outside a Slack request."""

    def __init__(
        self,
        store: SealedInstallationStore,
        app_client: WebClient,
        *,
        client_id: str,
        client_secret: str,
        rotation_minutes: int = 120,
        admin_team: str | None = None,
    ) -> None:
        self.store, self.app_client, self.rotation_minutes = store, app_client, rotation_minutes
        self.admin_team = admin_team  # where messages of no task go (the admin channel's workspace)
        self.rotator = TokenRotator(client_id=client_id, client_secret=client_secret, client=app_client)
        self._lock = threading.Lock()
        self._clients: dict[str, WebClient] = {}  # token → its client

    def client_for(self, team_id: str | None) -> WebClient:
        """A client with workspace `team_id`'s bot token (None: the admin workspace's)."""
        team_id = team_id or self.admin_team
        if not team_id:
            raise NotInstalled(team_id)
        with self._lock:  # one refresh at a time in this process: a refresh token is spent on use
            bot = self.store.team_bot(team_id)
            if bot is None:
                raise NotInstalled(team_id)
            refreshed = self.rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=self.rotation_minutes
            )
            if refreshed is not None:
                self.store.save_bot(refreshed)
                bot = refreshed
            token = bot.bot_token
            if token is None:
                raise NotInstalled(team_id)
            client = self._clients.get(token)
            if client is None:
                base = self.app_client
                client = WebClient(
                    token=token,
                    base_url=base.base_url,
                    timeout=base.timeout,
                    retry_handlers=list(base.retry_handlers),
                )
                if len(self._clients) > 256:  # rotated tokens leave old entries behind
                    self._clients.clear()
                self._clients[token] = client
            return client


def authorize_url(api_url: str) -> str:
    """Slack's authorize page beside its Web API: `https://slack.com/api/` →
    `https://slack.com/oauth/v2/authorize` (and the same beside the emulator)."""
    base = api_url if api_url.endswith("/") else api_url + "/"
    return base.removesuffix("api/") + "oauth/v2/authorize"


def oauth_settings(
    installations: Installations,
    engine: Engine,
    *,
    client_id: str,
    client_secret: str,
    scopes: list[str] | None = None,
    redirect_uri: str | None = None,
) -> OAuthSettings:
    """Bolt's OAuth flow on our tables: GET /slack/install redirects to Slack's authorize page
    with a fresh `state` (kept in the database and in a cookie), GET /slack/oauth_redirect
    exchanges the code and saves the installation sealed."""
    store, client = installations.store, installations.app_client
    settings = OAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes or list(DEFAULT_SCOPES),
        redirect_uri=redirect_uri,
        install_path=INSTALL_PATH,
        install_page_rendering_enabled=False,
        redirect_uri_path=REDIRECT_PATH,
        authorization_url=authorize_url(client.base_url),
        installation_store=store,
        installation_store_bot_only=True,
        token_rotation_expiration_minutes=installations.rotation_minutes,
        state_store=oauth_state_store(engine),
        state_expiration_seconds=STATE_EXPIRATION_S,
        logger=log,
    )
    # Bolt's default authorize refreshes rotating tokens through slack.com; ours goes through the
    # app's client, so SLACK_API_URL and its retries hold for refreshes too.
    settings.authorize = InstallationStoreAuthorize(
        logger=log,
        installation_store=store,
        client_id=client_id,
        client_secret=client_secret,
        token_rotation_expiration_minutes=installations.rotation_minutes,
        bot_only=True,
        client=client,
    )
    return settings
