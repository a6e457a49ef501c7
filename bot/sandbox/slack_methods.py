"""The Web API methods the emulator answers, one function each, registered by name in
`METHODS`: each checks its parameters as Slack does (errors by Slack's codes) and applies
the call to the workspace. Adding a method = one function with `@_method("name")`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.sandbox.workspace import JsonDict, SlackError, parse_blocks, parse_view, truthy

if TYPE_CHECKING:
    from bot.sandbox.slack_api import SlackEmulator

BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "commands",
    "groups:history",
    "im:history",
    "im:write",
    "usergroups:read",
    "users:read",
)


WORKSPACE_URL = "https://countersign-sandbox.slack.com/"


def error_body(exc: SlackError) -> JsonDict:
    body: JsonDict = {"ok": False, "error": exc.code}
    if exc.messages:
        body["response_metadata"] = {"messages": exc.messages}
    return body


def _required(params: JsonDict, key: str, error: str) -> str:
    value = params.get(key)
    if not value:
        raise SlackError(error, f"missing `{key}`")
    return str(value)


def _content(params: JsonDict) -> tuple[str, list[JsonDict]]:
    text, blocks = str(params.get("text") or ""), parse_blocks(params.get("blocks"))
    if not text and not blocks and not params.get("attachments"):
        raise SlackError("no_text")
    return text, blocks


def _flag(params: JsonDict, key: str) -> bool:
    return truthy(params.get(key))


def _metadata(params: JsonDict) -> JsonDict | None:
    """Message metadata as Slack checks it: an object (or its JSON) with a string `event_type`
    and an object `event_payload`."""
    raw = params.get("metadata")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SlackError("invalid_metadata_format", "metadata must be a JSON object") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event_type"), str):
        raise SlackError("invalid_metadata_schema", "metadata needs a string event_type")
    if not isinstance(raw.get("event_payload", {}), dict):
        raise SlackError("invalid_metadata_schema", "event_payload must be an object")
    return {"event_type": raw["event_type"], "event_payload": raw.get("event_payload", {})}


# -- methods ------------------------------------------------------------------------------------
Method = Callable[["SlackEmulator", JsonDict], JsonDict]
METHODS: dict[str, Method] = {}


def _method(name: str) -> Callable[[Method], Method]:
    def register(handler: Method) -> Method:
        METHODS[name] = handler
        return handler

    return register


@_method("auth.test")
def _auth_test(em: SlackEmulator, p: JsonDict) -> JsonDict:
    ws = em.workspace
    return {
        "url": WORKSPACE_URL, "team": "countersign sandbox", "user": "countersign",
        "team_id": ws.team_id, "user_id": ws.bot_user_id, "bot_id": ws.bot_id, "is_enterprise_install": False,
    }  # fmt: skip


@_method("chat.postMessage")
def _post_message(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel = _required(p, "channel", "channel_not_found")
    text, blocks = _content(p)
    thread_ts = str(p.get("thread_ts") or "") or None
    message = em.workspace.post(
        channel, text, blocks, thread_ts=thread_ts, broadcast=_flag(p, "reply_broadcast"), metadata=_metadata(p)
    )
    return {"channel": message.channel, "ts": message.ts, "message": em.workspace.to_slack(message, metadata=True)}


@_method("chat.update")
def _update(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel, ts = _required(p, "channel", "channel_not_found"), _required(p, "ts", "message_not_found")
    text, blocks = _content(p)
    message = em.workspace.update(channel, ts, text, blocks, via="chat.update")
    return {"channel": channel, "ts": ts, "text": text, "message": em.workspace.to_slack(message)}


@_method("chat.delete")
def _delete(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel, ts = _required(p, "channel", "channel_not_found"), _required(p, "ts", "message_not_found")
    em.workspace.delete(channel, ts)
    return {"channel": channel, "ts": ts}


@_method("chat.getPermalink")
def _get_permalink(em: SlackEmulator, p: JsonDict) -> JsonDict:
    """As Slack: `https://{workspace}.slack.com/archives/{channel}/p{ts without its dot}`; a
    thread reply's carries `thread_ts` and `cid`. No scope is needed."""
    channel, ts = _required(p, "channel", "channel_not_found"), _required(p, "message_ts", "message_not_found")
    message = em.workspace.message(channel, ts)
    link = f"{WORKSPACE_URL}archives/{channel}/p{ts.replace('.', '')}"
    if message.thread_ts and message.thread_ts != ts:
        link += f"?thread_ts={message.thread_ts}&cid={channel}"
    return {"channel": channel, "permalink": link}


