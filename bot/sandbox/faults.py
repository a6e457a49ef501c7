"""The emulator's faults: calls told to fail (`fail`, `fail_for`), to stall for a while
(`hang`), or to wait until the test lets them through (`hold`). Faulted calls change nothing;
stalled and held calls are still applied, like a slow Slack whose answer the client missed."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.sandbox.workspace import JsonDict

Clock = Callable[[], float]
_FAULT_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Fault:
    method: str | None
    status: int
    error: str
    retry_after: float | None
    times: int | None  # None: until the window ends or faults are cleared
    until: float | None = None
    clock: Clock | None = None


@dataclass(eq=False, slots=True)
class Hold:
    """Calls of `method` that wait, unanswered, until `release()`: what a test needs to say
    "Slack got this but the client never heard back" without racing a timer. `arrived` is set
    when the first held call reaches the emulator, `landed` once a released one was applied."""

    method: str | None
    times: int | None
    seconds: float | None = None  # a `hang`: let go after this much real time instead
    arrived: threading.Event = field(default_factory=threading.Event)
    landed: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self._released.set()

    def wait(self, closed: threading.Event) -> None:
        """Block the calling request until released, its time is up, or the emulator closes."""
        self.arrived.set()
        if self.seconds is not None:
            closed.wait(self.seconds)
            return
        self._released.wait()


class Faults:
    """The faults and holds waiting for calls, taken one call at a time under one lock."""

    def __init__(self, now: Clock) -> None:
        self.now = now
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._holds: list[Hold] = []  # waiting for a call
        self._all_holds: list[Hold] = []  # every one made, to release on close

    def fail(
        self, method: str | None, *, status: int, retry_after: float, times: int | None, error: str | None
    ) -> None:
        with self._lock:
            self._faults.append(_Fault(method, status, _fault_error(status, error), retry_after, times))

    def fail_for(
        self,
        seconds: float,
        *,
        status: int,
        clock: Clock | None,
        retry_after: float | None,
        error: str | None,
        method: str | None,
    ) -> None:
        clock = clock or self.now
        fault = _Fault(method, status, _fault_error(status, error), retry_after, None, clock() + seconds, clock)
        with self._lock:
            self._faults.append(fault)

    def hold(self, method: str | None, *, times: int | None, seconds: float | None = None) -> Hold:
        hold = Hold(method, times, seconds)
        with self._lock:
            self._holds.append(hold)
            self._all_holds.append(hold)
        return hold

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._holds.clear()

    def release_all(self) -> None:
        with self._lock:
            holds = list(self._all_holds)
        for hold in holds:
            hold.release()

    def take_fault(self, method: str) -> Reply | None:
        """The reply of the first fault that applies to this call of `method`, or None."""
        with self._lock:
            for fault in list(self._faults):
                if fault.until is not None and fault.clock is not None and fault.clock() >= fault.until:
                    self._faults.remove(fault)
                    continue
                if fault.method not in (None, method) or (fault.method is None and method == "response_url"):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                headers = {}
                if fault.status == 429:
                    retry_after = fault.retry_after
                    if retry_after is None and fault.until is not None and fault.clock is not None:
                        retry_after = fault.until - fault.clock()
                    headers["Retry-After"] = str(max(0, math.ceil(retry_after or 0)))
                return Reply(fault.status, {"ok": False, "error": fault.error}, headers)
        return None

    def take_hold(self, method: str) -> Hold | None:
        """The hang or hold this call of `method` waits on, or None."""
        with self._lock:
            for hold in self._holds:
                if hold.method == method or (hold.method is None and method != "response_url"):
                    if hold.times is not None:
                        hold.times -= 1
                        if hold.times <= 0:
                            self._holds.remove(hold)
                    return hold
        return None


def _fault_error(status: int, error: str | None) -> str:
    if error:
        return error
    if status == 200:
        raise ValueError("a fault with status 200 needs an error code, e.g. error='channel_not_found'")
    return _FAULT_ERRORS.get(status, "fatal_error")
