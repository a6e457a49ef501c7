"""Graduated autonomy's buttons: Promote / Dismiss on proposals (admins only), "This was
wrong" and "Looks right" on runs nobody approved."""

from __future__ import annotations

from collections.abc import Callable

from slack_bolt import App
from sqlalchemy.orm import Session

from approvals import proposals
from approvals.subjects import task_type_of
from bot import action_ids
from bot.listeners.actions import decision_listener
from bot.listeners.payloads import BadPayload, Click
from bot.services import Services
from core.models import Action, Proposal


def promote(services: Services, click: Click, session: Session) -> object:
    return _by_admin_or_witness(services, click, session, proposals.promote, Proposal)


def dismiss(services: Services, click: Click, session: Session) -> object:
    return _by_admin_or_witness(services, click, session, proposals.dismiss, Proposal)


def report_incident(services: Services, click: Click, session: Session) -> object:
    return _by_admin_or_witness(services, click, session, proposals.report_incident, Action)


def looks_right(services: Services, click: Click, session: Session) -> object:
    return _by_admin_or_witness(services, click, session, proposals.looks_right, Action)


def _by_admin_or_witness(
    services: Services,
    click: Click,
    session: Session,
    decision: Callable[..., object],
    subject: type[Proposal] | type[Action],
) -> object:
    """Promote, Dismiss and "This was wrong" share their shape: the subject's task type, the
    admins, the directory and the time go to the domain, which checks who may."""
    config = services.config
    name = task_type_of(session, subject, click.value)
    if name is None or name not in config.task_types:
        raise BadPayload(f"nothing to decide for {click.value!r}")
    return decision(
        session,
        click.value,
        click.user,
        task_type=config.task_types[name],
        admins=config.slack.admins,
        directory=services.directory,
        now=services.clock.now(),
    )


def register(app: App, services: Services) -> None:
    app.action(action_ids.PROMOTE)(decision_listener(services, promote))
    app.action(action_ids.DISMISS)(decision_listener(services, dismiss))
    app.action(action_ids.REPORT_INCIDENT)(decision_listener(services, report_incident))
    app.action(action_ids.REVIEW_OK)(decision_listener(services, looks_right))
