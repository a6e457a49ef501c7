"""The periodic jobs of a serving process, as (function, interval) pairs for the ticker:
escalation steps every second, autonomy settled every second for the task types with new
outcomes (and every type once a minute, a few each second), stalled tasks every half minute,
cost and backlog alerts every minute, the audit chain's head published outside the database
every `audit.publish_every` (a minute by default): to the admin channel through the outbox,
and to the log; and request signatures too old to be replayed forgotten every minute."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

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
SETTLE_ALL_EVERY_S = 60.0  # every task type settled at least this often, work or not


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
        "countersign-autonomy": (Settler(sessions, config, clock, tick_s=tick_s), tick_s),
        "countersign-stalls": (sweep_stalls, stall_every_s),
        "countersign-alerts": (check_alerts, alerts_every_s),
        HEAD_JOB: (publish, config.audit.publish_every.total_seconds()),
        "countersign-seen-signatures": (forget_signatures, signatures_every_s),
    }


def settle_all(
    sessions: sessionmaker[Session], config: Config, clock: Clock, names: Iterable[str] | None = None
) -> None:
    """Label new outcomes, apply demotions and propose promotions, one task type at a time
    (`names`: only these; default every configured type)."""
    for name in config.task_types if names is None else names:
        with sessions.begin() as session:
            autonomy.settle(session, name, config.task_types[name], clock.now(), config.slack.admins)


class Settler:
    """The autonomy job. Settling a type locks its row and reads its history: done for every
    type every tick, that is a few transactions per type per second (128 types: half a core
    idle). So each tick asks once which types have outcomes to label and settles those, plus
    the next few of a rotation that settles every type once per `every_s`, for what changes
    with time alone (a freeze or a cooldown ending, evidence old enough for a promotion). The
    first tick settles every type (a new start level or instructions in the config). The gate
    settles a type itself before routing a draft."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: Config,
        clock: Clock,
        *,
        tick_s: float = 1.0,
        every_s: float = SETTLE_ALL_EVERY_S,
    ) -> None:
        self.sessions, self.config, self.clock = sessions, config, clock
        self.names = list(config.task_types)
        self.per_tick = max(1, math.ceil(len(self.names) * tick_s / every_s))
        self.cursor: int | None = None  # None: the first tick settles every type

    def __call__(self) -> int:
        """How many task types were settled."""
        if self.cursor is None:
            self.cursor = 0
            settle_all(self.sessions, self.config, self.clock)
            return len(self.names)
        with self.sessions() as session:
            due = autonomy.unlabelled_types(session)  # types of other replicas' configs: theirs
        turn = (
            {self.names[(self.cursor + step) % len(self.names)] for step in range(self.per_tick)}
            if self.names
            else set()
        )
        self.cursor = (self.cursor + self.per_tick) % max(len(self.names), 1)
        names = [name for name in self.names if name in due or name in turn]
        settle_all(self.sessions, self.config, self.clock, names)
        return len(names)
