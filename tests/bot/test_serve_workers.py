"""`countersign serve --workers 2` as real processes on PostgreSQL: two workers behind one port
answer health checks and signed Slack requests, sum their metrics, give no thread to a
connection that sends nothing, drain on SIGTERM, and die with their master on SIGKILL so the
port is free at once. On SQLite more than one worker is refused."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from bot.cli import _worker_count, cores, main
from core.db import make_engine
from core.settings import Settings
from tests.bot.slack_app import APPROVALS, CONFIG, REQUESTER, SCRIPT, SECRET, TEAM, TOKEN, signed_command
from tests.conftest import _truncate_all
from tests.fakes.slack_server import SlackEmulator

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COUNTERSIGN = str(Path(sys.executable).parent / "countersign")
DEADLINE_S = 30.0  # for a cold start on a busy machine; the tests take a few seconds each
STOP_BOUND_S = 10.0  # SIGTERM to exit, nothing in flight but one request
GONE_BOUND_S = 5.0  # SIGKILL of the master to no worker left


@dataclass
class Serving:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(condition: Callable[[], bool], what: str, serving: Serving, bound_s: float = DEADLINE_S) -> None:
    # Other processes: polling what they expose is the only signal they give.
    deadline = time.monotonic() + bound_s
    while not condition():
        if serving.process.poll() is not None and serving.process.returncode != 0:
            pytest.fail(f"serve exited ({serving.process.returncode}) before {what}:\n{serving.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {bound_s}s:\n{serving.output()[-4000:]}")
        time.sleep(0.05)


def _get(url: str, timeout_s: float = 1.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        return int(reply.status), reply.read().decode()


def _healthy(url: str) -> bool:
    try:
        return _get(url + "/healthz")[0] == 200
    except OSError:
        return False


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if int(parent) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _bindable(port: int) -> bool:
    """Whether a new server could listen on `port` now (as gunicorn and waitress bind: SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def setting(postgres_database: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], SlackEmulator]]:
    _truncate_all(postgres_database)
    (tmp_path / "countersign.yml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "script.yml").write_text(yaml.safe_dump(SCRIPT))
    with SlackEmulator() as slack:
        slack.add_channel(APPROVALS, "approvals")
        slack.add_user(REQUESTER, "requester")
        env = {
            **{
                name: value
                for name, value in os.environ.items()
                if name not in ("COUNTERSIGN_HOST", "COUNTERSIGN_WORKERS")
            },
            "DATABASE_URL": postgres_database,
            "COUNTERSIGN_CONFIG": str(tmp_path / "countersign.yml"),
            "COUNTERSIGN_MODEL_SCRIPT": str(tmp_path / "script.yml"),
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        yield env, slack


@contextmanager
def _serve(env: dict[str, str], cwd: Path, workers: int = 2) -> Iterator[Serving]:
    port, log = _free_port(), cwd / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [COUNTERSIGN, "serve", "--port", str(port), "--workers", str(workers)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        serving = Serving(f"http://127.0.0.1:{port}", port, process, log)
        try:
            _wait(lambda: _healthy(serving.url) and len(_children(process.pid)) == workers, "workers", serving)
            yield serving
        finally:
            if process.poll() is None:
                process.kill()  # its workers follow (PR_SET_PDEATHSIG)
            process.wait(timeout=30)


def _half_sent_command(url: str) -> tuple[socket.socket, bytes]:
    """A signed slash command whose headers and first half of the body are sent; the rest to send."""
    body = (
        f"command=%2Fcountersign&text=help&user_id={REQUESTER}&team_id={TEAM}&channel_id={APPROVALS}"
        "&response_url=&trigger_id="
    ).encode()
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body.decode())
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=DEADLINE_S)
    head = (
        f"POST /slack/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {stamp}\r\nX-Slack-Signature: {signature}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    half = len(body) // 2
    connection.sendall(head + body[:half])
    return connection, body[half:]


def test_two_workers_serve_slack_sum_their_metrics_and_drain_on_sigterm(setting, tmp_path: Path) -> None:
    env, slack = setting
    with _serve(env, tmp_path) as serving:
        master, workers = serving.process.pid, _children(serving.process.pid)
        assert f"serving on {serving.url} (POST /slack/events) with 2 worker processes" in serving.output()

        assert signed_command(serving.url, slack, REQUESTER, "run refund Refund order 31") == 200
        _wait(lambda: any("issue_refund" in str(m.blocks) for m in slack.messages(APPROVALS)), "card", serving)

        # One worker made the model call; whichever answers /metrics (new connections, spread
        # by the kernel) shows the sum from both workers' files, and no one process's gauges.
        for _ in range(6):
            status, text = _get(serving.url + "/metrics", timeout_s=5)
            assert status == 200
            calls = re.findall(r'^countersign_model_calls_total\{[^}]*task_type="refund"\} (\S+)$', text, re.M)
            assert calls == ["1.0"], text
            assert "process_resident_memory_bytes" not in text

        # Connections that send nothing hold no request thread: 16 threads a worker, 40 silent
        # connections, and a health check is still answered at once (gunicorn's own gthread
        # would hold a thread for each for 5 s).
        with ExitStack() as silent:
            for _ in range(40):
                silent.enter_context(socket.create_connection(("127.0.0.1", serving.port), timeout=5))
            started = time.monotonic()
            assert _get(serving.url + "/healthz", timeout_s=5)[0] == 200
            assert time.monotonic() - started < 3.0

        # SIGTERM while a request is half-sent: the master forwards it, the workers stop
        # accepting, and the request in flight is still read and answered before they exit.
        # The port is let go of at once: a new server could bind it while the request drains.
        connection, rest = _half_sent_command(serving.url)
        with connection:
            stopped = time.monotonic()
            serving.process.send_signal(signal.SIGTERM)
            _wait(lambda: _bindable(serving.port), "free port", serving, bound_s=STOP_BOUND_S)
            assert serving.process.poll() is None  # still draining
            connection.sendall(rest)
            answer = connection.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert serving.process.wait(timeout=STOP_BOUND_S) == 0, serving.output()
        assert time.monotonic() - stopped < STOP_BOUND_S
        assert not any(_alive(pid) for pid in workers | {master})
        assert _bindable(serving.port)


def test_sigkill_of_the_master_leaves_no_worker_and_frees_the_port(setting, tmp_path: Path) -> None:
    env, _ = setting
    with _serve(env, tmp_path) as serving:
        workers = _children(serving.process.pid)
        killed = time.monotonic()
        serving.process.kill()
        serving.process.wait(timeout=5)
        deadline = killed + GONE_BOUND_S
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived their master:\n{serving.output()}"
            time.sleep(0.05)
        assert _bindable(serving.port)
        assert not _healthy(serving.url)


def test_more_than_one_worker_on_sqlite_is_refused_naming_why(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'one.db'}", "COUNTERSIGN_WORKERS": None}
    refused = CliRunner().invoke(main, ["serve", "--workers", "2"], env=env)
    assert refused.exit_code == 1
    assert "SQLite database is served by one process" in refused.output
    assert "PostgreSQL" in refused.output


def test_the_default_is_one_worker_per_core_on_postgresql_and_one_on_sqlite() -> None:
    postgres = Settings(database_url="postgresql+psycopg://db/countersign")
    assert _worker_count(postgres, None, socket_mode=False) == cores() <= (os.cpu_count() or 1)
    assert _worker_count(postgres, None, socket_mode=True) == 1
    assert _worker_count(postgres, 3, socket_mode=False) == 3
    assert _worker_count(Settings(database_url="postgresql://db/countersign", workers=5), None, False) == 5
    assert _worker_count(Settings(database_url="sqlite:///countersign.db"), None, socket_mode=False) == 1
    with pytest.raises(ValueError, match="Socket Mode"):
        _worker_count(postgres, 2, socket_mode=True)


def test_long_polls_are_parked_by_the_workers_without_taking_their_threads(setting, tmp_path: Path) -> None:
    """More long-polls than the two workers have threads (2 x 32): each is parked, health checks
    are still answered, and a decision (made by another process) reaches every one of them."""
    env, _slack = setting
    config = {
        **CONFIG,
        "external_tools": {"restart_service": {"params": {"type": "object"}, "risk": "low"}},
        "task_types": {**CONFIG["task_types"], "ops": {"tools": ["restart_service"], "approvers": [REQUESTER]}},
    }
    (tmp_path / "countersign.yml").write_text(yaml.safe_dump(config))
    env = {**env, "COUNTERSIGN_API_TOKEN": "workers-api-token"}
    auth = {"Authorization": "Bearer workers-api-token", "Content-Type": "application/json"}
    with _serve(env, tmp_path) as serving:
        ids = []
        for number in range(80):
            body = json.dumps({"task_type": "ops", "tool": "restart_service", "params": {"n": number}}).encode()
            request = urllib.request.Request(serving.url + "/api/actions", data=body, headers=auth, method="POST")
            with urllib.request.urlopen(request, timeout=DEADLINE_S) as reply:
                ids.append(json.loads(reply.read())["action_id"])

        def poll(public_id: str) -> str:
            request = urllib.request.Request(f"{serving.url}/api/actions/{public_id}?wait=50", headers=auth)
            with urllib.request.urlopen(request, timeout=DEADLINE_S + 50) as reply:
                return str(json.loads(reply.read())["state"])

        with ThreadPoolExecutor(len(ids)) as pool:
            polls = [pool.submit(poll, public_id) for public_id in ids]
            time.sleep(1.0)  # let every request reach a worker
            assert not any(done.done() for done in polls)
            assert _healthy(serving.url)  # threads are free
            engine = make_engine(env["DATABASE_URL"])
            try:
                with engine.begin() as connection:
                    connection.execute(text("UPDATE actions SET state = 'approved' WHERE state = 'pending'"))
            finally:
                engine.dispose()
            assert {done.result(timeout=DEADLINE_S) for done in polls} == {"approved"}
