"""Every lifecycle in one shape: a StrEnum, one transition table, the named sets of states
the code asks about, each defined once, here, next to its table (DESIGN.md's lifecycle).

The tables say only what the code does: each edge has a caller (`tests/core/test_states.py`
checks it, and that every state is reachable from where rows start). Moving a row is
`approvals.machine.move`: a compare-and-set fenced on the expected state, with its audit
event and outbox rows in the caller's transaction. The enums live in `core` because the
schema, retention and metrics read states too; `core` may not import the domain packages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from core.errors import InvalidTransition

S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Machine(Generic[S]):
    """One lifecycle: its name (for errors and the ledger's kinds), the states rows are
    created in, and the table of allowed moves."""

    name: str
    start: frozenset[S]
    table: Mapping[S, frozenset[S]]

    def check(self, subject: str, current: str, target: S) -> None:
        """Raise `InvalidTransition` unless the table allows current → target."""
        states = {state.value: state for state in self.table}
        if current not in states or target not in self.table[states[current]]:
            raise InvalidTransition(self.name, subject, current, target)

    def reachable(self) -> set[S]:
        """Every state some row can be in: the start states and all they lead to."""
        seen, todo = set(self.start), list(self.start)
        while todo:
            for after in self.table[todo.pop()]:
                if after not in seen:
                    seen.add(after)
                    todo.append(after)
        return seen


# -- actions --------------------------------------------------------------------------------


class ActionState(StrEnum):
    DRAFTED = "drafted"
    PENDING = "pending"  # waits for approval (hitl, or low confidence)
    SCHEDULED = "scheduled"  # hotl: runs at run_at unless vetoed
    APPROVED = "approved"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Crashed or timed out mid-run (or an API client's claim expired) and the tool is not
    # idempotent: a person says whether it ran (`approvals.resolutions`).
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    VETOED = "vetoed"
    EXPIRED = "expired"
    REFUSED = "refused"  # out-of-scope tool or invalid params: never reaches a person
    CANCELLED = "cancelled"


A = ActionState
ACTION = Machine(
    "action",
    frozenset({A.DRAFTED}),
    {
        # drafted → approved: an `auto` action asked for through the actions API waits for its
        # client's claim (the executor never runs an external tool)
        A.DRAFTED: frozenset({A.PENDING, A.SCHEDULED, A.EXECUTING, A.APPROVED, A.REFUSED, A.CANCELLED}),
        A.PENDING: frozenset({A.APPROVED, A.REJECTED, A.EXPIRED, A.CANCELLED}),
        # back to pending: re-gated when its task type is demoted during the veto window
        A.SCHEDULED: frozenset({A.EXECUTING, A.VETOED, A.CANCELLED, A.PENDING}),
        A.APPROVED: frozenset({A.EXECUTING, A.CANCELLED}),
        A.EXECUTING: frozenset({A.SUCCEEDED, A.FAILED, A.UNKNOWN}),
        A.SUCCEEDED: frozenset(),
        A.FAILED: frozenset(),
        # a person resolves it: it ran, it did not run, or (a decision like an approval) run it again
        A.UNKNOWN: frozenset({A.SUCCEEDED, A.FAILED, A.APPROVED}),
        A.REJECTED: frozenset(),
        A.VETOED: frozenset(),
        A.EXPIRED: frozenset(),
        A.REFUSED: frozenset(),
        A.CANCELLED: frozenset(),
    },
)
# A person's decision is still awaited (the card has buttons; its chain may fire).
OPEN_FOR_DECISION = frozenset({A.PENDING, A.SCHEDULED})
# Not started running: stopping its task cancels it.
NOT_STARTED = frozenset({A.DRAFTED, A.PENDING, A.SCHEDULED, A.APPROVED})
# Still on its way, so its task waits for it (an unknown one waits for a person).
IN_FLIGHT = NOT_STARTED | {A.EXECUTING, A.UNKNOWN}
# Handed to the executor and not ended: a stall there means no executor is running.
WITH_EXECUTOR = frozenset({A.APPROVED, A.EXECUTING})


# -- tasks ----------------------------------------------------------------------------------


class TaskState(StrEnum):
    RUNNING = "running"  # the model is due to be asked (next_step_at)
    WAITING = "waiting"  # for the actions of the current turn to end
    PAUSED = "paused"  # a budget or loop stop, or the router asks its type: a person acts
    STALLED = "stalled"  # the model has been unavailable too long; still retried
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Holds one action no agent drafted (asked for through the actions API, or an Undo's
    # compensation): no agent works on it, it never moves.
    EXTERNAL = "external"


T = TaskState
# Whatever a model step ends in, from running or from stalled (a stalled task is still asked).
_STEP_ENDS = frozenset({T.RUNNING, T.WAITING, T.PAUSED, T.SUCCEEDED, T.FAILED, T.CANCELLED})
TASK = Machine(
    "task",
    frozenset({T.RUNNING, T.EXTERNAL}),
    {
        # running → running: the router placed it (the type changes, the state does not)
        T.RUNNING: _STEP_ENDS | {T.STALLED},
        T.STALLED: _STEP_ENDS,
        T.WAITING: frozenset({T.RUNNING, T.CANCELLED}),
        T.PAUSED: frozenset({T.RUNNING, T.CANCELLED}),
        T.SUCCEEDED: frozenset(),
        T.FAILED: frozenset(),
        T.CANCELLED: frozenset(),
        T.EXTERNAL: frozenset(),
    },
)
FINISHED = frozenset({T.SUCCEEDED, T.FAILED, T.CANCELLED})
# Due a model step when its next_step_at comes.
STEPPING = frozenset({T.RUNNING, T.STALLED})
# Expected to move on its own: one that does not for its type's stall_after is escalated.
MOVING = STEPPING | {T.WAITING}


# -- timers ---------------------------------------------------------------------------------


class TimerState(StrEnum):
    PENDING = "pending"  # its next step is due at due_at
    DONE = "done"  # its chain ended, or the action was decided


TIMER = Machine(
    "timer",
    frozenset({TimerState.PENDING}),
    {TimerState.PENDING: frozenset({TimerState.DONE}), TimerState.DONE: frozenset()},
)


# -- promotion proposals --------------------------------------------------------------------


class ProposalState(StrEnum):
    OPEN = "open"  # admins may sign (promote) or dismiss it
    PROMOTED = "promoted"
    DISMISSED = "dismissed"
    STALE = "stale"  # the level changed another way first


P = ProposalState
PROPOSAL = Machine(
    "proposal",
    frozenset({P.OPEN}),
    {
        P.OPEN: frozenset({P.PROMOTED, P.DISMISSED, P.STALE}),
        P.PROMOTED: frozenset(),
        P.DISMISSED: frozenset(),
        P.STALE: frozenset(),
    },
)

# -- questions (a HumanLayer contact request, answered in Slack) -----------------------------


class QuestionState(StrEnum):
    OPEN = "open"  # posted with its Answer button
    ANSWERED = "answered"  # a person answered it; the answer is final


QUESTION = Machine(
    "question",
    frozenset({QuestionState.OPEN}),
    {QuestionState.OPEN: frozenset({QuestionState.ANSWERED}), QuestionState.ANSWERED: frozenset()},
)

MACHINES: tuple[
    Machine[ActionState] | Machine[TaskState] | Machine[TimerState] | Machine[ProposalState] | Machine[QuestionState],
    ...,
] = (
    ACTION,
    TASK,
    TIMER,
    PROPOSAL,
    QUESTION,
)