@_method("chat.postEphemeral")
def _post_ephemeral(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel, user = _required(p, "channel", "channel_not_found"), _required(p, "user", "user_not_found")
    text, blocks = _content(p)
    thread_ts = str(p.get("thread_ts") or "") or None
    return {"message_ts": em.workspace.post_ephemeral(channel, user, text, blocks, thread_ts=thread_ts).ts}


@_method("conversations.open")
def _open(em: SlackEmulator, p: JsonDict) -> JsonDict:
    users = p.get("users") or ""
    users = [u.strip() for u in users.split(",") if u.strip()] if isinstance(users, str) else list(users)
    if len(users) != 1:
        raise SlackError("users_list_not_supplied" if not users else "not_supported", "open a DM with one user")
    channel = em.workspace.open_dm(str(users[0]))
    return {"channel": {"id": channel.id, "is_im": True, "user": channel.user}}


@_method("conversations.history")
def _history(em: SlackEmulator, p: JsonDict) -> JsonDict:
    messages = em.workspace.history(_required(p, "channel", "channel_not_found"))
    limit = int(p.get("limit") or 100)
    page = [em.workspace.to_slack(m, metadata=_flag(p, "include_all_metadata")) for m in messages[:limit]]
    return {"messages": page, "has_more": len(messages) > limit, "response_metadata": {"next_cursor": ""}}


@_method("conversations.replies")
def _replies(em: SlackEmulator, p: JsonDict) -> JsonDict:
    channel, ts = _required(p, "channel", "channel_not_found"), _required(p, "ts", "thread_not_found")
    with_metadata = _flag(p, "include_all_metadata")
    messages = [em.workspace.to_slack(m, metadata=with_metadata) for m in em.workspace.thread(channel, ts)]
    return {"messages": messages, "has_more": False, "response_metadata": {"next_cursor": ""}}


@_method("views.open")
def _views_open(em: SlackEmulator, p: JsonDict) -> JsonDict:
    trigger_id = _required(p, "trigger_id", "invalid_arguments")
    view = em.workspace.open_view(trigger_id, parse_view(p.get("view"), kinds=("modal",)), strict=em.strict_triggers)
    return {"view": em.workspace.view_to_slack(view)}


@_method("views.push")
def _views_push(em: SlackEmulator, p: JsonDict) -> JsonDict:
    trigger_id = _required(p, "trigger_id", "invalid_arguments")
    view = em.workspace.push_view(trigger_id, parse_view(p.get("view"), kinds=("modal",)), strict=em.strict_triggers)
    return {"view": em.workspace.view_to_slack(view)}


@_method("views.update")
def _views_update(em: SlackEmulator, p: JsonDict) -> JsonDict:
    payload = parse_view(p.get("view"), kinds=("modal", "home"))
    view_id, external_id = p.get("view_id"), p.get("external_id")
    if not view_id and not external_id:
        raise SlackError("invalid_arguments", "pass `view_id` or `external_id`")
    view = em.workspace.update_view(view_id, external_id, p.get("hash"), payload)
    return {"view": em.workspace.view_to_slack(view)}


@_method("views.publish")
def _views_publish(em: SlackEmulator, p: JsonDict) -> JsonDict:
    user = _required(p, "user_id", "invalid_arguments")
    view = em.workspace.publish_home(user, parse_view(p.get("view"), kinds=("home",)), p.get("hash"))
    return {"view": em.workspace.view_to_slack(view)}


@_method("usergroups.list")
def _usergroups(em: SlackEmulator, p: JsonDict) -> JsonDict:
    groups = []
    for group in em.workspace.usergroups():
        data: JsonDict = {"id": group.id, "team_id": em.workspace.team_id, "handle": group.handle}
        data.update(name=group.name, is_usergroup=True, user_count=len(group.users))
        if _flag(p, "include_users"):
            data["users"] = group.users
        groups.append(data)
    return {"usergroups": groups}


@_method("usergroups.users.list")
def _usergroup_users(em: SlackEmulator, p: JsonDict) -> JsonDict:
    return {"users": em.workspace.usergroup(_required(p, "usergroup", "no_such_subteam")).users}


@_method("users.info")
def _users_info(em: SlackEmulator, p: JsonDict) -> JsonDict:
    user = em.workspace.user(_required(p, "user", "user_not_found"))
    profile = {"real_name": user.real_name, "display_name": user.name}
    data = {"id": user.id, "team_id": em.workspace.team_id, "name": user.name, "real_name": user.real_name}
    return {"user": {**data, "profile": profile, "deleted": False, "is_bot": user.id == em.workspace.bot_user_id}}
