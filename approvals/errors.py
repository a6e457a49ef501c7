"""Errors of the approvals package. Each names the action and the values involved."""

from __future__ import annotations

from datetime import datetime


class ApprovalsError(Exception):
    """Base of the gate's errors."""


class ActionNotFound(ApprovalsError):
    """No action has that public id."""

    def __init__(self, action_public_id: str) -> None:
        self.action_public_id = action_public_id
        super().__init__(f"no action {action_public_id!r}")


class InvalidTransition(ApprovalsError):
    """The lifecycle has no such move; nothing was changed."""

    def __init__(self, action_public_id: str, current: str, target: str) -> None:
        self.action_public_id, self.current, self.target = action_public_id, str(current), str(target)
        super().__init__(f"action {action_public_id!r} cannot go from {self.current!r} to {self.target!r}")


class StaleState(ApprovalsError):
    """The compare-and-set lost: someone else moved the action first; nothing was changed."""

    def __init__(self, action_public_id: str, expected: str) -> None:
        self.action_public_id, self.expected = action_public_id, expected
        super().__init__(f"action {action_public_id!r} is no longer {expected!r}")


class DecisionRefused(ApprovalsError):
    """A person's decision was refused. `code` is stable, for UIs and metrics."""

    code = "refused"
    attempted: str = "decision"  # set by the service: approve, edit, reject, veto, acknowledge
    actor: str | None = None

    def __init__(self, action_public_id: str, message: str) -> None:
        self.action_public_id = action_public_id
        super().__init__(message)


class NotAnApprover(DecisionRefused):
    code = "not_an_approver"

    def __init__(self, action_public_id: str, actor: str) -> None:
        self.actor = actor
        super().__init__(action_public_id, f"{actor} is not an approver of action {action_public_id!r}")


class SelfApproval(DecisionRefused):
    code = "self_approval"

    def __init__(self, action_public_id: str, actor: str) -> None:
        self.actor = actor
        super().__init__(action_public_id, f"{actor} requested action {action_public_id!r} and cannot approve it")


class StaleParams(DecisionRefused):
    code = "stale_params"

    def __init__(self, action_public_id: str, given: str, current: str) -> None:
        self.given, self.current = given, current
        super().__init__(
            action_public_id,
            f"the parameters of action {action_public_id!r} changed (you saw {given[:12]!r}, "
            f"they are now {current[:12]!r}): review them again",
        )


class ToolChanged(DecisionRefused):
    """The tool's definition (schema, description) changed since the person saw the action."""

    code = "tool_changed"

    def __init__(self, action_public_id: str) -> None:
        super().__init__(
            action_public_id,
            f"the tool of action {action_public_id!r} changed (its schema or description) since you saw it: "
            "review it again",
        )


class NotShown(DecisionRefused):
    """A review of many was submitted with an item it never showed: nothing is approved unseen."""

    code = "not_shown"

    def __init__(self, action_public_id: str) -> None:
        super().__init__(action_public_id, f"action {action_public_id!r} was not shown in this review")


class AlreadyDecided(DecisionRefused):
    code = "already_decided"

    def __init__(self, action_public_id: str, state: str, by: str | None, at: datetime | None) -> None:
        self.state, self.by, self.at = state, by, at
        who = f" by {by}" if by else ""
        when = f" at {at.isoformat(timespec='seconds')}" if at else ""
        super().__init__(action_public_id, f"action {action_public_id!r} is already {state}{who}{when}")


class OtherWorkspace(DecisionRefused):
    code = "other_workspace"

    def __init__(self, action_public_id: str) -> None:
        super().__init__(action_public_id, f"no action {action_public_id!r} in your workspace")


class NotApplicable(DecisionRefused):
    code = "not_applicable"

    def __init__(self, action_public_id: str, state: str, kind: str) -> None:
        self.state, self.kind = state, kind
        super().__init__(action_public_id, f"action {action_public_id!r} is {state}: it cannot take a {kind}")


class AlreadyApprovedByYou(DecisionRefused):
    code = "duplicate_approval"

    def __init__(self, action_public_id: str, actor: str) -> None:
        self.actor = actor
        super().__init__(
            action_public_id, f"{actor} already approved action {action_public_id!r}; it needs another approver"
        )


class AlreadyAcknowledged(DecisionRefused):
    code = "already_acknowledged"

    def __init__(self, action_public_id: str, by: str, at: datetime) -> None:
        self.by, self.at = by, at
        super().__init__(
            action_public_id,
            f"action {action_public_id!r} was already acknowledged by {by} at {at.isoformat(timespec='seconds')}",
        )


class ReasonRequired(DecisionRefused):
    code = "reason_required"

    def __init__(self, action_public_id: str, kind: str) -> None:
        super().__init__(action_public_id, f"a {kind} of action {action_public_id!r} needs a reason")


