"""Secrets are injected, never exposed: the executor passes a tool exactly the secrets it
declared, audits each use, fails cleanly when one is missing, and scrubs values out of what it
stores. A planted secret then goes through a whole task (real SDK, fake Messages API, real
database) and is searched for everywhere: prompts, actions, audit events and their export,
outbox payloads, traces, every table, and the logs.

TEMPORARY: `secrets_table` creates the `secrets` table until its migration exists.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from agent.executor import Executor
from agent.tools import ToolRegistry, load_tool_modules
from agent.traces import timeline
from agent.vault import Secret, Vault, generate_key
from approvals.ledger import export
from core.config import Config
from core.models import Base
from tests.agent import secret_tools
from tests.agent.harness import ALICE, BOB, build_stack
from tests.agent.helpers import add_action, assert_chain_ok, audit_events, audit_kinds, load
from tests.agent.secret_tools import secrets_table
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.clock import FrozenClock

KEY = generate_key()
STRIPE = "sk_live_51HqPLANTED" + "0123456789abcdefSECRET"
WEBHOOK = "whk_PLANTED" + "_shared_token_9876"
REDACTED = "[redacted:stripe_api_key]"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def table(engine: Engine) -> Iterator[None]:
    with secrets_table(engine):
        yield


@pytest.fixture
def vault(table: None, sessions: sessionmaker[Session], clock: FrozenClock) -> Vault:
    vault = Vault(sessions, [KEY], clock=clock)
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    vault.put("webhook_token", WEBHOOK, scope="*")
    return vault


@pytest.fixture
def registry() -> ToolRegistry:
    return load_tool_modules(["tests.agent.secret_tools"])


@pytest.fixture
def executor(sessions, registry, clock, vault) -> Executor:
    return Executor(sessions, registry, clock, owner="executor-1", max_attempts=3, vault=vault)


def _charge(sessions, clock, mode: str = "ok") -> str:
    return add_action(sessions, clock.now(), "charge_card", {"order_id": "1234", "amount_cents": 500, "mode": mode})


def test_a_tool_gets_its_declared_secret_and_the_use_is_audited(sessions, executor, clock) -> None:
    action_id = _charge(sessions, clock)
    executor.run_until_idle()

    action = load(sessions, action_id)
    assert (action.state, action.result) == ("succeeded", {"charged": 500, "order_id": "1234"})
    assert secret_tools.GIVEN[action_id] == {"stripe_api_key": STRIPE}
    assert audit_kinds(sessions, action_id) == ["action.executing", "secret.used", "action.succeeded"]
    used = audit_events(sessions, action_id)[1]
    assert (used.actor, used.note, used.task_type) == ("system", None, "refund")
    assert used.data == {
        "secret": "stripe_api_key",
        "tool": "charge_card",
        "scope": "charge_card",
        "owner": "team",
        "attempt": 1,
    }
    assert_chain_ok(sessions)


def test_a_tool_gets_exactly_its_secrets_its_own_or_shared(sessions, executor, vault, clock) -> None:
    vault.put("stripe_api_key", "the key every tool may use", scope="*")
    vault.put("unrelated", "never given to anyone", scope="*")
    action_id = add_action(sessions, clock.now(), "notify_webhook", {"ref": "r1"}, idempotent=False)
    executor.run_until_idle()

    assert load(sessions, action_id).state == "succeeded"
    assert secret_tools.GIVEN["r1"] == {"webhook_token": WEBHOOK, "stripe_api_key": "the key every tool may use"}
    used = [(e.data or {})["secret"] for e in audit_events(sessions, action_id) if e.kind == "secret.used"]
    assert used == ["webhook_token", "stripe_api_key"]


def test_values_a_tool_returns_are_scrubbed_before_they_are_stored(sessions, executor, clock) -> None:
    echoed, bare = _charge(sessions, clock, "echo"), _charge(sessions, clock, "bare")
    executor.run_until_idle()

    assert load(sessions, echoed).result == {
        "charged": 500,
        "authorization": f"Bearer {REDACTED}",
        "nested": [{"key": REDACTED}, [REDACTED, 1]],
        REDACTED: "as a key too",
    }
    assert load(sessions, bare).result == {"value": REDACTED}


def test_errors_that_quote_a_secret_are_scrubbed(sessions, executor, clock) -> None:
    failed, retried = _charge(sessions, clock, "fail"), _charge(sessions, clock, "retry")
    executor.run_until_idle()
    clock.advance(10)
    executor.run_until_idle()

    action = load(sessions, failed)
    assert (action.state, action.error) == ("failed", f"PermissionError: Stripe refused '{REDACTED}' for order 1234")
    assert audit_events(sessions, failed)[-1].note == action.error

    action = load(sessions, retried)
    assert action.state == "executing"  # second retry scheduled
    assert action.error == f"RetryableError: Stripe timed out (key {REDACTED})"
    kinds = audit_kinds(sessions, retried)
    assert kinds.count("secret.used") == 2  # once per attempt
    assert [e.note for e in audit_events(sessions, retried) if e.kind == "execution.retry_scheduled"] == [
        action.error,
        action.error,
    ]


def test_a_missing_secret_fails_the_action_without_calling_the_tool(sessions, executor, vault, clock) -> None:
    vault.delete("stripe_api_key", scope="charge_card")
    action_id = _charge(sessions, clock)
    executor.run_until_idle()

    action = load(sessions, action_id)
    assert action.state == "failed"
    assert action.error == (
        "secret 'stripe_api_key' is not set: `countersign secrets set stripe_api_key --tool charge_card`"
    )
    assert action_id not in secret_tools.GIVEN
    assert audit_kinds(sessions, action_id) == ["action.executing", "action.failed"]


def test_a_copied_secret_fails_the_action_without_calling_the_tool(sessions, executor, vault, clock) -> None:
    vault.put("stripe_api_key", "a key for another tool", scope="issue_refund")
    with sessions.begin() as session:  # copy issue_refund's ciphertext onto charge_card's row
        stolen = session.scalars(select(Secret.ciphertext).where(Secret.scope == "issue_refund")).one()
        session.execute(update(Secret).where(Secret.scope == "charge_card").values(ciphertext=stolen))
    action_id = _charge(sessions, clock)
    executor.run_until_idle()

    action = load(sessions, action_id)
    assert action.state == "failed"
    assert action.error is not None
    assert "refused: it was sealed for another secret: scope 'charge_card' (sealed for 'issue_refund')" in action.error
    assert action_id not in secret_tools.GIVEN


def test_without_a_vault_a_tool_that_needs_secrets_fails_cleanly(sessions, registry, clock) -> None:
    action_id = _charge(sessions, clock)
    Executor(sessions, registry, clock).run_until_idle()
    action = load(sessions, action_id)
    assert action.state == "failed"
    assert action.error is not None
    assert action.error.startswith(
        "tool 'charge_card' needs secrets (stripe_api_key), but no vault is configured: set COUNTERSIGN_VAULT_KEYS"
    )
    assert action_id not in secret_tools.GIVEN


def test_a_tool_without_secrets_runs_without_a_vault(sessions, registry, clock) -> None:
    action_id = add_action(sessions, clock.now(), "plain", {"ref": "r2"}, idempotent=False)
    Executor(sessions, registry, clock).run_until_idle()
    assert load(sessions, action_id).result == {"value": "r2"}


# -- a planted secret through a whole task ------------------------------------------------------


def _config() -> Config:
    return Config.model_validate(
        {
            "slack": {"approvals_channel": "C0APPROVALS", "admins": ["U0ADMIN"]},
            "tools": {"modules": ["tests.agent.secret_tools"]},
            "task_types": {
                "refund": {
                    "instructions": "You charge customers' cards for the shop.",
                    "tools": ["charge_card", "notify_webhook"],
                    "autonomy": "hitl",
                    "approvers": [ALICE, BOB],
                }
            },
        }
    )


def _call(mode: str) -> dict[str, object]:
    return {"order_id": "1234", "amount_cents": 500, "mode": mode, "rationale": "charge it", "confidence": 0.9}


def test_a_planted_secret_appears_nowhere_in_a_whole_task(
    sessions, engine, vault, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack = build_stack(sessions, fake_anthropic, _config())
    stack.executor = Executor(sessions, stack.registry, stack.clock, vault=vault)
    fake_anthropic.reply_tool_use("charge_card", _call("echo"), text="Charging the card.")
    fake_anthropic.reply_tool_use("charge_card", _call("fail"))
    fake_anthropic.reply_tool_use("notify_webhook", {"ref": "done-1234", "rationale": "tell", "confidence": 0.9})
    fake_anthropic.reply_text("Charged $5.00; the second attempt failed; the shop was notified.")

    task_id = stack.submit("Charge order 1234")
    for _ in range(3):
        stack.drive()
        stack.approve(stack.pending(task_id))
    stack.drive()

    task = stack.task(task_id)
    assert task.state == "succeeded", task.paused_reason
    echoed, failed, notified = stack.actions(task_id)
    assert [a.state for a in (echoed, failed, notified)] == ["succeeded", "failed", "failed"]
    assert notified.error == (
        "secret 'stripe_api_key' is not set: `countersign secrets set stripe_api_key --tool notify_webhook`"
    )
    assert secret_tools.GIVEN[echoed.public_id] == {"stripe_api_key": STRIPE}  # the tool really had it
    assert REDACTED in json.dumps(echoed.result) and failed.error is not None and REDACTED in failed.error

    # The model saw the scrubbed outcomes, never the values, nor any schema for them.
    prompts = json.dumps([request.body for request in fake_anthropic.requests])
    assert REDACTED in prompts
    for request in fake_anthropic.requests:
        for definition in request.tools:
            assert "secrets" not in definition["input_schema"]["properties"]

    with sessions() as session:
        exported = io.StringIO()
        export(session, exported)
        trace = repr(timeline(session, task))
    with sessions() as session:
        uses = session.execute(text("SELECT COUNT(*) FROM audit_events WHERE kind = 'secret.used'")).scalar_one()
    assert uses == 2  # the echo and the failing run; the missing secret was never used

    places = {
        "prompts sent to the model": prompts,
        "the audit export": exported.getvalue(),
        "the trace": trace,
        "the logs": "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records),
        **_every_table(engine),
    }
    assert caplog.records  # the logs were captured (the SDK, SQLAlchemy and the tool log at DEBUG)
    for planted in (STRIPE, WEBHOOK):
        leaks = [where for where, content in places.items() if planted in content]
        assert leaks == [], f"the planted secret leaked into: {leaks}"
    assert_chain_ok(sessions)


def _every_table(engine: Engine) -> dict[str, str]:
    """Every row of every table (actions, audit events, outbox, traces, tasks, the vault…) as text."""
    tables = [*Base.metadata.sorted_tables, Secret.__table__]
    with engine.connect() as conn:
        return {f"table {table.name}": repr(conn.execute(select(table)).all()) for table in tables}
