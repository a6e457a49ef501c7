"""Long-polls waiting for actions to be decided (`GET /api/actions/{id}?wait=S`).

A waiting request holds no database connection and, under `serve` (waitress), no thread: the
server's task dispatcher (`ParkingDispatcher`) parks the request before any thread takes it
and hands it to the thread pool only once its action is settled, its wait is over, or it
cannot be answered by waiting (unknown action, another client's, a wrong or revoked token);
the request then runs as a plain read. Many hundreds of parked requests cost one connection
object each.

One poller thread reads the states of every action waited on in this process with ONE query
per `poll_s`, however many requests wait; a commit of this process that moves an API action
(`approvals.external_changes.listen`) makes it look at once. `serve --workers N` parks in its
gunicorn worker (`bot.prefork.ServeWorker.handle_request`) through `park` as well. Where nothing
parks a request (another WSGI server), the request thread waits on an event instead (`wait`),
at most `max_thread_waiters` at a time per process so that long-polls never take the threads
Slack's clicks need; beyond that the current state is answered at once and the client polls
again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from waitress.task import ThreadedTaskDispatcher

from approvals import external_changes
from approvals.external import SETTLED
from core.clock import Clock
from core.db import reading
from core.models import Action, ApiClient
from core.states import ActionState

log = logging.getLogger(__name__)
POLL_S = 0.25
MAX_THREAD_WAITERS = 8
MAX_WAIT_S = 60.0
_ACTION_PATH = re.compile(r"/api/actions/(act_[a-z0-9]{1,40})")


@dataclass(eq=False)
class _Parked:
    public_id: str
    token_hash: str
    deadline: float
    release: Callable[[], None]
    released: bool = field(default=False)


class Waiters:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        poll_s: float = POLL_S,
        max_thread_waiters: int = MAX_THREAD_WAITERS,
    ) -> None:
        self.sessions, self.clock, self.poll_s, self.max_thread_waiters = sessions, clock, poll_s, max_thread_waiters
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = defaultdict(set)
        self._parked: dict[str, list[_Parked]] = defaultdict(list)
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._unlisten = external_changes.listen(self.moved)
        self._thread: threading.Thread | None = None
        self.polls = 0  # queries made (the bench reads it)

    # -- a request thread waits (no parking) -------------------------------------------------

    def wait(self, action_public_id: str, timeout_s: float) -> bool:
        """Block up to `timeout_s` for a change of the action; whether one was seen. Returns
        False at once when `max_thread_waiters` threads wait already."""
        woken = threading.Event()
        with self._lock:
            if sum(len(events) for events in self._waiting.values()) >= self.max_thread_waiters:
                return False
            self._waiting[action_public_id].add(woken)
            self._start()
        try:
            return woken.wait(timeout_s)
        finally:
            with self._lock:
                events = self._waiting.get(action_public_id)
                if events is not None:
                    events.discard(woken)
                    if not events:
                        del self._waiting[action_public_id]

    # -- a request parked without a thread ---------------------------------------------------

    def park(self, public_id: str, token: str, timeout_s: float, release: Callable[[], None]) -> None:
        """Hold a request until its action settles or `timeout_s` passes, then call `release`
        (once) to have it answered. Checked at once against the database (one query for all)."""
        parked = _Parked(public_id, hashlib.sha256(token.encode()).hexdigest(), time.monotonic() + timeout_s, release)
        with self._lock:
            self._parked[public_id].append(parked)
            self._start()
        self._kick.set()

    def parked(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._parked.values())

    # -- waking ------------------------------------------------------------------------------

    def moved(self, public_ids: set[str]) -> None:
        """Actions moved by a commit of this process: wake their thread waiters, check the parked."""
        with self._lock:
            for public_id in public_ids:
                for woken in self._waiting.get(public_id, ()):
                    woken.set()
            parked = any(public_id in self._parked for public_id in public_ids)
        if parked:
            self._kick.set()

    def close(self) -> None:
        self._unlisten()
        self._stop.set()
        self._kick.set()
        with self._lock:
            everyone = [entry for entries in self._parked.values() for entry in entries]
            self._parked.clear()
        for entry in everyone:
            self._release(entry)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="long-poll", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self._next_wait())
            self._kick.clear()
            if self._stop.is_set():
                return
            self.check()

    def _next_wait(self) -> float:
        with self._lock:
            deadlines = [entry.deadline for entries in self._parked.values() for entry in entries]
        if not deadlines:
            return self.poll_s
        return max(0.0, min(self.poll_s, min(deadlines) - time.monotonic()))

    def check(self) -> None:
        """One round: release the parked requests whose wait is over, then read every waited-on
        action in one query and release or wake what it settles."""
        now = time.monotonic()
        due: list[_Parked] = []
        with self._lock:
            for public_id in list(self._parked):
                keep = [entry for entry in self._parked[public_id] if entry.deadline > now]
                due += [entry for entry in self._parked[public_id] if entry.deadline <= now]
                if keep:
                    self._parked[public_id] = keep
                else:
                    del self._parked[public_id]
            ids = set(self._waiting) | set(self._parked)
        for entry in due:
            self._release(entry)
        if not ids:
            return
        try:
            with reading(self.sessions) as session:
                query = (
                    select(Action.public_id, Action.state, Action.run_at, ApiClient.token_hash, ApiClient.revoked_at)
                    .join(ApiClient, ApiClient.id == Action.api_client_id)
                    .where(Action.public_id.in_(sorted(ids)))
                )
                found = {row.public_id: row for row in session.execute(query)}
            self.polls += 1
            clock_now = self.clock.now()
        except Exception:
            log.exception("long-poll check of %d action(s) failed", len(ids))
            return
        answer: list[_Parked] = []
        with self._lock:
            # Only the actions this query asked about: one parked since is checked next round.
            for public_id, events in self._waiting.items():
                if public_id not in ids:
                    continue
                row = found.get(public_id)
                if row is None or _settled(row, clock_now):
                    for woken in events:
                        woken.set()
            for public_id in [public_id for public_id in self._parked if public_id in ids]:
                row = found.get(public_id)
                settled = row is None or _settled(row, clock_now) or row.revoked_at is not None
                keep = []
                for entry in self._parked[public_id]:
                    # A token that is not the action's client's is answered at once (404 or 401).
                    if settled or row is None or entry.token_hash != row.token_hash:
                        answer.append(entry)
                    else:
                        keep.append(entry)
                if keep:
                    self._parked[public_id] = keep
                else:
                    del self._parked[public_id]
        for entry in answer:
            self._release(entry)

    @staticmethod
    def _release(entry: _Parked) -> None:
        if entry.released:
            return
        entry.released = True
        try:
            entry.release()
        except Exception:
            log.exception("answering a long-poll on %s failed", entry.public_id)


def _settled(row: Any, now: datetime) -> bool:
    """Whether a long-poll on this action is over: it is decided, or its veto window passed."""
    return row.state in SETTLED or (row.state == ActionState.SCHEDULED and row.run_at is not None and row.run_at <= now)


class ParkingDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, except that a long-poll (`GET /api/actions/{id}?wait=S`, S > 0)
    is parked in `waiters` instead of taking a thread, and queued for one when released; it is
    then served with `wait` taken out of its query (it has waited)."""

    def __init__(self, waiters: Waiters) -> None:
        super().__init__()
        self.waiters = waiters

    def add_task(self, task: Any) -> None:
        parked = _long_poll(task)
        if parked is None:
            super().add_task(task)
            return
        public_id, token, wait_s, request = parked

        def release() -> None:
            request.query = without_wait(request.query)
            super(ParkingDispatcher, self).add_task(task)

        self.waiters.park(public_id, token, wait_s, release)

    def shutdown(self, cancel_pending: bool = True, timeout: int = 5) -> bool:
        self.waiters.close()  # the parked are released (answered now, or cancelled with the queue)
        return bool(super().shutdown(cancel_pending, timeout))