class InvalidEdit(DecisionRefused):
    code = "invalid_edit"

    def __init__(self, action_public_id: str, problems: dict[str, str]) -> None:
        self.problems = problems
        listed = "; ".join(f"{field}: {problem}" for field, problem in problems.items())
        super().__init__(
            action_public_id, f"the edited parameters of action {action_public_id!r} are invalid: {listed}"
        )


class CredentialMissing(DecisionRefused):
    """The action's tools run with a person's own credential, and that person has not connected it."""

    code = "credential_missing"

    def __init__(self, action_public_id: str, actor: str, owner: str | None, names: list[str], how: str) -> None:
        self.actor, self.owner, self.names = actor, owner, list(names)
        listed = ", ".join(f"`{name}`" for name in names)
        if owner is None:
            problem = f"action {action_public_id!r} runs with its requester's own {listed}, but it has no requester"
            super().__init__(action_public_id, f"{problem}, so it cannot be approved; reject it instead")
        elif owner == actor:
            super().__init__(
                action_public_id,
                f"action {action_public_id!r} runs with your own {listed}: connect it first ({how}), then approve",
            )
        else:
            super().__init__(
                action_public_id,
                f"action {action_public_id!r} runs with {owner}'s own {listed}, which they have not connected: "
                f"it cannot be approved until they do ({how})",
            )


class NotEditable(DecisionRefused):
    """Its client runs the call with the params it asked for (a HumanLayer SDK): an edit would not reach it."""

    code = "not_editable"

    def __init__(self, action_public_id: str) -> None:
        super().__init__(
            action_public_id,
            f"action {action_public_id!r} cannot be edited: its client runs it with the parameters it asked for "
            "and would never see an edit; approve it as it is, or reject it saying what to change",
        )


class QuestionNotFound(ApprovalsError):
    """No question has that public id (or the asker's workspace may not see it)."""

    def __init__(self, question_public_id: str) -> None:
        self.question_public_id = question_public_id
        super().__init__(f"no question {question_public_id!r}")


class AnswerRefused(ApprovalsError):
    """A person's answer to a question was refused; `code` is stable, for UIs and the ledger."""

    code = "refused"

    def __init__(self, question_public_id: str, actor: str, message: str) -> None:
        self.question_public_id, self.actor = question_public_id, actor
        super().__init__(message)


class NotAResponder(AnswerRefused):
    code = "not_a_responder"

    def __init__(self, question_public_id: str, actor: str, task_type: str) -> None:
        self.task_type = task_type
        super().__init__(
            question_public_id,
            actor,
            f"{actor} may not answer question {question_public_id!r}: only the approvers of {task_type!r}"
            " (and of them, the people its asker named) answer it",
        )


class AlreadyAnswered(AnswerRefused):
    code = "already_answered"

    def __init__(self, question_public_id: str, actor: str, by: str | None, at: datetime | None) -> None:
        self.by, self.at = by, at
        when = f" at {at.isoformat()}" if at else ""
        message = f"question {question_public_id!r} was already answered by {by}{when}"
        super().__init__(question_public_id, actor, message)


class AnswerRequired(AnswerRefused):
    code = "answer_required"

    def __init__(self, question_public_id: str, actor: str) -> None:
        super().__init__(question_public_id, actor, f"an answer to question {question_public_id!r} needs some text")


class NotUndoable(DecisionRefused):
    """Undo asked of an action that cannot be undone: it did not succeed, or its tool declares no undo."""

    code = "not_undoable"

    def __init__(self, action_public_id: str, why: str) -> None:
        super().__init__(action_public_id, f"action {action_public_id!r} cannot be undone: {why}")


class UndoWindowPassed(DecisionRefused):
    code = "undo_window_passed"

    def __init__(self, action_public_id: str, until: datetime) -> None:
        self.until = until
        super().__init__(
            action_public_id,
            f"the undo window of action {action_public_id!r} ended at {until.isoformat(timespec='seconds')}: "
            "it can no longer be undone from Slack",
        )


class AlreadyUndone(DecisionRefused):
    """Undo is asked once per action: a compensating action exists (pending, done or refused)."""

    code = "already_undone"

    def __init__(self, action_public_id: str, compensation: str, by: str | None, state: str) -> None:
        self.compensation, self.by, self.state = compensation, by, state
        who = f" by {by}" if by else ""
        super().__init__(
            action_public_id,
            f"action {action_public_id!r} is already undone or its undo is pending: "
            f"undo {compensation} was asked for{who} and is {state}",
        )


class MayNotUndo(DecisionRefused):
    code = "may_not_undo"

    def __init__(self, action_public_id: str, actor: str) -> None:
        self.actor = actor
        super().__init__(
            action_public_id,
            f"{actor} may not undo action {action_public_id!r}: only its approvers and its requester may",
        )
