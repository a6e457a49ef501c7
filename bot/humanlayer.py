"""HumanLayer's wire API under `/humanlayer/v1`, so an agent written with the `humanlayer` SDK
(`@hl.require_approval()`, `hl.human_as_tool()`) keeps working with `HUMANLAYER_API_BASE`
pointed here and an API client's token as `HUMANLAYER_API_KEY`.

- `POST /function_calls`, `GET /function_calls/{call_id}`: a function call is an external
  action (the function's name as the tool, `kwargs` as the params) of the client's task type
  (the one it was given, else `spec.state["task_type"]`), through the same checks and gate as
  `POST /api/actions` (`bot.api_actions.ApiActions.prepare`). The SDK runs the function with
  the arguments it sent and never claims or reports, so: the action takes no edit; and the
  answer that first says `approved: true` hands it over in the same transaction (claimed and
  reported `succeeded` as handed to the HumanLayer client), so it never waits on a lease.
- `POST /contact_requests`, `GET /contact_requests/{call_id}`: a question posted in Slack
  (`approvals.questions`), answered by an approver through the Answer button's form.

The client's `call_id` names its call: a second POST of the same call answers the first (a
different call under a used id is 409). Answers are the SDK's own JSON (`bot.humanlayer_wire`),
refusals a JSON `{"error", "problems"?}` whose text names the problem: the SDK puts the body's
text in its error. POSTs and hand-overs are audited as `api.call`; the SDK's polls (every 3 s
while people decide) are reads and write nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from approvals import external, questions
from approvals.external import ExternalRefused
from approvals.ports import is_listed_approver
from bot import humanlayer_wire as wire
from bot.api_actions import ApiActions, Prepared, json_body
from bot.api_clients import Client, Tokens
from bot.http_io import answer_json
from bot.services import Services
from core.canonical import params_hash
from core.config import is_user_id
from core.db import reading
from core.models import Action, HumanLayerCall, Question

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

PREFIX = "/humanlayer/v1"
HANDED_TO = "the HumanLayer client"
FUNCTION_CALL, CONTACT = "function_call", "contact"
_PATH = re.compile(r"/humanlayer/v1/(?P<what>function_calls|contact_requests)(?:/(?P<call_id>[^/]*))?")
# Where a problem of the actions API's request is, in a function call's body.
_PLACES = {"task_type": "spec.state.task_type", "tool": "spec.fn", "params": "spec.kwargs"}

Answer = tuple[int, dict[str, Any]]


class HumanLayerApi:
    def __init__(self, services: Services, tokens: Tokens, actions: ApiActions) -> None:
        self.services, self.tokens, self.actions = services, tokens, actions

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        client = self.tokens.client(environ.get("HTTP_AUTHORIZATION", ""), self.services.clock.now())
        if client is None:
            return answer_json(start_response, 401, {"error": "missing, wrong or revoked bearer token"})
        match = _PATH.fullmatch(path)
        if match is None:
            return answer_json(start_response, 404, {"error": f"no route {method} {path} (countersign serves "
                                                               "function_calls and contact_requests)"})  # fmt: skip
        calls, call_id = match["what"] == "function_calls", match["call_id"]
        wanted = "POST" if call_id is None else "GET"
        if method != wanted:
            return answer_json(start_response, 405, {"error": f"{method} {path}: {wanted} only"})
        if call_id is None:
            status, body = self._post_call(environ, client) if calls else self._post_contact(environ, client)
        else:
            status, body = self._get_call(client, call_id) if calls else self._get_contact(client, call_id)
        return answer_json(start_response, status, body)

    # -- function calls -------------------------------------------------------------------------

    def _post_call(self, environ: WSGIEnvironment, client: Client) -> Answer:
        body, refused = json_body(environ)
        if refused is not None:
            return refused
        sent, problems = wire.function_call(body)
        if sent is None:
            return _invalid("function call", problems)
        earlier = self._earlier(client, FUNCTION_CALL, sent, _same_call)
        if earlier is not None:
            return earlier
        task_type = self._task_type(client, sent)
        if isinstance(task_type, tuple):
            return task_type
        fn, kwargs = sent.spec["fn"], sent.spec["kwargs"]
        prepared = self.actions.prepare({"task_type": task_type, "tool": fn, "params": kwargs}, client)
        if not isinstance(prepared, Prepared):
            return _in_call_terms(prepared)
        request = replace(
            prepared.request,
            request_text=f"{fn}, asked for by the HumanLayer client {client.name!r} (run {sent.run_id!r}, "
            f"call {sent.call_id!r})",
            editable=False,
        )
        try:
            with self.services.sessions.begin() as session:
                now = self.services.clock.now()
                action, _ = external.submit(
                    session, self.services.config, prepared.catalog, client.id, request, now, client_name=client.name
                )
                call = HumanLayerCall(
                    api_client_id=client.id, kind=FUNCTION_CALL, call_id=sent.call_id, run_id=sent.run_id,
                    spec=sent.spec, action_id=action.id, created_at=now,
                )  # fmt: skip
                session.add(call)
                session.flush()  # the unique (client, kind, call_id): a concurrent twin fails here
                self.actions.audit(session, client, f"POST {PREFIX}/function_calls", action, 201)
                return 201, self._call_answer(session, client, call, action, f"POST {PREFIX}/function_calls")
        except IntegrityError:  # the same call_id, posted at the same moment: that one stands
            return self._earlier(client, FUNCTION_CALL, sent, _same_call) or (409, {"error": "try again"})

    def _get_call(self, client: Client, call_id: str) -> Answer:
        with reading(self.services.sessions) as session:
            found = _call_of(session, client, FUNCTION_CALL, call_id)
            if found is None:
                return 404, {"error": f"no function call {call_id!r} of this client"}
            call, action = found[0], session.get_one(Action, found[0].action_id)
            if not external.runnable(action, self.services.clock.now()):
                return 200, wire.call_answer(call.run_id, call.call_id, call.spec, action, _note(session, action))
        with self.services.sessions.begin() as session:  # it says approved now: hand it over
            call, action = _locked(session, client, call_id)
            return 200, self._call_answer(session, client, call, action, f"GET {PREFIX}/function_calls/{call_id}")

    def _call_answer(
        self, session: Session, client: Client, call: HumanLayerCall, action: Action, route: str
    ) -> dict[str, Any]:
        """The call's `FunctionCall`; one that says `approved: true` for the first time hands the
        action over to the client in the caller's transaction (the action locked or just made)."""
        now = self.services.clock.now()
        if external.runnable(action, now):
            try:
                external.hand_over(session, action, client.owner, HANDED_TO, now)
            except ExternalRefused:  # taken meanwhile (it cannot be: the row is locked); say what it is
                session.refresh(action)
            else:
                self.actions.audit(session, client, f"{route}: handed over", action, 200)
        return wire.call_answer(call.run_id, call.call_id, call.spec, action, _note(session, action))

    # -- contact requests -----------------------------------------------------------------------

    def _post_contact(self, environ: WSGIEnvironment, client: Client) -> Answer:
        body, refused = json_body(environ)
        if refused is not None:
            return refused
        sent, problems = wire.contact(body)
        if sent is None:
            return _invalid("contact request", problems)
        earlier = self._earlier(client, CONTACT, sent, _same_question)
        if earlier is not None:
            return earlier
        task_type = self._task_type(client, sent)
        if isinstance(task_type, tuple):
            return task_type
        ask = self._ask(task_type, sent)
        if isinstance(ask, tuple):
            return ask
        try:
            with self.services.sessions.begin() as session:
                now = self.services.clock.now()
                question = questions.ask(session, ask, client.id, client.name, now)
                call = HumanLayerCall(
                    api_client_id=client.id, kind=CONTACT, call_id=sent.call_id, run_id=sent.run_id, spec=sent.spec,
                    question_id=question.id, created_at=now,
                )  # fmt: skip
                session.add(call)
                session.flush()
                self.actions.audit(session, client, f"POST {PREFIX}/contact_requests", None, 201)
                return 201, wire.contact_answer(call.run_id, call.call_id, call.spec, question)
        except IntegrityError:
            return self._earlier(client, CONTACT, sent, _same_question) or (409, {"error": "try again"})

    def _ask(self, task_type: str, sent: wire.Sent) -> questions.Ask | Answer:
        """Where the question goes and who may answer it; 422 when nobody there could answer."""
        config, directory = self.services.config, self.services.directory
        approvers = list(config.task_types[task_type].approvers)
        slack = sent.slack
        target = slack.get("channel_or_user_id") or config.channel_for(task_type)
        responders = slack.get("allowed_responder_ids")
        place = "spec.channel.slack"
        if not approvers:
            return _invalid("contact request", {"task_type": f"task type {task_type!r} has no approvers to answer"})
        if is_user_id(target) and not is_listed_approver(target, approvers, directory):
            problem = f"{target} is not an approver of task type {task_type!r}: nobody could answer it there"
            return _invalid("contact request", {f"{place}.channel_or_user_id": problem})
        strangers = [user for user in responders or [] if not is_listed_approver(user, approvers, directory)]
        if strangers:
            problem = f"not approvers of task type {task_type!r}, so they cannot answer: {', '.join(strangers)}"
            return _invalid("contact request", {f"{place}.allowed_responder_ids": problem})
        return questions.Ask(
            task_type=task_type,
            text=sent.spec["msg"],
            subject=sent.spec.get("subject") or None,
            channel=target,
            thread_ts=slack.get("thread_ts"),
            approvers=approvers,
            responders=responders,
            options=wire.options_of(sent),
        )

    def _get_contact(self, client: Client, call_id: str) -> Answer:
        with reading(self.services.sessions) as session:
            found = _call_of(session, client, CONTACT, call_id)
            if found is None:
                return 404, {"error": f"no contact request {call_id!r} of this client"}
            call, question = found[0], session.get_one(Question, found[0].question_id)
            return 200, wire.contact_answer(call.run_id, call.call_id, call.spec, question)

    # -- shared -------------------------------------------------------------------------------

    def _task_type(self, client: Client, sent: wire.Sent) -> str | Answer:
        """The client's one task type, else the one `spec.state["task_type"]` names."""
        config, named = self.services.config, sent.task_type
        place = "spec.state.task_type"
        if named is None:
            if client.task_types is not None and len(client.task_types) == 1:
                return next(iter(client.task_types))
            mine = ", ".join(sorted(client.task_types or config.task_types))
            problem = f"required: this client may ask for several task types ({mine}); name one in spec.state"
            return _invalid("request", {place: problem})
        if named not in config.task_types:
            problem = f"unknown task type {named!r} (known: {', '.join(sorted(config.task_types))})"
            return _invalid("request", {place: problem})
        if not client.may_use(named):
            return 403, {"error": f"this client may not ask for task type {named!r} (spec.state.task_type)"}
        return named

    def _earlier(self, client: Client, kind: str, sent: wire.Sent, same: Any) -> Answer | None:
        """The answer for a call_id this client used before: the same call again is answered as it
        stands (200), another call under that id is 409; None when the id is new."""
        with reading(self.services.sessions) as session:
            found = _call_of(session, client, kind, sent.call_id)
            if found is None:
                return None
            call, subject = found
            if not same(call, sent):
                what = "function call" if kind == FUNCTION_CALL else "contact request"
                return 409, {"error": f"call_id {sent.call_id!r} already names another {what} of this client"}
            if kind == CONTACT:
                assert isinstance(subject, Question)
                return 200, wire.contact_answer(call.run_id, call.call_id, call.spec, subject)
        return self._get_call(client, sent.call_id)


