"""Decisions under overload: a click whose decision cannot start within its time budget is
acked without deciding, and only the clicker is told to click again.

Slack shows "this app did not respond" 3 s after it sent a click. Under a burst, clicks wait in
line (the kernel's backlog, waitress's task queue, the GIL, the database's write turn), and a
decision made after that lands although the person was told it failed. So each Slack request
carries its age, and a decision that cannot start (get a decision slot, then its write turn)
within `DECISION_BUDGET_S` of Slack sending the click is not made: the click is acked at once,
nothing is written, the clicker alone is told, `countersign_clicks_shed_total` counts it.

Where: a button click that decides (`DECIDING`) takes its slot in `bot.slack_ingress`, before
the replay check and Bolt, so that shedding costs next to nothing (a flood is mostly shed
clicks, and the time to shed them is what keeps the line short); modal submissions take theirs
in their listener (`Admission.turn`). A slot is waited for only while the clicks already
waiting, at the recent time a slot is held, would be through within the budget (in a flood:
within FLOOD_WAIT_S), and while a server thread is there to wait in; a click that would not is shed at
once rather than holding a server thread to be shed later. So a burst of clicks on one card
waits and is decided or refused as usual, and a flood is shed fast.

A click's age is two measures added up:
- before our WSGI app saw it, from Slack's signed `X-Slack-Request-Timestamp` (whole seconds,
  so an over-estimate by up to 1 s: a click is judged late early rather than late). waitress
  cannot say how long a request waited in its own queue, so this is the only measure of it;
  it is bounded against a server clock ahead of Slack's by `SkewFloor`;
- since then, on the monotonic clock.

Both clocks are injected (`ticks`, `wall`), so tests spend a budget without sleeping.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot import action_ids
from core import metrics
from core.db import WRITER_TIMEOUT_OPTION
from core.errors import DatabaseBusy

T = TypeVar("T")

# From Slack sending a click to the decision starting; what is left of Slack's 3 s is for the
# decision's own statements and the answer.
DECISION_BUDGET_S = 2.0
# Decisions running at once in this process; more only queue on the GIL and the database.
DECISION_SLOTS = 4
# Clicks waiting for a slot at most: each holds one of the server's threads (`bot.server.THREADS`,
# 32), 4 decide; a burst may take them all for the moment it lasts (a flood may not: below).
MAX_WAITING = 28
# In a flood (clicks coming faster than the slots decide them, for a second running) a click
# waits only behind fewer clicks than there are slots, and if its turn would come within this:
# the threads are better spent answering the shed ones, whose answers would otherwise wait
# behind the line until they are late.
FLOOD_WAIT_S = 0.5
FLOOD_BUCKET_S, FLOOD_BUCKETS = 0.25, 4
# How long a slot is taken to be held before any was (then: a moving average of the last ones).
FIRST_HOLD_S, HOLD_WEIGHT = 0.05, 0.2
# Slack's timestamp is in whole seconds.
STAMP_RESOLUTION_S = 1.0
# How long the freshest click seen sets the skew floor (`SkewFloor`), in buckets of a minute.
SKEW_WINDOW_S, SKEW_BUCKET_S = 600.0, 60.0
# PostgreSQL error codes of a wait cut short by `lock_timeout` or `statement_timeout`.
TIMED_OUT = {"55P03", "57014"}
# Buttons whose listener makes a decision in a transaction: their clicks take a decision slot.
DECIDING = frozenset(
    {
        action_ids.APPROVE,
        action_ids.VETO,
        action_ids.ACKNOWLEDGE,
        action_ids.PROMOTE,
        action_ids.DISMISS,
        action_ids.REPORT_INCIDENT,
        action_ids.UNDO,
        action_ids.REVIEW_OK,
        action_ids.EXTEND_BUDGET,
        action_ids.STOP_TASK,
        action_ids.CHOOSE_TYPE,
    }
)


def busy(verb: str = "click") -> str:
    return f"countersign is busy; nothing was recorded, {verb} again."


class Shed(Exception):
    """The decision was not made: its budget ran out (`late`) or no turn came within it (`busy`)."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind, self.reason = kind, reason
        super().__init__(busy())


