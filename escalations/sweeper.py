"""Performing escalation steps as they come due, each exactly once.

`run_once()` claims a batch of due timers (`LIMIT batch … FOR UPDATE SKIP LOCKED` on
PostgreSQL, so replicas share the work), locks their actions in one query (in id order,
`SKIP LOCKED`: a sweeper never waits for a click; a timer whose action another transaction
holds is left for the next round), re-checks each action, performs each timer's one step and
moves the timer on, with the audit events and outbox rows, in one transaction. A batch that
fails is rolled back whole and its timers are taken again one per transaction, so one bad
step delays its batch's others by a round and loses none of them. A step found more than
`late_after` past its due time (the process was down) still fires once, marked late in the
audit. No truth lives in memory: a restart resumes from the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from approvals import machine
from approvals.chains import ACK_TIMEOUT, ESCALATION, EXPIRY_WARNING, due_at
from approvals.ports import Directory
from core import metrics
from core.clock import Clock
from core.ids import SYSTEM
from core.messages import ActionExpired, Reminded
from core.models import Action, Decision, Task, Timer
from core.states import OPEN_FOR_DECISION, ActionState, TimerState

log = logging.getLogger(__name__)

# Steps per transaction: large enough that the claim, the lock and the commit (with its audit
# append) are paid once for many steps, small enough that a click waiting on a timer row the
# batch holds (a decision closes its action's timers) waits a few tens of milliseconds.
DEFAULT_BATCH = 100


class Sweeper:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        directory: Directory,
        clock: Clock,
        *,
        late_after_s: float = 2.0,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        self.sessions, self.directory, self.clock = sessions, directory, clock
        self.late_after = timedelta(seconds=late_after_s)
        self.batch = batch

    def run_once(self) -> bool:
        """Take one batch of due steps; whether any was taken."""
        taken, _ = self._batch(self.batch)
        return taken > 0

    def run_until_idle(self, max_steps: int = 10_000) -> int:
        """Take due steps, a batch at a time, until none is left (or `max_steps`, or a step failed:
        it is retried on the next call); how many were taken."""
        done = 0
        while done < max_steps:
            taken, failed = self._batch(min(self.batch, max_steps - done))
            done += taken
            if not taken or failed:
                break
        return done

    def _batch(self, limit: int) -> tuple[int, bool]:
        """Claim up to `limit` due timers and take their steps in one transaction: (how many were
        taken, whether one failed). A timer whose action another transaction holds is skipped."""
        now, claimed = self.clock.now(), list[int]()
        try:
            with self.sessions.begin() as session:
                return self._sweep(session, now, limit, claimed), False
        except Exception:
            if len(claimed) <= 1:
                raise
            log.exception("a batch of %d due timers failed; taking them one per transaction", len(claimed))
        return self._one_by_one(claimed, now), True

    def _one_by_one(self, timer_ids: list[int], now: datetime) -> int:
        """Each timer of a failed batch in its own transaction: a bad step fails alone (logged, left
        due for a later round) and the others are taken. Raises only if every one failed."""
        taken, failure = 0, None
        for timer_id in timer_ids:
            try:
                with self.sessions.begin() as session:
                    taken += self._sweep(session, now, 1, [], only=timer_id)
            except Exception as exc:
                if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                    raise  # the database is gone, not one step bad: the next round retries them all
                log.exception("escalation timer %d failed; it stays due", timer_id)
                failure = failure or exc
        if failure is not None and not taken:
            raise failure
        return taken

    def _sweep(
        self, session: Session, now: datetime, limit: int, claimed: list[int], *, only: int | None = None
    ) -> int:
        query = select(Timer).where(Timer.state == TimerState.PENDING, Timer.due_at <= now)
        if only is not None:
            query = query.where(Timer.id == only)
        # Ordered by `due_at` alone, the partial index hands the batch over and the scan stops at
        # `limit`; adding `id` would sort every due row first (a burst of 100,000 due at the same
        # instant: 200 ms a claim). Ties are put in id order here.
        found = session.scalars(query.order_by(Timer.due_at).limit(limit).with_for_update(skip_locked=True))
        timers = sorted(found, key=lambda timer: (timer.due_at, timer.id))
        claimed.extend(timer.id for timer in timers)
        if not timers:
            return 0
        action_ids = sorted({timer.action_id for timer in timers})
        actions = {
            action.id: action
            for action in session.scalars(
                select(Action)
                .where(Action.id.in_(action_ids))
                .order_by(Action.id)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
        }
        _name_tasks(session, list(actions.values()))
        acks = _acknowledged_at(session, [a.id for a in actions.values() if a.state in OPEN_FOR_DECISION])
        taken = 0
        for timer in timers:
            action = actions.get(timer.action_id)
            if action is None:
                continue  # another transaction (a click) holds the action: the next round takes it
            if action.state not in OPEN_FOR_DECISION:
                _done(session, timer, now)  # decided meanwhile: nothing more to escalate
            elif timer.kind == ACK_TIMEOUT:
                self._ack_timed_out(session, timer, action, now)
            else:
                self._step(session, timer, action, acks.get(action.id), now)
            timer.fence += 1
            timer.updated_at = now
            taken += 1
        return taken

    # -- steps --------------------------------------------------------------------------

    def _step(
        self, session: Session, timer: Timer, action: Action, acknowledged_at: datetime | None, now: datetime
    ) -> None:
        chain = timer.chain
        entry = chain["steps"][timer.step]
        lateness = (now - timer.due_at).total_seconds()
        timing = {
            "step": timer.step,
            "due_at": timer.due_at.isoformat(),
            "late": now - timer.due_at > self.late_after,
            "lateness_s": round(lateness, 3),
        }
        metrics.TIMER_LATENESS.observe(max(lateness, 0.0))
        step = "expire" if entry["then"] == "expire" else entry["reason"]
        metrics.ESCALATION_STEPS.labels(action.task_type, step, str(timing["late"]).lower()).inc()
        if entry["then"] == "expire":
            machine.move(
                session,
                action,
                ActionState.EXPIRED,
                actor=SYSTEM,
                now=now,
                note="nobody decided in time",
                data=timing,
                values={"decided_by": SYSTEM, "decided_at": now},
                messages=[ActionExpired(action.public_id, action.requester)],
            )
            _done(session, timer, now)
            return
        if "expires_at_s" in entry:  # the warning before the expiry says when it comes
            timing["expires_at"] = (timer.anchor + timedelta(seconds=entry["expires_at_s"])).isoformat()
        # An acknowledgement holds the reminders back, not the expiry, nor so the warning of it.
        if entry["reason"] == EXPIRY_WARNING or not _acknowledged(acknowledged_at, chain, now):
            self._notify(session, action, entry, timing, now)
        timer.step += 1
        if timer.step < len(chain["steps"]):
            timer.due_at = due_at(chain, timer.step, timer.anchor)
        else:
            _done(session, timer, now)

    def _notify(
        self, session: Session, action: Action, entry: dict[str, Any], timing: dict[str, Any], now: datetime
    ) -> None:
        targets = self._resolve(entry["notify"], exclude=action.requester)
        if not targets:
            machine.record(
                session,
                action,
                "escalation.skipped",
                actor=SYSTEM,
                now=now,
                note=f"{', '.join(entry['notify'])} resolve to nobody",
                data=timing,
            )
            return
        data = {**timing, "targets": targets, "reason": entry["reason"]}
        machine.record(
            session,
            action,
            "escalation.notified",
            actor=SYSTEM,
            now=now,
            data=data,
            messages=[Reminded(action.public_id, **data)],
        )

    def _ack_timed_out(self, session: Session, timer: Timer, action: Action, now: datetime) -> None:
        escalation = session.scalars(
            select(Timer).where(Timer.action_id == action.id, Timer.kind == ESCALATION).limit(1)
        ).first()
        steps = escalation.chain["steps"] if escalation else []
        first = next((e for e in steps if e["notify"] and e["reason"] != EXPIRY_WARNING), None)
        _done(session, timer, now)
        if first is None:
            return
        timing = {"step": "ack_timeout", "late": now - timer.due_at > self.late_after}
        self._notify(session, action, {**first, "reason": "ack_timeout"}, timing, now)

    def _resolve(self, entries: Sequence[str], *, exclude: str | None) -> list[str]:
        people: list[str] = []
        for entry in entries:
            members = sorted(self.directory.members(entry)) if entry.startswith("@") else [entry]
            people.extend(person for person in members if person != exclude and person not in people)
        return people


def _done(session: Session, timer: Timer, now: datetime) -> None:
    """The timer's chain has nothing more to do. Not audited on its own: its action's events
    (`escalation.notified`, `action.expired`, the decision) say what happened."""
    machine.move(session, timer, TimerState.DONE, actor=SYSTEM, now=now, audited=False)


def _name_tasks(session: Session, actions: Sequence[Action]) -> None:
    """Read the batch's tasks in one query, so that naming each action's task in its audit event
    (`machine.action_task_public_id`, remembered per session) costs no query of its own."""
    tasks = {task.id: task for task in session.scalars(select(Task).where(Task.id.in_({a.task_id for a in actions})))}
    for action in actions:
        if action.task_id in tasks:  # in the session's identity map while `tasks` holds it: no query
            machine.action_task_public_id(session, action)


def _acknowledged_at(session: Session, action_ids: Sequence[int]) -> dict[int, datetime]:
    """When each of these actions was acknowledged (those that were): one query for a batch."""
    if not action_ids:
        return {}
    query = (
        select(Decision.action_id, func.min(Decision.at))
        .where(Decision.action_id.in_(action_ids), Decision.kind == "acknowledge")
        .group_by(Decision.action_id)
    )
    return {action_id: at for action_id, at in session.execute(query)}


def _acknowledged(acknowledged_at: datetime | None, chain: dict[str, Any], now: datetime) -> bool:
    """Whether an acknowledgement still holds the chain's notify steps back."""
    if acknowledged_at is None:
        return False
    timeout = chain.get("ack_timeout_s")
    return timeout is None or now < acknowledged_at + timedelta(seconds=timeout)
