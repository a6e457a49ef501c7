"""A background loop over units of work (`run_once() -> bool` callables): busy while there is
work, polling gently when there is none, stopping promptly when asked."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


def work(
    units: Sequence[Callable[[], bool]], stop: threading.Event, *, idle_s: float = 0.2, error_pause_s: float = 1.0
) -> None:
    """Run `units` round-robin until `stop` is set; a failing unit is logged and retried later."""
    while not stop.is_set():
        busy = False
        for unit in units:
            try:
                busy = unit() or busy
            except Exception:
                log.exception("worker unit %s failed", getattr(unit, "__qualname__", unit))
                stop.wait(error_pause_s)
        if not busy:
            stop.wait(idle_s)
