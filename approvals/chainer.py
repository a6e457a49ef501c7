"""The chainer of a serving process: links the audit events its commits leave unchained.

`approvals.audit` explains the ledger and does the linking (`chain`); this module runs it in
batches, one transaction each (`chain_all`), on a thread that commits poke (`Chainer`), and
counts what it did in `/metrics`.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from approvals.audit import BATCH, chain
from core import metrics
from core.db import reading
from core.models import UnchainedAuditEvent

log = logging.getLogger(__name__)


def chain_all(sessions: sessionmaker[Session], limit: int = BATCH) -> int:
    """Chain every unchained event, one batch per transaction; return how many."""
    chained = 0
    while True:
        began = time.perf_counter()
        with sessions.begin() as session:
            count = chain(session, limit)
        if count:
            metrics.AUDIT_CHAIN_BATCH.observe(time.perf_counter() - began)
            metrics.AUDIT_CHAINED.inc(count)
        chained += count
        if count < limit:
            return chained


def _any_unchained(sessions: sessionmaker[Session]) -> bool:
    with reading(sessions) as session:
        return session.scalar(select(UnchainedAuditEvent.id).limit(1)) is not None


class Chainer:
    """A serving process's chainer: a thread that chains whenever a commit pokes it, and every
    `poll_s` regardless (events another process committed, or left behind by a crash)."""

    def __init__(self, sessions: sessionmaker[Session], *, poll_s: float = 1.0, limit: int = BATCH) -> None:
        self.sessions, self.poll_s, self.limit = sessions, poll_s, limit
        self._poked, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-chainer", daemon=True)

    def poke(self) -> None:
        self._poked.set()

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop after chaining what is there (a serving process's last commits included)."""
        self._stop.set()
        self._poked.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            poked = self._poked.wait(self.poll_s)
            self._poked.clear()
            stopping = self._stop.is_set()  # read first: a pass that starts after `close` ends it
            try:
                # Unpoked, a look without the lock first: an idle process's poll is one SELECT.
                if poked or _any_unchained(self.sessions):
                    chain_all(self.sessions, self.limit)
            except Exception:
                log.exception("chaining audit events failed; retrying in %.1f s", self.poll_s)
            if stopping:
                return
