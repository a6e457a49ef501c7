"""Performing escalation steps as they come due, each exactly once.

`run_once()` claims one due timer (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas
share the work), re-checks its action, performs one step and moves the timer on, with the
audit event and outbox rows, in one transaction. A step found more than `late_after` past
its due time (the process was down) still fires once, marked late in the audit. No truth
lives in memory: a restart resumes from the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from approvals import machine
from approvals.chains import ACK_TIMEOUT, ESCALATION, due_at
from approvals.ports import Directory
from core import metrics
from core.clock import Clock
from core.ids import SYSTEM
from core.messages import ActionExpired, Reminded
from core.models import Action, Decision, Timer
from core.states import OPEN_FOR_DECISION, ActionState, TimerState


class Sweeper:
    def __init__(
        self, sessions: sessionmaker[Session], directory: Directory, clock: Clock, *, late_after_s: float = 2.0
    ) -> None:
        self.sessions, self.directory, self.clock = sessions, directory, clock
        self.late_after = timedelta(seconds=late_after_s)

    def run_once(self) -> bool:
        now = self.clock.now()
        with self.sessions.begin() as session:
            timer = session.scalars(
                select(Timer)
                .where(Timer.state == TimerState.PENDING, Timer.due_at <= now)
                .order_by(Timer.due_at, Timer.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if timer is None:
                return False
            action = session.scalars(
                select(Action)
                .where(Action.id == timer.action_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one()
            if action.state not in OPEN_FOR_DECISION:
                _done(session, timer, now)  # decided meanwhile: nothing more to escalate
            elif timer.kind == ACK_TIMEOUT:
                self._ack_timed_out(session, timer, action, now)
            else:
                self._step(session, timer, action, now)
            timer.fence += 1
            timer.updated_at = now
        return True

    def run_until_idle(self, max_steps: int = 10_000) -> int:
        done = 0
        while done < max_steps and self.run_once():
            done += 1
        return done

    # -- steps --------------------------------------------------------------------------

    def _step(self, session: Session, timer: Timer, action: Action, now: datetime) -> None:
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
        if not self._acknowledged(session, action, chain, now):
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

    def _acknowledged(self, session: Session, action: Action, chain: dict[str, Any], now: datetime) -> bool:
        """Whether an acknowledgement still holds the chain's notify steps back."""
        ack = session.scalars(
            select(Decision).where(Decision.action_id == action.id, Decision.kind == "acknowledge").limit(1)
        ).first()
        if ack is None:
            return False
        timeout = chain.get("ack_timeout_s")
        return timeout is None or now < ack.at + timedelta(seconds=timeout)

    def _ack_timed_out(self, session: Session, timer: Timer, action: Action, now: datetime) -> None:
        escalation = session.scalars(
            select(Timer).where(Timer.action_id == action.id, Timer.kind == ESCALATION).limit(1)
        ).first()
        first = next((e for e in (escalation.chain["steps"] if escalation else []) if e["notify"]), None)
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
