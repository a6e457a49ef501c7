"""The `countersign` command line.

Only what every command needs is imported at the top. The Slack app, Socket Mode, the
server and the model SDK are imported inside the commands that use them (`serve`, `demo`),
so `countersign --help`, `audit`, `usage` and the rest start in a fraction of a second
(`tests/bot/test_cli_startup.py` holds this).
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from agent.errors import ToolLoadError
from agent.external_tools import check_tool_modules
from agent.model_lifecycle import check_models
from bot.cli_actions import actions
from bot.cli_api import api_client
from bot.cli_approvers import approvers
from bot.cli_audit import audit
from bot.cli_autonomy import autonomy
from bot.cli_client import hook, mcp_gate
from bot.cli_eval import eval_command
from bot.cli_prune import prune
from bot.cli_rules import rules
from bot.cli_secrets import secrets
from bot.cli_tasks import task, trace, usage
from core import logs
from core.clock import SystemClock
from core.config import Config, check_tool_names, load_config, salvage_config
from core.db import MAX_OVERFLOW, POOL_SIZE, is_sqlite, open_database, own_sqlite_database
from core.errors import ConfigError, DatabaseOwned
from core.migrate import current_revision, is_at_head, upgrade
from core.settings import Settings, connect_problems

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bot.serve import Process


METRICS_PREFIX = "countersign-metrics-"


class _Commands(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader left (`countersign audit export | head`): it has what it wanted, so this
            # is no error. What is still buffered goes nowhere, as Python's docs on SIGPIPE advise,
            # so the interpreter's last flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None


@click.group(cls=_Commands)
def main() -> None:
    """countersign: AI agents draft actions, people approve them in Slack."""


@main.group()
def config() -> None:
    """Check the configuration."""


@config.command("check")
@click.option("--file", "path", type=click.Path(path_type=Path), help="YAML config (default: $COUNTERSIGN_CONFIG).")
def config_check(path: Path | None) -> None:
    """Print every problem in the configuration, or "ok"."""
    settings = Settings()
    salvaged = salvage_config(path or Path(settings.config_path))
    loaded, problems = salvaged.config, list(salvaged.problems)
    if loaded is None:  # not even part of it could be read: nothing more to check
        _fail(problems)
    # Every stage runs on what is valid: the tool modules, the tools each task type names, the
    # models, the connect settings, so one run shows every problem.
    registry, tool_problems = check_tool_modules(loaded.tools.modules, loaded.external_tools)
    problems += tool_problems
    if not salvaged.removed_under("tools"):  # else every tool would look unknown
        known = set(registry.names()) | salvaged.removed_names("external_tools")
        problems += check_tool_names(loaded, known)
    problems += check_models(loaded, SystemClock().now().date()) + connect_problems(settings, loaded)
    if problems:
        _fail(problems)
    for name, external in loaded.external_tools.items():
        users = ", ".join(t for t, task_type in loaded.task_types.items() if name in task_type.tools) or "no task type"
        policy = (
            f"risk {external.risk}, idempotent {str(external.idempotent).lower()}, max_autonomy {external.max_autonomy}"
        )
        click.echo(f"external tool {name}: {policy}; used by {users}")
    click.echo("ok")


def _fail(problems: list[str]) -> NoReturn:
    for problem in problems:
        click.echo(problem, err=True)
    sys.exit(1)


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema (idempotent; safe before every start)."""
    engine, _ = open_database(Settings())
    try:
        upgrade(engine)
        click.echo(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


@main.command()
@click.option(
    "--host",
    default=None,
    help="Interface to listen on (default: $COUNTERSIGN_HOST, else 127.0.0.1; 0.0.0.0 for all interfaces).",
)
@click.option("--port", default=3000, show_default=True, help="HTTP port for Slack, the API and health checks.")
@click.option("--socket", "socket_mode", is_flag=True, help="Socket Mode with SLACK_APP_TOKEN instead of HTTP.")
@click.option(
    "--workers",
    "processes",
    type=click.IntRange(min=1),
    default=None,
    help="Processes behind the port (default: $COUNTERSIGN_WORKERS, else the machine's cores on PostgreSQL; "
    "SQLite and Socket Mode: 1).",
)
def serve(host: str | None, port: int, socket_mode: bool, processes: int | None) -> None:
    """Serve Slack, the task API and health checks, and run the agent, executor and outbox."""
    settings = Settings()
    host = host or settings.host
    try:
        count = _worker_count(settings, processes, socket_mode)
    except ValueError as exc:
        _fail([str(exc)])
    if count > 1:
        _metrics_across_processes()
    from bot.runtime import build_model, build_services
    from bot.serve import assemble

    try:
        loaded = load_config(Path(settings.config_path))
        model, which = build_model(settings)
    except ConfigError as exc:
        _fail(exc.problems)
    except ValueError as exc:
        _fail([str(exc)])
    if settings.multi_workspace:
        socket = ["multi-workspace mode serves its install routes over HTTP: drop --socket"] if socket_mode else []
        if problems := settings.multi_workspace_problems() + socket:
            _fail(problems)
    elif settings.slack_bot_token is None or (settings.slack_signing_secret is None and not socket_mode):
        _fail(["set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (see README: connecting a Slack workspace)"])
    if problems := connect_problems(settings, loaded):
        _fail(problems)
    if socket_mode and any(provider.authorize_url for provider in loaded.oauth_providers.values()):
        _fail(["oauth_providers with authorize_url send people back to this server over HTTP: drop --socket"])
    logs.configure(secrets=logs.secrets_of(settings))
    engine, sessions = open_database(settings)
    if not is_at_head(engine):
        _fail(["the database schema is not up to date: run `countersign db upgrade` first"])
    if count > 1:
        # No connection of the master's may cross the fork: each worker opens its own.
        try:
            _warn_about_connections(engine, count)
        finally:
            engine.dispose()
        _serve_workers(settings, loaded, host, port, count, which)
        return
    try:
        with own_sqlite_database(settings.database_url):
            process = assemble(settings, build_services(settings, loaded, sessions), engine, model)
            workers, ticker = process.workers(), process.ticker()
            workers.start()
            ticker.start()
            try:
                _serve(process, settings, host, port, socket_mode, which)
            finally:
                ticker.shutdown()
                workers.close()
    except DatabaseOwned as exc:
        _fail([str(exc)])
    finally:
        engine.dispose()


def _serve(process: Process, settings: Settings, host: str, port: int, socket_mode: bool, which: str) -> None:
    if socket_mode:
        if settings.slack_app_token is None:
            _fail(["--socket needs SLACK_APP_TOKEN (an xapp- token with connections:write)"])
        _serve_socket_mode(process, settings.slack_app_token.get_secret_value(), which)
        return
    from bot.server import listen

    server = listen(process.server, host, port)
    click.echo(f"countersign: serving on http://{host}:{port} (POST /slack/events), model: {which}")
    if settings.metrics_token is None and not _loopback(host):
        click.echo(
            f"countersign: /metrics and /readyz are open to anyone who reaches {host}:{port}; "
            "set COUNTERSIGN_METRICS_TOKEN to require a bearer token",
            err=True,
        )
    try:
        server.run()
    except KeyboardInterrupt:
        click.echo("countersign: stopping")
    finally:
        server.close()


def _serve_socket_mode(process: Process, app_token: str, which: str) -> None:
    """Until SIGINT or SIGTERM: then the connection goes first (no new envelope is taken), and
    the caller stops the background loops as after HTTP."""
    from slack_sdk.errors import SlackApiError

    from bot.socket_mode import SocketMode

    socket = SocketMode(process.app, app_token, wakeup=process.server.wakeup)
    try:
        socket.connect()  # type: ignore[no-untyped-call]
    except SlackApiError as exc:
        socket.close()
        error = exc.response.get("error")
        _fail(
            [
                f"Slack refused SLACK_APP_TOKEN for Socket Mode ({error}): "
                "it takes an app-level token (xapp-…) with connections:write"
            ]
        )
    if socket.client.is_connected():
        click.echo(f"countersign: Socket Mode connected to Slack, model: {which}")
    else:  # Slack's WebSocket did not take it: the client's monitor tries a new URL on its next round
        click.echo(
            f"countersign: Socket Mode, model: {which}; not connected to Slack yet, "
            f"trying again every {socket.client.ping_interval:g} s",
            err=True,
        )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        click.echo("countersign: stopping")
        socket.close()


def _worker_count(settings: Settings, asked: int | None, socket_mode: bool) -> int:
    """How many processes serve: `--workers`, else COUNTERSIGN_WORKERS, else one per core on
    PostgreSQL; ValueError saying why more than one cannot be."""
    asked = asked if asked is not None else settings.workers
    sqlite = is_sqlite(settings.database_url)
    if asked is None:
        return 1 if sqlite or socket_mode else cores()
    if asked > 1 and sqlite:
        raise ValueError(
            f"--workers {asked} (or COUNTERSIGN_WORKERS): a SQLite database is served by one process, since "
            "SQLite has no row locks for processes to share work by and a second serving process is refused; "
            "use --workers 1, or PostgreSQL (DATABASE_URL=postgresql+psycopg://…) for more"
        )
    if asked > 1 and socket_mode:
        raise ValueError(f"--workers {asked}: Socket Mode serves no port for processes to share; drop --workers")
    return asked


def cores() -> int:
    """The cores this process may run on (a container's or `taskset`'s cpuset, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _metrics_across_processes() -> None:
    """Have prometheus_client keep each process's counters in files of one directory, summed by
    whichever worker answers /metrics (its multiprocess mode): a new directory, removed when
    this process exits, unless PROMETHEUS_MULTIPROC_DIR names the operator's own. Must run
    before anything imports prometheus_client, which picks where values live at import
    (nothing `bot.cli` imports at the top does)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    if "prometheus_client" in sys.modules:  # too late (a warm interpreter forked into `serve`)
        click.echo("countersign: /metrics shows only the worker that answers each scrape", err=True)
        return
    for left in Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*"):  # by a master that was killed
        pid = left.name.removeprefix(METRICS_PREFIX).split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    master = os.getpid()  # workers leave with os._exit, but be sure none removes it
    path = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{master}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    atexit.register(lambda: shutil.rmtree(path, ignore_errors=True) if os.getpid() == master else None)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _warn_about_connections(engine: Engine, count: int) -> None:
    """Every worker has its own pool: say so when they could open more than PostgreSQL takes."""
    most = count * (POOL_SIZE + MAX_OVERFLOW)
    with engine.connect() as connection:
        limit = int(connection.exec_driver_sql("SHOW max_connections").scalar_one())
    if most > limit:
        click.echo(
            f"countersign: {count} workers may open up to {most} database connections "
            f"({POOL_SIZE + MAX_OVERFLOW} each) and PostgreSQL's max_connections is {limit}: "
            "lower --workers or raise max_connections",
            err=True,
        )


def _serve_workers(settings: Settings, loaded: Config, host: str, port: int, count: int, which: str) -> None:
    """gunicorn's master on the port, `count` workers each with its share (`bot.prefork`)."""
    from bot.prefork import Listening, WorkersFailed, serve_workers
    from bot.serve import Share, start_share

    def ready() -> None:
        click.echo(
            f"countersign: serving on http://{host}:{port} (POST /slack/events) with {count} worker processes, "
            f"model: {which}"
        )
        if settings.metrics_token is None and not _loopback(host):
            click.echo(
                f"countersign: /metrics and /readyz are open to anyone who reaches {host}:{port}; "
                "set COUNTERSIGN_METRICS_TOKEN to require a bearer token",
                err=True,
            )

    def start(slot: int) -> Share:
        return start_share(settings, loaded, slot, count)

    try:
        serve_workers(start, Listening(host, port, count), ready=ready)
    except WorkersFailed as exc:
        _fail([f"the workers did not start: {exc}; the log above says why"])


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _demo_database_url() -> str:
    from bot.demo import DATABASE_URL

    return DATABASE_URL


@main.command()
@click.option("--port", default=8000, show_default=True, help="Port of the sandbox page.")
@click.option("--app-port", default=3000, show_default=True, help="Port of the app's own server (POST /slack/events).")
@click.option(
    "--database-url",
    default=_demo_database_url,
    show_default="sqlite:///countersign-demo.db",
    help="The demo's own database.",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config (default: the example).")
@click.option(
    "--keep-data", is_flag=True, help="Keep the last run's data (the emulated Slack starts empty either way)."
)
def demo(port: int, app_port: int, database_url: str, config_path: Path | None, keep_data: bool) -> None:
    """Try countersign offline: a Slack-like page at http://127.0.0.1:8000 with the app in it."""
    click.echo("countersign demo: loading the app, the Slack emulator and the sandbox…")
    from bot.demo import CONFIG, run_demo

    try:
        run_demo(
            database_url=database_url,
            config_path=config_path or CONFIG,
            app_port=app_port,
            page_port=port,
            fresh=not keep_data,
            echo=click.echo,
        )
    except ConfigError as exc:
        _fail(exc.problems)
    except (ToolLoadError, DatabaseOwned) as exc:
        _fail([str(exc)])
    except OSError as exc:
        _fail([f"cannot start the demo: {exc} (another demo running? try --port / --app-port)"])


main.add_command(actions)
main.add_command(api_client)
main.add_command(approvers)
main.add_command(audit)
main.add_command(autonomy)
main.add_command(eval_command)
main.add_command(hook)
main.add_command(mcp_gate)
main.add_command(prune)
main.add_command(rules)
main.add_command(secrets)
main.add_command(task)
main.add_command(trace)
main.add_command(usage)
