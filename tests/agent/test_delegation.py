"""Acting on behalf of a person: tools run with the requester's or the approver's own token.

The whole stack on a real database (the agent loop through the real `anthropic` SDK against
the fake Messages API, the gate, the executor, the vault), with a fake OAuth token endpoint
that counts refreshes and spends each refresh token once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from agent.delegation import Delegation
from agent.executor import DEFAULT_BATCH, Executor
from agent.tasks import submit_task
from agent.vault import OAuthGrant, Vault, generate_key
from approvals.decisions import Decisions, decide
from approvals.errors import CredentialMissing
from bot.cli_secrets import secrets as secrets_cli
from core.config import Config
from core.models import Action, AuditEvent, OutboxMessage
from tests.agent import delegated_tools
from tests.agent.harness import ALICE, BOB, REQUESTER, Stack, build_stack
from tests.agent.helpers import assert_chain_ok, audit_events, audit_kinds, load
from tests.fakes.anthropic_server import FakeAnthropic, tool_use_block
from tests.fakes.directory import FakeDirectory
from tests.fakes.oauth_server import FakeOAuth

KEY = generate_key()
OLD_TOKEN = "gho_PLANTEDOLDACCESS_0123456789"
OLD_REFRESH = "ghr_PLANTEDOLDREFRESH_9876543210"
CLIENT_SECRET = "cs_PLANTEDCLIENTSECRET_5555"
PR = {"repo": "shop/web", "title": "Fix checkout", "rationale": "asked to", "confidence": 0.9}


def make_config(oauth: FakeOAuth, credentials: str = "requester", **github: object) -> Config:
    return Config.model_validate(
        {
            "slack": {"approvals_channel": "C0APPROVALS", "admins": ["U0ADMIN"]},
            "tools": {"modules": ["tests.agent.delegated_tools"]},
            "oauth_providers": {
                "github": {"token_url": oauth.url, "client_id": "countersign", "client_secret_name": "github_client"}
            },
            "task_types": {
                "github": {
                    "instructions": "You open pull requests.",
                    "tools": ["open_pr", "list_prs"],
                    "autonomy": "hitl",
                    "approvers": [ALICE, BOB],
                    "credentials": credentials,
                    **github,
                }
            },
        }
    )


@pytest.fixture
def oauth() -> Iterator[FakeOAuth]:
    with FakeOAuth(client_secret=CLIENT_SECRET) as fake:
        yield fake


@pytest.fixture
def vault(sessions: sessionmaker[Session]) -> Vault:
    vault = Vault(sessions, [KEY])
    vault.put("github_client", CLIENT_SECRET, scope="*")
    return vault


def delegated_stack(
    sessions: sessionmaker[Session], fake: FakeAnthropic, vault: Vault, config: Config, owner: str = "executor-1"
) -> Stack:
    stack = build_stack(sessions, fake, config)
    vault.clock = stack.clock
    delegation = Delegation(config, stack.registry)
    stack.decisions = Decisions(FakeDirectory(), stack.registry, stack.clock, credentials=delegation)
    stack.executor = executor(stack, vault, owner)
    return stack


def executor(stack: Stack, vault: Vault, owner: str, *, batch: int = DEFAULT_BATCH) -> Executor:
    delegation = Delegation(stack.config, stack.registry)
    return Executor(
        stack.sessions, stack.registry, stack.clock, owner=owner, vault=vault, delegation=delegation, batch=batch
    )


def submit(stack: Stack, request: str = "Open the checkout fix PR") -> str:
    with stack.sessions.begin() as session:
        task = submit_task(session, stack.config, "github", request, now=stack.clock.now(), requester=REQUESTER)
        return task.public_id


def connect_expiring(vault: Vault, stack: Stack, owner: str, oauth: FakeOAuth) -> None:
    """`owner`'s token, valid for an hour from now, refreshable once with OLD_REFRESH."""
    grant = OAuthGrant("github", OLD_REFRESH, stack.clock.now() + timedelta(hours=1))
    vault.put("github_token", OLD_TOKEN, scope="*", owner=owner, oauth=grant)
    oauth.issue(OLD_REFRESH)


