"""Buttons on cards, task messages and App Home: approve, reject, edit, veto, acknowledge,
resolve an unknown outcome, undo a run, extend a budget, stop a task, choose a task type."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from agent.connect import LINK_TTL
from agent.task_controls import EXTEND, STOP, controlled, extend, stop
from agent.tasks import TaskError, choose_task_type
from approvals.decisions import decide
from approvals.errors import ActionNotFound, CredentialMissing, DecisionRefused, NotEditable, OtherWorkspace
from approvals.subjects import editable, quorum_of, tool_of
from approvals.undo import request as undo_run
from bot import action_ids
from bot.admission import DECIDING, Shed
from bot.blocks.connect import connect_blocks
from bot.blocks.modals import edit_modal, reject_modal, resolve_modal
from bot.blocks.refusals import as_plain, refusal_text
from bot.blocks.text import escape, mention_ids
from bot.blocks.views import ConnectLinkView
from bot.directory import person_name
from bot.listeners.payloads import BadPayload, Click, click_from
from bot.presenter import action_label
from bot.services import Services
from core.json_params import form_schema

log = logging.getLogger(__name__)


# A handler turns one click into one domain call in the caller's transaction. Handlers are
# named functions so a stack trace says which button it was.
Handler = Callable[[Services, Click, Session], object]


def approve(services: Services, click: Click, session: Session) -> object:
    return services.decisions.approve(
        session, click.value, click.user, click.seen_hash, team_id=click.team, seen_tool=click.seen_tool
    )


def veto(services: Services, click: Click, session: Session) -> object:
    return services.decisions.veto(session, click.value, click.user, team_id=click.team)


def acknowledge(services: Services, click: Click, session: Session) -> object:
    return services.decisions.acknowledge(session, click.value, click.user, team_id=click.team)


def undo(services: Services, click: Click, session: Session) -> object:
    config, now, team = services.config, services.clock.now(), click.team
    return undo_run(session, config, services.registry, services.directory, click.value, click.user, now, team_id=team)


def extend_budget(services: Services, click: Click, session: Session) -> object:
    now = services.clock.now()
    return extend(session, services.config, services.directory, click.value, click.user, now, team_id=click.team)


def stop_task(services: Services, click: Click, session: Session) -> object:
    now = services.clock.now()
    return stop(session, services.config, services.directory, click.value, click.user, now, team_id=click.team)


def choose_type(services: Services, click: Click, session: Session) -> object:
    task_public_id, task_type = _split_choice(click.value)
    now = services.clock.now()
    return choose_task_type(session, services.config, task_public_id, task_type, click.user, now, team_id=click.team)


def decision_listener(services: Services, handler: Handler) -> Callable[..., None]:
    """A button listener that makes one decision in one transaction, then acks; a refusal is
    acked too, and told only to the person who clicked. So is a click whose decision cannot start
    within its time budget (`bot.admission`): nothing is recorded, and they may click again."""

    def listener(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        try:
            click = click_from(body)
            with services.admission.turn(_button(body)) as turn:
                call = turn.bound(partial(handler, services, click))
                decide(services.sessions, services.clock, call, actor=click.user)
        except Shed as shed:
            ack()
            tell(services, respond, str(shed), clicker(body), workspace(body))
            return
        except CredentialMissing as refusal:
            ack()
            if services.connect is not None and refusal.owner is not None and refusal.owner == clicker(body):
                # Their own credential is missing: the refusal carries their personal link.
                services.background.submit(_offer_connect, services, respond, refusal, workspace(body))
            else:
                tell(services, respond, refused(services, refusal), clicker(body), workspace(body))
            return
        except (DecisionRefused, ActionNotFound, BadPayload) as refusal:
            ack()
            tell(services, respond, refused(services, refusal), clicker(body), workspace(body))
            return
        ack()

    return listener


def refused(services: Services, refusal: Exception) -> str:
    """What the clicker reads: the refusal in their words, the action named by what it does."""
    what = None
    # Another workspace's action is refused as if it did not exist: it is not looked up to be named.
    if isinstance(refusal, DecisionRefused) and refusal.action_public_id and not isinstance(refusal, OtherWorkspace):
        try:
            with services.sessions() as session:
                what = action_label(session, services.registry, refusal.action_public_id)
        except Exception:  # the refusal still goes out, naming the action less well
            log.exception("could not name action %s for a refusal", refusal.action_public_id)
    if isinstance(refusal, ActionNotFound | BadPayload):
        return mention_ids(escape(str(refusal)))
    return refusal_text(refusal, what)


def refused_plain(services: Services, refusal: Exception, team: str | None) -> str:
    """A refusal for a form's field error (plain text): people by their Slack name."""

    def name(user: str) -> str | None:
        return person_name(services, user, team)

    return as_plain(refused(services, refusal), name)


