"""`countersign serve`: Bolt behind waitress (a production WSGI server with a thread pool),
beside our own routes on the same port, and the background workers in threads.

Routes: POST /slack/events (events, interactivity, slash commands; length, timestamp,
signature and replay checked by `bot.slack_ingress` before Bolt parses anything), GET
/slack/install and /slack/oauth_redirect (multi-workspace mode: Bolt's OAuth flow), GET and
POST /oauth/{provider}/start and GET /oauth/{provider}/callback (people connecting their own
credentials, confirmed in the browser that completes them: `bot.connect_routes`), POST
/api/tasks (bearer `COUNTERSIGN_API_TOKEN`), the actions API (/api/actions…, `bot.api_actions`) and
HumanLayer's wire API beside it (/humanlayer/v1/…, `bot.humanlayer`), GET /healthz, /readyz, /metrics (with
`COUNTERSIGN_METRICS_TOKEN` set, /metrics needs it as a bearer token and /readyz names its
checks only to a request that carries it).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import Engine, func, select, text
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from agent.tasks import TaskError, submit_task
from agent.worker import Wakeup, work
from approvals.chainer import Chainer
from bot.api_actions import PREFIX as API_ACTIONS
from bot.api_actions import ApiActions
from bot.api_clients import Tokens
from bot.approver_metrics import ApproverCollector
from bot.connect_routes import PREFIX as CONNECT_PREFIX
from bot.connect_routes import ConnectRoutes
from bot.directory import person_name
from bot.http_io import BodyRefused, answer_json, read_body
from bot.humanlayer import PREFIX as HUMANLAYER
from bot.humanlayer import HumanLayerApi
from bot.installations import INSTALL_PATH, REDIRECT_PATH
from bot.services import Services
from bot.shed_notices import ShedNotices
from bot.slack_ingress import MAX_SLACK_BODY, SHED, SlackIngress
from bot.waiters import ParkingDispatcher, Waiters
from core.metrics import DatabaseCollector
from core.migrate import is_compatible
from core.models import OutboxMessage
from core.storable import text_problem
from escalations.scheduler import SWEEP_JOB, Ticker

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024  # of a POST /api/tasks
SCHEDULER_STALE = timedelta(seconds=15)
OUTBOX_STUCK = timedelta(minutes=5)
Handler = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


class Server:
    """The WSGI application."""

    def __init__(
        self,
        services: Services,
        app: App,
        engine: Engine,
        *,
        api_token: str | None,
        signing_secret: str | None,
        metrics_token: str | None = None,
    ) -> None:
        self.services, self.engine, self.api_token, self.metrics_token = services, engine, api_token, metrics_token
        self.ticker: Ticker | None = None  # set when the process runs the escalation ticker
        self.wakeup: Wakeup | None = None  # set when the process runs background workers
        self.registry = _process_metrics()
        self.gauges = CollectorRegistry(auto_describe=False)
        self.gauges.register(DatabaseCollector(services.sessions))
        self.gauges.register(ApproverCollector(services.sessions, services.config, services.clock))
        self.slack = SlackRequestHandler(app)
        self.notices = ShedNotices(services.client_for)  # tells the clickers of shed clicks
        self.slack_events = SlackIngress(
            self.slack,
            signing_secret,
            services.sessions,
            admission=services.admission,
            on_shed=self.notices.tell,
        )
        self.connect = ConnectRoutes(services.connect, names=partial(person_name, services))
        self.waiters = Waiters(services.sessions, services.clock)
        tokens = Tokens(services.sessions, api_token)
        actions = ApiActions(services, tokens, self.waiters)
        self.api_actions: ApiActions | None = actions
        self.humanlayer = HumanLayerApi(services, tokens, actions)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        finally:
            # A click or a task may have left work for the background loops, which back off to
            # seconds between polls when idle: have them look now (not for a shed click: a flood
            # of them would keep every loop polling).
            if self.wakeup is not None and environ.get("REQUEST_METHOD") == "POST" and not environ.get(SHED):
                self.wakeup.wake()

    def _route(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/slack/events":
            return self.slack_events(environ, start_response)
        if path in (INSTALL_PATH, REDIRECT_PATH) and self.slack.app.oauth_flow is not None:
            if method != "GET":
                return answer_json(start_response, 405, {"error": "GET only"})
            return self.slack(environ, start_response)
        if path.startswith(CONNECT_PREFIX) and self.services.connect is not None:
            return self.connect(environ, start_response)
        if path.startswith(API_ACTIONS) and self.api_actions is not None:
            return self.api_actions(environ, start_response)
        if path.startswith(HUMANLAYER + "/"):
            return self.humanlayer(environ, start_response)
        if path == "/api/tasks" and method == "POST":
            return self._api_tasks(environ, start_response)
        if path == "/healthz":
            return answer_json(start_response, 200, {"ok": True})
        if path == "/readyz":
            checks = self.readiness()
            ready: dict[str, Any] = {"ok": all(checks.values())}
            if self.metrics_token is None or self._carries_metrics_token(environ):
                ready["checks"] = checks
            return answer_json(start_response, 200 if ready["ok"] else 503, ready)
        if path == "/metrics":
            if self.metrics_token is not None and not self._carries_metrics_token(environ):
                return answer_json(
                    start_response, 401, {"error": "missing or wrong bearer token (COUNTERSIGN_METRICS_TOKEN)"}
                )
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest(self.registry), generate_latest(self.gauges)]
        return answer_json(start_response, 404, {"error": f"no route {method} {path}"})

    def _carries_metrics_token(self, environ: WSGIEnvironment) -> bool:
        given = environ.get("HTTP_AUTHORIZATION", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.metrics_token}".encode())

    def readiness(self) -> dict[str, bool]:
        """Database reachable, schema at head, scheduler ticking, outbox worker keeping up."""
        checks = {
            "database": False,
            "schema_at_head": False,
            "scheduler_ticking": self.ticker is None,
            "outbox_not_stuck": False,
        }
        now = self.services.clock.now()
        if self.ticker is not None:
            last = self.ticker.last_tick.get(SWEEP_JOB)
            checks["scheduler_ticking"] = last is not None and now - last < SCHEDULER_STALE
        try:
            with self.services.sessions() as session:
                session.execute(text("SELECT 1"))
                checks["database"] = True
                # Messages waiting on Slack's backoff are fine; due ones nobody sends are not.
                oldest_due = session.scalar(
                    select(func.min(OutboxMessage.available_at)).where(OutboxMessage.delivered_at.is_(None))
                )
                checks["outbox_not_stuck"] = oldest_due is None or now - oldest_due < OUTBOX_STUCK
            checks["schema_at_head"] = is_compatible(self.engine)
        except Exception as exc:  # noqa: BLE001 - readiness reports failures, it does not raise them
            log.warning("readiness check failed: %s", exc)
        return checks

    def _api_tasks(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.api_token is None:
            return answer_json(start_response, 404, {"error": "the task API is off: set COUNTERSIGN_API_TOKEN"})
        given = environ.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.api_token}".encode()):
            return answer_json(start_response, 401, {"error": "missing or wrong bearer token"})
        try:
            body = json.loads(read_body(environ, MAX_BODY) or b"null")
        except BodyRefused as refused:
            return answer_json(start_response, refused.status, {"error": refused.message})
        except (json.JSONDecodeError, UnicodeDecodeError):
            return answer_json(start_response, 422, {"error": "the body is not JSON"})
        except RecursionError:
            return answer_json(start_response, 422, {"error": "the body's JSON is nested too deeply"})
        problems = _task_problems(body)
        if problems:
            return answer_json(start_response, 422, {"error": "invalid task", "problems": problems})
        try:
            with self.services.sessions.begin() as session:
                task = submit_task(
                    session,
                    self.services.config,
                    body.get("task_type"),
                    body["text"],
                    now=self.services.clock.now(),
                    requester=body.get("requester"),
                )
                task_public_id = task.public_id
        except TaskError as exc:
            return answer_json(start_response, 422, {"error": str(exc)})
        return answer_json(start_response, 201, {"task_id": task_public_id})


def _process_metrics() -> CollectorRegistry:
    """The counters and histograms /metrics shows: this process's own; or, under
    `serve --workers N` (PROMETHEUS_MULTIPROC_DIR set), the sums of every worker's, read from the
    files they write (process_* and python_* series are then left out: they would be one worker's)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return registry


def _task_problems(body: Any) -> dict[str, str]:
    if not isinstance(body, dict):
        return {"body": 'expected a JSON object like {"task_type": "refund", "text": "..."}'}
    problems = {key: "unknown field" for key in body if key not in ("task_type", "text", "requester")}
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        problems["text"] = "required: the request, as non-empty text"
    for key in ("task_type", "requester"):
        if body.get(key) is not None and not isinstance(body[key], str):
            problems[key] = "must be text"
    for key in ("task_type", "text", "requester"):
        if isinstance(body.get(key), str) and key not in problems and (problem := text_problem(body[key])):
            problems[key] = problem
    return problems


# waitress serves connections from one async loop, so an idle keep-alive connection holds no
# thread; but at `connection_limit` open connections it stops accepting new ones (its default
# 100 let a client holding idle connections shut out Slack). So: a higher limit, idle
# connections closed after CHANNEL_TIMEOUT_S (Slack opens a connection per burst; its requests
# take milliseconds), checked every CLEANUP_INTERVAL_S, and a listen backlog for bursts.
CONNECTION_LIMIT = 1000
CHANNEL_TIMEOUT_S = 15
CLEANUP_INTERVAL_S = 5
BACKLOG = 2048
# waitress's threads. A click waiting for a decision slot holds one (`bot.admission`): 4 decide,
# and a burst of clicks may wait in the others for as long as their budget allows.
THREADS = 32


def listen(
    wsgi: Handler,
    host: str,
    port: int,
    *,
    threads: int = THREADS,
    connection_limit: int = CONNECTION_LIMIT,
    channel_timeout_s: int = CHANNEL_TIMEOUT_S,
    cleanup_interval_s: int = CLEANUP_INTERVAL_S,
) -> BaseWSGIServer | MultiSocketServer:
    """waitress serving `wsgi`, refusing (413) any body larger than our routes take before it
    reads it (waitress refuses a declared length of `max_request_body_size` or more)."""
    # A long-poll is parked without a thread until its action settles (`bot.waiters`).
    dispatcher = ParkingDispatcher(wsgi.waiters) if isinstance(wsgi, Server) else None
    if dispatcher is not None:
        dispatcher.set_thread_count(threads)
    return create_server(
        wsgi,
        _dispatcher=dispatcher,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=MAX_SLACK_BODY + 1,
        connection_limit=connection_limit,
        channel_timeout=channel_timeout_s,
        cleanup_interval=cleanup_interval_s,
        backlog=BACKLOG,
    )


class Workers:
    """The background loops of one serving process, each in its own thread so a slow model
    call never delays a card, and a Slack outage never delays the model. Each loop waits on its
    own wakeup (`wakeups[name]`, woken with `wakeup`), so work handed to one loop wakes it alone."""

    def __init__(
        self, units: dict[str, Callable[[], bool]], *, idle_s: float = 0.2, chainer: Chainer | None = None
    ) -> None:
        self.chainer = chainer  # links the audit events the process commits; stops last
        self.stop = threading.Event()
        self.wakeup = Wakeup()
        self.wakeups = {name: self.wakeup.child() for name in units}
        # Called once the loops have stopped, before the chainer: a loop's last words (the
        # executor gives back the actions handed to it that it did not start).
        self.stopped: list[Callable[[], object]] = []
        self.threads = [
            threading.Thread(
                target=work,
                args=([unit], self.stop),
                kwargs={"idle_s": idle_s, "wakeup": self.wakeups[name]},
                name=f"worker-{name}",
                daemon=True,
            )
            for name, unit in units.items()
        ]

    def start(self) -> None:
        if self.chainer is not None:
            self.chainer.start()
        for thread in self.threads:
            thread.start()

    def wind_down(self) -> None:
        """Tell every loop to stop after the unit it is running (returns at once)."""
        self.stop.set()
        self.wakeup.wake(always=True)  # loops wait on the wakeup, not on `stop`

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loops and wait up to `timeout_s` in all for the units they are running."""
        self.wind_down()
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for last_words in self.stopped:
            last_words()
        if self.chainer is not None:  # last: it chains what the loops committed
            self.chainer.close(max(2.0, deadline - time.monotonic()))
