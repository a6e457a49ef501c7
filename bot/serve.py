"""Assembling one serving process: services, the Bolt app, the WSGI server, the workers."""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from dataclasses import dataclass

from slack_bolt import App
from sqlalchemy import Engine

from agent.executor import Executor
from agent.model import ModelClient
from agent.runner import AgentRunner
from agent.vault import Vault, parse_keys
from approvals import tool_definitions
from approvals.audit import AFTER_COMMIT
from approvals.chainer import Chainer
from bot.app import build_app
from bot.installations import oauth_settings
from bot.outbox_sender import OutboxSender
from bot.runtime import build_model, build_services
from bot.server import Server, Workers
from bot.services import Services
from bot.webhook_sender import WebhookSender
from core.config import Config
from core.db import open_database
from core.settings import Settings
from escalations.jobs import periodic_jobs, settle_all
from escalations.scheduler import SWEEP_JOB, Ticker
from escalations.sweeper import Sweeper

AGENT_THREADS = 4
OUTBOX_THREADS = 4
OVERDUE_EVERY_S = 5.0  # how often tasks kept waiting on the model are checked for a stall


@dataclass
class Process:
    services: Services
    app: App
    server: Server
    runner: AgentRunner
    executor: Executor
    sender: OutboxSender
    sweeper: Sweeper
    webhooks: WebhookSender

    def workers(
        self, *, idle_s: float = 0.2, agent_threads: int = AGENT_THREADS, outbox_threads: int = OUTBOX_THREADS
    ) -> Workers:
        """A few threads for model calls and for Slack deliveries, so one call that hangs holds
        back only its own task or card; one for the executor (tool calls are leased one by one)."""
        units = {f"agent-{index}": self.runner.run_once for index in range(agent_threads)}
        units["executor"] = self.executor.run_once
        units |= {f"outbox-{index}": self.sender.run_once for index in range(outbox_threads)}
        units["webhooks"] = self.webhooks.run_once
        workers = Workers(units, idle_s=idle_s, chainer=self._chainer())
        self.executor.stopping = workers.stop  # a stop lets go of claimed actions not yet started
        # The runner claims the autonomous actions it drafts for this executor, which runs them
        # at once (woken alone); those it did not start when the process stops are given back.
        self.executor.wakeup = workers.wakeups["executor"]
        self.runner.executor = self.executor
        workers.stopped.append(self.executor.give_back)
        self.server.wakeup = workers.wakeup  # a POST (a click, a task) wakes idle loops at once
        return workers

    def _chainer(self) -> Chainer | None:
        """On PostgreSQL, from now on this process's commits leave their audit events to one
        chainer thread, which links them in batches: writers no longer queue for the chain lock.
        SQLite's writers queue for the database anyway, so each transaction chains its own
        events (one commit, where a chainer would add a second)."""
        sessions = self.services.sessions
        if sessions.kw["bind"].dialect.name != "postgresql":
            return None
        chainer = Chainer(sessions)
        sessions.configure(info={AFTER_COMMIT: chainer.poke})
        return chainer

    def ticker(self, *, tick_s: float = 1.0, only: Collection[str] | None = None) -> Ticker:
        """Escalation steps, stall checks and audit heads on APScheduler's clock (`only`: just
        the jobs with these ids)."""
        services = self.services
        jobs = periodic_jobs(self.sweeper, services.sessions, services.config, services.clock, tick_s=tick_s)
        jobs["countersign-model-overdue"] = (self.runner.stall_overdue, OVERDUE_EVERY_S)
        if only is not None:
            jobs = {job_id: job for job_id, job in jobs.items() if job_id in only}
        ticker = Ticker(jobs, services.clock)
        self.server.ticker = ticker  # /readyz checks that it ticks
        return ticker

    def run_until_idle(self, rounds: int = 50) -> None:
        """Drive every worker in this thread until none has work (tests, the demo's stepper)."""
        for _ in range(rounds):
            settle_all(self.services.sessions, self.services.config, self.services.clock)
            self.runner.stall_overdue()
            busy = self.sweeper.run_until_idle() + self.runner.run_until_idle() + self.executor.run_until_idle()
            if not busy + self.sender.run_until_idle() + self.webhooks.run_until_idle():
                return
        raise RuntimeError("the workers never went idle")


