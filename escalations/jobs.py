"""The periodic jobs of a serving process, as (function, interval) pairs for the ticker:
escalation steps every second, stalled tasks every half minute, cost and backlog alerts every
minute, the audit chain's head published outside the database every `audit.publish_every`
(a minute by default): to the admin channel through the outbox, and to the log; and request
signatures too old to be replayed forgotten every minute."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from approvals import autonomy
from approvals.ledger import publish_head
from core.clock import Clock
from core.config import Config
from core.replays import forget_expired
from escalations import alerts, stalls
from escalations.sweeper import Sweeper

log = logging.getLogger(__name__)
Jobs = dict[str, tuple[Callable[[], object], float]]
HEAD_JOB = "countersign-audit-head"


def periodic_jobs(
    sweeper: Sweeper,
    sessions: sessionmaker[Session],
    config: Config,
    clock: Clock,
    *,
    tick_s: float = 1.0,
    stall_every_s: float = 30.0,
    alerts_every_s: float = 60.0,
    signatures_every_s: float = 60.0,
) -> Jobs:
    def sweep_stalls() -> int:
        with sessions.begin() as session:
            return stalls.sweep(session, config, clock.now())

    def check_alerts() -> int:
        with sessions.begin() as session:
            return alerts.check(session, config, clock.now())

    def settle() -> None:
        settle_all(sessions, config, clock)

    def publish() -> object:
        with sessions.begin() as session:
            published = publish_head(session, clock.now())
        if published is not None:
            # A second copy outside the database, after the commit: log shipping keeps it
            # where a database administrator cannot edit it, even if the Slack post fails.
            seq, hash_ = published
            log.info("audit head published: %d:%s", seq, hash_, extra={"audit_seq": seq, "audit_hash": hash_})
        return published

    def forget_signatures() -> int:
        with sessions.begin() as session:
            return forget_expired(session, clock.now())

    return {
        "countersign-sweep": (sweeper.run_until_idle, tick_s),
        "countersign-autonomy": (settle, tick_s),
        "countersign-stalls": (sweep_stalls, stall_every_s),
        "countersign-alerts": (check_alerts, alerts_every_s),
        HEAD_JOB: (publish, config.audit.publish_every.total_seconds()),
        "countersign-seen-signatures": (forget_signatures, signatures_every_s),
    }


def settle_all(sessions: sessionmaker[Session], config: Config, clock: Clock) -> None:
    """Label new outcomes, apply demotions and propose promotions, one task type at a time."""
    for name, task_type in config.task_types.items():
        with sessions.begin() as session:
            autonomy.settle(session, name, task_type, clock.now(), config.slack.admins)