def drafted(stack: Stack, fake: FakeAnthropic, task_id: str) -> Action:
    stack.drive()
    return stack.pending(task_id)


def test_an_expired_token_is_refreshed_once_before_the_tool_runs(
    sessions, vault, oauth: FakeOAuth, fake_anthropic: FakeAnthropic
) -> None:
    stack = delegated_stack(sessions, fake_anthropic, vault, make_config(oauth))
    connect_expiring(vault, stack, REQUESTER, oauth)
    stack.clock.advance(timedelta(hours=2))
    fake_anthropic.reply_tool_use("open_pr", PR)
    fake_anthropic.reply_tool_use("open_pr", {**PR, "title": "And the follow-up"})
    fake_anthropic.reply_text("Both are open.")

    task_id = submit(stack)
    first = drafted(stack, fake_anthropic, task_id)
    stack.approve(first)
    second = drafted(stack, fake_anthropic, task_id)
    stack.approve(second)
    stack.drive()

    assert stack.task(task_id).state == "succeeded"
    assert oauth.refreshes == 1 and len(oauth.requests) == 1
    assert oauth.requests[0] == {
        "grant_type": "refresh_token",
        "refresh_token": OLD_REFRESH,
        "client_id": "countersign",
        "client_secret": CLIENT_SECRET,
    }
    fresh = {"github_token": "at_fresh_1_PLANTEDACCESS"}
    assert delegated_tools.GIVEN[first.public_id] == fresh
    assert delegated_tools.GIVEN[second.public_id] == fresh  # the second run found it fresh: no refresh
    assert audit_kinds(sessions, first.public_id)[-3:] == ["secret.refreshed", "secret.used", "action.succeeded"]
    assert "secret.refreshed" not in audit_kinds(sessions, second.public_id)
    refreshed = next(e for e in audit_events(sessions, first.public_id) if e.kind == "secret.refreshed")
    assert refreshed.data == {
        "secret": "github_token",
        "owner": REQUESTER,
        "provider": "github",
        "expired_at": "2026-01-05T10:00:00+00:00",
        "expires_at": "2026-01-05T12:00:00+00:00",
        "refresh_token_rotated": True,
    }
    used = next(e for e in audit_events(sessions, first.public_id) if e.kind == "secret.used")
    assert (used.data or {})["owner"] == REQUESTER
    # The rotated refresh token was sealed, for the next time.
    grant = vault.grant("github_token", tool="open_pr", owner=REQUESTER)
    assert grant is not None and grant.refresh_token == "rt_rotated_1_PLANTEDREFRESH"
    assert grant.expires_at == stack.clock.now() + timedelta(hours=1)
    assert_chain_ok(sessions)


def test_two_executors_needing_the_same_refresh_refresh_it_once(
    sessions, engine, vault, oauth: FakeOAuth, fake_anthropic: FakeAnthropic
) -> None:
    stack = delegated_stack(sessions, fake_anthropic, vault, make_config(oauth))
    connect_expiring(vault, stack, REQUESTER, oauth)
    fake_anthropic.reply({"content": [tool_use_block("open_pr", PR), tool_use_block("open_pr", {**PR, "title": "2"})]})
    task_id = submit(stack)
    stack.runner.run_until_idle()
    actions = [a for a in stack.actions(task_id) if a.state == "pending"]
    assert len(actions) == 2
    for action in actions:
        stack.approve(action)
    stack.clock.advance(timedelta(hours=2))

    oauth.hold()
    # One action each (a batch would let the first executor claim both): two executors race for one refresh.
    first = threading.Thread(target=executor(stack, vault, "executor-1", batch=1).run_once)
    first.start()
    assert oauth.arrived.acquire(timeout=10)  # the first is at the token endpoint, holding the row
    second = threading.Thread(target=executor(stack, vault, "executor-2", batch=1).run_once)
    second.start()
    if engine.dialect.name == "postgresql":
        _wait_for_a_lock_wait(sessions)  # the second waits for the secret's row lock
    else:
        second.join(timeout=0.3)  # SQLite: it waits for the write lock the first holds
    assert second.is_alive()
    oauth.release()
    first.join(timeout=30)
    second.join(timeout=30)

    assert oauth.refreshes == 1 and len(oauth.requests) == 1
    states = {load(sessions, a.public_id).state for a in actions}
    assert states == {"succeeded"}
    tokens = {delegated_tools.GIVEN[a.public_id]["github_token"] for a in actions}
    assert tokens == {"at_fresh_1_PLANTEDACCESS"}
    with sessions() as session:
        refreshes = session.scalars(select(AuditEvent).where(AuditEvent.kind == "secret.refreshed")).all()
    assert len(refreshes) == 1


