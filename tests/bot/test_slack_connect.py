"""People connecting their own credential from Slack: the OAuth 2 authorization-code flow.

An approver who has not connected theirs clicks Approve and gets a personal Connect button
(never on the shared card); a requester gets one in a direct message. Following it goes to the
provider's sign-in, which sends the browser back to the callback; the token is sealed for that
person and the next approval runs the tool with it. Links are single-use, expire, and connect
only the person they were issued for; a declined sign-in stores nothing; no token or client
secret reaches Slack, the logs or the audit export.

The whole app over signed HTTP, the Slack emulator, the fake OAuth provider (sign-in page and
token endpoint), a browser played by `_Browser`, and a real database.
"""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from agent.scripted_model import ScriptedModel
from agent.vault import Vault, generate_key
from approvals.ledger import export
from core.config import Config
from core.models import AuditEvent, ConnectState, Secret
from tests.agent import delegated_tools
from tests.bot.slack_app import ADMIN, ADMINS, ALICE, APPROVALS, BOB, REQUESTER, SlackApp, decide_block
from tests.fakes.clock import FrozenClock
from tests.fakes.oauth_server import FakeOAuth
from tests.fakes.slack_server import SlackEmulator, seconds

KEY = generate_key()
CLIENT_SECRET = "cs_PLANTEDCLIENT_777"
PUBLIC = "https://countersign.example.test"  # the public URL; the test's browser is the proxy
SCRIPT = {
    "github": {
        "match": r"PR",
        "replies": [
            {
                "tool_use": [
                    {
                        "name": "open_pr",
                        "input": {"repo": "shop/web", "title": "Fix checkout"},
                        "rationale": "asked to",
                        "confidence": 0.9,
                    }
                ]
            },
            {"text": "Opened."},
        ],
    }
}


def _config(oauth: FakeOAuth, credentials: str) -> Config:
    return Config.model_validate(
        {
            "slack": {"approvals_channel": APPROVALS, "admin_channel": ADMINS, "admins": [ADMIN]},
            "tools": {"modules": ["tests.agent.delegated_tools"]},
            "oauth_providers": {
                "github": {
                    "token_url": oauth.url,
                    "authorize_url": oauth.authorize_url,
                    "scopes": ["repo", "read:user"],
                    "secrets": ["github_token"],
                    "client_id": "countersign",
                    "client_secret_name": "github_client",
                }
            },
            "task_types": {
                "github": {
                    "instructions": "You open pull requests.",
                    "tools": ["open_pr"],
                    "approvers": [ALICE, BOB],
                    "credentials": credentials,
                }
            },
        }
    )


@dataclass
class Page:
    status: int
    url: str
    body: str
    headers: dict[str, str]


class _Browser:
    """Follows redirects like a browser; the public URL reaches the app (as its proxy would)."""

    def __init__(self, app: SlackApp) -> None:
        self.app = app
        self.visited: list[str] = []

    def open(self, url: str) -> Page:
        for _ in range(5):
            self.visited.append(url)
            page = self._get(url.replace(PUBLIC, self.app.url, 1))
            if page.status != 302:
                return page
            url = page.headers["Location"]
        raise AssertionError("too many redirects")

    def _get(self, url: str) -> Page:
        opener = urllib.request.build_opener(_NoRedirects)
        try:
            with opener.open(url, timeout=10) as reply:
                return Page(reply.status, url, reply.read().decode(), dict(reply.headers))
        except urllib.error.HTTPError as error:
            return Page(error.code, url, error.read().decode(), dict(error.headers))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(params=["approver", "requester"])
def connect_app(request: pytest.FixtureRequest, db_url: str) -> Iterator[tuple[SlackApp, FakeOAuth]]:
    clock = FrozenClock(FrozenClock().now().replace(year=2026, month=11))
    with SlackEmulator(now=seconds(clock)) as slack, FakeOAuth(client_secret=CLIENT_SECRET) as oauth:
        slack.add_channel(APPROVALS, "approvals")
        slack.add_channel(ADMINS, "admins")
        for user in (REQUESTER, ALICE, BOB, ADMIN):
            slack.add_user(user, user.lower())
        app = SlackApp(
            db_url,
            slack,
            clock,
            _config(oauth, request.param),
            model=ScriptedModel(SCRIPT),
            vault_keys=KEY,
            public_url=PUBLIC,
        )
        Vault(app.services.sessions, [KEY], clock=app.clock).put("github_client", CLIENT_SECRET, scope="*")
        try:
            yield app, oauth
        finally:
            app.close()


def _mode(app: SlackApp) -> str:
    return str(app.services.config.task_types["github"].credentials)


def _connect_urls(blocks: list[dict[str, Any]]) -> list[str]:
    return [
        element["url"]
        for block in blocks
        if block.get("type") == "actions"
        for element in block["elements"]
        if element.get("action_id") == "connect"
    ]


