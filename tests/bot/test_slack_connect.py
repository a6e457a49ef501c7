"""People connecting their own credential from Slack: the OAuth 2 authorization-code flow.

An approver who has not connected theirs clicks Approve and gets a personal Connect button
(never on the shared card); a requester gets one in a direct message. Following it shows a page
naming whom it connects; its Continue goes to the provider's sign-in, which sends the browser
back to the callback; the token is sealed for that person and the next approval runs the tool
with it. Links are single-use, expire, connect only the person they were issued for, and work
only in the browser that pressed Continue (a planted link connects nothing); a declined sign-in
stores nothing; no token or client secret reaches Slack, the logs or the audit export.

The whole app over signed HTTP, the Slack emulator, the fake OAuth provider (sign-in page and
token endpoint), a browser played by `_Browser`, and a real database.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
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
    cookies: list[str]  # its Set-Cookie headers


_FOREIGN_COOKIE = 'prefs={"theme": "dark mode"}'  # not a valid cookie to Python's http.cookies


class _Browser:
    """Follows redirects and keeps the app's cookies like a browser; the public URL reaches the
    app (as its proxy would). `open` follows a link; `submit` presses a page's only button."""

    def __init__(self, app: SlackApp) -> None:
        self.app = app
        self.visited: list[str] = []
        self.cookies: dict[str, str] = {}

    def open(self, url: str) -> Page:
        return self._follow(self._request(url))

    def submit(self, page: Page, *, until: str | None = None, **changes: str) -> Page:
        """POST the page's form (hidden fields, with `changes`) to its action, and follow (up to
        the redirect to a URL starting with `until`, which is answered unfollowed)."""
        [action] = re.findall(r'<form method=post action="([^"]*)">', page.body)
        fields = dict(re.findall(r'<input type=hidden name=(\w+) value="([^"]*)">', page.body))
        form = {name: html.unescape(value) for name, value in fields.items()} | changes
        return self._follow(self._request(urllib.parse.urljoin(page.url, action), form), until)

    def connect(self, link: str) -> Page:
        """Open a connect link, press Continue, sign in at the provider, come back."""
        page = self.open(link)
        assert page.status == 200 and "<form method=post" in page.body, page.body
        return self.submit(page)

    def _follow(self, page: Page, until: str | None = None) -> Page:
        for _ in range(5):
            if page.status not in (302, 303) or (until and page.headers["Location"].startswith(until)):
                return page
            page = self._request(page.headers["Location"])
        raise AssertionError("too many redirects")

    def _request(self, url: str, form: dict[str, str] | None = None) -> Page:
        self.visited.append(url)
        url = url.replace(PUBLIC, self.app.url, 1)
        to_app = url.startswith(self.app.url)
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(url, data=data)
        if to_app:  # with another app's cookie on this host first, as browsers send them
            jar = [_FOREIGN_COOKIE, *(f"{k}={v}" for k, v in self.cookies.items())]
            request.add_header("Cookie", "; ".join(jar))
        opener = urllib.request.build_opener(_NoRedirects)
        try:
            with opener.open(request, timeout=10) as reply:
                page = Page(
                    reply.status,
                    url,
                    reply.read().decode(),
                    dict(reply.headers),
                    reply.headers.get_all("Set-Cookie") or [],
                )
        except urllib.error.HTTPError as error:
            page = Page(
                error.code, url, error.read().decode(), dict(error.headers), error.headers.get_all("Set-Cookie") or []
            )
        for header in page.cookies if to_app else []:
            name, _, value = header.partition(";")[0].partition("=")
            if "Max-Age=0" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return page


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
    page = browser.open(link)  # first a page naming whom the account is for; the provider later
    assert page.status == 200 and oauth.authorizations == [], page.body
    assert f"for the Slack user <b>{person.lower()} ({person})</b>" in page.body
    assert f"If you are not {person.lower()} ({person}), close this page." in page.body
    [cookie] = page.cookies
    name = cookie.partition("=")[0]
    assert name.startswith("countersign_connect_") and name[len("countersign_connect_") :] not in link
    attributes = cookie.split("; ")[1:]
    assert attributes == ["Path=/oauth/", "Max-Age=900", "HttpOnly", "SameSite=Lax", "Secure"]  # PUBLIC is https
    page = browser.submit(page)
    assert page.status == 200, page.body
    [callback] = [url for url in browser.visited if "/oauth/github/callback?" in url]
    assert f"Connected github_token for {person}; you can close this tab." in page.body
    assert [c.split("; ")[:3] for c in page.cookies] == [[f"{name}=", "Path=/oauth/", "Max-Age=0"]]
    assert browser.cookies == {}  # cleared once the link is spent
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
    assert _Browser(app).connect(link).status == 200
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
    assert _Browser(app).connect(again).status == 200  # reconnecting from the DM works


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
    signed_in = browser.submit(browser.open(link), until=f"{PUBLIC}/oauth/github/callback")  # not yet back
    app.clock.advance(timedelta(days=2))
    page = browser.open(signed_in.headers["Location"])
    assert page.status == 400 and "expired" in page.body
    assert [r for r in oauth.requests if r.get("grant_type") == "authorization_code"] == []
    assert _secrets_of(app, person) == []