def _wait_for_a_lock_wait(sessions: sessionmaker[Session]) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    for _ in range(1000):
        with sessions() as session:
            if session.execute(query).scalar_one():
                return
    raise AssertionError("the second executor never waited for the row lock")


@pytest.mark.parametrize("fault", ["invalid_grant", "unreachable"])
def test_a_failed_refresh_fails_the_action_cleanly_and_tells_the_person(
    sessions, vault, oauth: FakeOAuth, fake_anthropic: FakeAnthropic, fault: str
) -> None:
    config = make_config(oauth)
    if fault == "unreachable":
        with FakeOAuth() as gone:
            url = gone.url
        provider = config.oauth_providers["github"].model_copy(update={"token_url": url})
        config = config.model_copy(update={"oauth_providers": {"github": provider}})
    stack = delegated_stack(sessions, fake_anthropic, vault, config)
    connect_expiring(vault, stack, REQUESTER, oauth)
    oauth.fail(400, "invalid_grant")
    stack.clock.advance(timedelta(hours=2))
    fake_anthropic.reply_tool_use("open_pr", PR)
    fake_anthropic.reply_text("It failed: connect your token again.")

    task_id = submit(stack)
    action = drafted(stack, fake_anthropic, task_id)
    stack.approve(action)
    stack.drive()

    failed = load(sessions, action.public_id)
    assert failed.state == "failed"
    assert action.public_id not in delegated_tools.GIVEN  # the tool never ran
    reason = (
        "HTTP 400 invalid_grant: The refresh token is no longer valid."
        if fault == "invalid_grant"
        else "the token endpoint could not be reached (URLError: [Errno 111] Connection refused)"
    )
    assert failed.error == (
        f"U0REQUESTER's `github_token` has expired and could not be refreshed: provider 'github' did not refresh "
        f"the token: {reason}; the tool did not run. Connect it again: "
        "`countersign secrets connect github_token --owner U0REQUESTER`"
    )
    # Nothing half-done: no use, no refresh recorded, the stored credential as it was.
    kinds = audit_kinds(sessions, action.public_id)
    assert kinds[-2:] == ["action.executing", "action.failed"]
    assert "secret.used" not in kinds and "secret.refreshed" not in kinds
    assert audit_events(sessions, action.public_id)[-1].data == {
        "attempt": 1,
        "credential": "refresh_failed",
        "secrets": ["github_token"],
        "provider": "github",
        "reason": reason,
        "owner": REQUESTER,
    }
    assert vault.get("github_token", tool="open_pr", owner=REQUESTER) == OLD_TOKEN
    grant = vault.grant("github_token", tool="open_pr", owner=REQUESTER)
    assert grant is not None and grant.refresh_token == OLD_REFRESH
    # The person is told (the failure message names them), and the agent hears of it.
    with sessions() as session:
        told = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.ordering_key == action.public_id, OutboxMessage.kind == "action.failed"
            )
        ).one()
    assert told.payload == {"action_id": action.public_id, "tell": REQUESTER}
    assert stack.task(task_id).state == "succeeded"
    assert_chain_ok(sessions)