def _long_poll(task: Any) -> tuple[str, str, float, Any] | None:
    """(action id, bearer token, seconds, request) of a waitress request to park; None to serve it now."""
    requests = getattr(task, "requests", None)
    if not requests:
        return None
    request = requests[0]
    if getattr(request, "error", None) is not None:
        return None
    authorization = str(request.headers.get("AUTHORIZATION", ""))
    found = long_poll_of(getattr(request, "command", ""), getattr(request, "path", ""), request.query, authorization)
    return None if found is None else (*found, request)


def long_poll_of(method: str, path: str, query: str, authorization: str) -> tuple[str, str, float] | None:
    """(action id, bearer token, seconds) when a request is a long-poll to park: `GET
    /api/actions/{id}?wait=S` with 0 < S <= 60 and a bearer token; None for anything else
    (served at once: a bad `wait` gets its 422 there)."""
    match = _ACTION_PATH.fullmatch(path or "")
    scheme, _, token = authorization.partition(" ")
    if method != "GET" or match is None or scheme != "Bearer" or not token:
        return None
    wait_s, problem = wait_of(query or "")
    if problem is not None or wait_s <= 0:
        return None
    return match[1], token, wait_s


def wait_of(query: str) -> tuple[float, str | None]:
    """The seconds a GET asks to wait (`?wait=S`, 0 without one) or the problem with them."""
    values = parse_qs(query, keep_blank_values=True).get("wait")
    if not values:
        return 0.0, None
    try:
        wait = float(values[-1])
    except ValueError:
        return 0.0, f"seconds from 0 to {MAX_WAIT_S:.0f}, got {values[-1][:20]!r}"
    if not math.isfinite(wait) or not 0 <= wait <= MAX_WAIT_S:
        return 0.0, f"seconds from 0 to {MAX_WAIT_S:.0f}, got {values[-1][:20]!r}"
    return wait, None


def without_wait(query: str) -> str:
    """The query string of a released long-poll: it has waited, so it is served as a plain read."""
    return "&".join(part for part in query.split("&") if not part.startswith("wait="))