@dataclass(frozen=True)
class Arrival:
    """When our WSGI app got a request (`at`, monotonic seconds), how old it already was then,
    and whether it holds a decision slot already (taken in `bot.slack_ingress`)."""

    at: float
    before_s: float = 0.0
    held: bool = False


# The Slack request this thread is serving: set by `bot.slack_ingress` around Bolt, read by the
# listeners (Bolt runs them in the request's thread: `process_before_response`).
ARRIVAL: ContextVar[Arrival | None] = ContextVar("countersign_arrival", default=None)


@dataclass(frozen=True)
class DecidingClick:
    """What a shed click needs to be answered: which button, who, where to tell them."""

    kind: str
    user: str | None
    team: str | None
    response_url: str | None


def deciding_click(body: bytes, content_type: str) -> DecidingClick | None:
    """The click on a `DECIDING` button this (signed) request body is, if it is one."""
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return None
    try:
        [payload] = urllib.parse.parse_qs(body.decode(), max_num_fields=10).get("payload") or [""]
        click: Any = json.loads(payload) if payload else None
    except (ValueError, RecursionError):
        return None  # Bolt answers what it cannot parse
    if not (isinstance(click, dict) and click.get("type") == "block_actions"):
        return None
    actions, user, team = click.get("actions"), click.get("user"), click.get("team")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    kind = action.get("action_id")
    if not (isinstance(kind, str) and kind in DECIDING):  # a list or an object is no action id (nor hashable)
        return None
    user = user if isinstance(user, dict) else {}
    team_id = (team.get("id") if isinstance(team, dict) else None) or user.get("team_id")
    url = click.get("response_url")
    return DecidingClick(
        kind=kind,
        user=user.get("id") if isinstance(user.get("id"), str) else None,
        team=team_id if isinstance(team_id, str) else None,
        response_url=url if isinstance(url, str) and url.startswith(("https://", "http://")) else None,
    )