def test_an_approver_without_the_credential_is_refused_until_they_connect(
    sessions, vault, oauth: FakeOAuth, fake_anthropic: FakeAnthropic
) -> None:
    # `auto` would run with nobody's credential: the approver mode keeps it approve-first.
    config = make_config(oauth, "approver", autonomy="auto", graduation={"ceiling": "auto"})
    stack = delegated_stack(sessions, fake_anthropic, vault, config)
    fake_anthropic.reply_tool_use("list_prs", {"repo": "shop/web", "rationale": "look", "confidence": 0.9})
    fake_anthropic.reply_tool_use("open_pr", PR)
    fake_anthropic.reply_text("Opened.")

    task_id = submit(stack)
    stack.drive()  # list_prs needs no credential: it ran on its own
    action = stack.pending(task_id)
    with sessions() as session:
        drafted_event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action_public_id == action.public_id, AuditEvent.kind == "action.pending"
            )
        ).one()
    assert drafted_event.data is not None
    assert drafted_event.data["caps"] == ["runs with the approver's own credential"]
    assert drafted_event.data["credentials"] == "approver"

    with pytest.raises(CredentialMissing) as refused:
        stack.approve(action, ALICE)
    assert str(refused.value) == (
        f"action {action.public_id!r} runs with your own `github_token`: connect it first "
        "(`countersign secrets connect github_token --owner U0ALICE`), then approve"
    )
    refusal = audit_events(sessions, action.public_id)[-1]
    assert (refusal.kind, refusal.actor) == ("decision.refused", ALICE)
    assert refusal.data == {"attempted": "approve", "code": "credential_missing"}
    assert load(sessions, action.public_id).state == "pending"

    vault.put("github_token", "gho_alice_PLANTED", scope="*", owner=ALICE)
    stack.approve(action, ALICE)
    stack.drive()
    assert load(sessions, action.public_id).state == "succeeded"
    assert delegated_tools.GIVEN[action.public_id] == {"github_token": "gho_alice_PLANTED"}
    assert oauth.requests == []  # a token without an expiry is never refreshed


def test_the_requester_must_connect_before_anyone_approves(
    sessions, vault, oauth: FakeOAuth, fake_anthropic: FakeAnthropic
) -> None:
    stack = delegated_stack(sessions, fake_anthropic, vault, make_config(oauth))
    vault.put("github_token", "gho_alice_PLANTED", scope="*", owner=ALICE)  # the approver's own does not count
    fake_anthropic.reply_tool_use("open_pr", PR)
    fake_anthropic.reply_text("Opened.")
    task_id = submit(stack)
    action = drafted(stack, fake_anthropic, task_id)

    with pytest.raises(CredentialMissing) as refused:
        stack.approve(action, ALICE)
    assert str(refused.value) == (
        f"action {action.public_id!r} runs with U0REQUESTER's own `github_token`, which they have not connected: "
        "it cannot be approved until they do (`countersign secrets connect github_token --owner U0REQUESTER`)"
    )
    with sessions() as session:
        note = Delegation(stack.config, stack.registry).note(session, load(sessions, action.public_id))
    assert note is not None and (note.mode, note.owner, note.connected) == ("requester", REQUESTER, False)

    vault.put("github_token", "gho_requester_PLANTED", scope="*", owner=REQUESTER)
    stack.approve(action, ALICE)
    stack.drive()
    assert delegated_tools.GIVEN[action.public_id] == {"github_token": "gho_requester_PLANTED"}


