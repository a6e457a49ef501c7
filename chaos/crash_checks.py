"""The crash loop's checks, once a last server has settled everything: nothing ran twice, no
audit event went missing, nothing is stuck (see `chaos.crash_loop`).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from agent.executor import LOST_LEASE_NOTE
from chaos import _crash_support as support
from chaos.common import COUNTERSIGN
from core.models import Action, AuditEvent, Decision, OutboxMessage, Task, Timer


def busy(reader: Engine, now: datetime) -> dict[str, int]:
    """What is still due or under way, seen at `now` (the settling server's shifted clock)."""
    queries = {
        "tasks running": "SELECT COUNT(*) FROM tasks WHERE state IN ('running', 'stalled')",
        "actions moving": "SELECT COUNT(*) FROM actions WHERE state IN ('drafted', 'approved', 'executing')",
        "actions due": "SELECT COUNT(*) FROM actions WHERE state = 'scheduled' AND run_at <= :now",
        # ... or soon: drafts the settling server makes itself get to expire too
        "timers due": "SELECT COUNT(*) FROM timers WHERE state = 'pending' AND due_at <= :soon",
        "outbox undelivered": "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL",
    }
    stamp = now if reader.dialect.name == "postgresql" else now.replace(tzinfo=None)
    times = {"now": stamp, "soon": stamp + timedelta(seconds=20)}
    with reader.connect() as conn:
        found = {name: int(conn.execute(text(query), times).scalar_one()) for name, query in queries.items()}
    return {name: count for name, count in found.items() if count}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    replays: int = 0
    unknown: int = 0
    unknown_before_call: int = 0
    audit_events: int = 0
    verify: str = ""
    duplicates: int = 0
    lost_audit: int = 0
    stuck: int = 0

    def fail(self, column: str, problem: str) -> None:
        setattr(self, column, getattr(self, column) + 1)
        self.problems.append(f"{column}: {problem}")


def check(reader: Engine, env: dict[str, str], workdir: Path, now: datetime) -> Report:
    report = Report()
    verify = subprocess.run(  # noqa: S603 - our own CLI
        [COUNTERSIGN, "audit", "verify"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    lines = (verify.stdout + verify.stderr).strip().splitlines()
    report.verify = lines[-1] if lines else f"audit verify exited {verify.returncode}"
    if verify.returncode != 0:
        report.fail("lost_audit", f"audit verify exited {verify.returncode}: {verify.stdout}{verify.stderr}")
    with reader.connect() as conn:
        actions = conn.execute(select(Action)).all()
        tasks = conn.execute(select(Task.public_id, Task.id, Task.state)).all()
        events = conn.execute(
            select(
                AuditEvent.seq,
                AuditEvent.action_public_id.label("action_public_id"),  # the column keeps its name, action_id
                AuditEvent.kind,
                AuditEvent.from_state,
                AuditEvent.to_state,
            )
            .where(AuditEvent.action_public_id.is_not(None))
            .order_by(AuditEvent.seq)
        ).all()
        report.audit_events = int(conn.execute(text("SELECT COUNT(*) FROM audit_events")).scalar_one())
        calls = conn.execute(select(support.CALLS)).all()
        effects = conn.execute(select(support.EFFECTS)).all()
        decisions = conn.execute(select(Decision.action_id, Decision.kind)).all()
        timers = conn.execute(select(Timer.action_id, Timer.state)).all()
        undelivered = conn.execute(select(OutboxMessage.id).where(OutboxMessage.delivered_at.is_(None))).all()
    by_action: dict[str, list[Any]] = {}
    for event in events:
        by_action.setdefault(event.action_public_id, []).append(event)
    calls_by_ref: dict[str, list[Any]] = {}
    for call in calls:
        calls_by_ref.setdefault(call.ref, []).append(call)
    effects_by_ref: Counter[str] = Counter(effect.ref for effect in effects)
    effects_by_key: Counter[str] = Counter(effect.key for effect in effects if effect.key)
    decided = {(row.action_id, row.kind) for row in decisions}
    open_timers = {row.action_id for row in timers if row.state == "pending"}
    refs = set()
    for action in actions:
        report.states[action.state] += 1
        ref = str((action.params or {}).get("ref", ""))
        refs.add(ref)
        _check_audit(report, action, by_action.get(action.public_id, []))
        _check_effects(report, action, calls_by_ref.get(ref, []), effects_by_ref[ref], effects_by_key)
        _check_settled(report, action, now, decided, open_timers)
    for ref in set(calls_by_ref) - refs:
        report.fail("duplicates", f"tool calls for ref {ref!r}, which no action has")
    # A task may wait on a person: an action pending (a demotion re-gates scheduled ones) or unknown.
    waiting_on_people = {action.task_id for action in actions if action.state in ("pending", "unknown")}
    for task in tasks:
        report.tasks[task.state] += 1
        if task.state in ("running", "stalled", "paused"):
            report.fail("stuck", f"task {task.public_id} is {task.state} after settling")
        elif task.state == "waiting" and task.id not in waiting_on_people:
            report.fail("stuck", f"task {task.public_id} waits, but none of its actions waits for a person")
    if undelivered:
        report.fail("stuck", f"{len(undelivered)} outbox rows undelivered after settling")
    return report


def _check_audit(report: Report, action: Any, events: list[Any]) -> None:
    if not events:
        report.fail("lost_audit", f"{action.public_id} ({action.state}) has no audit event")
        return
    last = events[-1]
    if last.to_state != action.state:
        report.fail(
            "lost_audit",
            f"{action.public_id} is {action.state}, its latest audit event ({last.kind}) says {last.to_state}",
        )
    previous = None
    for event in events:
        moved = event.from_state is not None and event.from_state != event.to_state
        if moved and previous is not None and event.from_state != previous:
            report.fail(
                "lost_audit",
                f"{action.public_id}: event {event.seq} ({event.kind}) moves from {event.from_state}, "
                f"but the previous event left it {previous}",
            )
        previous = event.to_state


def _check_effects(report: Report, action: Any, calls: list[Any], effects: int, effects_by_key: Counter[str]) -> None:
    name = f"{action.public_id} ({action.tool}, {action.state})"
    ran_states = {"executing", "succeeded", "failed", "unknown"}
    if calls and action.state not in ran_states:
        report.fail("duplicates", f"{name}: the tool ran {len(calls)}x, but the action was never run")
    if action.idempotent:
        keyed = effects_by_key[action.public_id]
        report.replays += max(0, len(calls) - 1)
        if keyed > 1 or effects > 1:
            report.fail("duplicates", f"{name}: {keyed} effects for one idempotency key")
        if action.state == "succeeded" and keyed != 1:
            report.fail("duplicates", f"{name}: succeeded with {keyed} effects")
        return
    if len(calls) > 1 or effects > 1:
        report.fail("duplicates", f"{name}: a non-idempotent tool ran {len(calls)}x ({effects} effects)")
    if action.state == "unknown" and not calls:
        report.unknown_before_call += 1  # the executor died holding the lease, before the tool began
    if any(call.finished_at is None for call in calls) and action.state != "unknown":
        report.fail("duplicates", f"{name}: killed mid-call, but the action did not end unknown")
    if action.state == "succeeded" and effects != 1:
        report.fail("duplicates", f"{name}: succeeded with {effects} effects")


def _check_settled(report: Report, action: Any, now: datetime, decided: set[tuple[int, str]], timers: set[int]) -> None:
    name = f"{action.public_id} ({action.task_type}, {action.state})"
    state = action.state
    if state in ("drafted", "approved", "executing"):
        report.fail("stuck", f"{name} after settling (lease {action.lease_owner!r} until {action.lease_until})")
    elif state == "scheduled" and action.run_at is not None and action.run_at.replace(tzinfo=UTC) <= now:
        report.fail("stuck", f"{name}: its veto window ended at {action.run_at}, but it never ran")
    elif state == "pending" and action.task_type[:4] in ("idem", "once") and action.id not in timers:
        report.fail("stuck", f"{name}: pending without its escalation timer")
    elif state == "unknown":
        report.unknown += 1
        if action.idempotent or action.error != LOST_LEASE_NOTE:
            report.fail("stuck", f"{name}: unknown, not from a non-idempotent tool losing its lease: {action.error!r}")
    for state_kind, decision in (("approved", "approve"), ("rejected", "reject"), ("vetoed", "veto")):
        if state == state_kind and (action.id, decision) not in decided:
            report.fail("lost_audit", f"{name}: no {decision} decision recorded")
