"""Standing rules from a card: **Approve, and allow similar…** (`allow_similar`) opens a form
(`allow_similar_rule`) whose submission approves the action and makes the rule, both or neither
(`approvals.standing.allow_similar`). Only admins get the form, and only on task types that allow
rules; a refused click is audited and told to the clicker alone."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from approvals import rules, standing
from approvals.decisions import decide
from approvals.errors import ActionNotFound, DecisionRefused
from bot import action_ids
from bot.admission import Turn
from bot.blocks.rules import EXPIRES, MAX_USES, allow_similar_modal, param_block
from bot.listeners.actions import clicker, open_modal, refused, refused_plain, tell, workspace
from bot.listeners.payloads import BadPayload, click_from, metadata_from
from bot.listeners.views import answer_form
from bot.services import Services
from core.durations import parse_duration
from core.models import Action
from core.numbers import plain_decimal


def _may_allow(services: Services, action_public_id: str, user: str, team: str | None) -> Any:
    def may_allow(session: Session) -> tuple[str, str, dict[str, Any]]:
        action: Action = standing.may_allow(
            session,
            action_public_id,
            user,
            task_types=services.config.task_types,
            policy_of=services.registry.policy,
            admins=services.config.slack.admins,
            directory=services.directory,
            team_id=team,
        )
        return action.tool, action.task_type, dict(action.params)

    return may_allow


def register(app: App, services: Services) -> None:
    @app.action(action_ids.ALLOW_SIMILAR)
    def allow_similar(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()  # the trigger_id lives 3 s: the form opens right after
        try:
            click = click_from(body)
            tool, task_type, params = decide(
                services.sessions, services.clock, _may_allow(services, click.value, click.user, click.team),
                actor=click.user,
            )  # fmt: skip
            schema = services.registry.get(tool).json_schema()
        except (DecisionRefused, ActionNotFound, BadPayload) as refusal:
            tell(services, respond, refused(services, refusal), clicker(body), workspace(body))
            return
        except LookupError as problem:
            tell(services, respond, str(problem), clicker(body), workspace(body))
            return
        seen = {"action_id": click.value, "params_hash": click.seen_hash, "tool_hash": click.seen_tool}
        view = allow_similar_modal(click.value, tool, task_type, schema, params, json.dumps(seen))
        open_modal(services, respond, click, view)

    @app.view(action_ids.ALLOW_SIMILAR_MODAL)
    def allow_similar_rule(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        first = _first_block(view)
        try:
            metadata = metadata_from(view)
            values = view["state"]["values"]
            if not isinstance(values, dict):
                raise BadPayload("the form's values are not an object")
            user, team = body["user"]["id"], (body.get("team") or {}).get("id")
        except (BadPayload, KeyError, TypeError) as problem:
            ack(response_action="errors", errors={first: f"This form is out of date: {problem}"})
            return
        action_public_id, seen_hash = metadata["action_id"], str(metadata.get("params_hash", ""))
        seen_tool = metadata.get("tool_hash") if isinstance(metadata.get("tool_hash"), str) else None

        def within(turn: Turn) -> dict[str, str]:
            """Who may make it first, then the form read, then approval and rule in one transaction."""
            try:
                tool, _, _ = decide(
                    services.sessions, services.clock, turn.bound(_may_allow(services, action_public_id, user, team)),
                    actor=user,
                )  # fmt: skip
                schema = services.registry.get(tool).json_schema()
            except (DecisionRefused, ActionNotFound) as refusal:
                return {first: refused_plain(services, refusal, team)}
            except LookupError as problem:
                return {first: str(problem)}
            constraints, expires_in, max_uses, errors = _read(values, schema)
            if errors:
                return errors

            def approve_and_allow(session: Session) -> object:
                return standing.allow_similar(
                    session, services.decisions, action_public_id, user, seen_hash,
                    constraints=constraints, schema=schema, expires_in=expires_in, max_uses=max_uses,
                    task_types=services.config.task_types, admins=services.config.slack.admins,
                    now=services.clock.now(), team_id=team, seen_tool=seen_tool,
                )  # fmt: skip

            try:
                decide(services.sessions, services.clock, turn.bound(approve_and_allow), actor=user)
            except rules.InvalidRule as invalid:
                return _by_block(invalid.problems, values, first)
            except (DecisionRefused, ActionNotFound) as refusal:
                return {first: refused_plain(services, refusal, team)}
            return {}

        answer_form(ack, services, "allow_similar", within, first)


def _read(values: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], Any, int | None, dict[str, str]]:
    """(constraints, expiry, count limit, errors by block) from the form's values."""
    errors: dict[str, str] = {}
    constraints: dict[str, Any] = {}
    for name, prop in rules.properties(schema).items():
        text = _text(values, param_block(name), name)
        if text is None or not text.strip():
            errors[param_block(name)] = "Write `any` to allow every value."
            continue
        try:
            constraints[name] = rules.parse(text, prop)
        except ValueError as exc:
            errors[param_block(name)] = str(exc)
    try:  # a pattern RE2 refuses, a value of the wrong type: said now, on its own line
        rules.validate(constraints, schema)
    except rules.InvalidRule as invalid:
        for name, problem in invalid.problems.items():
            errors.setdefault(param_block(name), problem)
    expires_in = None
    try:
        expires_in = parse_duration(_text(values, EXPIRES, EXPIRES) or "")
    except ValueError as exc:
        errors[EXPIRES] = str(exc)
    max_uses = None
    limit = _text(values, MAX_USES, MAX_USES)
    if limit:
        try:
            number = plain_decimal(limit.strip())
            if number != number.to_integral_value():
                raise ValueError(f"a whole number: {limit!r}")
            max_uses = int(number)
        except ValueError as exc:
            errors[MAX_USES] = str(exc)
    return constraints, expires_in, max_uses, errors


def _text(values: dict[str, Any], block: str, action: str) -> str | None:
    found = (values.get(block) or {}).get(action) or {}
    value = found.get("value") if isinstance(found, dict) else None
    return value if isinstance(value, str) else None


def _first_block(view: dict[str, Any]) -> str:
    blocks = view.get("blocks")
    inputs = (
        [b.get("block_id") for b in blocks if isinstance(b, dict) and b.get("type") == "input"]
        if isinstance(blocks, list)
        else []
    )
    return str(inputs[0]) if inputs else EXPIRES


def _by_block(problems: dict[str, str], values: dict[str, Any], first: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, problem in problems.items():
        block = name if name in (EXPIRES, MAX_USES) else param_block(name)
        block = block if block in values else first
        errors[block] = f"{errors[block]}; {problem}" if block in errors else problem
    return errors