def _call_of(
    session: Session, client: Client, kind: str, call_id: str
) -> tuple[HumanLayerCall, Action | Question | None] | None:
    call = session.scalars(
        select(HumanLayerCall).where(
            HumanLayerCall.api_client_id == client.id, HumanLayerCall.kind == kind, HumanLayerCall.call_id == call_id
        )
    ).first()
    if call is None:
        return None
    if call.action_id is not None:
        return call, session.get(Action, call.action_id)
    return call, session.get(Question, call.question_id) if call.question_id is not None else None


def _locked(session: Session, client: Client, call_id: str) -> tuple[HumanLayerCall, Action]:
    found = _call_of(session, client, FUNCTION_CALL, call_id)
    assert found is not None and found[0].action_id is not None
    action = session.scalars(
        select(Action)
        .where(Action.id == found[0].action_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return found[0], action


def _same_call(call: HumanLayerCall, sent: wire.Sent) -> bool:
    return call.spec.get("fn") == sent.spec["fn"] and params_hash(call.spec.get("kwargs") or {}) == params_hash(
        sent.spec["kwargs"]
    )


def _same_question(call: HumanLayerCall, sent: wire.Sent) -> bool:
    return bool(call.spec.get("msg") == sent.spec["msg"])


def _note(session: Session, action: Action) -> str | None:
    return external.closing_note(session, action) if action.state in ("rejected", "vetoed") else None


def _invalid(what: str, problems: dict[str, str]) -> Answer:
    return 422, {"error": wire.problem_text(what, problems), "problems": problems}


def _in_call_terms(refusal: tuple[int, dict[str, Any]]) -> Answer:
    """A refusal of the actions API's checks, its places named as in the function call's body."""
    status, body = refusal
    if "problems" not in body:
        return status, body
    problems = {}
    for place, why in body["problems"].items():
        head, dot, rest = place.partition(".")
        problems[_PLACES.get(head, head) + (f".{rest}" if dot else "")] = why
    return _invalid("function call", problems)
