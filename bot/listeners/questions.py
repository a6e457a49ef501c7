"""Questions an API client asks people (HumanLayer's contact requests): the Answer button opens
the form for whoever may answer (anyone else is told why not, only them), and the form's
submission is the answer, one domain call in one transaction (`approvals.questions`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from approvals import questions
from approvals.errors import AnswerRefused, NotAResponder, QuestionNotFound
from bot import action_ids
from bot.blocks.question import ANSWER, OPTION, answer_modal, answer_refused
from bot.blocks.refusals import as_plain
from bot.blocks.views import QuestionView
from bot.directory import person_name
from bot.listeners.actions import clicker, open_modal, tell, workspace
from bot.listeners.payloads import BadPayload, click_from
from bot.presenter import question_view
from bot.services import Services

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    @app.action(action_ids.ANSWER_QUESTION)
    def answer_question(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()  # the trigger_id lives 3 s: one read, then the form
        try:
            click = click_from(body)

            def may_answer(session: Session) -> QuestionView:
                question = questions.may_answer(session, click.value, click.user, services.directory)
                return question_view(session, question)

            view = questions.answering(services.sessions, services.clock, may_answer)
        except AnswerRefused as refusal:
            tell(services, respond, answer_refused(refusal, _task_type(refusal)), clicker(body), workspace(body))
            return
        except (BadPayload, QuestionNotFound) as problem:
            tell(services, respond, str(problem), clicker(body), workspace(body))
            return
        metadata = json.dumps({"question_id": click.value})
        open_modal(services, respond, click, answer_modal(view, metadata))

    @app.view(action_ids.ANSWER_MODAL)
    def question_answer(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            question_public_id, text, option = _submitted(view)
            user, team = body["user"]["id"], (body.get("team") or {}).get("id")
        except (BadPayload, KeyError, TypeError, ValueError) as problem:
            ack(response_action="errors", errors={ANSWER: f"This form is out of date: {problem}"})
            return

        def answer(session: Session) -> object:
            chosen = _option_name(session, question_public_id, option)
            return questions.answer(
                session,
                question_public_id,
                user,
                text,
                directory=services.directory,
                now=services.clock.now(),
                option=chosen,
            )

        try:
            questions.answering(services.sessions, services.clock, answer)
        except AnswerRefused as refusal:
            said = as_plain(answer_refused(refusal, _task_type(refusal)), _names(services, team))
            ack(response_action="errors", errors={ANSWER: said})
            return
        except QuestionNotFound as problem:
            ack(response_action="errors", errors={ANSWER: str(problem)})
            return
        ack()


def _submitted(view: dict[str, Any]) -> tuple[str, str, int | None]:
    """(question id, the answer exactly as typed, the picked option's index) of a submitted form."""
    metadata = json.loads(view.get("private_metadata") or "{}")
    question_public_id = metadata.get("question_id") if isinstance(metadata, dict) else None
    if not isinstance(question_public_id, str):
        raise BadPayload("the form names no question")
    values = view["state"]["values"]
    text = ((values.get(ANSWER) or {}).get(ANSWER) or {}).get("value") or ""
    if not isinstance(text, str):
        raise BadPayload("the answer is not text")
    picked = (((values.get(OPTION) or {}).get(OPTION) or {}).get("selected_option") or {}).get("value")
    return question_public_id, text, int(picked) if isinstance(picked, str) and picked.isdigit() else None


def _option_name(session: Session, question_public_id: str, index: int | None) -> str | None:
    if index is None:
        return None
    names = questions.option_names_of(session, question_public_id)
    return names[index] if index < len(names) else None


def _task_type(refusal: AnswerRefused) -> str | None:
    return refusal.task_type if isinstance(refusal, NotAResponder) else None


def _names(services: Services, team: str | None) -> Any:
    def name(user: str) -> str | None:
        return person_name(services, user, team)

    return name