def test_a_credential_deleted_after_approval_fails_the_run_and_tells_its_owner(
    sessions, vault, oauth: FakeOAuth, fake_anthropic: FakeAnthropic
) -> None:
    stack = delegated_stack(sessions, fake_anthropic, vault, make_config(oauth))
    vault.put("github_token", "gho_requester_PLANTED", scope="*", owner=REQUESTER)
    fake_anthropic.reply_tool_use("open_pr", PR)
    fake_anthropic.reply_text("Could not.")
    task_id = submit(stack)
    action = drafted(stack, fake_anthropic, task_id)
    stack.approve(action, BOB)
    vault.delete("github_token", scope="*", owner=REQUESTER)
    stack.drive()

    failed = load(sessions, action.public_id)
    assert (failed.state, failed.error) == (
        "failed",
        "U0REQUESTER has not connected `github_token`, which tool 'open_pr' runs with; it did not run. "
        "Connect it: `countersign secrets connect github_token --owner U0REQUESTER`",
    )
    assert stack.outbox("action.failed")[0].payload["tell"] == REQUESTER


def test_decisions_without_a_credentials_port_are_as_before(sessions, vault, oauth, fake_anthropic) -> None:
    stack = delegated_stack(sessions, fake_anthropic, vault, make_config(oauth))
    fake_anthropic.reply_tool_use("open_pr", PR)
    task_id = submit(stack)
    action = drafted(stack, fake_anthropic, task_id)
    plain = Decisions(FakeDirectory(), stack.registry, stack.clock)
    outcome = decide(sessions, stack.clock, lambda s: plain.approve(s, action.public_id, ALICE, action.params_hash))
    assert outcome.state == "approved"


def test_the_cli_connects_a_persons_token_without_ever_printing_it(
    db_url, sessions, vault, oauth: FakeOAuth, fake_anthropic: FakeAnthropic
) -> None:
    stack = delegated_stack(sessions, fake_anthropic, vault, make_config(oauth))
    fake_anthropic.reply_tool_use("open_pr", PR)
    task_id = submit(stack)
    action = drafted(stack, fake_anthropic, task_id)  # waits for the requester to connect
    env = {"DATABASE_URL": db_url, "COUNTERSIGN_VAULT_KEYS": KEY}
    answer = json.dumps({"access_token": OLD_TOKEN, "refresh_token": OLD_REFRESH, "expires_in": 3600})
    runner = CliRunner()

    done = runner.invoke(
        secrets_cli, ["connect", "github_token", "--owner", REQUESTER, "--provider", "github"], input=answer, env=env
    )
    assert done.exit_code == 0, done.output
    assert done.output == "U0REQUESTER's refreshable OAuth token 'github_token' connected for tool '*'\n"
    assert vault.get("github_token", tool="open_pr", owner=REQUESTER) == OLD_TOKEN
    grant = vault.grant("github_token", tool="open_pr", owner=REQUESTER)
    assert grant is not None and (grant.provider, grant.refresh_token) == ("github", OLD_REFRESH)
    assert grant.expires_at is not None
    # The card that said "not connected" is queued for an update.
    assert [m.payload for m in stack.outbox("action.updated")] == [{"action_id": action.public_id}]
    with sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.kind == "secret.set").order_by(AuditEvent.seq))
        assert list(event)[-1].data == {
            "secret": "github_token",
            "scope": "*",
            "owner": REQUESTER,
            "team_id": None,
            "replaced": False,
            "oauth": {"provider": "github", "refreshable": True},
        }

    bare = runner.invoke(secrets_cli, ["connect", "github_token", "--owner", ALICE], input="gho_bare_PLANTED", env=env)
    assert bare.exit_code == 0, bare.output
    assert vault.grant("github_token", tool="open_pr", owner=ALICE) is None
    no_provider = runner.invoke(secrets_cli, ["connect", "github_token", "--owner", BOB], input=answer, env=env)
    assert no_provider.exit_code == 1
    assert "the token has a refresh token: name its --provider" in no_provider.output
    team = runner.invoke(secrets_cli, ["connect", "github_token", "--owner", "team"], input="x", env=env)
    assert team.exit_code == 1
    for result in (done, bare, no_provider, team):
        assert OLD_TOKEN not in result.output and OLD_REFRESH not in result.output
        assert "gho_bare_PLANTED" not in result.output
