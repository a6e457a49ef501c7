"""Modal submissions: a rejection's reason, edited parameters, how an unknown outcome was
resolved. Field errors are shown inline (`response_action: errors`); a valid submission is one
decision, then the modal closes. A submission whose decision cannot start within its budget
(`bot.admission`) records nothing and says so on the form, which stays open to be submitted again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from sqlalchemy.orm import Session

from approvals.decisions import decide
from approvals.errors import ActionNotFound, DecisionRefused, InvalidEdit
from bot import action_ids
from bot.admission import Shed, Turn, busy
from bot.blocks.modals import NEXT, RUN_AGAIN, parse_edit
from bot.listeners.actions import refused_plain
from bot.listeners.payloads import BadPayload, metadata_from
from bot.services import Services
from core.json_params import form_schema

REASON_BLOCK = "reason"


def register(app: App, services: Services) -> None:
    @app.view(action_ids.REJECT_MODAL)
    def reject(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            metadata = metadata_from(view)
            reason = (view["state"]["values"][REASON_BLOCK][REASON_BLOCK].get("value") or "").strip()
        except (BadPayload, KeyError, TypeError) as problem:
            ack(response_action="errors", errors={REASON_BLOCK: f"This form is out of date: {problem}"})
            return
        if not reason:
            ack(response_action="errors", errors={REASON_BLOCK: "Say why, in a few words: the agent reads it."})
            return
        user, team = body["user"]["id"], (body.get("team") or {}).get("id")

        def reject_with_reason(session: Session) -> object:
            return services.decisions.reject(session, metadata["action_id"], user, reason, team_id=team)

        try:
            with services.admission.turn("reject") as turn:
                decide(services.sessions, services.clock, turn.bound(reject_with_reason))
        except Shed:
            ack(response_action="errors", errors={REASON_BLOCK: busy("submit")})
            return
        except (DecisionRefused, ActionNotFound) as refusal:
            ack(response_action="errors", errors={REASON_BLOCK: refused_plain(services, refusal, team)})
            return
        ack()

    @app.view(action_ids.RESOLVE_MODAL)
    def resolve(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            metadata = metadata_from(view)
            values = view["state"]["values"]
            note = ((values.get(REASON_BLOCK) or {}).get(REASON_BLOCK) or {}).get("value") or ""
            chosen = ((values.get(NEXT) or {}).get(NEXT) or {}).get("selected_option") or {}
            verdict = str(metadata.get("verdict"))
            if verdict not in ("ran", "not_run") or not isinstance(note, str):
                raise BadPayload(f"not a resolution: {verdict!r}")
            if verdict == "not_run" and chosen.get("value") == RUN_AGAIN:
                verdict = "run_again"
            user, team = body["user"]["id"], (body.get("team") or {}).get("id")
        except (BadPayload, KeyError, TypeError, AttributeError) as problem:
            ack(response_action="errors", errors={REASON_BLOCK: f"This form is out of date: {problem}"})
            return

        def resolve_it(session: Session) -> object:
            return services.resolutions.resolve(
                session, metadata["action_id"], user, verdict, str(metadata.get("params_hash", "")),  # type: ignore[arg-type]
                team_id=team, note=note.strip() or None,
            )  # fmt: skip

        try:
            with services.admission.turn("resolve") as turn:
                decide(services.sessions, services.clock, turn.bound(resolve_it))
        except Shed:
            ack(response_action="errors", errors={REASON_BLOCK: busy("submit")})
            return
        except (DecisionRefused, ActionNotFound) as refusal:
            ack(response_action="errors", errors={REASON_BLOCK: refused_plain(services, refusal, team)})
            return
        ack()

    @app.view(action_ids.EDIT_MODAL)
    def edit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            metadata = metadata_from(view)
            values = view["state"]["values"]
            if not isinstance(values, dict):
                raise BadPayload("the form's values are not an object")
            user, team = body["user"]["id"], (body.get("team") or {}).get("id")
        except (BadPayload, KeyError, TypeError) as problem:
            # Slack (and Bolt) take no `errors` without a block to show one on.
            ack(response_action="errors", errors={_first_block(view): f"This form is out of date: {problem}"})
            return
        first = _first_block(view)
        action_public_id, seen_hash = metadata["action_id"], str(metadata.get("params_hash", ""))
        seen_tool = metadata.get("tool_hash") if isinstance(metadata.get("tool_hash"), str) else None

        def may_edit(session: Session) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
            """The tool, the drafted params an edit goes over (the action's, never the form's) and
            an open tool's own schema."""
            action = services.decisions.may_edit(
                session, action_public_id, user, seen_hash, team_id=team, seen_tool=seen_tool
            )
            return action.tool, dict(action.params), action.params_schema

        def within(turn: Turn) -> dict[str, str]:
            """The edit's two steps in one decision turn: who may edit, then the approval with
            the form's values. The errors to show on the form; none: it was approved."""
            try:
                # Who may edit is settled before a single value of the form is read: parsing is
                # work done for the submitter, so someone who may not decide gets none of it.
                tool, current, own_schema = decide(services.sessions, services.clock, turn.bound(may_edit), actor=user)
            except (DecisionRefused, ActionNotFound) as refusal:
                return {first: refused_plain(services, refusal, team)}
            try:
                schema = (
                    form_schema(own_schema, current)
                    if own_schema is not None
                    else services.registry.get(tool).json_schema()
                )
            except LookupError:
                return {first: f"unknown tool {tool!r}"}
            edited, errors = parse_edit(schema, values)
            if errors:
                return errors
            params = {**current, **edited}

            def approve_with_edits(session: Session) -> object:
                return services.decisions.approve_with_edits(
                    session, action_public_id, user, seen_hash, params, team_id=team, seen_tool=seen_tool
                )

            try:
                decide(services.sessions, services.clock, turn.bound(approve_with_edits))
            except InvalidEdit as invalid:
                return _by_block(invalid.problems, values)
            except (DecisionRefused, ActionNotFound) as refusal:
                return {first: refused_plain(services, refusal, team)}
            return {}

        answer_form(ack, services, "edit", within, first)


def answer_form(ack: Ack, services: Services, kind: str, within: Callable[[Turn], dict[str, str]], first: str) -> None:
    """Read and decide a form's submission within an admission turn, then answer Slack: the
    problems by block (the form stays open), or nothing (it closes). Shed: "busy" on `first`."""
    try:
        with services.admission.turn(kind) as turn:
            errors = within(turn)
    except Shed:
        errors = {first: busy("submit")}
    if errors:
        ack(response_action="errors", errors=errors)
    else:
        ack()


def _first_block(view: dict[str, Any]) -> str:
    """The block a form-wide error is shown on: the form's first input (`params` if it has none)."""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    return str(next(iter(values), "params")) if isinstance(values, dict) else "params"


def _by_block(problems: dict[str, str], values: dict[str, Any]) -> dict[str, str]:
    """Field problems keyed by the modal's block ids (one per parameter); the rest on the first block."""
    first = next(iter(values), "params")
    errors: dict[str, str] = {}
    for field, problem in problems.items():
        block = field if field in values else first
        errors[block] = f"{errors[block]}; {problem}" if block in errors else problem
    return errors
