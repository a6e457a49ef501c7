"""APScheduler is only a ticker: one interval job per kind, fixed ids, no piling up."""

from __future__ import annotations

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