def task_listener(services: Services, attempted: str, handler: Handler) -> Callable[..., None]:
    """A button on a task's message: acked first, then one audited try in one transaction; a
    refusal, or a try that gets no turn within its budget (`bot.admission`), is told only to the
    person who clicked, and the message stays as it was."""

    def listener(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            click = click_from(body)
            with services.admission.turn(_button(body)) as turn:
                controlled(
                    services.sessions,
                    services.clock,
                    turn.bound(partial(handler, services, click)),
                    task_public_id=click.value.partition(":")[0],  # a type choice's value is `tsk_…:type`
                    actor=click.user,
                    attempted=attempted,
                )
        except (TaskError, BadPayload, Shed) as refusal:
            tell(services, respond, mention_ids(escape(str(refusal))), clicker(body), workspace(body))

    return listener


def _offer_connect(services: Services, respond: Respond, refusal: CredentialMissing, team: str | None) -> None:
    """After the ack: issue the clicker's own connect links and answer them with the refusal."""
    assert services.connect is not None and refusal.owner is not None
    text = str(refusal)
    try:
        with services.sessions() as session:
            tool = tool_of(session, refusal.action_public_id)
        issued = services.connect.links(
            refusal.owner, team, refusal.names, tool or "*", action_public_id=refusal.action_public_id, ttl=LINK_TTL
        )
        links = [ConnectLinkView(name=link.name, provider=link.provider, url=link.url) for link in issued]
        blocks = connect_blocks(escape(text), links, lasts=LINK_TTL)
        if respond.response_url:
            respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        else:
            services.client_for(team).chat_postMessage(channel=refusal.owner, text=text, blocks=blocks)
    except Exception:
        log.exception("could not send the clicker their connect link")


def register(app: App, services: Services) -> None:
    app.action(action_ids.APPROVE)(decision_listener(services, approve))
    app.action(action_ids.VETO)(decision_listener(services, veto))
    app.action(action_ids.ACKNOWLEDGE)(decision_listener(services, acknowledge))
    app.action(action_ids.UNDO)(decision_listener(services, undo))
    app.action(action_ids.EXTEND_BUDGET)(task_listener(services, EXTEND, extend_budget))
    app.action(action_ids.STOP_TASK)(task_listener(services, STOP, stop_task))
    app.action(action_ids.CHOOSE_TYPE)(task_listener(services, action_ids.CHOOSE_TYPE, choose_type))

    @app.action(action_ids.CONNECT)
    def connect(ack: Ack) -> None:
        ack()  # a url button: the browser opens the link; Slack still tells us of the click

    @app.action(action_ids.REJECT)
    def reject(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()  # the trigger_id lives 3 s: open the modal right away
        try:
            click = click_from(body)
        except BadPayload as problem:
            tell(services, respond, str(problem), clicker(body), workspace(body))
            return
        metadata = json.dumps({"action_id": click.value, "params_hash": click.seen_hash})
        open_modal(services, respond, click, reject_modal(click.value, click.seen_hash, metadata))

    def resolve(ran: bool) -> Callable[..., None]:
        """It ran / it did not run: a form for an optional note (and, not run, whether to run it
        again); the decision is made when it is submitted (`bot.listeners.views`)."""

        def listener(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            ack()
            try:
                click = click_from(body)
                with services.sessions() as session:
                    quorum = quorum_of(session, click.value, click.team)
            except (BadPayload, ActionNotFound) as problem:
                tell(services, respond, str(problem), clicker(body), workspace(body))
                return
            verdict = "ran" if ran else "not_run"
            metadata = json.dumps({"action_id": click.value, "params_hash": click.seen_hash, "verdict": verdict})
            open_modal(services, respond, click, resolve_modal(click.value, click.seen_hash, ran, quorum, metadata))

        listener.__name__ = action_ids.RESOLVE_RAN if ran else action_ids.RESOLVE_NOT_RUN
        return listener

    app.action(action_ids.RESOLVE_RAN)(resolve(ran=True))
    app.action(action_ids.RESOLVE_NOT_RUN)(resolve(ran=False))

    @app.action(action_ids.EDIT)
    def edit(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            click = click_from(body)
            with services.sessions() as session:
                tool, params, own_schema = editable(session, click.value, click.team)
            # An open tool's schema came with the action; a declared tool's is the registry's.
            schema = (
                form_schema(own_schema, params) if own_schema is not None else services.registry.get(tool).json_schema()
            )
        except NotEditable as refusal:
            tell(services, respond, refused(services, refusal), clicker(body), workspace(body))
            return
        except (BadPayload, ActionNotFound, LookupError) as problem:
            tell(services, respond, str(problem), clicker(body), workspace(body))
            return
        seen = {"action_id": click.value, "params_hash": click.seen_hash, "tool": tool, "tool_hash": click.seen_tool}
        metadata = json.dumps(seen)
        open_modal(services, respond, click, edit_modal(click.value, tool, schema, params, metadata))


def _split_choice(value: str) -> tuple[str, str]:
    task_public_id, _, task_type = value.partition(":")
    if not task_type:
        raise BadPayload(f"not a task type choice: {value!r}")
    return task_public_id, task_type


def _button(body: dict[str, Any]) -> str:
    """The clicked button's action id (a metric's label: `bot.admission.DECIDING` bounds it)."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    action_id = action.get("action_id")
    return action_id if isinstance(action_id, str) and action_id in DECIDING else "other"


def clicker(body: dict[str, Any]) -> str | None:
    user = (body.get("user") or {}).get("id")
    return user if isinstance(user, str) else None


def workspace(body: dict[str, Any]) -> str | None:
    team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
    return team if isinstance(team, str) else None


def tell(services: Services, respond: Respond, text: str, user: str | None = None, team: str | None = None) -> None:
    """Answer only the person who clicked, after the ack: through the click's response_url, or
    (App Home clicks have none) in a direct message."""
    services.background.submit(_respond, services, respond, text, user, team)


def _respond(services: Services, respond: Respond, text: str, user: str | None, team: str | None = None) -> None:
    try:
        if respond.response_url:
            respond(text=text, response_type="ephemeral", replace_original=False)
        elif user:
            services.client_for(team).chat_postMessage(channel=user, text=text)
    except Exception:
        log.exception("could not answer the clicker")


def open_modal(services: Services, respond: Respond, click: Click, view: dict[str, Any]) -> None:
    def open_view() -> None:
        try:
            services.client_for(click.team).views_open(trigger_id=click.trigger_id or "", view=view)
        except Exception as exc:  # noqa: BLE001 - tell the clicker instead
            log.warning("views.open failed: %s", exc)
            message = "Slack did not open the form in time; please click again."
            _respond(services, respond, message, click.user, click.team)

    services.background.submit(open_view)
