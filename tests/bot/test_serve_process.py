"""`countersign serve` as a real process: it serves Slack on its port, runs its workers, and
a second server on the same SQLite database is refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from core.db import make_engine
from core.migrate import upgrade
from tests.bot.slack_app import APPROVALS, CONFIG, REQUESTER, SCRIPT, SECRET, TOKEN, signed_command
from tests.fakes.slack_server import SlackEmulator

ROOT = Path(__file__).resolve().parents[2]
COUNTERSIGN = str(Path(sys.executable).parent / "countersign")
DEADLINE_S = 30.0

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(condition, what: str, process: subprocess.Popen[str]) -> None:
    # Another process: polling what it exposes is the only signal it gives.
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"serve exited ({process.returncode}) before {what}: {process.communicate()[0]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_S}s")
        time.sleep(0.05)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_serve_answers_slack_runs_the_agent_and_owns_its_sqlite_database(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    engine.dispose()
    (tmp_path / "countersign.yml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "script.yml").write_text(yaml.safe_dump(SCRIPT))
    with SlackEmulator() as slack:
        slack.add_channel(APPROVALS, "approvals")
        slack.add_user(REQUESTER, "requester")
        port = _free_port()
        env = {
            **{name: value for name, value in os.environ.items() if name != "COUNTERSIGN_HOST"},
            "DATABASE_URL": db_url,
            "COUNTERSIGN_CONFIG": str(tmp_path / "countersign.yml"),
            "COUNTERSIGN_MODEL_SCRIPT": str(tmp_path / "script.yml"),
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        server = subprocess.Popen(
            [COUNTERSIGN, "serve", "--port", str(port)],  # on loopback unless told otherwise
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait(lambda: _healthy(url), "health", server)

            status = signed_command(url, slack, REQUESTER, "run refund Refund order 31")
            assert status == 200
            _wait(lambda: any("issue_refund" in str(m.blocks) for m in slack.messages(APPROVALS)), "card", server)

            second = subprocess.run(
                [COUNTERSIGN, "serve", "--port", str(_free_port())],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert second.returncode == 1
            assert "already served by another process" in second.stderr
        finally:
            server.send_signal(signal.SIGINT)
            output, _ = server.communicate(timeout=30)
        assert server.returncode == 0, output
        assert "model: scripted model" in output
        assert f"serving on http://127.0.0.1:{port}" in output
