"""What each outbox message becomes in Slack: one delivery function per message type.

`DELIVERIES` maps every type of `core.messages` to its function; the sender looks the row's
decoded message up there, so adding a kind is one dataclass there and one function here
(`tests/bot/test_deliveries.py` checks that no type lacks one). A delivery reads what it
shows from the database at delivery time (a card shows the action as it is now), renders it
with `bot.blocks` and posts through `bot.slack_posts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.connect import DM_LINK_TTL
from approvals.batch import waiting_for
from bot.blocks.alerts import audit_head, backlog_alert, budget_alert, fatigue_alert
from bot.blocks.card import approval_card, asked_note, card_text, credential_notice, result_reply
from bot.blocks.connect import connect_blocks, requester_connect
from bot.blocks.ping import expired_notice, reminded_note, reminder, reminder_acknowledged, stall_alert
from bot.blocks.proposal import level_changed, proposal_card, review_card
from bot.blocks.question import question_message
from bot.blocks.task import task_message
from bot.blocks.views import CardView, ConnectLinkView
from bot.presenter import card_view, outcomes, proposal_view, question_view, task_view
from bot.slack_posts import Delivery, Poster, Result, Undeliverable
from core import outbox
from core.messages import (
    ActionAcknowledged,
    ActionDecided,
    ActionEnded,
    ActionExpired,
    ActionFailed,
    ActionSucceeded,
    ActionUnknown,
    AuditHead,
    BacklogAlert,
    BudgetAlert,
    CardPosted,
    CardUpdated,
    ConnectRequested,
    FatigueAlert,
    LevelChanged,
    Message,
    ProposalChanged,
    ProposalMessage,
    ProposalPosted,
    QuestionAnswered,
    QuestionAsked,
    Reminded,
    ReviewRequested,
    StallEscalated,
    TaskEvent,
    TaskFinished,
    TaskPaused,
    TaskResumed,
    TaskStalled,
    TaskStarted,
    TypeChoiceAsked,
)
from core.models import Action, Proposal, Question, SlackMessage, Task
from core.states import OPEN_FOR_DECISION

Deliver = Callable[[Poster, Delivery, Any], Result | None]
REMINDER = "reminder"  # slack_messages key: reminder:{action}:{user}:{step}, a reminder DM

# -- action cards ------------------------------------------------------------------------------


def _card(out: Poster, d: Delivery, action_public_id: str) -> tuple[CardView, tuple[str, str], Result]:
    """Post the action's card, or update it in place: (its view, where it is, the result)."""
    services = out.services
    with services.sessions() as session:
        action = session.scalars(select(Action).where(Action.public_id == action_public_id)).one()
        card = card_view(session, services.config, services.registry, action, now=services.clock.now())
        posted = session.get(SlackMessage, f"card:{action_public_id}")
        where = (posted.channel, posted.ts) if posted else None
        asked_in = _asked_in(session, action)
    blocks, text = approval_card(card), card_text(card)
    if where is None:
        result = out.post(
            d, services.config.channel_for(card.task_type), text, blocks, None, key=f"card:{action_public_id}"
        )
        if asked_in is not None:
            # The person asked in a thread: the conversation stays there, with a link to the card.
            link = out.permalink(d, result["channel"], result["ts"])
            out.post(d, asked_in[0], asked_note(card, link), None, asked_in[1])
        return card, (result["channel"], result["ts"]), result
    out.update(d, where[0], where[1], text, blocks)
    return card, where, {"channel": where[0], "ts": where[1], "updated": True}


def _asked_in(session: Session, action: Action) -> tuple[str, str] | None:
    """The thread an `@countersign` mention started the action's task in, if it did."""
    task = session.get(Task, action.task_id)
    if task is None or not task.channel or not task.thread_ts:
        return None
    return task.channel, task.thread_ts


def card(out: Poster, d: Delivery, message: CardPosted | CardUpdated | ActionDecided) -> Result:
    return _card(out, d, message.action_public_id)[2]


