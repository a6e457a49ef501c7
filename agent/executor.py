"""The executor: runs each action's tool once, outside any transaction, under a lease.

A claim is one short transaction that finds a small batch of due actions in one statement and
moves each to `executing` (or takes the lease of an executing one) with `lease_owner` = this
executor and `lease_until` = now + the time it may wait its turn (the timeouts of the tools
claimed before it, at most `max_queue_s`) + its timeout + grace. The tools then run one by
one, each in a daemon thread with its action's timeout, and each outcome is written in a new
transaction fenced on `lease_owner`: a late writer whose lease was taken over changes nothing.

If an executor dies mid-call, its lease expires. An idempotent tool is then run again with
the same idempotency key (the action's public id); a tool that is not idempotent is never
run twice: the action goes to `unknown` and a person resolves it.

A tool that declares secrets gets them just before it runs (`agent.run_secrets`: vault
reads, each use audited, a person's expired OAuth token refreshed first); a secret that is
not set, or a refresh that fails, fails the action without calling the tool, and the
`action.failed` message names the person whose credential it is. Known secret values are
scrubbed from the result and the error before either is stored, audited or sent anywhere.

One `Executor` instance serves one thread; run several instances (threads, processes,
replicas) to run actions in parallel.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal, cast

from pydantic_core import to_jsonable_python
from sqlalchemy import Integer, Select, bindparam, literal, select, union_all
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased, sessionmaker

from agent.delegation import CredentialError, Delegation
from agent.errors import InvalidParams, RetryableError, ToolTimeout, UnknownTool
from agent.run_secrets import Caller, RunSecrets
from agent.tools import Secrets, ToolRegistry
from agent.turns import hand_back
from agent.vault import Scrubber, Vault, VaultError
from agent.worker import Wakeup
from approvals import machine
from core import metrics
from core.clock import Clock
from core.db import compare_and_set
from core.errors import InvalidTransition, StaleState
from core.ids import SYSTEM
from core.messages import ActionEnded, ActionFailed, ActionSucceeded, ActionUnknown
from core.models import Action, Task
from core.states import ACTION, ActionState

log = logging.getLogger(__name__)

LOST_LEASE_NOTE = "executor lost its lease mid-run; the tool is not idempotent, so it is not re-run"
CLAIM_EXPIRED_NOTE = "the API client's claim expired without a result; a person resolves it, it is not re-run"
_DEFAULT_TIMEOUT_S = 30.0
_MAX_RACES_PER_CLAIM = 100
# A claim takes up to DEFAULT_BATCH due actions in one transaction, as long as the tools before
# the last one could keep it waiting at most DEFAULT_MAX_QUEUE_S (their timeouts): its lease
# covers that wait, so an executor that dies leaves the queued ones to others that much later.
DEFAULT_BATCH, DEFAULT_MAX_QUEUE_S = 8, 60.0
S = ActionState
ENDINGS: dict[ActionState, type[ActionEnded]] = {
    S.SUCCEEDED: ActionSucceeded,
    S.FAILED: ActionFailed,
    S.UNKNOWN: ActionUnknown,
}
Kind = Literal["approved", "scheduled", "due", "expired"]
# The column whose value says since when an action of each kind has been waiting.
_DUE_COLUMN: dict[Kind, str] = {
    "approved": "updated_at",
    "scheduled": "run_at",
    "due": "run_at",
    "expired": "lease_until",
}


@dataclass(frozen=True)
class Run:
    """What the tool call needs, copied out of the claim transaction (or the drafting one)."""

    id: int
    public_id: str
    tool: str
    params: dict[str, Any]
    attempt: int
    timeout_s: float
    idempotent: bool
    task_type: str
    requester: str | None
    decided_by: str | None
    lease_until: datetime  # as claimed; renewed if the run's turn comes too late for it
    task_id: int
    turn: int  # of its task: the outcome of a turn's last action hands the turn back


@dataclass(frozen=True)
class _Outcome:
    kind: Literal["succeeded", "retry", "failed", "unknown"]
    error: str | None = None
    result: dict[str, Any] | None = None
    tell: str | None = None  # a person to tell of a failure that is theirs to fix (their credential)
    data: dict[str, Any] | None = None  # added to the audit event of the outcome


RELEASED_NOTE = "the executor stopped before this tool started; its lease is given back for another to run it"


class Executor:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: ToolRegistry,
        clock: Clock,
        *,
        owner: str | None = None,
        max_attempts: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        lease_grace_s: float = 30.0,
        batch: int = DEFAULT_BATCH,
        max_queue_s: float = DEFAULT_MAX_QUEUE_S,
        rng: random.Random | None = None,
        vault: Vault | None = None,
        delegation: Delegation | None = None,
    ) -> None:
        self.sessions, self.registry, self.clock = sessions, registry, clock
        self.secrets = RunSecrets(sessions, clock, vault, delegation)
        self.owner = owner or f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.max_attempts, self.lease_grace_s = max_attempts, lease_grace_s
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        self.batch, self.max_queue_s = batch, max_queue_s
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self._rng = rng or random.Random()
        # Set when the process stops: claimed actions whose tool has not started are let go.
        self.stopping = threading.Event()
        # Actions claimed for this executor in the transactions that drafted them (`lease_for`),
        # to run next; the loop running this executor is woken by `wakeup` when one is handed over.
        self._handed: deque[Run] = deque()
        self.wakeup: Wakeup | None = None

    def run_until_idle(self, max_actions: int = 1000) -> int:
        """Run actions until none is due (or `max_actions` ran); returns how many were handled."""
        handled = 0
        while handled < max_actions:
            done = self._unit(min(self.batch, max_actions - handled))
            if not done:
                break
            handled += done
        return handled

    def run_once(self) -> bool:
        """Run the actions handed over, else claim a small batch of due actions and run them;
        returns whether there was one."""
        return self._unit(self.batch) > 0

    def _unit(self, limit: int) -> int:
        handed = [self._handed.popleft() for _ in range(min(limit, len(self._handed)))]
        if handed:
            self._run(handed)
            return len(handed)
        return self._run_batch(limit)

    def _run_batch(self, limit: int) -> int:
        """Claim up to `limit` due actions in one transaction, then run their tools one by one, each
        outcome recorded in its own transaction as soon as it is known; how many were handled."""
        lost_races: set[int] = set()
        while len(lost_races) < _MAX_RACES_PER_CLAIM:
            claiming: list[int] = []  # the candidate being claimed when a race is lost
            try:
                with self.sessions.begin() as session:
                    now = self.clock.now()
                    picked = self._pick(session, now, lost_races, limit)
                    if not picked:
                        return 0
                    runs, handled = self._claim_batch(session, picked, now, claiming)
            except (StaleState, InvalidTransition) as exc:
                if not claiming:
                    raise
                log.info("lost the race for an action, trying the next one: %s", exc)
                lost_races.add(claiming[-1])
                continue
            self._run(runs)
            return handled
        return 0

    def _run(self, runs: list[Run]) -> None:
        """Run claimed actions one by one; those not started when the process stops are given back."""
        for index, run in enumerate(runs):
            if self.stopping.is_set():
                self._release(runs[index:])
                return
            if self._still_leased(run):
                self._finish(run, self._execute(run))

    # -- actions claimed where they are drafted ----------------------------------------------

    def lease_for(self, action: Action, now: datetime) -> dict[str, Any] | None:
        """The lease to insert a drafted `auto` action with, claimed for this executor to run as
        soon as the drafting transaction commits (`claimed_drafted`, then `hand`): the claim
        costs no transaction, nor even a statement, of its own.

        Only for an idempotent tool, and while this executor keeps up (fewer than `batch` handed
        actions not started) and is not stopping; otherwise (None) the action is left to a
        claim, as any due one. A crash after the commit leaves it leased, as a crash after a
        claim does: whoever takes the expired lease runs it again with the same idempotency
        key, which is why a tool that is not idempotent is never claimed here (it would become
        `unknown` without having started)."""
        if self.stopping.is_set() or len(self._handed) >= self.batch or not action.idempotent:
            return None
        lease_until = now + timedelta(seconds=self._timeout_of(action) + self.lease_grace_s)
        return {"lease_owner": self.owner, "lease_until": lease_until, "attempts": 1}

    def claimed_drafted(self, session: Session, action: Action, now: datetime) -> Run | None:
        """The run of an action the gate inserted with `lease_for`'s lease (None for any other),
        its claim audited as any claim is (`execution.attempt`)."""
        if action.state != S.EXECUTING or action.lease_owner != self.owner or action.lease_until is None:
            return None
        data = {"attempt": action.attempts, "lease_owner": self.owner, "lease_until": action.lease_until.isoformat()}
        _audit(session, action, "execution.attempt", now, None, data)
        return _run_of(action, action.attempts, self._timeout_of(action), action.lease_until)

    def hand(self, runs: Sequence[Run]) -> None:
        """Queue actions claimed where they were drafted (`claimed_drafted`), once that has committed."""
        self._handed.extend(runs)
        if self.wakeup is not None:
            self.wakeup.wake()

    def give_back(self) -> None:
        """Release the handed actions whose tool has not started (the process stops)."""
        handed = []
        while self._handed:
            handed.append(self._handed.popleft())
        if not handed:
            return
        try:
            self._release(handed)
        except SQLAlchemyError:
            log.exception("giving back %d handed action(s) failed; their leases will expire", len(handed))

    # -- claiming ---------------------------------------------------------------------------

    def _pick(self, session: Session, now: datetime, skip: set[int], limit: int) -> list[tuple[Kind, Action]]:
        """Up to `limit` claimable actions, longest-due first, locked (skipping rows other
        executors hold): one statement (`_claimable`)."""
        values = {"now": now, "skip": sorted(skip), "limit": limit}
        return [(cast(Kind, kind), row) for row, kind in session.execute(_claimable(), values)]

    def _claim_batch(
        self, session: Session, picked: list[tuple[Kind, Action]], now: datetime, claiming: list[int]
    ) -> tuple[list[Run], int]:
        """Claim the picked actions in order, while the tools claimed so far could make the next
        one wait at most `max_queue_s`: its lease covers that wait (it counts its time in the
        queue, the timeouts of the tools before it) plus its own timeout and the grace. A lease
        that needs no tool call (an action that ends here) costs the queue nothing.

        A tool that is not idempotent is only ever claimed first, to start at once: had it to
        wait its turn, an executor dying meanwhile would leave it `unknown` for a person although
        it never began. The batch stops before it (an idempotent one left waiting is just run
        again by whoever takes its lease)."""
        runs: list[Run] = []
        handled, queued_s = 0, 0.0
        for kind, action in picked:
            if runs and (queued_s > self.max_queue_s or (kind != "expired" and not action.idempotent)):
                break
            claiming.append(action.id)
            run = self._claim(session, kind, action, now, queued_s)
            handled += 1
            if run is not None:
                runs.append(run)
                queued_s += run.timeout_s
        return runs, handled

    def _release(self, runs: list[Run]) -> None:
        """Give back the leases of claimed actions whose tool never started (the process is
        stopping): each is due again at once for any executor, its attempt not counted, fenced
        on this executor still holding it."""
        now = self.clock.now()
        with self.sessions.begin() as session:
            for run in runs:
                fence = (Action.state == S.EXECUTING, Action.lease_owner == self.owner)
                values = {"lease_owner": None, "lease_until": None, "run_at": now, "attempts": run.attempt - 1}
                if compare_and_set(session, Action, run.id, *fence, updated_at=now, **values):
                    action = session.get_one(Action, run.id)
                    _audit(session, action, "execution.released", now, RELEASED_NOTE, {"lease_owner": self.owner})
        log.info("stopping: released %d claimed action(s) whose tool had not started", len(runs))

    def _still_leased(self, run: Run) -> bool:
        """Whether the lease taken for `run` still covers its whole call (the tools before it ran
        within their timeouts: it does); if not, it is renewed from now, fenced on this executor
        still holding it. A lease taken over meanwhile is left to its new holder."""
        now = self.clock.now()
        if now + timedelta(seconds=run.timeout_s) <= run.lease_until:
            return True
        lease_until = now + timedelta(seconds=run.timeout_s + self.lease_grace_s)
        try:
            with self.sessions.begin() as session:
                fence = (Action.state == S.EXECUTING, Action.lease_owner == self.owner)
                if compare_and_set(session, Action, run.id, *fence, lease_until=lease_until, updated_at=now):
                    return True
        except SQLAlchemyError:
            log.exception("renewing the lease of %s failed; leaving it to its lease's expiry", run.public_id)
            return False
        log.warning("not running %s: its lease was taken over while it waited its turn", run.public_id)
        return False

    def _claim(self, session: Session, kind: Kind, action: Action, now: datetime, queued_s: float) -> Run | None:
        attempt = action.attempts + 1
        timeout_s = self._timeout_of(action)
        lease_until = now + timedelta(seconds=queued_s + timeout_s + self.lease_grace_s)
        lease = {"lease_owner": self.owner, "lease_until": lease_until, "attempts": attempt}
        data = {"attempt": attempt, "lease_owner": self.owner, "lease_until": lease_until.isoformat()}
        if kind in ("approved", "scheduled"):
            fence = [Action.run_at <= now] if kind == "scheduled" else []
            machine.move(session, action, S.EXECUTING, actor=SYSTEM, now=now, values=lease, data=data, fence=fence)
        elif kind == "due":
            self._update(session, action, now, lease, fence=[Action.lease_owner.is_(None), Action.run_at <= now])
            _audit(session, action, "execution.attempt", now, None, data)
        else:
            old_owner = action.lease_owner
            previous = {"previous_owner": old_owner, "lease_expired_at": _iso(action.lease_until)}
            fence = [Action.lease_owner == old_owner, Action.lease_until < now]
            if action.api_client_id is not None:
                self._end(session, action, now, S.UNKNOWN, CLAIM_EXPIRED_NOTE, data=previous, fence=fence)
                return None
            if not action.idempotent:
                self._end(session, action, now, S.UNKNOWN, LOST_LEASE_NOTE, data=previous, fence=fence)
                return None
            if action.attempts >= self.max_attempts:
                note = f"executor lost its lease on attempt {action.attempts} of {self.max_attempts}; giving up"
                self._end(session, action, now, S.FAILED, note, data=previous, fence=fence)
                return None
            self._update(session, action, now, lease, fence=fence)
            note = (
                f"executor {old_owner!r} lost its lease mid-run; the tool is idempotent, so it runs "
                f"again with the same idempotency key {action.public_id!r}"
            )
            _audit(session, action, "execution.recovered", now, note, {**previous, **data})
        return _run_of(action, attempt, timeout_s, lease_until)

    def _timeout_of(self, action: Action) -> float:
        if action.timeout_s > 0:
            return action.timeout_s
        return self.registry.get(action.tool).timeout_s if action.tool in self.registry else _DEFAULT_TIMEOUT_S

    # -- running and recording the outcome ----------------------------------------------------

    def _execute(self, run: Run) -> _Outcome:
        try:
            spec = self.registry.get(run.tool)
            spec.validate(run.params)  # the registry may have changed since the action was drafted
        except (UnknownTool, InvalidParams) as exc:
            return _Outcome("failed", f"{type(exc).__name__}: {exc}")
        granted: Secrets | None = None
        known: list[tuple[str, str]] = []  # (name, value) of every secret seen: the tool's, refresh tokens
        if spec.secrets:
            try:
                caller = Caller(run.id, run.task_type, run.requester, run.decided_by, run.attempt)
                granted = self.secrets.reveal(spec, caller, known)
            except CredentialError as exc:
                failed = _Outcome("failed", str(exc), tell=exc.owner, data={**exc.details, "owner": exc.owner})
                return _scrubbed(failed, Scrubber(known))
            except VaultError as exc:
                return _Outcome("failed", str(exc))
        outcome = _call_with_timeout(lambda: spec.call(run.params, idempotency_key=run.public_id, secrets=granted), run)
        if outcome is not None:
            return _scrubbed(outcome, Scrubber(known)) if known else outcome
        timeout = ToolTimeout(run.tool, run.timeout_s)
        if run.idempotent:
            return _Outcome("retry", _describe(timeout))
        note = "the tool is not idempotent, so it may or may not have taken effect and it is not re-run"
        return _Outcome("unknown", f"{timeout}; {note}")

    def _finish(self, run: Run, outcome: _Outcome) -> None:
        """Record the outcome, fenced on this executor's lease. When it ends the last action of its
        task's turn still in flight, the turn's results go back into the task's conversation in
        the same transaction (`agent.turns.hand_back`). The task is then locked first (tasks
        before their actions, as everywhere), read with its turn's actions in one statement; of
        two executors ending a turn's last two actions at once, the second to lock it sees the
        first's outcome (`hand_back` reads them again when the first read shows one in flight)."""
        ends = outcome.kind in ("succeeded", "failed") or (outcome.kind == "retry" and run.attempt >= self.max_attempts)
        try:
            with self.sessions.begin() as session:
                now = self.clock.now()
                task, turn = None, None
                if ends:
                    task, turn = _turn(session, run)
                    action = next((row for row in turn if row.id == run.id), None)
                else:
                    action = session.get(Action, run.id)
                if action is None or action.state != S.EXECUTING or action.lease_owner != self.owner:
                    holder = None if action is None else action.lease_owner
                    log.warning("dropping the outcome of %s: its lease is held by %r", run.public_id, holder)
                    return
                self._record_outcome(session, action, run, outcome, now)
                if task is not None:
                    hand_back(session, task, now, turn if task.turn == run.turn else None)
        except (StaleState, InvalidTransition) as exc:
            log.warning("dropping the outcome of %s: its lease was taken over (%s)", run.public_id, exc)

    def _record_outcome(self, session: Session, action: Action, run: Run, outcome: _Outcome, now: datetime) -> None:
        fence = [Action.lease_owner == self.owner]
        data: dict[str, Any] = {"attempt": run.attempt}
        error = outcome.error or outcome.kind
        metrics.EXECUTIONS.labels(action.tool, outcome.kind).inc()
        if outcome.kind == "succeeded":
            self._end(session, action, now, S.SUCCEEDED, None, data=data, fence=fence, result=outcome.result)
        elif outcome.kind == "retry" and run.attempt < self.max_attempts:
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(run.attempt - 1, 60))
            delay *= self._rng.uniform(0.5, 1.5)
            retry_at = now + timedelta(seconds=delay)
            values = {"lease_owner": None, "lease_until": None, "run_at": retry_at, "error": error}
            self._update(session, action, now, values, fence=fence)
            data.update(retry_at=retry_at.isoformat(), delay_s=delay)
            _audit(session, action, "execution.retry_scheduled", now, error, data)
        elif outcome.kind == "retry":
            note = f"gave up after {run.attempt} attempts: {error}"
            self._end(session, action, now, S.FAILED, note, data=data, fence=fence)
        else:
            target = S.FAILED if outcome.kind == "failed" else S.UNKNOWN
            data.update(outcome.data or {})
            self._end(session, action, now, target, error, data=data, fence=fence, tell=outcome.tell)

    def _end(
        self,
        session: Session,
        action: Action,
        now: datetime,
        target: ActionState,
        error: str | None,
        *,
        data: dict[str, Any],
        fence: Sequence[Any],
        result: dict[str, Any] | None = None,
        tell: str | None = None,
    ) -> None:
        """End an execution (`succeeded`, `failed` or `unknown`): lease cleared, error noted, message
        queued (naming a person to tell directly, when the failure is theirs to fix)."""
        values: dict[str, Any] = {"error": error, "lease_owner": None, "lease_until": None}
        if target == S.SUCCEEDED:
            values["result"] = result
        messages = [ENDINGS[target](action.public_id, tell)]
        machine.move(
            session,
            action,
            target,
            actor=SYSTEM,
            now=now,
            note=error,
            data=data,
            fence=fence,
            values=values,
            messages=messages,
        )

    def _update(
        self, session: Session, action: Action, now: datetime, values: dict[str, Any], *, fence: Sequence[Any]
    ) -> None:
        """Change an executing action without moving its state: compare-and-set on state and `fence`."""
        if not compare_and_set(
            session, Action, action.id, Action.state == S.EXECUTING, *fence, updated_at=now, **values
        ):
            raise StaleState(ACTION.name, action.public_id, action.state)


