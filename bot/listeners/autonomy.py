"""Graduated autonomy's buttons: Promote / Dismiss on proposals (admins only), "This was
wrong" and "Looks right" on runs nobody approved."""

from __future__ import annotations

from slack_bolt import App
from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import proposals
from approvals.errors import ActionNotFound
from bot import action_ids
from bot.listeners.actions import decision_listener
from bot.listeners.payloads import BadPayload, Click
from bot.services import Services
from core.config import TaskTypeConfig
from core.models import Action, Decision, Proposal


def register(app: App, services: Services) -> None:
    config = services.config

    def task_type_of(session: Session, model: type[Proposal] | type[Action], public_id: str) -> TaskTypeConfig:
        name = session.scalars(select(model.task_type).where(model.public_id == public_id)).first()
        if name is None or name not in config.task_types:
            raise BadPayload(f"nothing to decide for {public_id!r}")
        return config.task_types[name]

    def promote(session: Session, click: Click) -> object:
        return proposals.promote(
            session,
            click.value,
            click.user,
            task_type=task_type_of(session, Proposal, click.value),
            admins=config.slack.admins,
            directory=services.directory,
            now=services.clock.now(),
        )

    def dismiss(session: Session, click: Click) -> object:
        return proposals.dismiss(
            session,
            click.value,
            click.user,
            task_type=task_type_of(session, Proposal, click.value),
            admins=config.slack.admins,
            directory=services.directory,
            now=services.clock.now(),
        )

    def report(session: Session, click: Click) -> object:
        return proposals.report_incident(
            session,
            click.value,
            click.user,
            task_type=task_type_of(session, Action, click.value),
            admins=config.slack.admins,
            directory=services.directory,
            now=services.clock.now(),
        )

    def looks_right(session: Session, click: Click) -> object:
        action = session.scalars(select(Action).where(Action.public_id == click.value)).first()
        if action is None:
            raise ActionNotFound(click.value)
        session.add(
            Decision(
                action_id=action.id,
                kind="review_ok",
                actor=click.user,
                params_hash=action.params_hash,
                at=services.clock.now(),
            )
        )
        return action

    app.action(action_ids.PROMOTE)(decision_listener(services, promote))
    app.action(action_ids.DISMISS)(decision_listener(services, dismiss))
    app.action(action_ids.REPORT_INCIDENT)(decision_listener(services, report))
    app.action(action_ids.REVIEW_OK)(decision_listener(services, looks_right))
