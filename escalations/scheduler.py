"""APScheduler as a ticker, nothing more: one interval job with a fixed id in each process
calls the sweeper, which finds its work in the database. APScheduler 3 keeps no state we
rely on and coordinates no replicas (row locks do); a missed tick is simply the next one.
The only module that imports APScheduler."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler

from core.clock import Clock

log = logging.getLogger(__name__)
SWEEP_JOB = "countersign-sweep"


class Ticker:
    def __init__(self, jobs: dict[str, tuple[Callable[[], object], float]], clock: Clock) -> None:
        """`jobs`: id → (function, interval in seconds)."""
        self.clock = clock
        self.last_tick: dict[str, datetime] = {}
        self._lock = threading.Condition()
        self._running = 0  # jobs in flight
        self.scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        for job_id, (function, interval_s) in jobs.items():
            self.scheduler.add_job(
                self._wrap(job_id, function), "interval", seconds=interval_s, id=job_id, replace_existing=True
            )

    def _wrap(self, job_id: str, function: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with self._lock:
                self._running += 1
            try:
                function()
            except Exception:
                log.exception("scheduled job %s failed", job_id)
            with self._lock:
                self.last_tick[job_id] = self.clock.now()
                self._running -= 1
                self._lock.notify_all()

        return run

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self, *, wait: bool = True) -> None:
        """Start no more jobs; with `wait`, wait for the running ones (again: a no-op)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the jobs in flight to end; whether they did."""
        with self._lock:
            return self._lock.wait_for(lambda: self._running == 0, timeout_s)
