"""A question an API client asks people (a HumanLayer contact request): its message with the
Answer button, the form that takes the answer, and the message once answered.

The question and the answer are untrusted text (the client's model wrote one, a person the
other): escaped and shown verbatim, so neither can ping anyone or forge a link.
"""

from __future__ import annotations

from approvals.errors import AlreadyAnswered, AnswerRequired, NotAResponder
from bot import action_ids
from bot.blocks.kit import Block, actions, button, context, header, option, plain, section
from bot.blocks.text import escape, mention, quote, slack_date, truncate
from bot.blocks.views import QuestionView

QUESTION_LIMIT = 2500
ANSWER_LIMIT = 2500
FORM_QUESTION_LIMIT = 1500
SUBJECT_LIMIT = 140
ANSWER_INPUT_LIMIT = 3000  # the most a plain_text_input holds
ANSWER = "answer"  # the form's text block and element
OPTION = "option"  # the form's radio buttons, when the asker offered options
QUESTION_LINES = 30


def question_message(view: QuestionView) -> tuple[str, list[Block]]:
    """The question's message: open, with its Answer button; answered, with who said what."""
    subject = truncate(escape(" ".join((view.subject or "").split())), SUBJECT_LIMIT)
    question = quote(truncate(escape(view.text), QUESTION_LIMIT), QUESTION_LINES)
    blocks: list[Block] = [
        header("header", ":speech_balloon: A question for you"),
        section("question", f"*{subject}*\n{question}" if subject else question, verbatim=True),
        context(
            "about",
            f"Asked by the API client `{escape(view.asker)}` for `{escape(view.task_type)}` · "
            f"question `{escape(view.question_public_id)}`",
        ),
    ]
    if view.options:
        listed = ", ".join(f"*{escape(label)}*" for _, label in view.options)
        blocks.append(context("options", f"Suggested answers: {listed}", verbatim=True))
    if view.state == "answered":
        blocks.append(section("answer", answered_text(view), verbatim=True))
        return f"Answered: {_short(view.text)}", blocks
    who = (
        "Only " + ", ".join(mention(user) for user in view.responders) + " may answer."
        if view.responders
        else f"Any approver of `{escape(view.task_type)}` may answer."
    )
    blocks.append(context("who", f"{who} The answer goes back word for word."))
    blocks.append(
        actions("answer", [button("Answer", action_ids.ANSWER_QUESTION, view.question_public_id, style="primary")])
    )
    return f"A question for you: {_short(view.text)}", blocks


def _short(text: str) -> str:
    """The question on one line, escaped: the message's top-level text (notifications)."""
    return truncate(escape(" ".join(text.split())), 200)


def answered_text(view: QuestionView) -> str:
    by = f" by {mention(view.answered_by)}" if view.answered_by else ""
    when = f" {slack_date(view.answered_at)}" if view.answered_at else ""
    chosen = next((label for name, label in view.options if name == view.option), None)
    picked = f" (picked *{escape(chosen)}*)" if chosen else ""
    answer = quote(truncate(escape(view.answer or ""), ANSWER_LIMIT), QUESTION_LINES)
    return f":white_check_mark: Answered{by}{when}{picked}:\n{answer}"


def answer_modal(view: QuestionView, metadata: str) -> Block:
    """The form that takes an answer: the question again, the options (if any), a text box."""
    question = quote(truncate(escape(view.text), FORM_QUESTION_LIMIT), QUESTION_LINES)
    blocks: list[Block] = [
        section("question", question, verbatim=True),
        context("about", f"From `{escape(view.asker)}` · question `{escape(view.question_public_id)}`"),
    ]
    if view.options:
        choices = [option(label, str(index)) for index, (_, label) in enumerate(view.options)]
        blocks.append(
            {
                "type": "input",
                "block_id": OPTION,
                "label": plain("Pick one (optional)"),
                "element": {"type": "radio_buttons", "action_id": OPTION, "options": choices},
                "optional": True,
            }
        )
    element: Block = {
        "type": "plain_text_input",
        "action_id": ANSWER,
        "multiline": True,
        "max_length": ANSWER_INPUT_LIMIT,
    }
    blocks.append(
        {
            "type": "input",
            "block_id": ANSWER,
            "label": plain("Your answer"),
            "hint": plain("It goes back exactly as you type it, and it stays on the record."),
            "element": element,
        }
    )
    return {
        "type": "modal",
        "callback_id": action_ids.ANSWER_MODAL,
        "title": plain("Answer", 24),
        "submit": plain("Send answer", 24),
        "close": plain("Cancel", 24),
        "private_metadata": metadata,
        "blocks": blocks,
    }


def answer_refused(refusal: Exception, task_type: str | None = None) -> str:
    """What a person whose answer (or click on Answer) was refused reads, in their words."""
    if isinstance(refusal, NotAResponder):
        whose = f" of `{escape(task_type)}`" if task_type else ""
        return (
            f":no_entry_sign: You may not answer this question: its approvers{whose} do (and of them, only the people "
            "its asker named, if it named some)."
        )
    if isinstance(refusal, AlreadyAnswered):
        by = f" by {mention(refusal.by)}" if refusal.by else ""
        when = f" {slack_date(refusal.at)}" if refusal.at else ""
        return f":information_source: This question was already answered{by}{when}."
    if isinstance(refusal, AnswerRequired):
        return ":warning: Type an answer: it goes back word for word."
    return escape(str(refusal))
