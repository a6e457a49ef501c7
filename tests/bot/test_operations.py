"""Operating it: metrics that parse and move, readiness that follows the database, and logs
that never carry a secret."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from core import logs
from tests.bot.slack_app import ALICE, API_TOKEN, REQUESTER, SECRET, TOKEN, SlackApp, decide_block, serving


def _get(app: SlackApp, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(app.url + path, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(app: SlackApp) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = _get(app, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move_as_things_happen(slack_app: SlackApp) -> None:
    before = _samples(slack_app)
    slack_app.command(REQUESTER, "run refund Refund order 1234")
    slack_app.settle()
    waiting = _samples(slack_app)
    assert _value(waiting, "countersign_pending_actions", task_type="refund", mode="hitl") == 1
    assert (
        _value(waiting, "countersign_model_calls_total", task_type="refund", model="scripted", outcome="ok")
        == _value(before, "countersign_model_calls_total", task_type="refund", model="scripted", outcome="ok") + 1
    )
    [action] = slack_app.actions()
    card = slack_app.card(action)
    block_id, _ = decide_block(card.blocks)
    slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts)
    slack_app.settle()
    after = _samples(slack_app)
    assert _value(after, "countersign_pending_actions", task_type="refund", mode="hitl") == 0
    assert (
        _value(after, "countersign_decisions_total", task_type="refund", decision="approve")
        == _value(before, "countersign_decisions_total", task_type="refund", decision="approve") + 1
    )
    assert _value(after, "countersign_executions_total", tool="issue_refund", outcome="succeeded") >= 1
    assert _value(after, "countersign_time_to_decision_seconds_count", task_type="refund") >= 1
    assert _value(after, "countersign_outbox_backlog") == 0


def test_readiness_follows_the_database(slack_app: SlackApp, db_url: str) -> None:
    status, body = _get(slack_app, "/readyz")
    assert (status, json.loads(body)) == (
        200,
        {
            "ok": True,
            "checks": {"database": True, "schema_at_head": True, "scheduler_ticking": True, "outbox_not_stuck": True},
        },
    )
    if not db_url.startswith("postgresql"):
        return  # stopping a database is shown on PostgreSQL: refuse connections, end the open ones
    name = db_url.rsplit("/", 1)[1]
    admin = create_engine(db_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
    try:
        status, body = _get(slack_app, "/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["database"] is False
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    status, _ = _get(slack_app, "/readyz")
    assert status == 200


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure(json=True, level=logging.DEBUG, secrets=[SECRET, TOKEN, API_TOKEN, "sk-ant-test-planted-key"])
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        structlog.reset_defaults()


def test_no_secret_reaches_a_log_line_during_a_full_flow(slack_app: SlackApp, captured_logs: io.StringIO) -> None:
    logging.getLogger("countersign.test").warning("a careless line: token=%s key=%s", TOKEN, "sk-ant-test-planted-key")
    slack_app.command(REQUESTER, "run refund Refund order 1234")
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)
    block_id, _ = decide_block(card.blocks)
    slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts)
    slack_app.click(REQUESTER, "approve", action.public_id, block_id, card.ts)
    slack_app.settle()
    output = captured_logs.getvalue()
    assert "slack_sdk" in output  # the SDK logs requests (with tokens) at DEBUG: scrubbed
    for secret in (SECRET, TOKEN, API_TOKEN, "sk-ant-test-planted-key"):
        assert secret not in output
    assert "[redacted]" in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert all("timestamp" in line and "level" in line for line in lines)


def _get_with(app: SlackApp, path: str, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(app.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_metrics_token_guards_metrics_and_the_readiness_details(db_url: str) -> None:
    with serving(db_url, metrics_token=SecretStr("scrape-me")) as app:
        for token in (None, "wrong", "scrape-m"):
            status, body = _get_with(app, "/metrics", token)
            assert status == 401 and "COUNTERSIGN_METRICS_TOKEN" in body
        status, body = _get_with(app, "/metrics", "scrape-me")
        assert status == 200 and "countersign_" in body
        assert _get_with(app, "/readyz", None) == (200, json.dumps({"ok": True}))
        status, body = _get_with(app, "/readyz", "scrape-me")
        assert status == 200 and json.loads(body)["checks"]["database"] is True
        assert _get_with(app, "/healthz", None)[0] == 200  # liveness asks for nothing
