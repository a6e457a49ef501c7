"""Multi-workspace mode: the OAuth install flow, sealed tokens, a client per workspace, token
rotation, uninstalls and revocations, and workspaces that never see each other's work.

The real Bolt and slack_sdk against the emulator (which plays Slack's authorize page and
`oauth.v2.access`), signed requests, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from agent.vault import SealedValueRefused, Vault, generate_key
from bot import action_ids
from bot.installations import NotInstalled, SealedInstallationStore
from core.config import Config
from core.models import AuditEvent, OutboxMessage, Task
from tests.bot.slack_app import (
    ADMINS,
    ALICE,
    APPROVALS,
    BOB,
    BUDGET_CONFIG,
    CONFIG,
    REQUESTER,
    SlackApp,
    decide_block,
    paused_by_budget,
    task_state,
)
from tests.fakes.clock import FrozenClock
from tests.fakes.slack_server import SlackEmulator, seconds

CLIENT_ID, CLIENT_SECRET = "111.222", "client-secret"
TEAM_A, TEAM_B = "T0AAAA", "T0BBBB"
VAULT_KEY = generate_key()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def install(app: SlackApp, team: str, user: str = ALICE) -> str:
    """A person of `team` installs the app: /slack/install → Slack's authorize page → back with a
    code; the success page's HTML."""
    app.slack.log_in(team, user)
    status, headers, _ = _get(app.url + "/slack/install")
    assert status == 302, status
    cookie = headers["Set-Cookie"].split(";")[0]
    assert headers["Location"].startswith(app.slack.url + "oauth/v2/authorize?")
    status, headers, _ = _get(headers["Location"])
    assert status == 302
    assert headers["Location"].startswith(app.url + "/slack/oauth_redirect?code=")
    status, _, page = _get(headers["Location"], {"Cookie": cookie})
    assert status == 200, page
    return page


def _multi(
    db_url: str, slack: SlackEmulator, clock: FrozenClock, config: dict[str, Any] = CONFIG, **settings: Any
) -> SlackApp:
    given = {
        "slack_bot_token": None,
        "slack_client_id": CLIENT_ID,
        "slack_client_secret": SecretStr(CLIENT_SECRET),
        "vault_keys": VAULT_KEY,
        "slack_admin_team_id": TEAM_A,
        **settings,
    }
    return SlackApp(db_url, slack, clock, Config.model_validate(config), **given)


@pytest.fixture
def emulator() -> Iterator[tuple[SlackEmulator, FrozenClock]]:
    clock = FrozenClock(FrozenClock().now().replace(year=2026, month=11))
    with SlackEmulator(now=seconds(clock)) as slack:
        slack.add_channel(APPROVALS, "approvals")
        slack.add_channel(ADMINS, "admins")
        for user in (REQUESTER, ALICE, BOB):
            slack.add_user(user, user.lower())
        yield slack, clock


@pytest.fixture
def multi_app(db_url: str, emulator: tuple[SlackEmulator, FrozenClock]) -> Iterator[SlackApp]:
    slack, clock = emulator
    app = _multi(db_url, slack, clock)
    slack.add_oauth_app(CLIENT_ID, CLIENT_SECRET, redirect_uri=app.url + "/slack/oauth_redirect")
    try:
        yield app
    finally:
        app.close()


def _raw_rows(app: SlackApp) -> str:
    with app.engine.connect() as connection:
        rows = [
            dict(row)
            for table in ("slack_installations", "slack_bots")
            for row in connection.execute(text(f"SELECT * FROM {table}")).mappings()
        ]
    return json.dumps(rows, default=str)


def _issued_tokens(app: SlackApp) -> list[str]:
    return [params["code"] for params in app.slack.calls_to("oauth.v2.access") if "code" in params]


def _card_of(app: SlackApp, team: str) -> tuple[str, Any]:
    """(action id, card message) of the newest card posted with `team`'s token."""
    posts = [p for t, p in app.slack.calls_by_team("chat.postMessage") if t == team and p.get("blocks")]
    assert posts, f"no card posted for {team}"
    action_id = next(a.public_id for a in reversed(app.actions()) if a.public_id in json.dumps(posts[-1]["blocks"]))
    [card] = [m for m in app.slack.messages(APPROVALS) if m.thread_ts is None and action_id in json.dumps(m.blocks)]
    return action_id, card


def test_install_flow_stores_the_installation_sealed(multi_app: SlackApp) -> None:
    page = install(multi_app, TEAM_A)
    assert "slack://app?team=T0AAAA" in page or "Thank you" in page
    assert _issued_tokens(multi_app)
    raw = _raw_rows(multi_app)
    assert TEAM_A in raw
    assert "xoxb-" not in raw and "xoxe" not in raw  # a raw read shows no token
    client = multi_app.services.client_for(TEAM_A)
    assert client.token is not None and client.token.startswith(f"xoxb-{TEAM_A}-")
    assert client.auth_test()["ok"]


