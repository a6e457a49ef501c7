"""Graduated autonomy's buttons: Promote / Dismiss on proposals (admins only), "This was
wrong" and "Looks right" on runs nobody approved."""

from __future__ import annotations

from collections.abc import Callable

from slack_bolt import App
from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import proposals
from bot import action_ids
from bot.listeners.actions import decision_listener
from bot.listeners.payloads import BadPayload, Click
from bot.services import Services
from core.config import TaskTypeConfig
from core.models import Action, Proposal


def register(app: App, services: Services) -> None:
    config = services.config

    def task_type_of(session: Session, model: type[Proposal] | type[Action], public_id: str) -> TaskTypeConfig:
        name = session.scalars(select(model.task_type).where(model.public_id == public_id)).first()
        if name is None or name not in config.task_types:
            raise BadPayload(f"nothing to decide for {public_id!r}")
        return config.task_types[name]

    def by_admin_or_witness(
        decision: Callable[..., object], subject: type[Proposal] | type[Action]
    ) -> Callable[[Session, Click], object]:
        """Promote, Dismiss and "This was wrong" share their shape: the subject's task type,
        the admins, the directory and the time go to the domain, which checks who may."""

        def call(session: Session, click: Click) -> object:
            return decision(
                session,
                click.value,
                click.user,
                task_type=task_type_of(session, subject, click.value),
                admins=config.slack.admins,
                directory=services.directory,
                now=services.clock.now(),
            )

        return call

    promote = by_admin_or_witness(proposals.promote, Proposal)
    dismiss = by_admin_or_witness(proposals.dismiss, Proposal)
    report = by_admin_or_witness(proposals.report_incident, Action)

    looks_right = by_admin_or_witness(proposals.looks_right, Action)

    app.action(action_ids.PROMOTE)(decision_listener(services, promote))
    app.action(action_ids.DISMISS)(decision_listener(services, dismiss))
    app.action(action_ids.REPORT_INCIDENT)(decision_listener(services, report))
    app.action(action_ids.REVIEW_OK)(decision_listener(services, looks_right))
