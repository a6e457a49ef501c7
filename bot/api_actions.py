"""The actions API: external tools asked for, waited on, claimed and reported by API clients.

POST /api/actions, GET /api/actions/{id}?wait=S, POST /api/actions/{id}/claim, POST
/api/actions/{id}/result; every one needs a client's bearer token (`bot.api_clients`), sees
only that client's actions (another's is 404) and is audited with the client's name as actor.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent.external_tools import ExternalToolSpec, WithOpenTool, open_spec
from approvals import audit, external
from approvals.external import SETTLED, ExternalRefused
from approvals.ports import ToolCatalog
from bot.api_clients import Client, Tokens
from bot.http_io import BodyRefused, answer_json, read_body
from bot.services import Services
from bot.waiters import Waiters, wait_of
from core.config import is_user_id
from core.db import reading
from core.json_params import ANY_OBJECT, ParamsProblems, checked, schema_problem
from core.models import Action
from core.states import ActionState as S
from core.storable import text_problem

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

PREFIX = "/api/actions"
MAX_BODY = 64 * 1024
_PATH = re.compile(r"/api/actions/(?P<id>act_[a-z0-9]{1,40})(?P<verb>/claim|/result)?")
_FIELDS = (
    "task_type", "tool", "params", "rationale", "confidence", "requester", "external_id", "callback_url", "schema",
)  # fmt: skip
# An open tool's name (`open_tools`): MCP tool names, Claude Code's (`Bash`, `mcp__github__create_issue`).
_OPEN_TOOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")


@dataclass(frozen=True)
class Prepared:
    """A checked request for an external action, and the tool catalog the gate routes it by (the
    registry, plus the one open tool it names)."""

    request: external.Request
    catalog: ToolCatalog


class ApiActions:
    def __init__(self, services: Services, tokens: Tokens, waiters: Waiters) -> None:
        self.services, self.tokens, self.waiters = services, tokens, waiters

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        now = self.services.clock.now()
        client = self.tokens.client(environ.get("HTTP_AUTHORIZATION", ""), now)
        if client is None:
            return answer_json(start_response, 401, {"error": "missing, wrong or revoked bearer token"})
        if path == PREFIX:
            if method != "POST":
                return answer_json(start_response, 405, {"error": f"{method} {path}: POST only"})
            status, body = self._submit(environ, client)
        else:
            match = _PATH.fullmatch(path)
            if match is None:
                return answer_json(start_response, 404, {"error": f"no route {method} {path}"})
            verb = match["verb"]
            if (verb is None and method != "GET") or (verb is not None and method != "POST"):
                return answer_json(
                    start_response, 405, {"error": f"{method} {path}: {'GET' if verb is None else 'POST'} only"}
                )
            if verb is None:
                status, body = self._get(environ, client, match["id"])
            elif verb == "/claim":
                status, body = self._claim(client, match["id"])
            else:
                status, body = self._result(environ, client, match["id"])
        return answer_json(start_response, status, body)

    # -- routes -------------------------------------------------------------------------------

    def _submit(self, environ: WSGIEnvironment, client: Client) -> tuple[int, dict[str, Any]]:
        body, refused = json_body(environ)
        if refused is not None:
            return refused
        prepared = self.prepare(body, client)
        if not isinstance(prepared, Prepared):
            return prepared
        request, catalog = prepared.request, prepared.catalog
        config = self.services.config
        # Two requests with the same external_id at once: the second's INSERT fails on the unique
        # constraint, and its retry finds the first's action.
        for attempt in (1, 2):
            try:
                with self.services.sessions.begin() as session:
                    now = self.services.clock.now()
                    action, created = external.submit(
                        session, config, catalog, client.id, request, now, client_name=client.name
                    )
                    self.audit(session, client, "POST /api/actions", action, 201 if created else 200)
                    answer = {
                        "action_id": action.public_id,
                        "state": action.state,
                        "params_hash": action.params_hash,
                        "url": f"{PREFIX}/{action.public_id}",
                    }
                return (201 if created else 200), answer
            except IntegrityError:
                if attempt == 2 or request.external_id is None:
                    raise
        raise AssertionError("unreachable")

    def prepare(self, body: Any, client: Client) -> Prepared | tuple[int, dict[str, Any]]:
        """The request `body` asks for, checked (its fields, the client's task types, the tool and
        its params by their schema), with the catalog the gate routes it by; or the refusal to
        answer: 422 `{"error", "problems": {field: why}}`, 403 for a task type not the client's."""
        problems = self._request_problems(body)
        if problems:
            return 422, {"error": "invalid action request", "problems": problems}
        config = self.services.config
        if not client.may_use(body["task_type"]):
            return 403, {"error": f"this client may not ask for task type {body['task_type']!r}"}
        callback = body.get("callback_url")
        if callback is not None and client.webhook_secret is None:
            problem = (
                f"client {client.name!r} has no webhook secret (create a client with `countersign api-client create`)"
            )
            return 422, {"error": "invalid action request", "problems": {"callback_url": problem}}
        open_tools = config.task_types[body["task_type"]].open_tools
        is_open = open_tools is not None and body["tool"] not in config.task_types[body["task_type"]].tools
        schema = (body.get("schema") or ANY_OBJECT) if is_open else None
        catalog: ToolCatalog = self.services.registry
        if open_tools is not None and schema is not None:
            catalog = WithOpenTool(self.services.registry, open_spec(body["tool"], open_tools, schema))
        request = external.Request(
            task_type=body["task_type"],
            tool=body["tool"],
            params=body["params"],
            rationale=body.get("rationale") or "",
            confidence=float(body["confidence"]) if body.get("confidence") is not None else 1.0,
            requester=body.get("requester"),
            external_id=body.get("external_id"),
            callback_url=callback,
            params_schema=schema,
            read_only=open_tools is not None and is_open and open_tools.is_read_only(body["tool"]),
        )
        return Prepared(request, catalog)

    def _get(self, environ: WSGIEnvironment, client: Client, public_id: str) -> tuple[int, dict[str, Any]]:
        wait, problem = wait_of(environ.get("QUERY_STRING", ""))
        if problem is not None:
            return 422, {"error": "invalid query", "problems": {"wait": problem}}
        deadline, refused = time.monotonic() + wait, False
        while True:
            now = self.services.clock.now()
            with reading(self.services.sessions) as session:
                action = _own(session, client, public_id)
                if action is None:
                    return 404, {"error": f"no action {public_id}"}
                view = external.view(session, action, now)
            left = deadline - time.monotonic()
            if action.state in SETTLED or view["runnable"] or left <= 0 or refused:
                break
            if action.state == S.SCHEDULED and action.run_at is not None:
                # A veto window passing moves nothing: look again when it ends (the poller also
                # sees it pass, under the server's clock).
                left = min(left, max((action.run_at - now).total_seconds(), 0.0) + 0.01)
            # No connection held from here: the session is closed while this request waits
            # (under waitress a long-poll waits parked, without a thread, and arrives here after).
            began = time.monotonic()
            woken = self.waiters.wait(public_id, left)
            refused = not woken and time.monotonic() - began < left  # too many threads wait already
        with self.services.sessions.begin() as session:
            self.audit(
                session, client, f"GET {PREFIX}/{public_id}", None, 200, public_id=public_id, state=view["state"]
            )
        return 200, view

    def _claim(self, client: Client, public_id: str) -> tuple[int, dict[str, Any]]:
        lease = self.services.config.api.claim_lease
        with self.services.sessions.begin() as session:
            action = _own(session, client, public_id, lock=True)
            if action is None:
                return 404, {"error": f"no action {public_id}"}
            now = self.services.clock.now()
            try:
                external.claim(session, action, client.owner, lease, now)
            except ExternalRefused as exc:
                refused = str(exc)
            else:
                self.audit(session, client, f"POST {PREFIX}/{public_id}/claim", action, 200)
                return 200, external.view(session, action, now)
        self._audit_alone(client, f"POST {PREFIX}/{public_id}/claim", public_id, 409)
        return 409, {"error": refused}

    def _result(self, environ: WSGIEnvironment, client: Client, public_id: str) -> tuple[int, dict[str, Any]]:
        body, refused_body = json_body(environ)
        if refused_body is not None:
            return refused_body
        problems = _result_problems(body)
        if problems:
            with reading(self.services.sessions) as session:  # no such action: that first
                if _own(session, client, public_id) is None:
                    return 404, {"error": f"no action {public_id}"}
            return 422, {"error": "invalid result", "problems": problems}
        with self.services.sessions.begin() as session:
            action = _own(session, client, public_id, lock=True)
            if action is None:
                return 404, {"error": f"no action {public_id}"}
            now = self.services.clock.now()
            try:
                external.report(
                    session,
                    action,
                    client.owner,
                    succeeded=body["status"] == "succeeded",
                    result=body.get("result"),
                    error=body.get("error"),
                    now=now,
                )
            except ExternalRefused as exc:
                refused = str(exc)
            else:
                self.audit(session, client, f"POST {PREFIX}/{public_id}/result", action, 200)
                return 200, external.view(session, action, now)
        self._audit_alone(client, f"POST {PREFIX}/{public_id}/result", public_id, 409)
        return 409, {"error": refused}

    # -- checks and records -----------------------------------------------------------------

    def _request_problems(self, body: Any) -> dict[str, str]:
        if not isinstance(body, dict):
            return {"body": 'expected a JSON object like {"task_type": "ops", "tool": "…", "params": {…}}'}
        problems = {key: "unknown field" for key in body if key not in _FIELDS}
        for key in ("task_type", "tool"):
            if not isinstance(body.get(key), str) or not body[key]:
                problems[key] = "required: text"
        if not isinstance(body.get("params"), dict):
            problems["params"] = "required: a JSON object of the tool's parameters"
        for key in ("rationale", "requester", "external_id", "callback_url"):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                problems[key] = "must be text"
            elif isinstance(value, str) and (problem := text_problem(value)):
                problems[key] = problem
        confidence = body.get("confidence")
        if confidence is not None and (
            isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or not math.isfinite(confidence)
            or not 0 <= confidence <= 1
        ):
            problems["confidence"] = f"a number from 0 to 1, got {confidence!r}"
        if isinstance(body.get("requester"), str) and "requester" not in problems and not is_user_id(body["requester"]):
            problems["requester"] = f"a Slack user id (U…/W…), got {body['requester']!r}"
        if isinstance(body.get("external_id"), str) and not 0 < len(body["external_id"]) <= 128:
            problems["external_id"] = "1 to 128 characters"
        callback = body.get("callback_url")
        if isinstance(callback, str) and "callback_url" not in problems and (found := self._callback_problem(callback)):
            problems["callback_url"] = found
        if "task_type" not in problems:
            task_type = self.services.config.task_types.get(body["task_type"])
            if task_type is None:
                known = ", ".join(sorted(self.services.config.task_types))
                problems["task_type"] = f"unknown task type {body['task_type']!r} (known: {known})"
            elif "tool" not in problems and body["tool"] not in task_type.tools:
                if task_type.open_tools is None:
                    problems["tool"] = f"tool {body['tool']!r} is not on task type {body['task_type']!r}'s list"
                else:
                    problems.update(self._open_problems(body))
                    return problems
        if "schema" in body and "schema" not in problems:
            problems["schema"] = "only for an open tool (a task type's open_tools); this tool's schema is the config's"
        if "tool" not in problems and "task_type" not in problems:
            registry = self.services.registry
            if body["tool"] not in registry or not isinstance(registry.get(body["tool"]), ExternalToolSpec):
                problems["tool"] = f"{body['tool']!r} is not an external tool (external_tools in the config)"
            elif "params" not in problems:
                try:
                    registry.validate(body["tool"], body["params"])
                except ValueError as exc:
                    for name, problem in getattr(exc, "problems", {"(params)": str(exc)}).items():
                        problems[f"params.{name}"] = problem
        return problems

    def _open_problems(self, body: dict[str, Any]) -> dict[str, str]:
        """The problems of a request for an open tool: its name, its schema, its params by the schema."""
        tool, problems = body["tool"], {}
        if not _OPEN_TOOL.fullmatch(tool):
            problems["tool"] = f"an open tool's name: 1-128 letters, digits, _.:/-; first a letter or digit: {tool!r}"
        elif tool in self.services.registry:
            problems["tool"] = (
                f"{tool!r} is a declared tool, not on task type {body['task_type']!r}'s list"
                " (an open tool may not take a declared tool's name)"
            )
        schema = body.get("schema")
        if schema is not None and (problem := schema_problem(schema)):
            problems["schema"] = problem
        elif isinstance(body.get("params"), dict):
            try:
                checked(schema or ANY_OBJECT, body["params"])
            except ParamsProblems as exc:
                problems.update({f"params.{name}": problem for name, problem in exc.problems.items()})
        return problems

    def _callback_problem(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            return f"not a URL: {url!r}"
        if parts.scheme not in ("http", "https") or not host:
            return f"an http(s) URL, got {url!r}"
        allowed = [entry.lower() for entry in self.services.config.api.webhook_hosts]
        if host.lower() not in allowed:
            return f"host {host!r} is not in api.webhook_hosts of the config (allowed: {', '.join(allowed) or 'none'})"
        return None

    def audit(
        self,
        session: Session,
        client: Client,
        call: str,
        action: Action | None,
        status: int,
        *,
        public_id: str | None = None,
        state: str | None = None,
    ) -> None:
        entry = audit.AuditEntry(
            kind="api.call",
            actor=client.name,
            at=self.services.clock.now(),
            action_public_id=action.public_id if action is not None else public_id,
            task_type=action.task_type if action is not None else None,
            params_hash=action.params_hash if action is not None else None,
            to_state=action.state if action is not None else state,
            note=call,
            data={"status": status},
        )
        audit.record(session, entry)

    def _audit_alone(self, client: Client, call: str, public_id: str, status: int) -> None:
        with self.services.sessions.begin() as session:
            self.audit(session, client, call, None, status, public_id=public_id)


def _own(session: Session, client: Client, public_id: str, *, lock: bool = False) -> Action | None:
    query = select(Action).where(Action.public_id == public_id, Action.api_client_id == client.id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).first()


def json_body(environ: WSGIEnvironment) -> tuple[Any, tuple[int, dict[str, Any]] | None]:
    try:
        return json.loads(read_body(environ, MAX_BODY) or b"null"), None
    except BodyRefused as refused:
        return None, (refused.status, {"error": refused.message})
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, (422, {"error": "the body is not JSON", "problems": {"body": "not JSON"}})
    except RecursionError:
        return None, (422, {"error": "the body's JSON is nested too deeply", "problems": {"body": "nested too deeply"}})


def _result_problems(body: Any) -> dict[str, str]:
    if not isinstance(body, dict):
        return {"body": 'expected a JSON object like {"status": "succeeded", "result": {…}}'}
    problems = {key: "unknown field" for key in body if key not in ("status", "result", "error")}
    if body.get("status") not in ("succeeded", "failed"):
        problems["status"] = f"'succeeded' or 'failed', got {body.get('status')!r}"
    if body.get("result") is not None and not isinstance(body["result"], dict):
        problems["result"] = "a JSON object"
    error = body.get("error")
    if error is not None and not isinstance(error, str):
        problems["error"] = "must be text"
    elif isinstance(error, str) and (problem := text_problem(error)):
        problems["error"] = problem
    return problems
