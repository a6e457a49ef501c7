"""The drafting loop, as a worker that holds no thread while a task waits.

A task is a row. `run_once()` does one unit of work and returns:
- **resume**: a `waiting` task whose current turn's actions have all ended gets their
  `tool_result`s appended as the next user message and becomes `running` (`agent.turns`;
  the executor does it itself when it ends a turn's last action);
- **step**: a due `running` (or `stalled`) task is leased, its budget checked, the model
  asked (outside any transaction), and the reply recorded together with the drafted
  actions, fenced on the lease. A reply that was recorded is never asked for again; a
  reply lost in a crash is asked for again by whoever takes the expired lease. With an
  `executor` of this process, the `auto` actions of idempotent tools are claimed for it in
  that same transaction and handed to it once committed (`Executor.lease_for`).

A step's lease is one statement (`UPDATE … RETURNING`, `FOR UPDATE SKIP LOCKED`), run outside
any transaction on PostgreSQL; it takes no step while a resume is due (turns finish first),
unless that resume is held by another. On SQLite a read without the write turn looks first,
so that an idle poll queues no click behind it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker
from structlog.contextvars import bound_contextvars

from agent import budget as budgets
from agent import router
from agent.conversation import model_request, split_input, tool_definitions
from agent.executor import Executor, Run
from agent.fallback import Drafted, FallbackDrafting, fallback_model
from agent.model import ModelClient, ModelReply, ModelRequest, ModelRequestError, ModelUnavailable
from agent.pricing import Price, cost_usd
from agent.steps import loop_reason, trace, usage_after
from agent.tasks import UNROUTED, TaskError, move
from agent.tools import ToolRegistry
from agent.turns import hand_back
from approvals import machine
from approvals.gate import Draft, submit
from core import metrics
from core.clock import Clock
from core.config import Config, TaskTypeConfig
from core.db import reading
from core.ids import SYSTEM
from core.messages import TaskFinished, TaskPaused, TaskResumed, TaskStalled, TypeChoiceAsked
from core.models import Action, Task
from core.states import IN_FLIGHT, STEPPING, TaskState

log = logging.getLogger(__name__)


class AgentRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: Config,
        registry: ToolRegistry,
        model: ModelClient,
        clock: Clock,
        *,
        owner: str | None = None,
        lease_s: float = 300.0,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 120.0,
        loop_repeats: int = 3,
        loop_refusals: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions, self.config, self.registry, self.model, self.clock = sessions, config, registry, model, clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self.lease = timedelta(seconds=lease_s)
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.loop_repeats, self.loop_refusals = loop_repeats, loop_refusals
        self.rng = rng or random.Random()
        self.drafting = FallbackDrafting(model, config)
        self.prices = {
            name: Price(p.input, p.output, p.cache_read, p.cache_write) for name, p in config.model.prices.items()
        }
        self._tool_definitions: dict[str, list[dict[str, Any]]] = {}
        bind = sessions.kw["bind"]
        self._sqlite = bind.dialect.name == "sqlite"
        # Leases are taken by one statement; on PostgreSQL outside any transaction (one round
        # trip instead of BEGIN, a read, an UPDATE and COMMIT).
        self._leasing = (
            sessions
            if self._sqlite
            else sessionmaker(bind.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)
        )
        # The executor of this process, when one runs beside this runner (`bot.serve`): the
        # actions it can run at once are claimed for it where they are drafted.
        self.executor: Executor | None = None

    def run_once(self) -> bool:
        now = self.clock.now()
        if self._sqlite and not self._any(now):
            return False
        task = self._lease(now, after_resumes=True)
        if task is None:
            resumed = self._resume_next(now)
            if resumed is not None:
                return resumed
            task = self._lease(now, after_resumes=False)  # the resume due is another's: step meanwhile
            if task is None:
                return False
        with bound_contextvars(task_id=task.public_id, task_type=task.task_type or "unrouted"):
            plan = self._plan(task, now)
            return True if plan is None else self._ask(task, *plan)

    def _lease(self, now: datetime, *, after_resumes: bool) -> Task | None:
        with self._leasing.begin() as session:
            values = {"now": now, "owner": self.owner, "until": now + self.lease}
            return session.scalars(_lease_next(after_resumes), values).first()

    def run_until_idle(self, max_units: int = 1000) -> int:
        done = 0
        while done < max_units and self.run_once():
            done += 1
        return done

    def _any(self, now: datetime) -> bool:
        """Whether a task is due a resume or a step, read without the write turn (SQLite): an idle
        poll of the four agent threads must not queue a click's transaction."""
        ready, due = select(Task.id).where(_ready()).exists(), select(Task.id).where(_due(Task, now)).exists()
        with reading(self.sessions) as session:
            return bool(session.scalar(select(or_(ready, due))))

    def _resume_next(self, now: datetime) -> bool | None:
        """Hand a finished turn back to its task's conversation (one whose last action did not end
        in an executor of this process): whether it did; None when one is due but another
        transaction holds it."""
        if not self._sqlite:
            with self._leasing() as session:  # a look first, without a transaction
                if not session.scalar(_resumes()[0]):
                    return False
        with self.sessions.begin() as session:
            task = session.scalars(_resumes()[1]).first()
            if task is None:
                return None if session.scalar(_resumes()[0]) else False
            hand_back(session, task, now)
            return True

    def _ask(self, task: Task, request: ModelRequest, task_type: TaskTypeConfig | None) -> bool:
        """One model call for a leased task, outside any transaction, and its recording; the
        actions claimed for this process's executor are handed to it once that commits."""
        task_id, started = task.id, time.perf_counter()
        fallback = fallback_model(self.config, task_type) if task_type is not None else None
        try:
            drafted = self.drafting.complete(request, fallback, self.clock.now(), task.unavailable_since)
        except ModelUnavailable as exc:
            log.warning("model unavailable: %s", exc)
            self._unavailable(task_id, exc)
            return True
        except ModelRequestError as exc:
            log.error("model refused the request: %s", exc)
            self._finish_failed(task_id, f"the model refused the request: {exc}")
            return True
        latency_ms = (time.perf_counter() - started) * 1000
        if task_type is None:
            self._record_route(task_id, drafted.reply, latency_ms)
        else:
            claimed = self._record(task, task_type, drafted, latency_ms)
            if claimed and self.executor is not None:
                self.executor.hand(claimed)
        return True

    def _plan(self, task: Task, now: datetime) -> tuple[ModelRequest, TaskTypeConfig | None] | None:
        """The model request the task just leased needs next (with its task type; None while it is
        unrouted), or None when it may not ask: then it is settled here."""
        if task.task_type == UNROUTED:
            return router.request(self.config, task.messages), None
        task_type = self.config.task_types.get(task.task_type)
        if task_type is None:
            self._settle(
                task,
                now,
                TaskState.FAILED,
                note=f"task type {task.task_type!r} is no longer configured",
                values={"lease_owner": None, "lease_until": None},
                messages=[TaskFinished(task.public_id)],
            )
            return None
        stop = budgets.over_task(task, task_type.budget)
        if stop is None and budgets.daily(task_type.budget):
            with reading(self.sessions) as session:
                stop = budgets.over_day(session, task, task_type.budget, now)
        if stop is not None:
            values = {"paused_reason": stop, "lease_owner": None, "lease_until": None, "next_step_at": None}
            messages = [TaskPaused(task.public_id, stop, "budget")]
            if self._settle(task, now, TaskState.PAUSED, note=stop, values=values, messages=messages):
                metrics.BUDGET_STOPS.labels(task.task_type, "budget").inc()
            return None
        return self._request(task, task_type), task_type

    def _settle(self, task: Task, now: datetime, target: TaskState, **move_args: Any) -> bool:
        """Move a task just leased to this runner that may not ask the model, fenced on the lease;
        whether it moved (a person may have stopped it meanwhile)."""
        try:
            with self.sessions.begin() as session:
                session.add(task)
                move(session, task, target, actor=SYSTEM, now=now, fence_owner=True, **move_args)
        except TaskError as exc:
            log.info("not settling task %s: %s", task.public_id, exc)
            return False
        return True

    def _record_route(self, task_id: int, reply: ModelReply, latency_ms: float) -> None:
        now = self.clock.now()
        with self.sessions.begin() as session:
            task = self._leased(session, task_id)
            if task is None:
                return
            cost = cost_usd(reply.model, reply.usage, self.prices)
            chosen = router.choice(self.config, reply)
            # What the router chose (None: unsure, the requester is asked), for `countersign usage`.
            choice = {"chosen": chosen.task_type, "confidence": chosen.confidence}
            trace(session, task, now, "route", reply, cost, latency_ms, choice)
            usage = usage_after(task, reply, cost)
            if chosen.task_type is None:
                reason = "which task type? the router was not sure"
                move(
                    session,
                    task,
                    TaskState.PAUSED,
                    actor=SYSTEM,
                    now=now,
                    note=reason,
                    values={**usage, "paused_reason": reason},
                    messages=[TypeChoiceAsked(task.public_id, sorted(self.config.task_types), task.requester)],
                    fence_owner=True,
                )
            else:
                move(
                    session,
                    task,
                    TaskState.RUNNING,
                    actor=SYSTEM,
                    now=now,
                    note=f"routed to {chosen.task_type} (confidence {chosen.confidence:.2f})",
                    values={**usage, "task_type": chosen.task_type, "next_step_at": now},
                    fence_owner=True,
                )

    def _request(self, task: Task, task_type: TaskTypeConfig) -> ModelRequest:
        return model_request(self.config, task, task_type, self._tools(task.task_type, task_type))

    def _tools(self, name: str, task_type: TaskTypeConfig) -> list[dict[str, Any]]:
        """The task type's tool definitions, built once: the config and registry don't change."""
        if name not in self._tool_definitions:
            self._tool_definitions[name] = tool_definitions(task_type, self.registry)
        return self._tool_definitions[name]

    def _leased(self, session: Session, task_id: int) -> Task | None:
        """The task, locked, if this runner still holds its lease (else someone took over)."""
        task = session.scalars(
            select(Task).where(Task.id == task_id).with_for_update().execution_options(populate_existing=True)
        ).first()
        if task is None or task.lease_owner != self.owner or task.state not in STEPPING:
            return None
        return task

    def _record(self, task: Task, task_type: TaskTypeConfig, drafted: Drafted, latency_ms: float) -> list[Run]:
        """Record the reply and draft its actions; returns those claimed for the executor.

        The task is taken as it was claimed, not read again: its lease makes this runner its
        only writer but for a stall or a stop, and each write of the step follows the task's
        move, fenced on the lease and on the state it was claimed in. Should that move lose
        (the task was stalled or stopped meanwhile), nothing is written and the step is
        recorded from the task as it now is, read under a lock (`_leased`)."""
        task_id = task.id
        try:
            return self._record_step(task_id, task, task_type, drafted, latency_ms)
        except TaskError:
            return self._record_step(task_id, None, task_type, drafted, latency_ms)

    def _record_step(
        self, task_id: int, claimed: Task | None, task_type: TaskTypeConfig, drafted: Drafted, latency_ms: float
    ) -> list[Run]:
        now = self.clock.now()
        reply = drafted.reply
        # The trace says which model drafted; a fallback's step also names the primary that failed.
        noted = {"fallback": True, "primary": drafted.primary} if drafted.fallback else None
        runs: list[Run] = []
        with self.sessions.begin() as session:
            if claimed is not None:
                session.add(claimed)
                task: Task | None = claimed
            else:
                task = self._leased(session, task_id)
            if task is None:
                return runs
            cost = cost_usd(reply.model, reply.usage, self.prices)
            usage = usage_after(task, reply, cost)
            if task.state == TaskState.STALLED:
                machine.record(
                    session,
                    task,
                    "task.model_available",
                    actor=SYSTEM,
                    now=now,
                    note="the model answers again",
                    messages=[TaskResumed(task.public_id, "model_available")],
                )
            loop = loop_reason(
                session,
                self.registry,
                task,
                task_type,
                reply,
                max_repeats=self.loop_repeats,
                max_refusals=self.loop_refusals,
            )
            if loop is not None:
                # The reply is kept in the trace, not in the conversation: a tool_use without
                # its tool_result would make the next request invalid.
                move(
                    session,
                    task,
                    TaskState.PAUSED,
                    actor=SYSTEM,
                    now=now,
                    note=loop,
                    values={**usage, "paused_reason": loop},
                    messages=[TaskPaused(task.public_id, loop, "loop")],
                    fence_owner=True,
                )
                trace(session, task, now, "model_call", reply, cost, latency_ms, noted)
                metrics.BUDGET_STOPS.labels(task.task_type, "loop").inc()
                return runs
            turn = task.turn + 1
            values = {
                **usage,
                "turn": turn,
                "messages": [*task.messages, {"role": "assistant", "content": reply.content}],
            }
            if not reply.tool_uses:
                move(
                    session,
                    task,
                    TaskState.SUCCEEDED,
                    actor=SYSTEM,
                    now=now,
                    note=reply.text[:500] or None,
                    values={**values, "final_text": reply.text},
                    messages=[TaskFinished(task.public_id, text=reply.text)],
                    fence_owner=True,
                )
                trace(session, task, now, "model_call", reply, cost, latency_ms, noted)
                return runs
            move(session, task, TaskState.WAITING, actor=SYSTEM, now=now, values=values, fence_owner=True)
            trace(session, task, now, "model_call", reply, cost, latency_ms, noted)
            executor = self.executor
            for use in reply.tool_uses:
                params, rationale, confidence = split_input(use.get("input"))
                action = submit(
                    session,
                    task,
                    Draft(str(use.get("name")), params, rationale, confidence, reply.model, drafted.fallback),
                    task_type=task_type,
                    catalog=self.registry,
                    now=now,
                    turn=turn,
                    tool_use_id=str(use.get("id")),
                    admins=self.config.slack.admins,
                    claim=None if executor is None else lambda drafted: executor.lease_for(drafted, now),
                )
                run = None if executor is None else executor.claimed_drafted(session, action, now)
                if run is not None:
                    runs.append(run)
        return runs

    def _unavailable(self, task_id: int, exc: ModelUnavailable) -> None:
        now = self.clock.now()
        with self.sessions.begin() as session:
            task = self._leased(session, task_id)
            if task is None:
                return
            failures = task.model_failures + 1
            since = task.unavailable_since or now
            delay = exc.retry_after_s if exc.retry_after_s is not None else self._backoff(failures)
            values: dict[str, Any] = {
                "model_failures": failures,
                "unavailable_since": since,
                "next_step_at": now + timedelta(seconds=delay),
                "lease_owner": None,
                "lease_until": None,
            }
            error = {"error": str(exc), "status": exc.status, "failures": failures}
            trace(session, task, now, "model_error", None, 0.0, None, error)
            if task.state == TaskState.RUNNING and now - since >= self.config.model.outage_limit:
                reason = f"paused: model unavailable since {since.isoformat(timespec='seconds')} ({exc})"
                _stall(session, task, now, reason, values, fence_owner=True)
            else:
                for name, value in values.items():
                    setattr(task, name, value)

    def stall_overdue(self, *, batch: int = 100) -> int:
        """Mark stalled the running tasks due for a model call longer than the outage limit: a call
        that hangs (or a backlog behind it) holds a task without any call failing, and its people
        must hear of it all the same. A task stalled here resumes on its next answer."""
        now = self.clock.now()
        limit = self.config.model.outage_limit
        with self.sessions.begin() as session:
            overdue = session.scalars(
                select(Task)
                .where(Task.state == TaskState.RUNNING, Task.next_step_at <= now - limit)
                .order_by(Task.next_step_at, Task.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            for task in overdue:
                since = task.unavailable_since or task.next_step_at or now
                reason = f"paused: no answer from the model since {since.isoformat(timespec='seconds')}"
                _stall(session, task, now, reason, {"unavailable_since": since})
        return len(overdue)

    def _finish_failed(self, task_id: int, reason: str) -> None:
        now = self.clock.now()
        with self.sessions.begin() as session:
            task = self._leased(session, task_id)
            if task is not None:
                told = [TaskFinished(task.public_id, error=reason)]
                values = {"lease_owner": None, "paused_reason": reason}
                move(session, task, TaskState.FAILED, actor=SYSTEM, now=now, note=reason, values=values, messages=told,
                     fence_owner=True)  # fmt: skip

    def _backoff(self, failures: int) -> float:
        return min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (failures - 1)) * self.rng.uniform(0.5, 1.5)


def _ready(task: Any = Task) -> Any:
    """`task` (the table or an alias) waits and none of its current turn's actions is in flight:
    due a resume."""
    turn_open = exists().where(Action.task_id == task.id, Action.turn == task.turn, Action.state.in_(IN_FLIGHT))
    return and_(task.state == TaskState.WAITING, ~turn_open)


def _due(task: Any, now: Any) -> Any:
    """`task` is running (or stalled), due a model step, and its lease, if any, has expired."""
    return and_(
        task.state.in_(STEPPING),
        task.next_step_at <= now,
        or_(task.lease_owner.is_(None), task.lease_until < now),
    )


@cache
def _lease_next(after_resumes: bool) -> Any:
    """Lease the task due a step the longest to `owner` until `until` (unless, `after_resumes`, a
    resume is due: turns are finished first), returning it: one statement (`FOR UPDATE SKIP
    LOCKED` in its sub-select), built once with `now`, `owner` and `until` bound. On PostgreSQL
    it runs alone, outside a transaction: one round trip, atomic by itself."""
    candidate, waiting = aliased(Task), aliased(Task)
    due = (
        select(candidate.id)
        .where(_due(candidate, bindparam("now", type_=Task.next_step_at.type)))
        .order_by(candidate.next_step_at, candidate.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    guard = [~select(waiting.id).where(_ready(waiting)).exists()] if after_resumes else []
    return (
        update(Task)
        .where(Task.id == due, *guard)
        .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"))
        .returning(Task)
        .execution_options(synchronize_session=False)
    )


@cache
def _resumes() -> tuple[Any, Any]:
    """Whether a task is due a resume, and the one due longest, locked (`SKIP LOCKED`): built once."""
    look = select(select(Task.id).where(_ready()).exists())
    locked = select(Task).where(_ready()).order_by(Task.updated_at, Task.id).limit(1).with_for_update(skip_locked=True)
    return look, locked


def _stall(
    session: Session, task: Task, now: datetime, reason: str, values: dict[str, Any], *, fence_owner: bool = False
) -> None:
    """Running → stalled while the model does not answer; the task's people are told."""
    told = [TaskStalled(task.public_id, reason, "model_unavailable")]
    move(session, task, TaskState.STALLED, actor=SYSTEM, now=now, note=reason, values=values, messages=told,
         fence_owner=fence_owner)  # fmt: skip
