"""`/metrics` gauges of the approvers' signals of rubber-stamping (`approvals.fatigue`), over the
last 30 days, read from the database at scrape time (at most once a minute; a scrape in
between gets the same numbers).

Labels stay bounded: the `approver` label is a Slack user id only for people the config lists
by id (in a task type's `approvers` or in `slack.admins`), a set its owner wrote down; everyone
who decides through a user group is pooled under `approver="other"`. So no label value comes
from outside the config. `countersign_approvers_flagged` counts every person (pooled or not)
whose fast share passes `alerts.fast_approval_share`, as the alert would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from approvals import fatigue
from core.clock import Clock
from core.config import Config, is_user_id

WINDOW = timedelta(days=30)
CACHE_S = 60.0
OTHER = "other"


def listed_by_id(config: Config) -> frozenset[str]:
    """The people the config names by Slack user id: the only `approver` label values besides "other"."""
    people = [*config.slack.admins, *(p for t in config.task_types.values() for p in t.approvers)]
    return frozenset(person for person in people if is_user_id(person))


class ApproverCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session], config: Config, clock: Clock) -> None:
        self.sessions, self.config, self.clock = sessions, config, clock
        self.listed = listed_by_id(config)
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] >= CACHE_S:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[GaugeMetricFamily]:
        def label(actor: str) -> str:
            return actor if actor in self.listed else OTHER

        since = self.clock.now() - WINDOW
        read = fatigue.min_read_times(self.config)
        with self.sessions() as session:
            pooled = fatigue.signals(session, since, read, label=label)
            people = fatigue.signals(session, since, read)
        families = {
            "decisions": GaugeMetricFamily(
                "countersign_approver_decisions", "Decisions on cards in the last 30 days", labels=["approver"]
            ),
            "rate": GaugeMetricFamily(
                "countersign_approver_approval_rate", "Share of those decisions that approved", labels=["approver"]
            ),
            "median": GaugeMetricFamily(
                "countersign_approver_median_read_seconds", "Median time from card to click", labels=["approver"]
            ),
            "fast": GaugeMetricFamily(
                "countersign_approver_fast_share",
                "Share of approvals faster than the task type's min_read_time",
                labels=["approver"],
            ),
            "streak": GaugeMetricFamily(
                "countersign_approver_fast_streak", "Longest run of fast approvals", labels=["approver"]
            ),
        }
        for found in pooled:
            values = [found.approver]
            families["decisions"].add_metric(values, found.decisions)
            families["rate"].add_metric(values, found.approval_rate)
            if found.median_read_s is not None:
                families["median"].add_metric(values, found.median_read_s)
            families["fast"].add_metric(values, found.fast_share)
            families["streak"].add_metric(values, found.longest_fast_streak)
        flagged = GaugeMetricFamily(
            "countersign_approvers_flagged", "People whose fast-approval share passes alerts.fast_approval_share"
        )
        flagged.add_metric([], sum(1 for found in people if fatigue.flagged(found, self.config)))
        return [*families.values(), flagged]