def acknowledged(out: Poster, d: Delivery, message: ActionAcknowledged) -> Result:
    """The card says who has it, its thread too, and each reminder DM about it changes in place:
    "Acknowledged — the card is yours" to whoever clicked, who has it to the others."""
    view, (channel, ts), result = _card(out, d, message.action_public_id)
    if view.acknowledged_by:
        out.post(d, channel, f"<@{view.acknowledged_by}> is on it.", None, ts)
        with out.services.sessions() as session:
            reminders = session.scalars(
                select(SlackMessage).where(SlackMessage.key.startswith(f"{REMINDER}:{message.action_public_id}:"))
            ).all()
            sent = [(row.key.split(":")[2], row.channel, row.ts) for row in reminders]
        link = out.permalink(d, channel, ts) if sent else None
        for user, dm_channel, dm_ts in sent:
            text, blocks = reminder_acknowledged(view, user, link)
            out.update(d, dm_channel, dm_ts, text, blocks)
    return result


def ended(out: Poster, d: Delivery, message: ActionEnded) -> Result:
    """The card, its result in the thread, and a DM to whoever's credential failed it."""
    view, (channel, ts), result = _card(out, d, message.action_public_id)
    reply_text, reply_blocks = result_reply(view)
    out.post(d, channel, reply_text, reply_blocks, ts)
    with out.services.sessions() as session:
        action = session.scalars(select(Action).where(Action.public_id == message.action_public_id)).one()
        asked_in = _asked_in(session, action)
    if asked_in is not None:  # the result where the person asked, too
        out.post(d, asked_in[0], reply_text, reply_blocks, asked_in[1])
    if message.tell:  # their own credential failed: they are the one who can fix it
        notice = credential_notice(view)
        links = _links(out, message.tell, message.action_public_id, view.task_type, view.tool)
        buttons = connect_blocks(notice, links, lasts=DM_LINK_TTL) if links else None
        out.post(d, out.dm(d, message.tell), notice, buttons, None)
    return result


def expired(out: Poster, d: Delivery, message: ActionExpired) -> Result:
    view, (channel, ts), result = _card(out, d, message.action_public_id)
    out.post(d, channel, "Expired: nobody decided in time, so it did not run.", None, ts)
    if view.requester:
        out.post(d, out.dm(d, view.requester), expired_notice(view), None, None)
    return result


def connect(out: Poster, d: Delivery, message: ConnectRequested) -> Result:
    """A direct message with the requester's own connect links, while the action waits and
    they have not connected what it runs with; one per action (the row's)."""
    services, user = out.services, message.user
    with services.sessions() as session:
        action = session.scalars(select(Action).where(Action.public_id == message.action_public_id)).one()
        view = card_view(session, services.config, services.registry, action)
        names = services.delegation.unconnected(
            session, user, services.delegation.names(action.task_type, action.tool), action.tool
        )
    if action.state not in OPEN_FOR_DECISION:
        return {"skipped": f"decided before the link went out ({action.state})"}
    if not names:
        return {"skipped": "already connected"}
    links = _links(out, user, message.action_public_id, action.task_type, action.tool, names)
    if not links:
        return {"skipped": "connected with the CLI only (no provider with authorize_url)"}
    text, blocks = requester_connect(view, links, lasts=DM_LINK_TTL)
    out.post(d, out.dm(d, user), text, blocks, None)
    return {"sent": user, "secrets": names}


def _links(
    out: Poster, user: str, action_public_id: str, task_type: str, tool: str, names: list[str] | None = None
) -> list[ConnectLinkView]:
    """Fresh personal connect links for `user` (for `names`, else every secret the action's tool
    takes from a person), when a provider's sign-in connects them all; [] when only the CLI does."""
    services = out.services
    delegation = services.delegation
    wanted = names if names is not None else list(delegation.names(task_type, tool))
    if services.connect is None or not delegation.web(wanted):
        return []
    with services.sessions() as session:
        team = outbox.action_workspace(session, action_public_id)
    issued = services.connect.links(user, team, wanted, tool, action_public_id=action_public_id, ttl=DM_LINK_TTL)
    return [ConnectLinkView(name=link.name, provider=link.provider, url=link.url) for link in issued]


