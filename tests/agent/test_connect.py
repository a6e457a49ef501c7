"""The connect flow without Slack: a link spent by two callbacks at once (two replicas) connects
once; a link is bound to the one browser that confirmed it, even when two confirm at once, and
only that browser completes it; the refusal and DM blocks are valid Block Kit and carry only
personal links."""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.connect import Connected, ConnectFlow, ConnectRefused, WrongBrowser
from agent.vault import Vault, generate_key
from bot.blocks.connect import connect_blocks, requester_connect
from bot.blocks.views import ConnectLinkView
from core.config import Config
from core.models import Secret
from tests.bot.blocks.checks import assert_message_valid
from tests.bot.blocks.factories import make_card
from tests.fakes.clock import FrozenClock
from tests.fakes.oauth_server import FakeOAuth

KEY = generate_key()
PUBLIC = "https://countersign.example.test"


def _config(oauth: FakeOAuth) -> Config:
    return Config.model_validate(
        {
            "slack": {"approvals_channel": "C0APPROVALS"},
            "tools": {"modules": ["tests.agent.delegated_tools"]},
            "oauth_providers": {
                "github": {
                    "token_url": oauth.url,
                    "authorize_url": oauth.authorize_url,
                    "secrets": ["github_token"],
                    "client_id": "countersign",
                }
            },
            "task_types": {"github": {"tools": ["open_pr"], "approvers": ["U0ALICE"], "credentials": "requester"}},
        }
    )


BROWSER = "b" * 43  # the nonce in the cookie of the browser that confirmed the link


def _sign_in(flow: ConnectFlow, state: str, browser: str = BROWSER) -> str:
    """The code the provider's sign-in page gives for `state` (its redirect's query), once
    `browser` confirmed the link."""
    target = flow.confirm("github", state, browser)

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        urllib.request.build_opener(NoRedirects).open(target, timeout=5)
    except urllib.error.HTTPError as redirect:
        location = redirect.headers["Location"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert query["state"] == [state]
    return query["code"][0]


def test_two_replicas_completing_one_link_connect_once(sessions: sessionmaker[Session]) -> None:
    clock = FrozenClock()
    with FakeOAuth() as oauth:
        config = _config(oauth)
        replicas = [ConnectFlow(config, sessions, clock, PUBLIC, Vault(sessions, [KEY], clock=clock)) for _ in range(2)]
        [link] = replicas[0].links("U0ALICE", "T0SANDBOX", ["github_token"], "open_pr", action_public_id="act_1")
        state = urllib.parse.parse_qs(urllib.parse.urlsplit(link.url).query)["state"][0]
        code = _sign_in(replicas[1], state)
        barrier = threading.Barrier(2)

        def complete(flow: ConnectFlow) -> Connected | ConnectRefused:
            barrier.wait(timeout=5)
            try:
                return flow.complete("github", state, code, None, BROWSER)
            except ConnectRefused as refused:
                return refused

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(complete, replicas))
        connected = [o for o in outcomes if isinstance(o, Connected)]
        refused = [o for o in outcomes if isinstance(o, ConnectRefused)]
        assert len(connected) == 1 and len(refused) == 1, outcomes
        assert "already used" in refused[0].problem
        assert [r["grant_type"] for r in oauth.requests] == ["authorization_code"]  # the code was traded once
    with sessions() as session:
        assert [(s.name, s.owner) for s in session.scalars(select(Secret))] == [("github_token", "U0ALICE")]


def _state(link_url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link_url).query)["state"][0]