def _secrets_of(app: SlackApp, owner: str) -> list[Secret]:
    with app.services.sessions() as session:
        return list(session.scalars(select(Secret).where(Secret.owner == owner)))


def _audit_kinds(app: SlackApp) -> list[str]:
    with app.services.sessions() as session:
        return list(session.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq)))


def _link_for(app: SlackApp) -> tuple[str, str]:
    """Start a PR request; return (the connect link its person got, who they are)."""
    app.command(REQUESTER, "run github Open the checkout fix PR")
    app.settle()
    [action] = app.actions()
    card = app.card(action)
    if _mode(app) == "requester":
        [dm] = [c for c in app.slack.calls_to("chat.postMessage") if _connect_urls(c.get("blocks") or [])]
        assert app.slack.calls_to("conversations.open")[-1]["users"] == REQUESTER
        return _connect_urls(dm["blocks"])[0], REQUESTER
    block_id, _ = decide_block(card.blocks)
    app.click(ALICE, "approve", action.public_id, block_id, card.ts)
    app.settle()
    [refusal] = app.slack.ephemerals(ALICE)
    return _connect_urls(refusal.blocks)[0], ALICE


def test_connect_from_slack_then_approve_runs_with_the_new_token(
    connect_app: tuple[SlackApp, FakeOAuth], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app, oauth = connect_app
    app.command(REQUESTER, "run github Open the checkout fix PR")
    app.settle()
    [action] = app.actions()
    card = app.card(action)
    shared = json.dumps(card.blocks)
    assert _connect_urls(card.blocks) == []  # links are personal: never on the shared card
    assert "countersign secrets connect" not in shared
    if _mode(app) == "requester":
        assert "the requester has been sent a link to connect" in shared
        [dm] = [c for c in app.slack.calls_to("chat.postMessage") if _connect_urls(c.get("blocks") or [])]
        assert "which you asked for, runs with your own `github_token`" in dm["text"]
        link, person = _connect_urls(dm["blocks"])[0], REQUESTER
        app.settle()  # delivering again sends no second DM
        assert len([c for c in app.slack.calls_to("chat.postMessage") if _connect_urls(c.get("blocks") or [])]) == 1
    else:
        assert "approvers: click Approve to get your connect link" in shared
        block_id, _ = decide_block(card.blocks)
        app.click(ALICE, "approve", action.public_id, block_id, card.ts)
        app.settle()
        [refusal] = app.slack.ephemerals(ALICE)
        assert "runs with your own `github_token`: connect it first (with the Connect button below)" in refusal.text
        link, person = _connect_urls(refusal.blocks)[0], ALICE
        assert app.card(action).blocks == card.blocks  # the refusal left the card as it was
    assert link.startswith(f"{PUBLIC}/oauth/github/start?state=")

    # Slack tells the app of the url button's click too: it is acked, nothing else.
    assert app.click(person, "connect", "", "connect", card.ts).status == 200

    browser = _Browser(app)
    page = browser.open(link)
    assert page.status == 200, page.body
    callback = browser.visited[2]
    assert f"Connected github_token for {person}; you can close this tab." in page.body
    [signed_in] = oauth.authorizations
    assert signed_in["redirect_uri"] == f"{PUBLIC}/oauth/github/callback"
    assert signed_in["scope"] == "repo read:user" and signed_in["client_id"] == "countersign"
    assert (
        signed_in["response_type"] == "code"
        and signed_in["state"] == urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["state"][0]
    )
    exchange = oauth.requests[-1]
    assert exchange["grant_type"] == "authorization_code" and exchange["client_secret"] == CLIENT_SECRET
    [secret] = _secrets_of(app, person)
    assert secret.name == "github_token" and "PLANTED" not in secret.ciphertext
    vault = Vault(app.services.sessions, [KEY], clock=app.clock)
    grant = vault.grant("github_token", tool="open_pr", owner=person)
    assert grant is not None and grant.provider == "github" and grant.refresh_token == "rt_code_2_PLANTEDREFRESH"
    assert "secret.connected" in _audit_kinds(app)

    app.settle()
    card = app.card(action)
    if person == REQUESTER:  # the card that waited for the requester says so now
        assert f"Runs with <@{person}>'s own `github_token`." in json.dumps(card.blocks)

    block_id, _ = decide_block(card.blocks)
    app.click(ALICE, "approve", action.public_id, block_id, card.ts)
    app.settle()
    [action] = app.actions()
    assert action.state == "succeeded", action.error
    assert delegated_tools.GIVEN[action.public_id] == {"github_token": "at_code_2_PLANTEDACCESS"}

    # The link worked once.
    again = browser.open(link)
    assert again.status == 400 and "this link was already used" in again.body
    assert "/oauth/github/callback?" in callback
    assert _Browser(app).open(callback).status == 400

    with app.services.sessions() as session:
        exported = io.StringIO()
        export(session, exported)
    places = {
        "Slack calls": json.dumps(app.slack.calls),
        "the audit export": exported.getvalue(),
        "the logs": "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records),
    }
    for value in (CLIENT_SECRET, "at_code_2_PLANTEDACCESS", "rt_code_2_PLANTEDREFRESH"):
        leaks = [where for where, content in places.items() if value in content]
        assert leaks == [], f"{value} leaked into: {leaks}"


def test_a_failed_refresh_tells_the_person_with_a_fresh_connect_button(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    assert _Browser(app).open(link).status == 200
    app.settle()
    oauth.fail(400, "invalid_grant")
    app.clock.advance(timedelta(hours=2))  # the connected token has expired; its refresh is refused
    [action] = app.actions()
    card = app.card(action)
    block_id, _ = decide_block(card.blocks)
    app.click(ALICE, "approve", action.public_id, block_id, card.ts)
    app.settle()

    [action] = app.actions()
    assert action.state == "failed" and action.public_id not in delegated_tools.GIVEN
    [dm] = [c for c in app.slack.calls_to("chat.postMessage") if "could not run with your credential" in c["text"]]
    assert app.slack.calls_to("conversations.open")[-1]["users"] == person
    [again] = _connect_urls(dm["blocks"])
    assert again.startswith(f"{PUBLIC}/oauth/github/start?state=") and again != link
    assert _Browser(app).open(again).status == 200  # reconnecting from the DM works


def test_an_expired_link_is_refused_and_stores_nothing(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    lasts = timedelta(hours=24) if person == REQUESTER else timedelta(minutes=10)
    app.clock.advance(lasts + timedelta(seconds=1))
    page = _Browser(app).open(link)
    assert page.status == 400 and "this link has expired" in page.body
    assert oauth.authorizations == []  # refused before the provider's sign-in
    assert _secrets_of(app, person) == []


def test_a_link_expiring_between_sign_in_and_callback_is_refused(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    browser = _Browser(app)
    start = browser._get(link.replace(PUBLIC, app.url, 1))
    callback = browser._get(start.headers["Location"]).headers["Location"]  # signed in, not yet back
    app.clock.advance(timedelta(days=2))
    page = browser.open(callback)
    assert page.status == 400 and "expired" in page.body
    assert [r for r in oauth.requests if r.get("grant_type") == "authorization_code"] == []
    assert _secrets_of(app, person) == []


def test_a_declined_sign_in_stores_nothing(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    oauth.deny()
    page = _Browser(app).open(link)
    assert page.status == 400
    assert "was declined (access_denied): nothing was connected" in page.body
    assert _secrets_of(app, person) == []
    assert "secret.connect_failed" in _audit_kinds(app) and "secret.connected" not in _audit_kinds(app)
    assert _Browser(app).open(link).status == 400  # and the link is spent


def test_a_token_endpoint_failure_stores_nothing(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    oauth.fail(400, "invalid_grant")
    page = _Browser(app).open(link)
    assert page.status == 400 and "HTTP 400 invalid_grant" in page.body and "nothing was connected" in page.body
    assert _secrets_of(app, person) == []


def test_a_link_connects_only_the_person_it_was_issued_for(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, _ = connect_app
    link, person = _link_for(app)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["state"][0]
    browser = _Browser(app)
    # Forged, mangled or missing states, and the right state on another provider's path.
    for bad in (
        f"{PUBLIC}/oauth/github/callback?code=code_x&state=forged",
        f"{PUBLIC}/oauth/github/callback?code=code_x&state={state[:-2]}",
        f"{PUBLIC}/oauth/github/callback?code=code_x",
        f"{PUBLIC}/oauth/gitlab/callback?code=code_x&state={state}",
        f"{PUBLIC}/oauth/github/start?state=forged",
    ):
        assert browser.open(bad).status == 400, bad
    # Bob follows the link (forwarded to him, say): the token is stored as the link's person's,
    # never as Bob's, whoever's browser carries it.
    assert browser.open(link).status == 200
    assert [s.owner for s in _secrets_of(app, person)] == [person]
    assert _secrets_of(app, BOB) == []
    with app.services.sessions() as session:
        [row] = session.scalars(select(ConnectState)).all()
        assert row.user_id == person and row.used_at is not None
        assert state not in json.dumps([row.state_hash])  # only its hash is kept


def test_pages_escape_what_they_show(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, _ = connect_app
    link, _person = _link_for(app)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["state"][0]
    hostile = urllib.parse.quote("<script>alert(1)</script>")
    page = _Browser(app).open(f"{PUBLIC}/oauth/github/callback?error={hostile}&state={state}")
    assert page.status == 400 and "<script>" not in page.body and "&lt;script&gt;" in page.body
    assert page.headers["Cache-Control"] == "no-store"
