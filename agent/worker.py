"""A background loop over units of work (`run_once() -> bool` callables): busy while there is
work, polling gently when there is none, stopping promptly when asked."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)
MAX_IDLE_S = 2.0  # the longest pause between polls of an idle loop


class Wakeup:
    """Tells an idle loop that work may have appeared (a request came in, work was handed to it,
    the process is stopping), so a loop backed off to its longest pause polls again at once
    instead of at its next poll. A wake while the loop is busy is kept: its next wait returns
    at once. One loop waits on a wakeup; `child()` gives each loop its own, woken with this one
    (a request wakes every loop) and alone (work handed to one loop wakes only that one).

    Requests wake the loops at most once per `min_interval_s`: a burst of clicks would otherwise
    have every loop poll once per click, a query each, for work the first poll already found."""

    def __init__(self, *, min_interval_s: float = 0.2, now: Callable[[], float] = time.monotonic) -> None:
        self._changed = threading.Condition()
        self._generation = self._seen = 0
        self._children: list[Wakeup] = []
        self.min_interval_s, self._now = min_interval_s, now
        self._last = float("-inf")

    def child(self) -> Wakeup:
        child = Wakeup(min_interval_s=0.0)  # work handed to its loop is never held back
        self._children.append(child)
        return child

    def wake(self, *, always: bool = False) -> None:
        """Wake the waiting loops, unless they were woken less than `min_interval_s` ago
        (`always`: regardless, e.g. to stop them)."""
        with self._changed:
            now = self._now()
            if not always and now - self._last < self.min_interval_s:
                return
            self._last = now
            self._generation += 1
            self._changed.notify_all()
        for child in self._children:
            child.wake(always=True)

    def wait(self, timeout_s: float) -> bool:
        """Whether woken (since the last wait returned) before `timeout_s` passed."""
        with self._changed:
            woken = self._changed.wait_for(lambda: self._generation != self._seen, timeout_s)
            self._seen = self._generation
            return woken


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
    nothing. Work found, or a `wakeup`, brings the pause back to `idle_s` at once."""
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
        woken = stop.wait(pause) if wakeup is None else wakeup.wait(pause)
        pause = idle_s if woken else min(pause * 2, max(max_idle_s, idle_s))