def test_two_browsers_confirming_one_link_bind_one(sessions: sessionmaker[Session]) -> None:
    clock = FrozenClock()
    with FakeOAuth() as oauth:
        config = _config(oauth)
        replicas = [ConnectFlow(config, sessions, clock, PUBLIC, Vault(sessions, [KEY], clock=clock)) for _ in range(2)]
        [link] = replicas[0].links("U0ALICE", "T0SANDBOX", ["github_token"], "open_pr")
        state = _state(link.url)
        assert replicas[0].pending("github", state, None).user == "U0ALICE"
        barrier = threading.Barrier(2)

        def confirm(flow: ConnectFlow, browser: str) -> str | ConnectRefused:
            barrier.wait(timeout=5)
            try:
                return flow.confirm("github", state, browser)
            except ConnectRefused as refused:
                return refused

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(confirm, replicas, ["a" * 43, "z" * 43]))
        [winner] = [b for b, o in zip(["a" * 43, "z" * 43], outcomes, strict=True) if isinstance(o, str)]
        [refused] = [o for o in outcomes if isinstance(o, ConnectRefused)]
        loser = "z" * 43 if winner == "a" * 43 else "a" * 43
        assert isinstance(refused, WrongBrowser) and "already opened in another browser" in refused.problem
        assert replicas[1].confirm("github", state, winner).startswith(oauth.authorize_url)  # again: still its own
        assert replicas[0].pending("github", state, winner).user == "U0ALICE"
        with pytest.raises(WrongBrowser, match="already opened in another browser"):
            replicas[0].pending("github", state, loser)


def test_only_the_browser_that_confirmed_completes(sessions: sessionmaker[Session]) -> None:
    clock = FrozenClock()
    with FakeOAuth() as oauth:
        flow = ConnectFlow(_config(oauth), sessions, clock, PUBLIC, Vault(sessions, [KEY], clock=clock))
        [link] = flow.links("U0ALICE", "T0SANDBOX", ["github_token"], "open_pr")
        state = _state(link.url)
        code = _sign_in(flow, state)
        for browser in (None, "x" * 43):
            with pytest.raises(WrongBrowser, match="open the link in the browser you started in"):
                flow.complete("github", state, code, None, browser)
        assert oauth.requests == []  # the code was not traded; the link was not spent
        assert flow.complete("github", state, code, None, BROWSER).user == "U0ALICE"

        [unconfirmed] = flow.links("U0ALICE", "T0SANDBOX", ["github_token"], "open_pr")
        with pytest.raises(WrongBrowser, match="open the link in the browser you started in"):
            flow.complete("github", _state(unconfirmed.url), "code_9", None, BROWSER)
    with sessions() as session:
        assert [(s.name, s.owner) for s in session.scalars(select(Secret))] == [("github_token", "U0ALICE")]


def test_names_no_provider_connects_get_no_link(sessions: sessionmaker[Session]) -> None:
    with FakeOAuth() as oauth:
        flow = ConnectFlow(_config(oauth), sessions, FrozenClock(), PUBLIC + "/", None)
        links = flow.links("U0ALICE", None, ["github_token", "stripe_key"], "open_pr")
        assert [link.name for link in links] == ["github_token"]
        assert links[0].url.startswith(f"{PUBLIC}/oauth/github/start?state=")
        assert flow.redirect_uri("github") == f"{PUBLIC}/oauth/github/callback"
        with pytest.raises(ConnectRefused, match="no provider 'gitlab'"):
            flow.confirm("gitlab", "x", BROWSER)


def test_connect_blocks_are_valid_and_escaped() -> None:
    links = [ConnectLinkView(name="github_token", provider="github", url=f"{PUBLIC}/oauth/github/start?state=abc")]
    card = make_card(tool="open_pr", task_type="github")
    text, blocks = requester_connect(card, links, lasts=timedelta(hours=24))
    assert_message_valid(text, blocks)
    assert "works once, within 24 hours" in str(blocks)
    refusal = connect_blocks("runs with your own `github_token` &lt;x&gt;", links, lasts=timedelta(minutes=10))
    assert_message_valid("refused", refusal)
    assert [e["url"] for b in refusal if b["type"] == "actions" for e in b["elements"]] == [links[0].url]
    assert connect_blocks("no links", [], lasts=timedelta(minutes=10)) == [
        refusal[0] | {"text": {"type": "mrkdwn", "text": "no links"}}
    ]
