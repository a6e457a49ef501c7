"""The workspace as one person's Slack client sees it, as JSON for the sandbox page: the
channels and their DMs, every message with its thread and edits, their ephemeral messages,
the modal on their screen (with inline errors) and their App Home.

Text and blocks are passed on exactly as the app sent them; the page escapes as it renders.
"""

from __future__ import annotations

from typing import Any

from bot.sandbox.actor import Actor
from bot.sandbox.slack_methods import WORKSPACE_URL
from bot.sandbox.workspace import JsonDict, Message


def snapshot(actor: Actor, user: str) -> JsonDict:
    workspace = actor.workspace
    users: dict[str, JsonDict] = {
        actor.bot_user_id: {"name": "countersign", "role": "app", "is_bot": True},
    }
    for persona in actor.personas:
        users[persona.id] = {"name": persona.name, "role": persona.role, "about": persona.about, "is_bot": False}
    channels: list[JsonDict] = []
    messages: dict[str, list[JsonDict]] = {}
    for channel in workspace.channels():
        if channel.user is not None and channel.user != user:
            continue  # someone else's DM with the app
        kind = "dm" if channel.user is not None else "channel"
        channels.append({"id": channel.id, "name": channel.name, "kind": kind})
        messages[channel.id] = [_message(actor, m) for m in workspace.messages(channel.id)]
    ephemerals = [
        {
            "channel": e.channel,
            "ts": e.ts,
            "text": e.text,
            "blocks": e.blocks,
            "thread_ts": e.thread_ts,
            "user": actor.bot_user_id,
        }
        for e in workspace.ephemerals(user=user)
    ]
    modal: JsonDict | None = None
    found = actor.modal_for(user)
    if found is not None:
        view, errors = found
        modal = {"id": view.id, "hash": view.hash, "view": view.payload, "errors": errors}
    home = workspace.home(user)
    return {
        "me": user,
        "team": {"id": workspace.team_id, "name": "countersign sandbox", "url": WORKSPACE_URL},
        "bot": actor.bot_user_id,
        "command": actor.command,
        "users": users,
        "personas": [{"id": p.id, "name": p.name, "role": p.role, "about": p.about} for p in actor.personas],
        "usergroups": {g.id: g.handle for g in workspace.usergroups()},
        "channels": channels,
        "messages": messages,
        "ephemerals": ephemerals,
        "modal": modal,
        "home": {"id": home.id, "hash": home.hash, "view": home.payload} if home else None,
    }


def _message(actor: Actor, message: Message) -> dict[str, Any]:
    author = actor.author(message.channel, message.ts)
    return {
        "ts": message.ts,
        "user": author or message.user,
        "text": message.text,
        "blocks": message.blocks,
        "thread_ts": message.thread_ts,
        "edited": bool(message.edits),
        "broadcast": message.broadcast,
    }