class SkewFloor:
    """A server clock ahead of Slack's would make every click look old. The smallest
    `wall clock - Slack's stamp` seen over the last `SKEW_WINDOW_S` (this request's included)
    bounds that: a fresh click's offset is under 1 s (the stamp's resolution), so whatever the
    freshest click shows beyond 1 s is taken as skew and not as waiting. A clock behind Slack's
    makes clicks look younger: the monotonic measure still applies."""

    def __init__(self, window_s: float = SKEW_WINDOW_S, bucket_s: float = SKEW_BUCKET_S) -> None:
        self.window_s, self.bucket_s = window_s, bucket_s
        self.buckets: deque[tuple[int, float]] = deque()  # (bucket number, smallest offset in it)
        self.lock = threading.Lock()

    def skew(self, offset: float, now: float) -> float:
        bucket = int(now // self.bucket_s)
        with self.lock:
            while self.buckets and self.buckets[0][0] <= bucket - self.window_s / self.bucket_s:
                self.buckets.popleft()
            if self.buckets and self.buckets[-1][0] == bucket:
                self.buckets[-1] = (bucket, min(self.buckets[-1][1], offset))
            else:
                self.buckets.append((bucket, offset))
            floor = min(smallest for _, smallest in self.buckets)
        return max(0.0, floor - STAMP_RESOLUTION_S)


class Admission:
    """Whether a decision may still start, and the slots decisions take turns in."""

    def __init__(
        self,
        *,
        budget_s: float = DECISION_BUDGET_S,
        slots: int = DECISION_SLOTS,
        ticks: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.budget_s, self.ticks, self.wall = budget_s, ticks, wall
        self.size, self.slots = slots, threading.BoundedSemaphore(slots)
        self.floor = SkewFloor()
        self.lock = threading.Lock()
        self.waiting = 0
        self.hold_s = FIRST_HOLD_S  # how long a slot is held, lately
        self.arrivals: deque[tuple[int, int]] = deque(maxlen=FLOOD_BUCKETS + 1)  # (bucket, clicks in it)

    def arrived(self, at: float, stamp: int) -> Arrival:
        """The arrival of a request our app got at `at` (ticks), signed by Slack at `stamp`."""
        offset = self.wall() - stamp
        return Arrival(at, max(0.0, offset - self.floor.skew(offset, at)))

    def left(self, arrival: Arrival) -> float:
        """Seconds of the budget still unspent."""
        return self.budget_s - arrival.before_s - (self.ticks() - arrival.at)

    def enter(self, kind: str, arrival: Arrival) -> float:
        """Take a decision slot for a click of `kind` within its budget (`Shed` if none comes in
        time, or none would: the clicks already waiting would use it up); when it was taken."""
        left = self.left(arrival)
        if left <= 0:
            raise self._shed(kind, "late")
        with self.lock:
            self._count_arrival()
        if not self.slots.acquire(blocking=False):
            with self.lock:
                if not self._may_wait(left):
                    raise self._shed(kind, "busy")
                self.waiting += 1
            try:
                taken = self.slots.acquire(timeout=left)
            finally:
                with self.lock:
                    self.waiting -= 1
            if not taken:
                raise self._shed(kind, "busy")
        return self.ticks()

    def _count_arrival(self) -> None:
        bucket = int(self.ticks() / FLOOD_BUCKET_S)
        if self.arrivals and self.arrivals[-1][0] == bucket:
            self.arrivals[-1] = (bucket, self.arrivals[-1][1] + 1)
        else:
            self.arrivals.append((bucket, 1))

    def flooded(self) -> bool:
        """More clicks came in each of the last FLOOD_BUCKETS quarter-seconds than the slots
        decide in one (`size / hold_s`): a flood, not a burst (a burst fills one or two), and
        waiting only makes the line longer."""
        bucket = int(self.ticks() / FLOOD_BUCKET_S)
        served = self.size / max(self.hold_s, 1e-3) * FLOOD_BUCKET_S
        counts = dict(self.arrivals)
        return all(counts.get(bucket - back, 0) > served for back in range(1, FLOOD_BUCKETS + 1))

    def _may_wait(self, left: float) -> bool:
        """Whether a click that found every slot taken may wait for one: its turn would come
        (at the recent hold time, after those already waiting) within its budget, and a server
        thread is there for it to wait in; in a flood, only behind fewer clicks than there are
        slots, and within FLOOD_WAIT_S."""
        turn_s = (self.waiting + 1) * self.hold_s / self.size
        if self.flooded():  # a short line: one round of the slots, soon
            return self.waiting < self.size and turn_s <= min(left, FLOOD_WAIT_S)
        return self.waiting < MAX_WAITING and turn_s <= left

    def leave(self, taken: float) -> None:
        """Give back the slot taken at `taken`, learning how long slots are held."""
        held = max(0.0, self.ticks() - taken)
        with self.lock:
            self.hold_s += HOLD_WEIGHT * (held - self.hold_s)
        self.slots.release()

    @contextmanager
    def turn(self, kind: str) -> Iterator[Turn]:
        """The decision slot of the request being served (taken now unless it holds one), within
        its budget; `Shed` if there is none. A database wait cut short inside (`Turn.bound`) is
        shed too: its transaction rolled back."""
        arrival = ARRIVAL.get() or Arrival(self.ticks())
        if arrival.held and self.left(arrival) <= 0:
            raise self._shed(kind, "late")
        taken = None if arrival.held else self.enter(kind, arrival)
        try:
            yield Turn(self, arrival)
        except DatabaseBusy:
            raise self._shed(kind, "busy") from None
        except OperationalError as error:
            if getattr(error.orig, "sqlstate", None) not in TIMED_OUT:
                raise
            raise self._shed(kind, "busy") from None
        finally:
            if taken is not None:
                self.leave(taken)

    @staticmethod
    def _shed(kind: str, reason: str) -> Shed:
        metrics.CLICKS_SHED.labels(kind, reason).inc()
        return Shed(kind, reason)


@dataclass(frozen=True)
class Turn:
    admission: Admission
    arrival: Arrival

    def bound(self, call: Callable[[Session], T]) -> Callable[[Session], T]:
        """`call`, first bounding its transaction's waits for the database by what is left of the
        budget: SQLite's write turn (`core.db`), PostgreSQL's row locks (`lock_timeout`)."""

        def bounded(session: Session) -> T:
            seconds = max(0.001, self.admission.left(self.arrival))
            session.connection(execution_options={WRITER_TIMEOUT_OPTION: seconds})
            if session.get_bind().dialect.name == "postgresql":
                session.execute(select(func.set_config("lock_timeout", f"{max(1, round(seconds * 1000))}ms", True)))
            return call(session)

        return bounded
