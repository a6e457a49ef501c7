"""`countersign serve --socket` as a real process: its slack_sdk Socket Mode client opens the
connection through the Web API emulator's `apps.connections.open`, a slash command envelope
starts a task whose card is posted, an approve envelope runs the tool once, a `disconnect`
between the card and the click loses nothing, and SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from core.db import make_engine
from core.models import Action, AuditEvent
from tests.bot.slack_app import ALICE, APPROVALS, CONFIG, REQUESTER, SCRIPT, TOKEN, decide_block
from tests.bot.socket_app import click_payload, command_payload
from tests.fakes.slack_server import SlackEmulator
from tests.fakes.socket_mode_server import APP_TOKEN, SocketModeServer

ROOT = Path(__file__).resolve().parents[2]
COUNTERSIGN = str(Path(sys.executable).parent / "countersign")
DEADLINE_S = 30.0

pytestmark = pytest.mark.slow


def _wait(condition, what: str, process: subprocess.Popen[str]) -> None:
    # Another process: polling what it exposes is the only signal it gives.
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"serve exited ({process.returncode}) before {what}: {process.communicate()[0]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_S}s")
        time.sleep(0.05)


def _environment(tmp_path: Path, db_url: str, slack: SlackEmulator, app_token: str) -> dict[str, str]:
    (tmp_path / "countersign.yml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "script.yml").write_text(yaml.safe_dump(SCRIPT))
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith(("SLACK_", "COUNTERSIGN_"))},
        "DATABASE_URL": db_url,
        "COUNTERSIGN_CONFIG": str(tmp_path / "countersign.yml"),
        "COUNTERSIGN_MODEL_SCRIPT": str(tmp_path / "script.yml"),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_APP_TOKEN": app_token,
        "SLACK_API_URL": slack.api_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def _seeded(slack: SlackEmulator) -> None:
    slack.add_channel(APPROVALS, "approvals")
    for user in (REQUESTER, ALICE):
        slack.add_user(user, user.lower())


def test_serve_socket_approves_a_card_over_socket_mode_through_a_reconnect(tmp_path: Path, db_url: str) -> None:
    with SlackEmulator() as slack, SocketModeServer(slack) as sockets:
        _seeded(slack)
        server = subprocess.Popen(
            [COUNTERSIGN, "serve", "--socket"],
            cwd=tmp_path,
            env=_environment(tmp_path, db_url, slack, APP_TOKEN),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait(lambda: sockets.links >= 1, "Socket Mode connection", server)
            sockets.link(1)

            started = sockets.send(
                "slash_commands",
                command_payload(slack, REQUESTER, "run refund Refund order 31"),
                accepts_response_payload=True,
            )
            reply = sockets.ack(started)
            assert reply.payload is not None and "Started `" in reply.payload["text"]
            _wait(lambda: any("issue_refund" in str(m.blocks) for m in slack.messages(APPROVALS)), "card", server)
            [card] = [m for m in slack.messages(APPROVALS) if "issue_refund" in str(m.blocks)]

            # Slack recycles the connection between the card and the click.
            assert sockets.disconnect("refresh_requested") == 1
            sockets.link(2)
            sockets.closed(1)

            block_id, buttons = decide_block(card.blocks)
            approved = sockets.send(
                "interactive", click_payload(slack, ALICE, "approve", buttons["approve"], block_id, card)
            )
            assert sockets.ack(approved).link == 2
            engine = make_engine(db_url)
            try:
                _wait(lambda: _states(engine) == ["succeeded"], "the approved refund to run", server)
                with engine.connect() as connection:
                    kinds = list(connection.scalars(select(AuditEvent.kind).where(AuditEvent.action_public_id != None)))  # noqa: E711
                assert (kinds.count("decision.approve"), kinds.count("action.executing")) == (1, 1)
            finally:
                engine.dispose()
        finally:
            server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=30)
        assert server.returncode == 0, output
        assert "countersign: Socket Mode connected to Slack, model: scripted model" in output
        assert "countersign: stopping" in output
        assert [params.get("token") for params in slack.calls_to("apps.connections.open")] == [None, None]
        assert sockets.unanswered() == [] and sockets.strays == [] and sockets.refused == 0


def _states(engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(Action.state).order_by(Action.id)))


@pytest.mark.parametrize(
    ("app_token", "error"),
    [("xoxb-pasted-the-bot-token", "not_allowed_token_type"), ("xapp-1-A0APP-1-revoked", "invalid_auth")],
)
def test_serve_socket_with_a_token_slack_refuses_says_so_and_exits(
    tmp_path: Path, sqlite_template: Path, app_token: str, error: str
) -> None:
    db = tmp_path / "countersign.db"
    db.write_bytes(sqlite_template.read_bytes())
    with SlackEmulator() as slack, SocketModeServer(slack):
        _seeded(slack)
        done = subprocess.run(
            [COUNTERSIGN, "serve", "--socket"],
            cwd=tmp_path,
            env=_environment(tmp_path, f"sqlite:///{db}", slack, app_token),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Slack refused SLACK_APP_TOKEN for Socket Mode ({error})" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_socket_started_while_slack_turns_it_away_says_so_and_connects_later(
    tmp_path: Path, sqlite_template: Path
) -> None:
    db = tmp_path / "countersign.db"
    db.write_bytes(sqlite_template.read_bytes())
    with SlackEmulator() as slack, SocketModeServer(slack) as sockets:
        _seeded(slack)
        sockets.turn_away(1)
        server = subprocess.Popen(
            [COUNTERSIGN, "serve", "--socket"],
            cwd=tmp_path,
            env=_environment(tmp_path, f"sqlite:///{db}", slack, APP_TOKEN),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # The client's monitor tries again on its next round (every 10 s), with a new URL.
            _wait(lambda: sockets.links >= 1, "a connection after the refused one", server)
            sockets.link(1)
            reply = sockets.ack(
                sockets.send("slash_commands", command_payload(slack, REQUESTER, "help"), accepts_response_payload=True)
            )
            assert reply.payload is not None and "run TYPE TEXT" in reply.payload["text"]
        finally:
            server.send_signal(signal.SIGINT)
            output, _ = server.communicate(timeout=30)
        assert server.returncode == 0, output
        assert "not connected to Slack yet, trying again every 10 s" in output
        assert (len(slack.calls_to("apps.connections.open")), sockets.refused) == (2, 1)
