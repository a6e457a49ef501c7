"""HumanLayer's wire format, as the `humanlayer` SDK 0.7.9 speaks it: what its `FunctionCall`
and `HumanContact` bodies may hold (each problem named by its place in the body), and the
answers built from our rows (`FunctionCall` / `HumanContact` with `status`).

The SDK sends `model.model_dump()` (every field, unset ones as null) and validates each answer
with the same pydantic models, so an answer repeats `run_id`, `call_id` and `spec` exactly as
they were sent. `status.approved` is null while people have not decided, true once the call
was handed over, false (with the reason in `comment`, which the SDK requires) when it will not
run. Imports nothing of the SDK: it is a test dependency only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.config import is_user_id
from core.models import Action, Question
from core.states import ActionState as S
from core.storable import first_unstorable

# The SDK's ids are `call-<urlsafe base64>`; ours go into a URL path, so no "/" and no spaces.
CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:~+=@-]{0,127}")
RUN_ID_LIMIT = 128
MESSAGE_LIMIT = 10_000
# A channel (C…, G… private, D… a DM channel) or a person (U…/W…), told by direct message.
SLACK_TARGET = re.compile(r"[CGDUW][A-Z0-9]{2,31}")
THREAD_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
MAX_OPTIONS = 10  # a Slack radio_buttons element holds 10
OPTION_NAME_LIMIT = 75
_TOP = ("run_id", "call_id", "spec", "status")
_FUNCTION_SPEC = ("fn", "kwargs", "channel", "reject_options", "state")
_CONTACT_SPEC = ("msg", "subject", "channel", "response_options", "state")
_CHANNELS = ("slack", "sms", "whatsapp", "email")


@dataclass(frozen=True)
class Sent:
    """A function call or contact request as the SDK sent it (checked)."""

    run_id: str
    call_id: str
    spec: dict[str, Any]

    @property
    def slack(self) -> dict[str, Any]:
        """`spec.channel.slack`, or {} when the SDK named none."""
        channel = self.spec.get("channel") or {}
        return channel.get("slack") or {}

    @property
    def task_type(self) -> str | None:
        """`spec.state["task_type"]`, where a client of several task types names one."""
        return (self.spec.get("state") or {}).get("task_type")


def function_call(body: Any) -> tuple[Sent | None, dict[str, str]]:
    """The function call `body` holds, or its problems by place (`spec.fn`, `call_id`…)."""
    problems = _envelope(body, "function call", _FUNCTION_SPEC)
    if problems:
        return None, problems
    spec = body["spec"]
    if not isinstance(spec.get("fn"), str) or not spec["fn"]:
        problems["spec.fn"] = "required: the function's name (text)"
    if not isinstance(spec.get("kwargs"), dict):
        problems["spec.kwargs"] = "required: a JSON object of the function's keyword arguments"
    for key in ("channel", "state"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            problems[f"spec.{key}"] = "a JSON object, or null"
    if spec.get("reject_options") is not None and not isinstance(spec["reject_options"], list):
        problems["spec.reject_options"] = "a list, or null"
    problems.update(_state_problems(spec))
    return (None, problems) if problems else (_sent(body), {})


def contact(body: Any) -> tuple[Sent | None, dict[str, str]]:
    """The contact request `body` holds, or its problems by place (`spec.msg`, …)."""
    problems = _envelope(body, "contact request", _CONTACT_SPEC)
    if problems:
        return None, problems
    spec = body["spec"]
    message = spec.get("msg")
    if not isinstance(message, str) or not message.strip():
        problems["spec.msg"] = "required: the question, as text"
    elif len(message) > MESSAGE_LIMIT:
        problems["spec.msg"] = f"at most {MESSAGE_LIMIT} characters, got {len(message)}"
    if spec.get("subject") is not None and not isinstance(spec["subject"], str):
        problems["spec.subject"] = "text, or null"
    if spec.get("state") is not None and not isinstance(spec["state"], dict):
        problems["spec.state"] = "a JSON object, or null"
    problems.update(_state_problems(spec))
    problems.update(_channel_problems(spec.get("channel")))
    problems.update(_option_problems(spec.get("response_options")))
    return (None, problems) if problems else (_sent(body), {})


def _envelope(body: Any, what: str, spec_keys: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(body, dict):
        return {"body": f'expected a JSON object, a {what} like {{"run_id": …, "call_id": …, "spec": {{…}}}}'}
    problems = {key: "unknown field" for key in body if key not in _TOP}
    if isinstance(found := first_unstorable(body), tuple):
        problems[found[0].removeprefix("body.")] = found[1]
        return problems
    run_id = body.get("run_id")
    if not isinstance(run_id, str) or not 0 < len(run_id) <= RUN_ID_LIMIT:
        problems["run_id"] = f"required: text of 1 to {RUN_ID_LIMIT} characters"
    call_id = body.get("call_id")
    if not isinstance(call_id, str) or not CALL_ID.fullmatch(call_id):
        problems["call_id"] = (
            f"required: 1 to 128 letters, digits and ._:~+=@- (first a letter or digit), got {call_id!r}"
        )
    if body.get("status") is not None and not isinstance(body["status"], dict):
        problems["status"] = "null (the server keeps the status), or an object"
    spec = body.get("spec")
    if not isinstance(spec, dict):
        problems["spec"] = "required: a JSON object"
    else:
        problems.update({f"spec.{key}": "unknown field" for key in spec if key not in spec_keys})
    return problems


def _state_problems(spec: dict[str, Any]) -> dict[str, str]:
    state = spec.get("state")
    if isinstance(state, dict) and state.get("task_type") is not None and not isinstance(state["task_type"], str):
        return {"spec.state.task_type": "a task type's name (text)"}
    return {}


def _channel_problems(channel: Any) -> dict[str, str]:
    if channel is None:
        return {}
    if not isinstance(channel, dict):
        return {"spec.channel": "a JSON object, or null"}
    problems = {f"spec.channel.{key}": "unknown field" for key in channel if key not in _CHANNELS}
    for key in ("sms", "whatsapp", "email"):
        if channel.get(key) is not None:
            problems[f"spec.channel.{key}"] = "not served here: countersign asks people in Slack only (slack, or null)"
    slack = channel.get("slack")
    if slack is None:
        return problems
    if not isinstance(slack, dict):
        return {**problems, "spec.channel.slack": "a JSON object, or null"}
    where = "spec.channel.slack"
    target = slack.get("channel_or_user_id")
    if target is not None and (not isinstance(target, str) or not SLACK_TARGET.fullmatch(target)):
        problems[f"{where}.channel_or_user_id"] = f"a Slack channel (C…, G…, D…) or user id (U…, W…), got {target!r}"
    if slack.get("bot_token") is not None:
        problems[f"{where}.bot_token"] = "not taken: countersign posts with its own Slack app (leave it null)"
    responders = slack.get("allowed_responder_ids")
    if responders is not None and (
        not isinstance(responders, list)
        or not responders
        or not all(isinstance(user, str) and is_user_id(user) for user in responders)
    ):
        problems[f"{where}.allowed_responder_ids"] = f"a non-empty list of Slack user ids (U…/W…), got {responders!r}"
    thread_ts = slack.get("thread_ts")
    if thread_ts is not None and (not isinstance(thread_ts, str) or not THREAD_TS.fullmatch(thread_ts)):
        problems[f"{where}.thread_ts"] = f"a Slack message ts like '1700000000.000100', got {thread_ts!r}"
    if thread_ts is not None and target is None:
        problems[f"{where}.thread_ts"] = "needs channel_or_user_id: the channel whose thread it is"
    return problems


def _option_problems(options: Any) -> dict[str, str]:
    if options is None:
        return {}
    where = "spec.response_options"
    if not isinstance(options, list) or not 0 < len(options) <= MAX_OPTIONS:
        return {where: f"a list of 1 to {MAX_OPTIONS} options, or null"}
    names: list[str] = []
    for index, option in enumerate(options):
        name = option.get("name") if isinstance(option, dict) else None
        if not isinstance(name, str) or not 0 < len(name) <= OPTION_NAME_LIMIT:
            return {f"{where}[{index}].name": f"required: text of 1 to {OPTION_NAME_LIMIT} characters"}
        for key in ("title", "description"):
            if option.get(key) is not None and not isinstance(option[key], str):
                return {f"{where}[{index}].{key}": "text, or null"}
        names.append(name)
    if len(set(names)) != len(names):
        return {where: "the options' names must differ"}
    return {}


def _sent(body: dict[str, Any]) -> Sent:
    return Sent(run_id=body["run_id"], call_id=body["call_id"], spec=body["spec"])


def options_of(sent: Sent) -> list[dict[str, Any]] | None:
    """The response options a person may pick from: name, and title/description when given."""
    options = sent.spec.get("response_options")
    if options is None:
        return None
    return [{key: option[key] for key in ("name", "title", "description") if option.get(key)} for option in options]


def problem_text(what: str, problems: dict[str, str]) -> str:
    """One sentence naming each problem, for the SDK's error string (it shows the body's text)."""
    return f"invalid {what}: " + "; ".join(f"{place}: {why}" for place, why in problems.items())


# -- answers --------------------------------------------------------------------------------


def call_answer(run_id: str, call_id: str, spec: dict[str, Any], action: Action, note: str | None) -> dict[str, Any]:
    """The `FunctionCall` JSON of `action`; `note`: the reason of its rejection or veto."""
    approved, comment = _verdict(action, note)
    status = {
        "requested_at": _iso(action.created_at),
        "responded_at": _iso(action.decided_at or (action.updated_at if approved is not None else None)),
        "approved": approved,
        "comment": comment,
        "reject_option_name": None,
        "slack_message_ts": None,
    }
    return {"run_id": run_id, "call_id": call_id, "spec": spec, "status": status}


def _verdict(action: Action, note: str | None) -> tuple[bool | None, str | None]:
    """(approved, comment): None while undecided; True only once handed over (`succeeded` with
    its hand-over as the result); False for everything that will not run, with why."""
    state = action.state
    if state in (S.DRAFTED, S.PENDING, S.SCHEDULED, S.APPROVED):
        return None, None  # approved, or a window passed: handed over by the read that says so
    if state == S.SUCCEEDED:
        return True, None
    by = f" by {action.decided_by}" if action.decided_by else ""
    if state in (S.REJECTED, S.VETOED):
        return False, note if note else f"{state}{by}, no reason given"
    if state == S.EXPIRED:
        return False, action.error or "expired: nobody decided in time"
    return False, f"{state}: {action.error}" if action.error else f"it will not run ({state})"


def contact_answer(run_id: str, call_id: str, spec: dict[str, Any], question: Question) -> dict[str, Any]:
    """The `HumanContact` JSON of `question`: `status.response` null until someone answered."""
    status = {
        "requested_at": _iso(question.created_at),
        "responded_at": _iso(question.answered_at),
        "response": question.answer,
        "response_option_name": question.option,
    }
    return {"run_id": run_id, "call_id": call_id, "spec": spec, "status": status}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