def test_a_replayed_or_forged_state_is_refused(multi_app: SlackApp) -> None:
    multi_app.slack.log_in(TEAM_A, ALICE)
    _, headers, _ = _get(multi_app.url + "/slack/install")
    _, back, _ = _get(headers["Location"])
    status, _, _ = _get(back["Location"])  # no state cookie: not the browser that started it
    assert status == 400
    with pytest.raises(NotInstalled):
        multi_app.services.client_for(TEAM_A)


def test_each_workspace_gets_its_cards_with_its_own_token_and_never_sees_the_other(multi_app: SlackApp) -> None:
    install(multi_app, TEAM_A)
    install(multi_app, TEAM_B)
    assert multi_app.command(REQUESTER, "run refund Refund order 1001", team=TEAM_A).status == 200
    assert multi_app.command(REQUESTER, "run refund Refund order 2002", team=TEAM_B).status == 200
    multi_app.settle()

    action_a, card_a = _card_of(multi_app, TEAM_A)
    action_b, _ = _card_of(multi_app, TEAM_B)
    assert action_a != action_b
    teams = {team for team, _ in multi_app.slack.calls_by_team("chat.postMessage")}
    assert teams == {TEAM_A, TEAM_B}

    # A click from workspace B on workspace A's card is refused as if the action did not exist.
    block_id, buttons = decide_block(card_a.blocks)
    assert multi_app.click(BOB, "approve", buttons["approve"], block_id, card_a.ts, team=TEAM_B).status == 200
    multi_app.settle()
    [action] = [a for a in multi_app.actions() if a.public_id == action_a]
    assert action.state == "pending"
    assert any("no action" in e.text for e in multi_app.slack.ephemerals(BOB))
    # Nor may B open A's edit form (it would show A's parameters).
    multi_app.click(BOB, "edit", buttons["edit"], block_id, card_a.ts, team=TEAM_B)
    multi_app.settle()
    assert multi_app.slack.views == []

    # Slash command status, from B, of A's action: not found; of B's own: shown.
    assert "No task or action" in multi_app.command(BOB, f"status {action_a}", team=TEAM_B).body
    assert action_b in multi_app.command(BOB, f"status {action_b}", team=TEAM_B).body
    assert action_a not in multi_app.command(BOB, "audit", team=TEAM_B).body

    # App Home of an approver in B lists B's waiting action, not A's.
    multi_app.event({"type": "app_home_opened", "user": ALICE, "tab": "home"}, "Ev0HOMEB", team=TEAM_B)
    multi_app.settle()
    home = json.dumps(multi_app.slack.home(ALICE).payload)
    assert action_b in home and action_a not in home
    [(home_team, _)] = multi_app.slack.calls_by_team("views.publish")
    assert home_team == TEAM_B

    # The same click from A's own workspace decides it.
    assert multi_app.click(BOB, "approve", buttons["approve"], block_id, card_a.ts, team=TEAM_A).status == 200
    multi_app.settle()
    [action] = [a for a in multi_app.actions() if a.public_id == action_a]
    assert action.state == "succeeded"


def test_task_buttons_from_another_workspace_find_no_task(
    db_url: str, emulator: tuple[SlackEmulator, FrozenClock]
) -> None:
    slack, clock = emulator
    app = _multi(db_url, slack, clock, BUDGET_CONFIG)
    try:
        slack.add_oauth_app(CLIENT_ID, CLIENT_SECRET, redirect_uri=app.url + "/slack/oauth_redirect")
        install(app, TEAM_A)
        install(app, TEAM_B)
        task_id, message = paused_by_budget(app, team=TEAM_A)

        # ALICE approves refunds, but a click from workspace B acts on nothing of workspace A.
        for button in (action_ids.STOP_TASK, action_ids.EXTEND_BUDGET):
            app.click(ALICE, button, task_id, "task_controls", message.ts, message.channel, team=TEAM_B)
            app.settle()
            assert task_state(app, task_id) == "paused"
            assert f"no task {task_id!r} in your workspace" in app.slack.ephemerals(ALICE)[-1].text
        with app.services.sessions() as session:
            refused = session.scalars(select(AuditEvent).where(AuditEvent.kind == "decision.refused")).all()
        assert [(e.actor, e.task_public_id, e.data["code"]) for e in refused] == [(ALICE, task_id, "not_found")] * 2

        app.click(ALICE, action_ids.EXTEND_BUDGET, task_id, "task_controls", message.ts, message.channel, team=TEAM_A)
        app.settle()
        assert task_state(app, task_id) == "succeeded"
    finally:
        app.close()


