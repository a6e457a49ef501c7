"""Long-polls waiting for actions to be decided (`GET /api/actions/{id}?wait=S`).

A waiting request holds no database connection: it waits on an event here. It is woken at once
when a commit of this process moves its action (`approvals.external_changes.listen`), and for
changes made by other processes one poller thread reads the states of every action waited on
in this process with ONE query per `poll_s`, however many requests wait (a veto window that
passed counts as a change: nobody vetoed, so the action may now be claimed).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from approvals import external_changes
from approvals.external import SETTLED
from core.clock import Clock
from core.db import reading
from core.models import Action
from core.states import ActionState

log = logging.getLogger(__name__)
POLL_S = 0.25


class Waiters:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, *, poll_s: float = POLL_S) -> None:
        self.sessions, self.clock, self.poll_s = sessions, clock, poll_s
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = defaultdict(set)
        self._stop = threading.Event()
        self._unlisten = external_changes.listen(self.moved)
        self._thread: threading.Thread | None = None

    def wait(self, action_public_id: str, timeout_s: float) -> bool:
        """Block up to `timeout_s` for a change of the action; whether one was seen."""
        woken = threading.Event()
        with self._lock:
            self._waiting[action_public_id].add(woken)
            if self._thread is None:
                self._thread = threading.Thread(target=self._poll, name="long-poll", daemon=True)
                self._thread.start()
        try:
            return woken.wait(timeout_s)
        finally:
            with self._lock:
                events = self._waiting.get(action_public_id)
                if events is not None:
                    events.discard(woken)
                    if not events:
                        del self._waiting[action_public_id]

    def moved(self, public_ids: set[str]) -> None:
        with self._lock:
            for public_id in public_ids:
                for woken in self._waiting.get(public_id, ()):
                    woken.set()

    def count(self) -> int:
        with self._lock:
            return sum(len(events) for events in self._waiting.values())

    def close(self) -> None:
        self._unlisten()
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            with self._lock:
                ids = list(self._waiting)
            if not ids:
                continue
            try:
                with reading(self.sessions) as session:
                    window_passed = and_(Action.state == ActionState.SCHEDULED, Action.run_at <= self.clock.now())
                    query = select(Action.public_id).where(
                        Action.public_id.in_(ids), or_(Action.state.in_(SETTLED), window_passed)
                    )
                    settled = set(session.scalars(query))
            except Exception:
                log.exception("long-poll check of %d action(s) failed", len(ids))
                continue
            if settled:
                self.moved(settled)