def test_a_declined_sign_in_stores_nothing(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    oauth.deny()
    page = _Browser(app).connect(link)
    assert page.status == 400
    assert "was declined (access_denied): nothing was connected" in page.body
    assert _secrets_of(app, person) == []
    assert "secret.connect_failed" in _audit_kinds(app) and "secret.connected" not in _audit_kinds(app)
    assert _Browser(app).open(link).status == 400  # and the link is spent


def test_a_token_endpoint_failure_stores_nothing(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    oauth.fail(400, "invalid_grant")
    page = _Browser(app).connect(link)
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
    # Bob follows the link (forwarded to him, say) and presses Continue although the page names
    # someone else: the token is stored as the link's person's, never as Bob's.
    assert browser.connect(link).status == 200
    assert [s.owner for s in _secrets_of(app, person)] == [person]
    assert _secrets_of(app, BOB) == []
    with app.services.sessions() as session:
        [row] = session.scalars(select(ConnectState)).all()
        assert row.user_id == person and row.used_at is not None
        assert state not in json.dumps([row.state_hash])  # only its hash is kept


def test_pages_escape_what_they_show(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    app.slack.add_user(person, "<script>alert(0)</script>\u202eKCIN")  # people choose their names
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["state"][0]
    browser = _Browser(app)
    asked = browser.open(link)
    assert asked.status == 200 and "<script>" not in asked.body and "&lt;script&gt;alert(0)" in asked.body
    assert "\u202e" not in asked.body  # no bidi override to dress a name up as an id
    for page in (asked, browser.submit(asked, until=oauth.authorize_url)):  # our page and our redirect
        assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    hostile = urllib.parse.quote("<script>alert(1)</script>")
    page = browser.open(f"{PUBLIC}/oauth/github/callback?error={hostile}&state={state}")
    assert page.status == 400 and "<script>" not in page.body and "&lt;script&gt;" in page.body
    assert page.headers["Cache-Control"] == "no-store"


def _state_row(app: SlackApp) -> ConnectState:
    with app.services.sessions() as session:
        [row] = session.scalars(select(ConnectState)).all()
        return row


def _codes_traded(oauth: FakeOAuth) -> list[dict[str, str]]:
    return [r for r in oauth.requests if r.get("grant_type") == "authorization_code"]


def test_a_planted_link_connects_nothing(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    """The link's person gets a colleague's browser to sign in at the provider: the colleague's
    account must not be sealed under the link's person."""
    app, oauth = connect_app
    link, person = _link_for(app)
    planter, colleague = _Browser(app), _Browser(app)

    # The person confirms in their own browser and sends the provider's sign-in URL on.
    planted = planter.submit(planter.open(link), until=oauth.authorize_url)
    assert planted.status == 303 and planted.headers["Location"].startswith(oauth.authorize_url)
    page = colleague.open(planted.headers["Location"])  # signs in as themselves, comes back
    assert len(oauth.authorizations) == 1 and "code=code_1" in colleague.visited[-1]
    assert page.status == 400 and "open the link in the browser you started in" in page.body
    assert _codes_traded(oauth) == [] and _secrets_of(app, person) == []
    assert "secret.connected" not in _audit_kinds(app) and _state_row(app).used_at is None

    # Or sends the start link on after confirming: the colleague's browser is told it is taken.
    page = colleague.open(link)
    assert page.status == 400 and "already opened in another browser" in page.body and "<form" not in page.body

    # Or builds the sign-in URL by hand, never confirming on countersign's page: refused as well.
    assert app.services.connect is not None
    [fresh] = app.services.connect.links(person, None, ["github_token"], "open_pr")
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(fresh.url).query)["state"][0]
    sign_in = {"response_type": "code", "client_id": "countersign", "state": state}
    by_hand = urllib.parse.urlencode(sign_in | {"redirect_uri": f"{PUBLIC}/oauth/github/callback"})
    page = colleague.open(f"{oauth.authorize_url}?{by_hand}")
    assert page.status == 400 and "open the link in the browser you started in" in page.body
    assert _codes_traded(oauth) == [] and _secrets_of(app, person) == []

    # Nothing was spent: in the browser that confirmed it, the link still connects its person.
    assert planter.open(planted.headers["Location"]).status == 200
    assert [s.owner for s in _secrets_of(app, person)] == [person]


def test_opening_the_start_link_neither_spends_nor_redirects(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    browser = _Browser(app)
    first, again = browser.open(link), browser.open(link)
    assert first.status == again.status == 200 and "Location" not in again.headers
    assert first.cookies[0].partition(";")[0] == again.cookies[0].partition(";")[0]  # same browser, same nonce
    other = _Browser(app).open(link)
    assert other.status == 200 and other.cookies[0].partition(";")[0] != first.cookies[0].partition(";")[0]
    assert oauth.authorizations == []
    row = _state_row(app)
    assert row.used_at is None and row.browser_hash is None
    assert browser.connect(link).status == 200 and [s.owner for s in _secrets_of(app, person)] == [person]

    # Someone Slack does not know (users.info fails): the page names their id alone.
    assert app.services.connect is not None
    [ghost] = app.services.connect.links("U0GHOST", None, ["github_token"], "open_pr")
    page = browser.open(ghost.url)
    assert page.status == 200 and "for the Slack user <b>U0GHOST</b>" in page.body


def test_continue_needs_this_browsers_cookie_and_page(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, person = _link_for(app)
    mine, theirs = _Browser(app), _Browser(app)
    page, their_page = mine.open(link), theirs.open(link)

    refused = [
        mine.submit(page, csrf="0" * 64),  # a token this browser's page never had
        mine.submit(page, csrf=""),
        mine.submit(page, csrf="é"),
        mine.submit(their_page),  # another browser's page: its token is not for this cookie
        _Browser(app).submit(page),  # no cookie at all (another site's form, say)
    ]
    assert [r.status for r in refused] == [403, 403, 403, 403, 403]
    assert "the form was not sent from countersign" in refused[0].body
    assert "no countersign cookie for this link" in refused[-1].body
    start = f"{app.url}/oauth/github/start"
    assert _post(start, "state=x&csrf=y", "text/plain").status == 415
    assert _post(start, "csrf=y", "application/x-www-form-urlencoded").status == 400
    assert _post(start, "state=" + "x" * 5000, "application/x-www-form-urlencoded").status == 413
    assert oauth.authorizations == [] and _state_row(app).browser_hash is None

    # Bound to the first browser that continues; the other's Continue is refused, even with its
    # own cookie and page.
    assert mine.submit(page).status == 200 and [s.owner for s in _secrets_of(app, person)] == [person]
    late = theirs.submit(their_page)
    assert late.status == 400 and "already used" in late.body


def test_a_second_browser_cannot_continue_a_link_another_continued(connect_app: tuple[SlackApp, FakeOAuth]) -> None:
    app, oauth = connect_app
    link, _person = _link_for(app)
    mine, theirs = _Browser(app), _Browser(app)
    page, their_page = mine.open(link), theirs.open(link)
    assert mine.submit(page, until=oauth.authorize_url).status == 303
    late = theirs.submit(their_page, until=oauth.authorize_url)
    assert late.status == 400 and "already opened in another browser" in late.body
    assert mine.submit(page, until=oauth.authorize_url).status == 303  # the same browser may continue again


def _post(url: str, body: str, content_type: str) -> Page:
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return Page(reply.status, url, reply.read().decode(), dict(reply.headers), [])
    except urllib.error.HTTPError as error:
        return Page(error.code, url, error.read().decode(), dict(error.headers), [])
