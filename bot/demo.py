"""`countersign demo`: the whole product on one machine, with no Slack workspace and no API key.

One process holds: a SQLite database (`countersign-demo.db`, migrated), the Slack emulator
(its Web API on a local port; the app's `SLACK_API_URL` points there), the app's WSGI server
(waitress, port 3000), the sandbox page (port 8000), the background workers and the
escalation ticker. The config
is `examples/countersign.yml`; the model is Claude when `ANTHROPIC_API_KEY` is set, else the
scripted model of `examples/script.yml`. A fresh signing secret and bot token are made per run
(and an API token, unless `COUNTERSIGN_API_TOKEN` gives one), and a scripted Claude Code
session asks for two tool calls through the real hook (`bot.sandbox.claude_code`).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Engine
from waitress import wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer

from agent.model import ModelClient
from agent.scripted_model import ScriptedModel
from bot.runtime import build_model, build_services
from bot.sandbox import SlackEmulator
from bot.sandbox import claude_code as claude_code_calls
from bot.sandbox.actor import Actor, Persona
from bot.sandbox.page import SandboxPage
from bot.serve import Process, assemble
from bot.server import Workers, listen
from core.clock import Clock
from core.config import load_config
from core.db import make_engine, make_sessionmaker, own_sqlite_database, sqlite_path
from core.migrate import upgrade
from core.settings import Settings
from escalations.scheduler import Ticker

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CONFIG = EXAMPLES / "countersign.yml"
SCRIPT = EXAMPLES / "script.yml"
DATABASE_URL = "sqlite:///countersign-demo.db"

PERSONAS = [
    Persona("U0REQUESTER", "Riley", "requester", "Asks for refunds and flag changes; approves nothing."),
    Persona("U0APPROVER", "Avery", "approver", "In @payments-leads: approves refunds, may veto flag changes."),
    Persona("U0ADMIN", "Ada", "admin", "Changes autonomy levels; approves and vetoes too."),
    Persona("U0STRANGER", "Sam", "stranger", "In the workspace, but may not decide anything."),
]
CHANNELS = [
    ("C0APPROVALS", "approvals"),
    ("C0PAYMENTS", "payments"),
    ("C0ADMINS", "countersign-admins"),
    ("C0CODING", "coding"),  # Claude Code's tool calls (bot/sandbox/claude_code.py)
]
USERGROUPS = [("S0PAYLEADS", "payments-leads", ["U0APPROVER"])]


@dataclass
class Demo:
    emulator: SlackEmulator
    process: Process
    engine: Engine
    app_server: BaseWSGIServer | MultiSocketServer
    page: SandboxPage
    workers: Workers
    ticker: Ticker
    model_name: str
    app_url: str
    _threads: list[threading.Thread] = field(default_factory=list)
    _closing: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return self.page.url

    def close(self) -> None:
        """Stop the page, the timers, the workers, the app's server, the emulator; in that order."""
        self._closing.set()
        self.page.close()
        self.ticker.shutdown()
        self.workers.close()
        _close(self.app_server)
        for thread in self._threads:
            thread.join(timeout=10)
        self.process.services.background.shutdown(wait=True)
        self.emulator.close()
        self.engine.dispose()


def seed(emulator: SlackEmulator) -> None:
    for persona in PERSONAS:
        emulator.add_user(persona.id, persona.name.lower(), persona.name)
    for channel_id, name in CHANNELS:
        emulator.add_channel(channel_id, name)
    for group_id, handle, users in USERGROUPS:
        emulator.add_usergroup(group_id, handle, users)


def choose_model(script: Path = SCRIPT) -> tuple[ModelClient, str]:
    """Claude when `ANTHROPIC_API_KEY` (or a `COUNTERSIGN_MODEL_SCRIPT`) is set, else the demo's script."""
    environment = Settings()
    if environment.anthropic_api_key is not None or environment.model_script:
        return build_model(environment)
    return ScriptedModel.from_file(script), f"the scripted model ({script}); set ANTHROPIC_API_KEY to use Claude"