def assemble(
    settings: Settings,
    services: Services,
    engine: Engine,
    model: ModelClient,
    *,
    verify_token: bool = True,
    channel_pace_s: float = 1.0,
) -> Process:
    """One serving process on `services`; as it starts, actions whose tool changed are re-asked."""
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    api_token = settings.api_token.get_secret_value() if settings.api_token else None
    metrics_token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    oauth = None
    if services.installations is not None:
        assert settings.slack_client_id and settings.slack_client_secret  # checked by build_services
        oauth = oauth_settings(
            services.installations,
            engine,
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),
            scopes=[s.strip() for s in settings.slack_scopes.split(",") if s.strip()]
            if settings.slack_scopes
            else None,
            redirect_uri=settings.slack_redirect_uri,
        )
    app = build_app(services, signing_secret=secret, verify_token=verify_token, oauth=oauth)
    recheck_tools(services)
    keys = parse_keys(settings.vault_keys.get_secret_value()) if settings.vault_keys else []
    vault = Vault(services.sessions, keys, clock=services.clock) if keys else None
    return Process(
        services=services,
        app=app,
        server=Server(services, app, engine, api_token=api_token, signing_secret=secret, metrics_token=metrics_token),
        runner=AgentRunner(services.sessions, services.config, services.registry, model, services.clock),
        executor=Executor(
            services.sessions, services.registry, services.clock, vault=vault, delegation=services.delegation
        ),
        sender=OutboxSender(services, channel_pace_s=channel_pace_s),
        sweeper=Sweeper(services.sessions, services.directory, services.clock),
        webhooks=WebhookSender(services.sessions, services.clock, vault),
    )


def recheck_tools(services: Services) -> list[str]:
    """Re-ask the approvers of actions whose tool is defined otherwise than when they were
    drafted (`approvals.tool_definitions`): once, as the process starts with its registry."""
    with services.sessions.begin() as session:
        return tool_definitions.recheck(session, services.registry, services.config, services.clock.now())


@dataclass
class Share:
    """One worker process of `serve --workers N`: its WSGI app and its background loops
    (`bot.prefork.Share`)."""

    server: Server
    workers: Workers
    ticker: Ticker
    engine: Engine

    @property
    def wsgi(self) -> Server:
        return self.server

    def stop(self) -> None:
        self.workers.wind_down()
        self.ticker.shutdown(wait=False)

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self.stop()
        self.workers.close(timeout_s)
        self.ticker.wait_idle(max(0.0, deadline - time.monotonic()))
        self.engine.dispose()


def start_share(settings: Settings, config: Config, slot: int, of: int) -> Share:
    """Worker `slot` of `of`, after the fork: its own engine, services, app and model client, a
    share of the background threads (together about what one process runs), and the ticker.

    The sweep runs in every worker: timers are claimed `FOR UPDATE SKIP LOCKED`, so N sweepers
    drain a burst N times as fast. The other periodic jobs (autonomy, stalls, alerts, audit
    heads, forgotten signatures, model stalls) are coordinated through the database too, so
    running them in every worker would be correct, but N times the idle queries for the same
    outcome: worker 0 runs them, as a single process does (a replacement takes its slot)."""
    engine, sessions = open_database(settings)
    model, _ = build_model(settings)
    process = assemble(settings, build_services(settings, config, sessions), engine, model)
    workers = process.workers(
        agent_threads=math.ceil(AGENT_THREADS / of), outbox_threads=math.ceil(OUTBOX_THREADS / of)
    )
    ticker = process.ticker(only=None if slot == 0 else {SWEEP_JOB})
    workers.start()
    ticker.start()
    return Share(process.server, workers, ticker, engine)
