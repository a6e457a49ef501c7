"""Questions an API client asks people (a HumanLayer contact request, `hl.human_as_tool()`):
posted in Slack with an Answer button; one of the task type's approvers answers, once, and the
answer goes back to the client word for word.

Who may answer is the approvers of the question's task type, snapshotted when it is asked
(a config change later does not move it), narrowed to the people the client named
(`responders`) when it named some. Every move is `approvals.machine.move` (`QUESTION` in
`core.states`): the answer is a compare-and-set from `open`, audited as `question.answered`
with the text as its note, in the transaction that queues the message's update. A refused
answer rolls back and is audited on its own (`question.refused`), as a refused decision is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from approvals import machine
from approvals.errors import AlreadyAnswered, AnswerRefused, AnswerRequired, NotAResponder, QuestionNotFound
from approvals.ports import Directory, is_listed_approver
from core.clock import Clock
from core.errors import StaleState
from core.ids import new_id
from core.messages import QuestionAnswered, QuestionAsked
from core.models import Question
from core.states import QuestionState

T = TypeVar("T")


@dataclass(frozen=True)
class Ask:
    """A question as its client asked it; `channel`: where it goes (a channel, or a user's DM)."""

    task_type: str
    text: str
    channel: str
    approvers: Sequence[str]
    subject: str | None = None
    thread_ts: str | None = None
    responders: Sequence[str] | None = None
    options: Sequence[dict[str, Any]] | None = None


def ask(session: Session, ask: Ask, client_id: int, client_name: str, now: datetime) -> Question:
    """Record the question and queue its post; audited as `question.asked` by the client."""
    question = Question(
        public_id=new_id("qst"),
        task_type=ask.task_type,
        api_client_id=client_id,
        subject=ask.subject,
        text=ask.text,
        channel=ask.channel,
        thread_ts=ask.thread_ts,
        approvers=list(ask.approvers),
        responders=list(ask.responders) if ask.responders is not None else None,
        options=[dict(option) for option in ask.options] if ask.options is not None else None,
        state=QuestionState.OPEN.value,
        created_at=now,
        updated_at=now,
    )
    session.add(question)
    session.flush()
    machine.record(
        session,
        question,
        "question.asked",
        actor=client_name,
        now=now,
        to_state=QuestionState.OPEN.value,
        note=ask.text,
        data={"channel": ask.channel},
        messages=[QuestionAsked(question.public_id)],
    )
    return question


def may_answer(session: Session, question_public_id: str, actor: str, directory: Directory) -> Question:
    """The question `actor` is about to answer, if they may (`AnswerRefused` otherwise); asked
    when the Answer button opens the form, and again, under a lock, by `answer`."""
    question = session.scalars(select(Question).where(Question.public_id == question_public_id)).first()
    if question is None:
        raise QuestionNotFound(question_public_id)
    _authorize(question, actor, directory)
    return question


def answer(
    session: Session,
    question_public_id: str,
    actor: str,
    text: str,
    *,
    directory: Directory,
    now: datetime,
    option: str | None = None,
) -> Question:
    """`actor`'s answer, kept exactly as typed (only an answer of nothing but spaces is refused)."""
    question = session.scalars(
        select(Question)
        .where(Question.public_id == question_public_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if question is None:
        raise QuestionNotFound(question_public_id)
    _authorize(question, actor, directory)
    if not text.strip():
        raise AnswerRequired(question.public_id, actor)
    if option is not None and option not in option_names(question):
        option = None  # a stale form's choice: the answer stands without it
    values = {"answer": text, "option": option, "answered_by": actor, "answered_at": now}
    try:
        machine.move(
            session,
            question,
            QuestionState.ANSWERED,
            actor=actor,
            now=now,
            note=text,
            data={"option": option} if option is not None else None,
            values=values,
            messages=[QuestionAnswered(question.public_id, actor)],
        )
    except StaleState:
        raise AlreadyAnswered(question.public_id, actor, None, None) from None
    return question


def option_names(question: Question) -> list[str]:
    return [str(option.get("name")) for option in question.options or []]


def option_names_of(session: Session, question_public_id: str) -> list[str]:
    """The names of the options a question offers, in order ([] for none, or no such question)."""
    options = session.scalar(select(Question.options).where(Question.public_id == question_public_id))
    return [str(option.get("name")) for option in options or []]


def answering(sessions: sessionmaker[Session], clock: Clock, call: Callable[[Session], T]) -> T:
    """Run one answer (or the check before its form) in its own transaction; a refusal is
    recorded in the ledger on its own and re-raised for the caller to show the person."""
    with sessions() as session:
        try:
            with session.begin():
                return call(session)
        except AnswerRefused as refusal:
            with session.begin():
                _record_refusal(session, refusal, clock.now())
            raise


def _authorize(question: Question, actor: str, directory: Directory) -> None:
    if question.state != QuestionState.OPEN:
        raise AlreadyAnswered(question.public_id, actor, question.answered_by, question.answered_at)
    listed = is_listed_approver(actor, list(question.approvers), directory)
    if not listed or (question.responders is not None and actor not in question.responders):
        raise NotAResponder(question.public_id, actor, question.task_type)


def _record_refusal(session: Session, refusal: AnswerRefused, now: datetime) -> None:
    question = session.scalars(select(Question).where(Question.public_id == refusal.question_public_id)).one()
    data = {"code": refusal.code}
    machine.record(session, question, "question.refused", actor=refusal.actor, now=now, note=str(refusal), data=data)
