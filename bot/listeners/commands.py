"""`/countersign run TYPE TEXT | status [ID] | autonomy [TYPE] | audit [ID] | help`.

Answers go back in the ack itself (ephemeral, to the person who typed the command)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from agent.tasks import TaskError, submit_task
from approvals.autonomy import describe
from approvals.workspaces import visible_tasks
from bot.blocks.text import escape, help_text, mention, slack_date
from bot.listeners.payloads import slack_id
from bot.services import Services
from core.models import Action, AuditEvent, Task

COMMAND = "/countersign"
RECENT = 5
# The ledger's links between records, as an event's data names them: shown on its line.
LINKS = {"compensation": "its undo", "undo_of": "undoes", "rule": "rule"}


def register(app: App, services: Services) -> None:
    @app.command(COMMAND)
    def countersign(ack: Ack, command: dict[str, Any]) -> None:
        text = (command.get("text") or "").strip()
        verb, _, rest = text.partition(" ")
        user = slack_id(command.get("user_id"))
        if user is None:  # Slack always says who typed it; without that nobody could be kept from approving
            ack(text="This command came without a user; nothing was started.")
            return
        handler = {"run": _run, "status": _status, "autonomy": _autonomy, "audit": _audit}.get(verb.lower())
        if handler is None:
            ack(text=_help(services, "" if verb.lower() in ("", "help") else f"I don't know `{escape(verb)}`."))
            return
        ack(text=handler(services, rest.strip(), user, command))


def _help(services: Services, preface: str = "") -> str:
    types = {name: t.description for name, t in services.config.task_types.items()}
    return f"{preface}\n{help_text(types)}".strip()


def _run(services: Services, rest: str, user: str, command: dict[str, Any]) -> str:
    task_type, _, text = rest.partition(" ")
    if task_type not in services.config.task_types or not text.strip():
        problem = (
            f"Unknown task type `{escape(task_type)}`."
            if task_type and task_type not in services.config.task_types
            else "Say what to do: `/countersign run TYPE TEXT`."
        )
        return _help(services, problem)
    try:
        with services.sessions.begin() as session:
            task = submit_task(
                session,
                services.config,
                task_type,
                text.strip(),
                now=services.clock.now(),
                requester=user,
                team_id=command.get("team_id"),
                channel=command.get("channel_id"),
            )
            task_public_id = task.public_id
    except TaskError as problem:
        return _help(services, f"{escape(str(problem))}.")
    channel = services.config.channel_for(task_type)
    return f"Started `{task_public_id}` ({task_type}). Drafts that need a person appear in <#{channel}>."


def _status(services: Services, rest: str, user: str, command: dict[str, Any]) -> str:
    team = slack_id(command.get("team_id"))
    with services.sessions() as session:
        if rest:
            return _status_of(session, rest, team)
        tasks = session.scalars(
            select(Task).where(Task.requester == user, visible_tasks(team)).order_by(Task.id.desc()).limit(RECENT)
        )
        lines = [f"`{t.public_id}` {t.task_type or 'unrouted'}: *{t.state}*" for t in tasks]
    return "Your recent tasks:\n" + "\n".join(lines) if lines else "You have no tasks yet. Try `/countersign help`."


def _status_of(session: Session, public_id: str, team: str | None) -> str:
    """One action or task, if it is of this workspace (another's is "not found", as for clicks)."""
    action = session.scalars(
        select(Action).join(Task, Task.id == Action.task_id).where(Action.public_id == public_id, visible_tasks(team))
    ).first()
    if action is not None:
        decided = f" by <@{action.decided_by}>" if action.decided_by else ""
        return f"Action `{action.public_id}` ({action.task_type}, `{action.tool}`): *{action.state}*{decided}"
    task = session.scalars(select(Task).where(Task.public_id == public_id, visible_tasks(team))).first()
    if task is None:
        return f"No task or action `{escape(public_id)}`."
    actions = session.scalars(select(Action).where(Action.task_id == task.id).order_by(Action.id)).all()
    lines = [f"• `{a.public_id}` `{a.tool}`: {a.state}" for a in actions]
    return "\n".join(
        [
            f"Task `{task.public_id}` ({task.task_type}): *{task.state}*"
            + (f" — {escape(task.paused_reason)}" if task.paused_reason else ""),
            *lines,
        ]
    )


def _autonomy(services: Services, rest: str, _user: str, _command: dict[str, Any]) -> str:
    names = [rest] if rest else sorted(services.config.task_types)
    if rest and rest not in services.config.task_types:
        return _help(services, f"Unknown task type `{escape(rest)}`.")
    lines = []
    with services.sessions() as session:
        for name in names:
            info = describe(session, name, services.config.task_types[name], services.clock.now())
            line = f"`{name}`: *{info['level']}* (ceiling {info['ceiling']})"
            if info["frozen_until"]:
                line += f", frozen until {info['frozen_until']}"
            if rest:  # one type: the evidence that earned its level, and that for the next one
                line += "\n" + autonomy_evidence(info)
            lines.append(line)
    return "Autonomy levels:\n" + "\n".join(lines)


def autonomy_evidence(info: dict[str, Any]) -> str:
    """Why a task type is at its level (the promotion and the evidence the admins saw) next to
    the evidence gathered since for the next level, which starts again from nothing."""
    lines = []
    earned = info.get("earned")
    if earned:
        by = ", ".join(mention(person) for person in earned["by"]) or "the admins"
        when = f" {slack_date(earned['at'])}" if earned["at"] else ""
        lines.append(
            f":arrow_up: *Earned {earned['from_level']} → {earned['to_level']}*{when}, promoted by {by} on this "
            f"evidence: {_evidence(earned['stats'])}"
        )
    upper = info["ceiling"] != info["level"]
    heading = "Toward the next level" + (" (evidence since the promotion)" if earned else "")
    if upper:
        lines.append(f"*{heading}:* {_evidence(info['stats'])}")
        lines.append("Still needed: " + ("; ".join(info["unmet"]) or "nothing: a proposal goes to the admins"))
    else:
        lines.append(
            f"*At its ceiling.* Evidence since {'the promotion' if earned else 'it started'}: "
            + _evidence(info["stats"])
        )
    return "\n".join(lines)


def _evidence(stats: dict[str, Any]) -> str:
    return (
        f"{stats.get('samples', 0)} outcomes ({stats.get('clean', 0)} clean, {stats.get('rejected', 0)} rejected, "
        f"{stats.get('vetoed', 0)} vetoed) from {stats.get('approvers', 0)} approvers over "
        f"{stats.get('days', 0)} days, clean-rate lower bound {stats.get('clean_lower_bound', 0):.2f}"
    )


def _audit(services: Services, rest: str, _user: str, command: dict[str, Any]) -> str:
    team = slack_id(command.get("team_id"))
    with services.sessions() as session:
        query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(10)
        if team is not None:  # this workspace's tasks' events, and those of no task (config, autonomy)
            query = query.outerjoin(Task, Task.public_id == AuditEvent.task_public_id).where(
                or_(AuditEvent.task_public_id.is_(None), visible_tasks(team))
            )
        if rest:
            query = query.where(or_(AuditEvent.action_public_id == rest, AuditEvent.task_public_id == rest))
        events = list(reversed(session.scalars(query).all()))
    if not events:
        return f"No audit events for `{escape(rest)}`." if rest else "The audit ledger is empty."
    lines = [
        f"`{e.seq}` {e.at.strftime('%Y-%m-%d %H:%M:%S')} {e.kind} by "
        f"{'system' if e.actor == 'system' else f'<@{e.actor}>'}"
        + (f" ({e.from_state} → {e.to_state})" if e.from_state else "")
        + _links(e)
        for e in events
    ]
    return "\n".join(lines)


def _links(event: AuditEvent) -> str:
    """The other records an event names (the undo it drafted, what a draft undoes, its rule)."""
    data = event.data or {}
    named = [(label, data[key]) for key, label in LINKS.items() if isinstance(data.get(key), str)]
    return "".join(f" · {label} `{escape(value)}`" for label, value in named)