@cache
def _claimable() -> Select[Action, str]:
    """The claim query, built once with bound `now`, `skip` and `limit` (building it costs more
    than running it): a branch per kind of claim, each served by the (state, run_at) index and
    locking its own rows (PostgreSQL allows `FOR UPDATE` in a sub-select, not on a UNION). Rows
    a branch locked but the batch leaves out are free again when the claim commits."""
    now, limit = bindparam("now", type_=Action.run_at.type), bindparam("limit", type_=Integer)
    unskipped = Action.id.not_in(bindparam("skip", expanding=True, type_=Integer))
    # An action asked for through the actions API runs where its client runs it: the executor
    # only ends one whose client's claim expired without a result (`unknown`, never re-run).
    ours = Action.api_client_id.is_(None)
    conditions: dict[Kind, list[Any]] = {
        "approved": [Action.state == S.APPROVED, ours],
        "scheduled": [Action.state == S.SCHEDULED, Action.run_at <= now, ours],
        "due": [Action.state == S.EXECUTING, Action.lease_owner.is_(None), Action.run_at <= now, ours],
        "expired": [Action.state == S.EXECUTING, Action.lease_owner.is_not(None), Action.lease_until < now],
    }
    branches = []
    for kind, where in conditions.items():
        due_column = getattr(Action, _DUE_COLUMN[kind])
        branch = (
            select(Action, literal(kind).label("claim_kind"), due_column.label("claim_due"))
            .where(*where, unskipped)
            .order_by(due_column, Action.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        branches.append(select(branch.subquery()))
    candidates = union_all(*branches).subquery()
    action = aliased(Action, candidates)
    return select(action, candidates.c.claim_kind).order_by(candidates.c.claim_due, candidates.c.id).limit(limit)


def _run_of(action: Action, attempt: int, timeout_s: float, lease_until: datetime) -> Run:
    return Run(
        action.id,
        action.public_id,
        action.tool,
        dict(action.params),
        attempt,
        timeout_s,
        action.idempotent,
        action.task_type,
        action.requester,
        action.decided_by,
        lease_until,
        action.task_id,
        action.turn,
    )


def _call_with_timeout(call: Callable[[], Any], run: Run) -> _Outcome | None:
    """Run the tool in a daemon thread; None if it has not returned within the timeout.

    A thread cannot be stopped: a tool that overruns is abandoned and its late result ignored.
    """
    outcomes: list[_Outcome] = []

    def target() -> None:
        try:
            value = call()
        except RetryableError as exc:
            outcomes.append(_Outcome("retry", _describe(exc)))
        except BaseException as exc:  # noqa: BLE001 - whatever the tool raises is its failure
            outcomes.append(_Outcome("failed", _describe(exc)))
        else:
            outcomes.append(_Outcome("succeeded", result=_json_safe(value)))

    thread = threading.Thread(target=target, name=f"tool:{run.tool}:{run.public_id}", daemon=True)
    thread.start()
    thread.join(run.timeout_s)
    return None if thread.is_alive() or not outcomes else outcomes[0]


_TURN = (
    select(Task, Action)
    .join(Action, Action.task_id == Task.id)
    .where(Task.id == bindparam("task_id"), Action.turn == bindparam("turn"))
    .order_by(Action.id)
    .with_for_update(of=Task)
)


def _turn(session: Session, run: Run) -> tuple[Task | None, list[Action]]:
    """The run's task, locked, and the actions of the run's turn, in one statement (`_TURN`)."""
    rows = session.execute(_TURN, {"task_id": run.task_id, "turn": run.turn}).all()
    return (rows[0][0] if rows else None), [action for _, action in rows]


def _audit(session: Session, action: Action, kind: str, now: datetime, note: str | None, data: dict[str, Any]) -> None:
    """Audit an execution event that does not move the action's state."""
    machine.record(session, action, kind, actor=SYSTEM, now=now, from_state=S.EXECUTING, note=note, data=data)


def _scrubbed(outcome: _Outcome, scrubber: Scrubber) -> _Outcome:
    error = scrubber.text(outcome.error) if outcome.error is not None else None
    result = scrubber.data(outcome.result) if outcome.result is not None else None
    data = scrubber.data(outcome.data) if outcome.data is not None else None
    return replace(outcome, error=error, result=result, data=data)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json_safe(value: Any) -> dict[str, Any]:
    """The tool's return value as a JSON object: dicts as they are, anything else as {"value": …}."""
    try:
        jsonable = to_jsonable_python(value, fallback=repr)
        wrapped = jsonable if isinstance(jsonable, dict) else {"value": jsonable}
        json.dumps(wrapped, allow_nan=False)
    except (TypeError, ValueError):
        return {"value": repr(value)}
    return wrapped