def remind(out: Poster, d: Delivery, message: Reminded) -> Result:
    """A DM to each target (with Acknowledge), then a note in the card's thread."""
    services = out.services
    with services.sessions() as session:
        action = session.scalars(select(Action).where(Action.public_id == message.action_public_id)).one()
        if action.state not in OPEN_FOR_DECISION:
            return {"skipped": f"decided before the reminder went out ({action.state})"}
        view = card_view(session, services.config, services.registry, action)
        posted = session.get(SlackMessage, f"card:{action.public_id}")
        thread = (posted.channel, posted.ts) if posted else None
    link = out.permalink(d, thread[0], thread[1]) if thread is not None else None
    expires_at = datetime.fromisoformat(message.expires_at) if message.expires_at else None
    with services.sessions() as session:
        team = outbox.action_workspace(session, message.action_public_id)
        waiting = {
            user: len(waiting_for(session, user, services.directory, team_id=team, task_type=action.task_type))
            for user in message.targets
        }
    for user in message.targets:
        text, blocks = reminder(
            view, message.reason, message.late, link, expires_at=expires_at, now=services.clock.now(),
            waiting=waiting[user],
        )  # fmt: skip
        # Remembered, so Acknowledge can change the DM in place.
        key = f"{REMINDER}:{message.action_public_id}:{user}:{message.step}"
        out.post(d, out.dm(d, user), text, blocks, None, key=key)
    if thread is not None:
        note = reminded_note(message.targets, message.reason, message.late, expires_at=expires_at)
        out.post(d, thread[0], note, None, thread[1])
    return {"reminded": message.targets}


def review(out: Poster, d: Delivery, message: ReviewRequested) -> Result:
    """A spot check of a run nobody approved, in the thread of its card (or its channel)."""
    services = out.services
    with services.sessions() as session:
        action = session.scalars(select(Action).where(Action.public_id == message.action_public_id)).one()
        view = card_view(session, services.config, services.registry, action)
        posted = session.get(SlackMessage, f"card:{message.action_public_id}")
        where = (posted.channel, posted.ts) if posted else (services.config.channel_for(action.task_type), None)
    text, blocks = review_card(view)
    return out.post(d, where[0], text, blocks, where[1])


# -- tasks -------------------------------------------------------------------------------------


def _task_home(out: Poster, session: Session, task_public_id: str) -> tuple[Task, str, str | None]:
    """The task, and where it reports: the thread it was asked in, else its type's channel."""
    config = out.services.config
    task = session.scalars(select(Task).where(Task.public_id == task_public_id)).one()
    if task.channel and task.thread_ts:
        return task, task.channel, task.thread_ts
    if task.task_type in config.task_types:
        return task, config.channel_for(task.task_type), None
    channel = config.slack.approvals_channel or task.channel
    if channel is None:
        raise Undeliverable(f"task {task.public_id!r} has nowhere to report")
    return task, channel, None


def task_started(out: Poster, d: Delivery, message: TaskStarted) -> Result:
    with out.services.sessions() as session:
        _, channel, thread_ts = _task_home(out, session, message.task_public_id)
    return out.post(d, channel, f"Working on it: `{message.task_public_id}`.", None, thread_ts)


def task_event(out: Poster, d: Delivery, message: TaskEvent) -> Result:
    """A task message tells of its event, even when delivered after the task moved on: a
    "resumed" sent after the task finished must not repeat the final answer."""
    kind = getattr(message, "kind", None)
    candidates = tuple(message.candidates) if isinstance(message, TypeChoiceAsked) else ()
    with out.services.sessions() as session:
        task, channel, thread_ts = _task_home(out, session, message.task_public_id)
        view = task_view(task, kind=kind, candidates=candidates)
    view = replace(view, state=message.STATE, reason=getattr(message, "reason", view.reason))
    text, blocks = task_message(view)
    return out.post(d, channel, text, blocks, thread_ts)


def task_finished(out: Poster, d: Delivery, message: TaskFinished) -> Result:
    with out.services.sessions() as session:
        task, channel, thread_ts = _task_home(out, session, message.task_public_id)
        view = task_view(task, actions=outcomes(session, task, out.services.registry))
    text, blocks = task_message(view)
    return out.post(d, channel, text, blocks, thread_ts)


def stall(out: Poster, d: Delivery, message: StallEscalated) -> Result:
    with out.services.sessions() as session:
        task, channel, thread_ts = _task_home(out, session, message.task_public_id)
        view = task_view(task)
    text, blocks = stall_alert(view, message.what, message.targets)
    return out.post(d, channel, text, blocks, thread_ts)


