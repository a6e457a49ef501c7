"""From database rows to the renderers' view dataclasses (bot/blocks/views.py): what people may
read, so secret-looking values are masked here (`approvals.masking`), once for every surface
(card, App Home, review of many, thread replies); the rows keep the real values."""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.delegation import Delegation
from agent.tools import ToolRegistry as ToolCatalog
from approvals import fatigue, masking, rules, standing
from approvals.autonomy import effective_level
from approvals.batch import waiting_for
from approvals.decisions import APPROVING_KINDS, shown_binding
from approvals.graduation import RESOLVING_KINDS
from approvals.masking import mask_text
from approvals.policy import route
from approvals.ports import is_listed_approver
from approvals.resolutions import last_claim, run_again_votes
from approvals.undo import status as undo_status
from approvals.workspaces import visible_tasks
from bot.blocks.changes import change_of
from bot.blocks.home import home_view
from bot.blocks.text import action_name, escape, truncate
from bot.blocks.views import (
    ActionOutcomeView,
    ApproverView,
    CardView,
    CredentialView,
    HomeView,
    ProposalView,
    QuestionView,
    ReviewItemView,
    ReviewView,
    RuleView,
    TaskView,
)
from core.config import Config
from core.models import Action, ApiClient, Decision, Proposal, Question, SlackMessage, Task

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)
HOME_LIMIT = 15
REVIEW_READ = 100  # waiting actions read for one review of many (a modal shows fewer)
APPROVER_DAYS = 30  # the window of the approvers' signals in App Home


def card_view(
    session: Session, config: Config, catalog: ToolCatalog, action: Action, *, now: datetime | None = None
) -> CardView:
    """The card of `action` as it is now; `now` (the clock's) says how long is left of a veto window."""
    task = session.get(Task, action.task_id)
    decisions = session.scalars(select(Decision).where(Decision.action_id == action.id).order_by(Decision.id)).all()
    closing = next((d for d in reversed(decisions) if d.kind in ("reject", "veto")), None)
    resolved = next((d for d in reversed(decisions) if d.kind in RESOLVING_KINDS), None)
    claim = last_claim(session, action.public_id) if action.state == "unknown" or resolved else None
    edit = next((d for d in reversed(decisions) if d.kind == "edit"), None)
    acknowledged = next((d for d in decisions if d.kind == "acknowledge"), None)
    approvers = {
        d.actor
        for d in decisions
        if d.kind in APPROVING_KINDS and d.params_hash == action.params_hash and d.tool_hash == action.tool_hash
    }
    task_type = config.task_types.get(action.task_type)
    threshold = task_type.confidence_threshold if task_type else 0.0
    caps: tuple[str, ...] = ()
    if task_type is not None and action.tool in catalog.names():
        level = effective_level(session, action.task_type, task_type)
        policy = catalog.policy(action.tool)
        fallback_model = (action.model or "?") if action.fallback else None
        caps = route(
            level,
            policy,
            action.confidence,
            threshold,
            credentials=task_type.credentials,
            fallback_model=fallback_model,
        ).reasons
    similar = (
        action.state == "pending"
        and task_type is not None
        and action.tool in catalog.names()
        and standing.could_apply(catalog.policy(action.tool), task_type)
    )
    undo = undo_status(session, config, catalog, action)
    undoes = session.get(Action, action.undo_of) if action.undo_of is not None else None
    shown = masking.mask_params(action.params)
    note = Delegation(config, catalog).note(session, action)
    credential = (
        CredentialView(
            mode=note.mode, names=note.names, owner=note.owner, connected=note.connected, how=note.how, web=note.web
        )
        if note
        else None
    )
    return CardView(
        action_public_id=action.public_id,
        task_public_id=task.public_id if task else "",
        task_type=action.task_type,
        tool=action.tool,
        summary=_summary(catalog, action),
        risk=action.risk,
        mode=action.mode,
        state=action.state,
        requester=action.requester,
        request_text=mask_text(task.request_text) if task else "",
        rationale=mask_text(action.rationale),
        confidence=action.confidence,
        confidence_threshold=threshold,
        params=shown,
        params_hash=action.params_hash,
        masked=shown != action.params,
        change=change_of(action.tool, action.params),
        tool_hash=action.tool_hash,
        tool_changed_at=action.tool_changed_at,
        param_schema=catalog.get(action.tool).json_schema() if action.tool in catalog else action.params_schema,
        run_at=action.run_at if action.state == "scheduled" else None,
        rendered_at=now,
        approvals=len(approvers),
        quorum=action.quorum,
        decided_by=action.decided_by,
        decided_at=action.decided_at,
        decision_note=mask_text(closing.note) if closing and closing.note else None,
        diff=_masked_diff(edit.diff) if edit else None,
        edited_by=edit.actor if edit else None,
        acknowledged_by=acknowledged.actor if acknowledged else None,
        caps=caps,
        model=action.model,
        fallback=action.fallback,
        result=masking.mask_value(action.result) if action.result is not None else None,
        error=mask_text(action.error) if action.error else action.error,
        outcome=action.outcome,
        credential=credential,
        started_at=claim.at if claim else None,
        lease_owner=claim.owner if claim else None,
        run_again_votes=run_again_votes(session, action) if action.state == "unknown" else 0,
        resolution=resolved.kind if resolved else None,
        resolved_by=resolved.actor if resolved else None,
        resolved_at=resolved.at if resolved else None,
        resolution_note=mask_text(resolved.note) if resolved and resolved.note else None,
        editable=action.editable,
        allow_similar=similar,
        rule_public_id=standing.public_id_of(session, action.standing_rule_id),
        rule_made=standing.made_from(session, action.public_id) if action.decided_by else None,
        undo_until=undo.until if undo else None,
        undo_action=undo.compensation if undo else None,
        undo_state=undo.compensation_state if undo else None,
        undo_asked_by=undo.asked_by if undo else None,
        undoes=undoes.public_id if undoes else None,
        undoes_tool=undoes.tool if undoes else "",
        undoes_summary=_summary(catalog, undoes) if undoes else "",
    )


