"""A background loop over units of work (`run_once() -> bool` callables): busy while there is
work, polling gently when there is none, stopping promptly when asked."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)
MAX_IDLE_S = 2.0  # the longest pause between polls of an idle loop


class Wakeup:
    """Tells idle loops that work may have appeared (a request came in, the process is stopping),
    so a loop backed off to its longest pause polls again at once instead of at its next poll."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0

    def wake(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def wait(self, timeout_s: float) -> bool:
        """Whether woken before `timeout_s` passed."""
        with self._changed:
            seen = self._generation
            return self._changed.wait_for(lambda: self._generation != seen, timeout_s)


def work(
    units: Sequence[Callable[[], bool]],
    stop: threading.Event,
    *,
    idle_s: float = 0.2,
    max_idle_s: float = MAX_IDLE_S,
    wakeup: Wakeup | None = None,
    error_pause_s: float = 1.0,
) -> None:
    """Run `units` round-robin until `stop` is set; a failing unit is logged and retried later.

    Idle, the pause between polls doubles from `idle_s` up to `max_idle_s`: each poll is a query,
    and a process with a dozen loops polling five times a second spends a tenth of a core on
    nothing. Work found, or a `wakeup` (which ends a backed-off pause at once), brings the pause
    back to `idle_s`."""
    pause = idle_s
    while not stop.is_set():
        busy = False
        for unit in units:
            try:
                busy = unit() or busy
            except Exception:
                log.exception("worker unit %s failed", getattr(unit, "__qualname__", unit))
                stop.wait(error_pause_s)
        if busy:
            pause = idle_s
            continue
        # A wakeup only cuts a backed-off pause short: at `idle_s` a loop polls soon anyway, and
        # waking every loop on every request would turn a burst of clicks into a burst of polls.
        woken = wakeup.wait(pause) if wakeup is not None and pause > idle_s else stop.wait(pause)
        pause = idle_s if woken else min(pause * 2, max(max_idle_s, idle_s))
