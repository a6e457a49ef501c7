"""Review many at once: the `review_waiting` button (App Home, reminders) opens a modal of what
waits for the clicker (`bot.blocks.review`); "Approve selected" (`review_batch`) approves exactly
the checked items, each its own decision (`approvals.batch.approve_checked`), and the modal then
says what became of each: approved, or not and why."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from slack_bolt import Ack, App, Respond

from approvals.batch import Checked, approve_checked
from approvals.decisions import Outcome
from bot import action_ids
from bot.admission import Shed
from bot.blocks.review import PICK, review_modal, review_result
from bot.listeners.actions import clicker, refused, tell, workspace
from bot.listeners.payloads import BadPayload, slack_id
from bot.presenter import action_label, review_for
from bot.services import Services
from core.states import ActionState

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    @app.action(action_ids.REVIEW_WAITING)
    def review_waiting(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()  # the trigger_id lives 3 s: the modal opens right after
        user, team = clicker(body), workspace(body)
        actions = body.get("actions")
        clicked = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
        task_type = clicked.get("value") or ""
        trigger_id = body.get("trigger_id")
        if slack_id(user) is None or not isinstance(task_type, str) or not isinstance(trigger_id, str):
            tell(services, respond, "This is not a click countersign can read.", user, team)
            return
        if task_type and task_type not in services.config.task_types:
            tell(services, respond, f"There is no task type `{task_type[:64]}` to review.", user, team)
            return
        assert user is not None
        services.background.submit(_open, services, respond, user, team, task_type or None, trigger_id)

    @app.view(action_ids.REVIEW_MODAL)
    def review_batch(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            shown, shown_at, first, checked = _submitted(view)
            user, team = body["user"]["id"], (body.get("team") or {}).get("id")
        except (BadPayload, KeyError, TypeError, ValueError) as problem:
            ack(response_action="errors", errors={_first_pick(view): f"This form is out of date: {problem}"})
            return
        if not checked:
            ack(response_action="errors", errors={first: "Check each item you approve: none is checked for you."})
            return
        result = Checked()
        try:
            with services.admission.turn("review") as turn:
                approve_checked(
                    services.sessions, services.clock, services.decisions, user, checked, shown,
                    shown_at=shown_at, team_id=team, bound=turn.bound, into=result,
                )  # fmt: skip
        except Shed:
            pass  # those not reached are told so: nothing was recorded for them
        ack(response_action="update", view=_outcome(services, result, checked))


def _open(
    services: Services, respond: Respond, user: str, team: str | None, task_type: str | None, trigger_id: str
) -> None:
    try:
        with services.sessions() as session:
            view = review_modal(review_for(session, services, user, team, task_type))
        services.client_for(team).views_open(trigger_id=trigger_id, view=view)
    except Exception as exc:  # noqa: BLE001 - the clicker is told instead
        log.warning("could not open the review of %s: %s", user, exc)
        message = "Slack did not open the review in time; please click again."
        tell(services, respond, message, user, team)


def _submitted(view: dict[str, Any]) -> tuple[dict[str, str], datetime, str, list[str]]:
    """(what the review showed: public id → binding, when, the first checkbox block, the checked ids)."""
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except (ValueError, RecursionError):
        raise BadPayload("its metadata is not JSON") from None
    shown = metadata.get("shown") if isinstance(metadata, dict) else None
    if not isinstance(shown, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in shown.items()):
        raise BadPayload("its metadata lists no items")
    shown_at = datetime.fromisoformat(str(metadata.get("at")))
    values = view["state"]["values"]
    if not isinstance(values, dict):
        raise BadPayload("its values are not an object")
    checked: list[str] = []
    picks = [block_id for block_id in values if isinstance(block_id, str) and block_id.startswith(PICK)]
    for block_id in picks:
        element = values[block_id].get(action_ids.REVIEW_PICK) if isinstance(values[block_id], dict) else None
        selected = element.get("selected_options") if isinstance(element, dict) else None
        for option in selected or []:
            value = option.get("value") if isinstance(option, dict) else None
            if not isinstance(value, str):
                raise BadPayload("a checked item has no value")
            checked.append(value)
    return shown, shown_at, (picks[0] if picks else _first_pick(view)), checked


def _first_pick(view: dict[str, Any]) -> str:
    blocks = view.get("blocks") if isinstance(view, dict) else None
    for block in blocks if isinstance(blocks, list) else []:
        if isinstance(block, dict) and str(block.get("block_id", "")).startswith(PICK):
            return str(block["block_id"])
    return f"{PICK}:0:0"


def _outcome(services: Services, result: Checked, checked: list[str]) -> dict[str, Any]:
    """The modal saying what became of each checked item."""
    with services.sessions() as session:
        names = {item: action_label(session, services.registry, item) or f"`{item}`" for item in dict.fromkeys(checked)}
    approved = [f"{_capital(names[item])}: {_approved(outcome)}" for item, outcome in result.approved.items()]
    not_approved = [refused(services, refusal) for refusal in result.refused.values()]
    unreached = [_capital(names[item]) for item in result.unreached(checked)]
    return review_result(approved, not_approved, unreached)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _approved(outcome: Outcome) -> str:
    if outcome.state == ActionState.APPROVED:
        return "approved"
    return f"your approval counts, {outcome.approvals} of {outcome.quorum}: it waits for another approver"
