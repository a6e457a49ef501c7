"""What every chaos script needs: a temporary database, real `countersign serve` processes,
the Slack emulator, signed Slack requests, bounded waiting, and the one summary line.

Databases: SQLite in a temporary directory, or a temporary PostgreSQL database created and
dropped (WITH FORCE) on the server named by COUNTERSIGN_BENCH_POSTGRES_URL (else
COUNTERSIGN_TEST_POSTGRES_URL, else the local `postgres` superuser).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from approvals.ledger import verify
from bot.blocks.card import decide_block_id
from bot.sandbox import Message, SlackEmulator
from bot.sandbox.signed import (
    FORM,
    AppReply,
    block_actions_payload,
    button_action,
    interaction_body,
    send,
    signed,
    slash_command_body,
)
from chaos import tools
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
COUNTERSIGN = str(Path(sys.executable).parent / "countersign")
POSTGRES_ADMIN_URL = os.environ.get(
    "COUNTERSIGN_BENCH_POSTGRES_URL",
    os.environ.get("COUNTERSIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
)
SECRET, TOKEN, TEAM = "chaos-signing-secret", "xoxb-chaos", "T0SANDBOX"
API_TOKEN = "chaos-api-token"  # noqa: S105 - a local test server's token
START_S = 60.0  # for a server to answer /healthz
PLACEHOLDER_TS = "1700000000.000100"  # a card's ts before the outbox has posted it


class ChaosFailure(Exception):
    """The run could not go on (a server died, something never happened in time)."""


# -- databases ------------------------------------------------------------------------------


@contextmanager
def database(backend: str, name: str) -> Iterator[str]:
    """A migrated, empty database with the `chaos_calls` table; its URL. Dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"cs-chaos-{name}-") as directory:
            url = f"sqlite:///{Path(directory) / 'chaos.db'}"
            _prepare(url)
            yield url
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    database_name = f"cs_chaos_{name}_{os.getpid()}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database_name}"'))
    except OperationalError as exc:
        raise SystemExit(f"{name}: postgres unreachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}") from None
    try:
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database_name}"
        _prepare(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'))
        admin.dispose()


def _prepare(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
        tools.create_table(engine)
    finally:
        engine.dispose()


def reader(url: str, connections: int = 2) -> Engine:
    """An engine for this script's own reads beside the servers. On SQLite its transactions
    are deferred (a WAL snapshot), so they never take the write lock the servers queue on."""
    return make_engine(url, pool_size=connections, max_overflow=0).execution_options(sqlite_deferred=True)


def ledger_report(engine: Engine) -> tuple[bool, str]:
    """`audit verify`: whether the hash chain is intact, and its summary."""
    with make_sessionmaker(engine)() as session:
        report = verify(session)
    return report.ok, report.summary()


# -- serving processes ----------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def events_url(self) -> str:
        return self.url + "/slack/events"

    def output(self, tail: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def alive(self) -> bool:
        return self.process.poll() is None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def workspace(keep: Path | None, name: str) -> Iterator[Path]:
    """A directory for config files and server logs: `keep` (created, kept) or a temporary one."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix=f"cs-chaos-{name}-") as directory:
        yield Path(directory)


def write_yaml(directory: Path, name: str, data: dict[str, Any]) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def serve_env(
    db_url: str,
    config_path: Path,
    slack: SlackEmulator,
    *,
    script: Path | None = None,
    anthropic_url: str | None = None,
) -> dict[str, str]:
    """The environment of `countersign serve`: ours only, nothing inherited that could point
    it elsewhere (no real Slack or Anthropic credentials)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "COUNTERSIGN_", "SLACK_"))}
    env = {
        **inherited,
        "DATABASE_URL": db_url,
        "COUNTERSIGN_CONFIG": str(config_path),
        "COUNTERSIGN_API_TOKEN": API_TOKEN,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if script is not None:
        env["COUNTERSIGN_MODEL_SCRIPT"] = str(script)
    if anthropic_url is not None:
        env.update(ANTHROPIC_API_KEY="chaos-test-key", ANTHROPIC_BASE_URL=anthropic_url)
    return env


@contextmanager
def serving(name: str, env: dict[str, str], workdir: Path) -> Iterator[Server]:
    """`countersign serve` on a free loopback port until the block ends (SIGINT, then SIGKILL)."""
    port, log = free_port(), workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
            [COUNTERSIGN, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        server = Server(name, f"http://127.0.0.1:{port}", process, log)
        try:
            wait_for(lambda: healthy(server.url), f"{name} to answer /healthz", [server], START_S)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def healthy(url: str, timeout_s: float = 1.0) -> bool:
    """Whether the server at `url` answers /healthz with 200 (a refused or broken answer: no)."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=timeout_s) as reply:  # noqa: S310 - loopback http
            return bool(reply.status == 200)
    except (OSError, http.client.HTTPException):
        return False


def wait_for(condition: Callable[[], bool], what: str, servers: Sequence[Server], timeout_s: float) -> None:
    """Poll `condition` (other processes give no other signal) until true; ChaosFailure on a
    dead server or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for server in servers:
            if not server.alive():
                raise ChaosFailure(f"{server.name} exited ({server.process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise ChaosFailure(f"no {what} within {timeout_s:.0f} s")
        time.sleep(0.1)


# -- Slack ------------------------------------------------------------------------------------


@contextmanager
def emulator(
    channels: Sequence[str], users: Sequence[str], slack: SlackEmulator | None = None
) -> Iterator[SlackEmulator]:
    """`slack` (or a new emulator), serving, with these channels and users; closed afterwards."""
    started = SlackEmulator(token=TOKEN) if slack is None else slack
    with started as slack:
        for channel in channels:
            slack.add_channel(channel, channel.lower())
        for user in users:
            slack.add_user(user, user.lower())
        yield slack


def command(server: Server, slack: SlackEmulator, user: str, channel: str, text_: str) -> AppReply:
    """`/countersign {text_}` typed by `user` in `channel`, signed as Slack signs it."""
    body = slash_command_body(
        team_id=TEAM,
        user_id=user,
        channel_id=channel,
        text=text_,
        response_url=slack.new_response_url(channel, None, user),
        trigger_id=slack.new_trigger_id(user),
    )
    return send(server.events_url, signed(SECRET, body, FORM), timeout=15)


def click_body(
    slack: SlackEmulator, user: str, channel: str, message: Message | None, element: dict[str, Any], block_id: str
) -> tuple[bytes, str]:
    """The form body of a button click on a message, and the click's response_url."""
    response_url = slack.new_response_url(channel, message.ts if message else None, user)
    shown = (
        {"type": "message", "ts": message.ts, "text": message.text, "blocks": message.blocks}
        if message
        else {"type": "message", "ts": PLACEHOLDER_TS, "text": "card"}
    )
    payload = block_actions_payload(
        team_id=TEAM,
        user_id=user,
        actions=[button_action(element, block_id)],
        trigger_id=slack.new_trigger_id(user),
        message=shown,
        channel_id=channel,
        response_url=response_url,
    )
    return interaction_body(payload), response_url.rsplit("/", 1)[-1]


def approve_element(action_id: str, params_hash: str) -> tuple[dict[str, Any], str]:
    """An Approve button as the card renders it, and its block_id (for clicks on cards not yet posted)."""
    element = {
        "type": "button",
        "action_id": "approve",
        "value": action_id,
        "style": "primary",
        "text": {"type": "plain_text", "text": "Approve"},
    }
    return element, decide_block_id(params_hash)


def button_on(message: Message, action_id: str) -> tuple[dict[str, Any], str] | None:
    """The button `action_id` on a message, with its block_id; None if it has none."""
    for block in message.blocks:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element, str(block.get("block_id", ""))
    return None


def click(server: Server, slack: SlackEmulator, user: str, message: Message, action_id: str) -> AppReply:
    """`user` clicks the button `action_id` on `message`, as Slack posts it."""
    found = button_on(message, action_id)
    if found is None:
        raise ChaosFailure(f"no {action_id!r} button on message {message.ts} in {message.channel}")
    body, _ = click_body(slack, user, message.channel, message, *found)
    return send(server.events_url, signed(SECRET, body, FORM), timeout=15)


def cards(slack: SlackEmulator, channel: str, public_id: str) -> list[Message]:
    """Top-level messages in `channel` that are the card of action `public_id`."""
    return [
        m
        for m in slack.messages(channel)
        if m.thread_ts is None and f"action `{public_id}`" in json.dumps(m.blocks, ensure_ascii=False)
    ]


# -- reporting ------------------------------------------------------------------------------


def summary(name: str, fields: dict[str, Any], passed: bool) -> int:
    """Print the one summary line; the exit status."""
    parts = " ".join(f"{key}={value}" for key, value in fields.items())
    print(f"{name}: {parts} {'PASS' if passed else 'FAIL'}", flush=True)
    return 0 if passed else 1


def note(name: str, text_: str) -> None:
    """A progress line before the summary (stderr, so the last stdout line is the summary)."""
    print(f"{name}: {text_}", file=sys.stderr, flush=True)
