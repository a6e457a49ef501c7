"""APScheduler is only a ticker: one interval job per kind, fixed ids, no piling up."""

from __future__ import annotations

import threading

from escalations.scheduler import SWEEP_JOB, Ticker
from tests.fakes.clock import FrozenClock


def test_jobs_have_fixed_ids_coalesce_and_never_overlap() -> None:
    calls: list[str] = []
    clock = FrozenClock()
    ticker = Ticker({SWEEP_JOB: (lambda: calls.append("sweep"), 1.0), "other": (lambda: 1 / 0, 30.0)}, clock)
    ticker.scheduler.start(paused=True)  # jobs get their settings on start; paused, none runs
    jobs = {job.id: job for job in ticker.scheduler.get_jobs()}
    assert set(jobs) == {SWEEP_JOB, "other"}
    for job in jobs.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
    assert jobs[SWEEP_JOB].trigger.interval.total_seconds() == 1.0

    jobs[SWEEP_JOB].func()
    jobs["other"].func()  # a failing job is logged, and the next tick tries again
    assert calls == ["sweep"]
    assert ticker.last_tick == {SWEEP_JOB: clock.now(), "other": clock.now()}
    ticker.shutdown()


def test_a_stopping_worker_waits_for_the_job_in_flight_and_can_stop_twice() -> None:
    """`serve --workers N` stops the ticker without waiting, then waits for the job it was
    running (a sweep mid-burst) only as long as its stop allows."""
    release, entered = threading.Event(), threading.Event()

    def sweep() -> None:
        entered.set()
        release.wait(30)

    ticker = Ticker({SWEEP_JOB: (sweep, 1.0)}, FrozenClock())
    ticker.scheduler.start(paused=True)
    running = threading.Thread(target=ticker.scheduler.get_job(SWEEP_JOB).func)
    running.start()
    assert entered.wait(30)
    ticker.shutdown(wait=False)
    assert not ticker.wait_idle(0.05)  # still sweeping
    release.set()
    assert ticker.wait_idle(30)
    running.join(30)
    ticker.shutdown()  # already stopped: nothing to do
    assert SWEEP_JOB in ticker.last_tick