def _summary(catalog: ToolCatalog, action: Action) -> str:
    """What the action does, for people: from the real params, then masked like them."""
    return mask_text(catalog.summarize(action.tool, action.params))


def _masked_note(note: str | None) -> str | None:
    return mask_text(note) if note else note


def _masked_diff(diff: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
    """An edit's {field: {"from", "to"}} as people may read it: each value masked as its field's."""
    if diff is None:
        return None
    return {name: {end: masking.mask_value(v, name) for end, v in change.items()} for name, change in diff.items()}


def question_view(session: Session, question: Question) -> QuestionView:
    asker = session.scalar(select(ApiClient.name).where(ApiClient.id == question.api_client_id)) or "?"
    options = tuple(
        (str(option["name"]), str(option.get("title") or option["name"])) for option in question.options or []
    )
    return QuestionView(
        question_public_id=question.public_id,
        task_type=question.task_type,
        asker=asker,
        subject=question.subject,
        text=question.text,
        state=question.state,
        approvers=tuple(question.approvers),
        responders=tuple(question.responders) if question.responders is not None else None,
        options=options,
        answer=question.answer,
        option=question.option,
        answered_by=question.answered_by,
        answered_at=question.answered_at,
    )


def action_label(session: Session, catalog: ToolCatalog, action_public_id: str) -> str | None:
    """An action named for people (mrkdwn): what it does, its id as a detail; None if no such action."""
    found = session.execute(select(Action.tool, Action.params).where(Action.public_id == action_public_id)).first()
    if found is None:
        return None
    tool, params = found
    name = action_name(mask_text(catalog.summarize(tool, params or {})), tool)
    return f"{truncate(name, 300)} (action `{escape(action_public_id)}`)"


def proposal_view(session: Session, proposal: Proposal, catalog: ToolCatalog) -> ProposalView:
    # One line per action: only the decision that made it an edit or a rejection brings its note
    # (an action has other decisions too: acknowledgements, approvals short of quorum).
    rows = session.execute(
        select(Action.public_id, Action.outcome, Decision.note, Action.tool, Action.params)
        .join(
            Decision,
            (Decision.action_id == Action.id) & Decision.kind.in_(["edit", "reject"]),
            isouter=True,
        )
        .where(Action.task_type == proposal.task_type, Action.outcome.in_(["edited", "rejected"]))
        .order_by(Action.outcome_at.desc(), Decision.id.desc())
        .limit(40)
    ).all()
    notes: dict[str, tuple[str, str, str | None, str]] = {}
    for public_id, outcome, note, tool, params in rows:
        if public_id not in notes:
            summary = mask_text(catalog.summarize(tool, params or {}))
            notes[public_id] = (public_id, str(outcome), mask_text(note) if note else note, summary)
    return ProposalView(
        proposal_public_id=proposal.public_id,
        task_type=proposal.task_type,
        from_level=proposal.from_level,
        to_level=proposal.to_level,
        state=proposal.state,
        stats=dict(proposal.evidence),
        signatures=tuple(proposal.signatures),
        needed=proposal.needed,
        decided_by=proposal.decided_by,
        recent=tuple(notes.values())[:10],
    )


def outcomes(session: Session, task: Task, catalog: ToolCatalog) -> tuple[ActionOutcomeView, ...]:
    """How each of the task's actions ended, oldest first: the rows and their decisions in two queries."""
    actions = session.scalars(select(Action).where(Action.task_id == task.id).order_by(Action.id)).all()
    if not actions:
        return ()
    decided: dict[int, list[Decision]] = {action.id: [] for action in actions}
    query = select(Decision).where(Decision.action_id.in_(list(decided))).order_by(Decision.id)
    for decision in session.scalars(query):
        decided[decision.action_id].append(decision)
    views = []
    for action in actions:
        decisions = decided[action.id]
        closing = next((d for d in reversed(decisions) if d.kind in ("reject", "veto")), None)
        resolved = next((d for d in reversed(decisions) if d.kind in RESOLVING_KINDS), None)
        views.append(
            ActionOutcomeView(
                tool=action.tool,
                state=action.state,
                summary=_summary(catalog, action),
                decided_by=closing.actor if closing else None,
                note=_masked_note(closing.note if closing else resolved.note if resolved else None),
                error=mask_text(action.error) if action.error else action.error,
                resolution=resolved.kind if resolved else None,
                resolved_by=resolved.actor if resolved else None,
            )
        )
    return tuple(views)


def task_view(
    task: Task,
    *,
    kind: str | None = None,
    candidates: tuple[str, ...] = (),
    actions: tuple[ActionOutcomeView, ...] = (),
) -> TaskView:
    return TaskView(
        task_public_id=task.public_id,
        task_type=task.task_type,
        state=task.state,
        requester=task.requester,
        request_text=task.request_text,
        reason=task.paused_reason,
        kind=kind,
        final_text=task.final_text,
        candidates=candidates,
        steps=task.steps,
        tokens=task.input_tokens + task.output_tokens,
        cost_usd=task.cost_usd,
        actions=actions,
    )


def review_items(session: Session, config: Config, catalog: ToolCatalog, actions: list[Action]) -> list[ReviewItemView]:
    """The waiting `actions` as a review of many shows them: their tasks and edits in two queries."""
    if not actions:
        return []
    tasks = {task.id: task for task in session.scalars(select(Task).where(Task.id.in_({a.task_id for a in actions})))}
    edits: dict[int, Decision] = {}
    query = select(Decision).where(Decision.action_id.in_([a.id for a in actions]), Decision.kind == "edit")
    for decision in session.scalars(query.order_by(Decision.id)):
        edits[decision.action_id] = decision  # the latest edit of each
    items = []
    for action in actions:
        task_type = config.task_types.get(action.task_type)
        edit = edits.get(action.id)
        task = tasks.get(action.task_id)
        items.append(
            ReviewItemView(
                action_public_id=action.public_id,
                task_type=action.task_type,
                tool=action.tool,
                summary=_summary(catalog, action),
                risk=action.risk,
                requester=action.requester,
                request_text=mask_text(task.request_text) if task else "",
                rationale=mask_text(action.rationale),
                confidence=action.confidence,
                confidence_threshold=task_type.confidence_threshold if task_type else 0.0,
                params=masking.mask_params(action.params),
                params_hash=action.params_hash,
                binding=shown_binding(action.params_hash, action.tool_hash),
                drafted_at=action.created_at,
                diff=_masked_diff(edit.diff) if edit else None,
                edited_by=edit.actor if edit else None,
                tool_changed=action.tool_changed_at is not None,
            )
        )
    return items


def review_for(session: Session, services: Services, user: str, team: str | None, task_type: str | None) -> ReviewView:
    """What waits for `user` (of `task_type`, or every type), as the review of many shows it."""
    waiting = waiting_for(session, user, services.directory, team_id=team, task_type=task_type or None)
    shown = waiting[:REVIEW_READ]  # the oldest; the modal keeps as many of them as it holds
    items = review_items(session, services.config, services.registry, shown)
    return ReviewView(
        user=user, task_type=task_type or None, items=tuple(items), waiting=len(waiting), shown_at=services.clock.now()
    )


def approver_views(session: Session, config: Config, now: datetime, days: int) -> tuple[ApproverView, ...]:
    """Every approver's signals over the last `days` (busiest first), flagged as the alert would."""
    found = fatigue.signals(session, now - timedelta(days=days), fatigue.min_read_times(config))
    return tuple(
        ApproverView(
            approver=s.approver,
            decisions=s.decisions,
            approvals=s.approvals,
            approval_rate=s.approval_rate,
            median_read_s=s.median_read_s,
            fast_share=s.fast_share,
            longest_fast_streak=s.longest_fast_streak,
            flagged=fatigue.flagged(s, config),
        )
        for s in found
    )


def home_for(session: Session, services: Services, user: str, team: str | None = None) -> HomeView:
    """`user`'s App Home: only work of their workspace `team`."""
    config = services.config
    of_team = select(Action).join(Task, Task.id == Action.task_id).where(visible_tasks(team))
    pending = session.scalars(
        of_team.where(Action.state.in_(["pending", "scheduled"])).order_by(Action.id.desc()).limit(200)
    ).all()
    admin = is_listed_approver(user, config.slack.admins, services.directory)
    # "Approve, and allow similar…" is an admin's: a Home, drawn for one person, offers it to admins only.
    waiting = tuple(
        _offer_similar(card_view(session, config, services.registry, a), admin)
        for a in pending
        if a.requester != user and is_listed_approver(user, a.approvers, services.directory)
    )[:HOME_LIMIT]
    decided = session.scalars(
        of_team.where(Action.decided_at.is_not(None)).order_by(Action.decided_at.desc()).limit(HOME_LIMIT)
    ).all()
    levels = tuple((name, effective_level(session, name, t).value) for name, t in sorted(config.task_types.items()))
    reviewable = waiting_for(session, user, services.directory, team_id=team)
    by_type = Counter(action.task_type for action in reviewable)
    return HomeView(
        user=user,
        waiting=waiting,
        recent=tuple(card_view(session, config, services.registry, a) for a in decided),
        levels=levels,
        review_all=len(reviewable),
        review_by_type=tuple(sorted(by_type.items())),
        approvers=approver_views(session, config, services.clock.now(), APPROVER_DAYS) if admin else None,
        approvers_days=APPROVER_DAYS,
        rules=rule_views(session, services.clock.now()) if admin else None,
    )


def _offer_similar(card: CardView, admin: bool) -> CardView:
    return card if admin or not card.allow_similar else replace(card, allow_similar=False)


def rule_views(session: Session, now: datetime, limit: int = 20) -> tuple[RuleView, ...]:
    """The newest standing rules, as the admins' App Home lists them."""
    return tuple(
        RuleView(
            rule_public_id=rule.public_id,
            task_type=rule.task_type,
            tool=rule.tool,
            constraints=rules.summary(rule.constraints),
            status=standing.status(rule, now),
            created_by=rule.created_by,
            expires_at=rule.expires_at,
            uses=rule.uses,
            max_uses=rule.max_uses,
        )
        for rule in standing.listed(session)[:limit]
    )


def publish_home(services: Services, user: str, team: str | None = None) -> None:
    try:
        client = services.client_for(team)
        with services.sessions() as session:
            home = home_for(session, services, user, team)
            where = _cards_posted(session, [card.action_public_id for card in home.recent])
        links = {action: link for action, (channel, ts) in where.items() if (link := _permalink(client, channel, ts))}
        client.views_publish(user_id=user, view=home_view(replace(home, links=links)))
    except Exception:
        log.exception("could not publish the App Home of %s", user)


def _cards_posted(session: Session, actions: list[str]) -> dict[str, tuple[str, str]]:
    """Where each of these actions' cards was posted: {action public id: (channel, ts)}."""
    rows = session.scalars(select(SlackMessage).where(SlackMessage.key.in_([f"card:{a}" for a in actions]))).all()
    return {row.key.removeprefix("card:"): (row.channel, row.ts) for row in rows}


# A message's permalink never changes: each is asked of Slack once per process (a Home shows up to
# HOME_LIMIT of them and is published whenever someone opens it).
_PERMALINKS: OrderedDict[tuple[str, str, str], str] = OrderedDict()
_PERMALINKS_KEPT = 2000
_permalinks_lock = threading.Lock()


def _permalink(client: WebClient, channel: str, ts: str) -> str | None:
    """The card's permalink for a Home's "Recently decided" row; None if Slack has none (the row
    then goes without a link)."""
    key = (client.token or "", channel, ts)
    with _permalinks_lock:
        if key in _PERMALINKS:
            return _PERMALINKS[key]
    try:
        link = client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
    except SlackApiError as exc:
        log.warning("no permalink for %s/%s: %s", channel, ts, exc.response.get("error"))
        return None
    if not isinstance(link, str):
        return None
    with _permalinks_lock:
        _PERMALINKS[key] = link
        while len(_PERMALINKS) > _PERMALINKS_KEPT:
            _PERMALINKS.popitem(last=False)
    return link