def start_demo(
    *,
    database_url: str = DATABASE_URL,
    config_path: Path = CONFIG,
    model: tuple[ModelClient, str] | None = None,
    host: str = "127.0.0.1",
    app_port: int = 3000,
    page_port: int = 8000,
    api_port: int = 0,
    clock: Clock | None = None,
    channel_pace_s: float = 1.0,
    idle_s: float = 0.2,
    tick_s: float = 1.0,
    claude_code: bool = True,
) -> Demo:
    """Start every part in background threads and return at once; `Demo.close()` stops them.

    The database must be owned by this process (see `run_demo`); ports 0 pick free ones.
    `claude_code`: a scripted Claude Code session asks for two tool calls through the hook.
    """
    if EXAMPLES.is_dir() and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # so `examples.shop_tools` imports from a source checkout
    config = load_config(config_path)
    model_client, model_name = model or choose_model()
    engine = make_engine(database_url)
    upgrade(engine)
    token, secret = "xoxb-sandbox-" + secrets.token_hex(12), secrets.token_hex(16)
    emulator = SlackEmulator(token=token, port=api_port)
    started: list[Callable[[], None]] = [emulator.close, engine.dispose]
    try:
        seed(emulator)
        environment = Settings()
        settings = Settings(
            database_url=database_url,
            config_path=str(config_path),
            slack_bot_token=SecretStr(token),
            slack_signing_secret=SecretStr(secret),
            slack_api_url=emulator.api_url,
            # The scripted Claude Code session asks through the actions API with it.
            api_token=environment.api_token or SecretStr("cs_demo_" + secrets.token_hex(16)),
        )
        services = build_services(settings, config, make_sessionmaker(engine), clock)
        process = assemble(settings, services, engine, model_client, channel_pace_s=channel_pace_s)
        started.insert(0, lambda: services.background.shutdown(wait=False))
        app_server = listen(process.server, host, app_port)
        started.insert(0, app_server.close)
        app_url = f"http://{host}:{app_server.effective_port}"  # type: ignore[union-attr]
        actor = Actor(emulator, app_url + "/slack/events", secret, PERSONAS)
        page = SandboxPage(actor, host=host, port=page_port)
    except BaseException:
        for stop in started:
            stop()
        raise
    workers, ticker = process.workers(idle_s=idle_s), process.ticker(tick_s=tick_s)
    demo = Demo(emulator, process, engine, app_server, page, workers, ticker, model_name, app_url)
    serving = threading.Thread(target=_serve, args=(app_server, demo._closing), name="demo-app", daemon=True)
    demo._threads.append(serving)
    serving.start()
    workers.start()
    ticker.start()
    page.start()
    if claude_code:
        assert settings.api_token is not None
        claude_code_calls.start(app_url, settings.api_token.get_secret_value(), requester=PERSONAS[0].id)
    return demo


def _close(server: BaseWSGIServer | MultiSocketServer) -> None:
    """End `server.run()` from another thread. A single server's own `close` leaves the open
    connections (a browser's keep-alives) in its loop's map, and the loop runs while any is
    there; close them too, and its threads, as `MultiSocketServer.close` does."""
    server.close()
    if isinstance(server, BaseWSGIServer):
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)  # type: ignore[attr-defined]  # wasyncore.dispatcher sets it


def _serve(server: BaseWSGIServer | MultiSocketServer, closing: threading.Event) -> None:
    try:
        server.run()
    except OSError:
        if not closing.is_set():  # closing the sockets under waitress's loop ends it this way
            raise


def run_demo(
    *,
    database_url: str = DATABASE_URL,
    config_path: Path = CONFIG,
    app_port: int = 3000,
    page_port: int = 8000,
    fresh: bool = True,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the demo until Ctrl-C (or SIGTERM). `fresh` starts from empty databases: the
    emulated workspace lives in memory, so yesterday's cards would point at nothing."""
    database = sqlite_path(database_url)
    stop = threading.Event()
    began = time.monotonic()
    kept = "a fresh database" if fresh else "the kept database"
    echo(f"countersign demo: starting with {kept}…")
    with own_sqlite_database(database_url):  # before deleting anything: another demo may be running
        if database is not None and fresh:
            for suffix in ("", "-wal", "-shm", "-journal"):
                database.with_name(database.name + suffix).unlink(missing_ok=True)
        if database is not None and "COUNTERSIGN_SHOP_DB" not in os.environ:  # the shop beside the demo's data
            shop = database.with_name(database.stem + "-shop.db")
            os.environ["COUNTERSIGN_SHOP_DB"] = str(shop)
            if fresh:
                shop.unlink(missing_ok=True)
        demo = start_demo(database_url=database_url, config_path=config_path, app_port=app_port, page_port=page_port)
        previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
        try:
            echo("countersign demo: an offline Slack workspace with the app in it")
            echo(f"  model:   {demo.model_name}")
            echo(f"  app:     {demo.app_url}/slack/events (signed Slack requests)")
            echo(f"  Slack:   {demo.emulator.api_url} (the Web API emulator)")
            echo(f"  data:    {database or database_url}, shop {os.environ.get('COUNTERSIGN_SHOP_DB', '')}")
            wiped = "emptied at each start (--keep-data keeps it)" if fresh else "kept from the last run"
            echo(f"           {wiped}; the CLI reads it too (README: Using the command line)")
            echo(f"  ready in {time.monotonic() - began:.1f} s")
            echo(f"\n  Open {demo.url} in your browser. Ctrl-C stops.\n")
            _wait(stop)
        finally:
            signal.signal(signal.SIGTERM, previous)
            echo("countersign demo: stopping")
            demo.close()


def _wait(stop: threading.Event) -> None:
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        return