def test_uninstall_deletes_the_installation_and_stops_the_workspaces_work(multi_app: SlackApp) -> None:
    install(multi_app, TEAM_A)
    install(multi_app, TEAM_B)
    multi_app.command(REQUESTER, "run refund Refund order 1001", team=TEAM_A)
    multi_app.command(REQUESTER, "run refund Refund order 2002", team=TEAM_B)
    multi_app.settle()

    multi_app.slack.uninstall(TEAM_A)
    assert multi_app.event({"type": "app_uninstalled"}, "Ev0UNINST", team=TEAM_A).status == 200
    multi_app.settle()

    assert TEAM_A not in _raw_rows(multi_app)
    with pytest.raises(NotInstalled):
        multi_app.services.client_for(TEAM_A)
    with multi_app.services.sessions() as session:
        states = dict(session.execute(select(Task.team_id, Task.state)).all())
        undelivered = session.scalars(select(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))).all()
        dropped = session.scalars(select(OutboxMessage).where(OutboxMessage.last_error.like("gave up%"))).all()
    assert states == {TEAM_A: "cancelled", TEAM_B: "waiting"}
    assert undelivered == []  # the cancelled card's update was dropped, not retried forever
    assert dropped
    assert {a.state for a in multi_app.actions() if a.state != "pending"} == {"cancelled"}


def test_tokens_revoked_removes_the_bot(multi_app: SlackApp) -> None:
    install(multi_app, TEAM_B)
    multi_app.slack.uninstall(TEAM_B)
    event = {"type": "tokens_revoked", "tokens": {"bot": ["U0BOT"]}}
    assert multi_app.event(event, "Ev0REVOKE", team=TEAM_B).status == 200
    with pytest.raises(NotInstalled):
        multi_app.services.client_for(TEAM_B)


def test_an_expiring_token_is_refreshed_once_before_use(
    db_url: str, emulator: tuple[SlackEmulator, FrozenClock]
) -> None:
    slack, clock = emulator
    app = _multi(db_url, slack, clock, slack_token_rotation_minutes=1)
    try:
        redirect = app.url + "/slack/oauth_redirect"
        slack.add_oauth_app(CLIENT_ID, CLIENT_SECRET, redirect_uri=redirect, expires_in=30)  # expiring at once
        install(app, TEAM_A)
        first = app.services.installations.store.team_bot(TEAM_A)  # type: ignore[union-attr]
        assert first is not None and first.bot_token and first.bot_token.startswith("xoxe.xoxb-1-")
        assert "xoxe" not in _raw_rows(app)
        slack.add_oauth_app(CLIENT_ID, CLIENT_SECRET, redirect_uri=redirect, expires_in=3600)

        # A slash command: Bolt's authorize refreshes before the listener runs; the outbox then
        # finds the fresh token and needs no refresh of its own.
        assert app.command(REQUESTER, "run refund Refund order 1001", team=TEAM_A).status == 200
        app.settle()
        refreshes = [p for p in slack.calls_to("oauth.v2.access") if p.get("grant_type") == "refresh_token"]
        assert len(refreshes) == 1
        fresh = app.services.client_for(TEAM_A).token
        assert fresh is not None and fresh != first.bot_token
        assert {team for team, _ in slack.calls_by_team("chat.postMessage")} == {TEAM_A}
        assert "xoxe" not in _raw_rows(app)
    finally:
        app.close()


def test_multi_workspace_mode_refuses_to_start_without_vault_keys(
    db_url: str, emulator: tuple[SlackEmulator, FrozenClock]
) -> None:
    slack, clock = emulator
    with pytest.raises(ValueError, match="COUNTERSIGN_VAULT_KEYS"):
        _multi(db_url, slack, clock, vault_keys=None)


def test_key_rotation_reseals_installation_tokens(multi_app: SlackApp) -> None:
    install(multi_app, TEAM_A)
    token = multi_app.services.client_for(TEAM_A).token
    engine, sessions = multi_app.engine, multi_app.services.sessions
    new_key = generate_key()
    assert SealedInstallationStore(CLIENT_ID, engine, Vault(sessions, [new_key, VAULT_KEY])).reseal_all(1) == 2
    only_new = SealedInstallationStore(CLIENT_ID, engine, Vault(sessions, [new_key]))
    bot = only_new.team_bot(TEAM_A)
    assert bot is not None and bot.bot_token == token
    with pytest.raises(SealedValueRefused):  # the old key alone no longer opens it
        SealedInstallationStore(CLIENT_ID, engine, Vault(sessions, [VAULT_KEY])).team_bot(TEAM_A)


def test_a_token_copied_to_another_workspace_is_refused(multi_app: SlackApp) -> None:
    install(multi_app, TEAM_A)
    install(multi_app, TEAM_B)
    with multi_app.engine.begin() as connection:
        [sealed] = connection.execute(text("SELECT bot_token FROM slack_bots WHERE team_id = :t"), {"t": TEAM_A}).one()
        connection.execute(text("UPDATE slack_bots SET bot_token = :s WHERE team_id = :t"), {"s": sealed, "t": TEAM_B})
    with pytest.raises(SealedValueRefused, match="sealed for another place"):
        multi_app.services.client_for(TEAM_B)