# -- questions ---------------------------------------------------------------------------------


def question(out: Poster, d: Delivery, message: QuestionAsked | QuestionAnswered) -> Result:
    """Post the question where its asker sent it (a channel, or a person's DM), or update it in
    place once answered: the answer, who gave it and when, in place of the Answer button."""
    services, key = out.services, f"question:{message.question_public_id}"
    with services.sessions() as session:
        row = session.scalars(select(Question).where(Question.public_id == message.question_public_id)).one()
        view = question_view(session, row)
        target, thread_ts = row.channel, row.thread_ts
        posted = session.get(SlackMessage, key)
        where = (posted.channel, posted.ts) if posted else None
    text, blocks = question_message(view)
    if where is None:
        channel = out.dm(d, target) if target.startswith(("U", "W")) else target
        return out.post(d, channel, text, blocks, thread_ts, key=key)
    out.update(d, where[0], where[1], text, blocks)
    return {"channel": where[0], "ts": where[1], "updated": True}


# -- autonomy and operations ---------------------------------------------------------------------


def proposal(out: Poster, d: Delivery, message: ProposalMessage) -> Result:
    """Post the proposal to the admins, or update it in place once signed or decided."""
    services, proposal_public_id = out.services, message.proposal_public_id
    with services.sessions() as session:
        row = session.scalars(select(Proposal).where(Proposal.public_id == proposal_public_id)).one()
        text, blocks = proposal_card(proposal_view(session, row, services.registry))
        posted = session.get(SlackMessage, f"proposal:{proposal_public_id}")
        where = (posted.channel, posted.ts) if posted else None
    if where is None:
        return out.post(d, _admin_channel(out, "proposals"), text, blocks, None, key=f"proposal:{proposal_public_id}")
    out.update(d, where[0], where[1], text, blocks)
    return {"channel": where[0], "ts": where[1], "updated": True}


def level(out: Poster, d: Delivery, message: LevelChanged) -> Result:
    text = level_changed(message.task_type, message.from_level, message.to_level, message.by, message.reason)
    return out.post(d, out.services.config.channel_for(message.task_type), text, None, None)


def alert(out: Poster, d: Delivery, message: BudgetAlert | BacklogAlert | FatigueAlert) -> Result:
    if isinstance(message, FatigueAlert):
        text = fatigue_alert(message)
    else:
        text = budget_alert(message) if isinstance(message, BudgetAlert) else backlog_alert(message)
    return out.post(d, _admin_channel(out, "alerts"), text, None, None)


def head(out: Poster, d: Delivery, message: AuditHead) -> Result:
    channel = out.services.config.proposals_channel or out.services.config.slack.approvals_channel
    if channel is None:
        raise Undeliverable("no admin or approvals channel configured for audit heads")
    return out.post(d, channel, audit_head(message), None, None)


def _admin_channel(out: Poster, what: str) -> str:
    channel = out.services.config.proposals_channel
    if channel is None:
        raise Undeliverable(f"no admin or approvals channel configured for {what}")
    return channel


DELIVERIES: dict[type[Message], Deliver] = {
    CardPosted: card,
    CardUpdated: card,
    ActionDecided: card,
    ActionAcknowledged: acknowledged,
    ActionSucceeded: ended,
    ActionFailed: ended,
    ActionUnknown: ended,
    ActionExpired: expired,
    ConnectRequested: connect,
    Reminded: remind,
    ReviewRequested: review,
    TaskStarted: task_started,
    TaskResumed: task_event,
    TaskPaused: task_event,
    TaskStalled: task_event,
    TypeChoiceAsked: task_event,
    TaskFinished: task_finished,
    StallEscalated: stall,
    ProposalPosted: proposal,
    ProposalChanged: proposal,
    LevelChanged: level,
    BudgetAlert: alert,
    BacklogAlert: alert,
    FatigueAlert: alert,
    AuditHead: head,
    QuestionAsked: question,
    QuestionAnswered: question,
}


def deliver(out: Poster, d: Delivery, message: Message) -> Result | None:
    return DELIVERIES[type(message)](out, d, message)
