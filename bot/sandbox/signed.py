"""The requests Slack sends to an app, built and signed exactly as Slack does: slash-command
forms, `payload=` interaction forms (`block_actions`, `view_submission`), `event_callback`
JSON, and the `X-Slack-Signature` over `v0:{timestamp}:{raw body}`.

The sandbox page and the tests share these, so what the app is tested against is what the
page sends; the payloads (a command's fields, an interaction, an event) are also what a Socket
Mode envelope carries. Standard library and `slack_sdk` only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from slack_sdk.signature import SignatureVerifier

JsonDict = dict[str, Any]
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
APP_ID = "A0SANDBOX"
LEGACY_TOKEN = "legacy-verification-token"  # noqa: S105 - Slack still sends the deprecated token; Bolt ignores it


@dataclass(frozen=True)
class SignedRequest:
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class AppReply:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds: the request timestamp and `v0=` HMAC-SHA256 of `v0:ts:body`."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body.decode("utf-8", "replace"))
    if signature is None:
        raise ValueError("cannot sign without a signing secret")
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}


def signed(secret: str, body: bytes, content_type: str, timestamp: int | None = None) -> SignedRequest:
    return SignedRequest(body, {"Content-Type": content_type, **sign(secret, body, timestamp)})


def send(url: str, request: SignedRequest, *, headers: dict[str, str] | None = None, timeout: float = 10) -> AppReply:
    """POST a signed request to the app (its `/slack/events` URL); any HTTP status is a reply."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    headers = {**request.headers, **(headers or {})}
    http = urllib.request.Request(url, data=request.body, method="POST", headers=headers)  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(http, timeout=timeout) as reply:  # noqa: S310 - checked above
            return AppReply(reply.status, reply.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:
        return AppReply(error.code, error.read().decode("utf-8", "replace"))


def _user(user_id: str, team_id: str, name: str | None = None) -> JsonDict:
    name = name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def slash_command_body(**fields: Any) -> bytes:
    """The form body of a slash command (`fields`: `slash_command_form`'s)."""
    return urllib.parse.urlencode(slash_command_form(**fields)).encode()


def slash_command_form(
    *,
    team_id: str,
    user_id: str,
    channel_id: str,
    text: str,
    response_url: str,
    trigger_id: str,
    command: str = "/countersign",
    user_name: str | None = None,
    channel_name: str = "",
    team_domain: str = "sandbox",
    api_app_id: str = APP_ID,
) -> dict[str, str]:
    """A slash command's fields: form-encoded over HTTP, a JSON object as a Socket Mode
    envelope's payload."""
    return {
        "token": LEGACY_TOKEN,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name or channel_id.lower(),
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def interaction_body(payload: JsonDict) -> bytes:
    """Interactivity: the JSON payload in a `payload=` form field."""
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def button_action(element: JsonDict, block_id: str, action_ts: float | None = None) -> JsonDict:
    """One entry of `actions` for a clicked button, as Slack reports it."""
    action: JsonDict = {
        "type": element.get("type", "button"),
        "action_id": element.get("action_id", ""),
        "block_id": block_id,
        "text": element.get("text", {"type": "plain_text", "text": ""}),
        "action_ts": f"{time.time() if action_ts is None else action_ts:.6f}",
    }
    for key in ("value", "style"):
        if key in element:
            action[key] = element[key]
    return action


def block_actions_payload(
    *,
    team_id: str,
    user_id: str,
    actions: list[JsonDict],
    trigger_id: str,
    message: JsonDict | None = None,
    channel_id: str | None = None,
    channel_name: str = "",
    view: JsonDict | None = None,
    response_url: str | None = None,
    user_name: str | None = None,
    is_ephemeral: bool = False,
    api_app_id: str = APP_ID,
) -> JsonDict:
    """A `block_actions` payload: from a message (`message` + `channel_id`) or a view (`view`)."""
    payload: JsonDict = {
        "type": "block_actions",
        "user": _user(user_id, team_id, user_name),
        "api_app_id": api_app_id,
        "token": LEGACY_TOKEN,
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": "sandbox"},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": actions,
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id", "")}
        payload["view"] = view
    else:
        ts = (message or {}).get("ts", "")
        payload["container"] = {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        }
        payload["channel"] = {"id": channel_id, "name": channel_name or str(channel_id).lower()}
        payload["message"] = message or {"type": "message", "ts": ts, "text": ""}
    if response_url is not None:
        payload["response_url"] = response_url
    return payload


def view_submission_payload(
    *,
    team_id: str,
    user_id: str,
    view: JsonDict,
    values: JsonDict,
    trigger_id: str,
    user_name: str | None = None,
    api_app_id: str = APP_ID,
) -> JsonDict:
    """A `view_submission` payload: the view as Slack holds it, with the inputs in `state.values`."""
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "sandbox"},
        "user": _user(user_id, team_id, user_name),
        "api_app_id": api_app_id,
        "token": LEGACY_TOKEN,
        "trigger_id": trigger_id,
        "view": {**view, "state": {"values": values}},
        "response_urls": [],
        "enterprise": None,
        "is_enterprise_install": False,
    }


def event_callback_body(event: JsonDict, **fields: Any) -> bytes:
    """An Events API delivery (`event_callback`) as the JSON body of a request (`fields`:
    `event_callback`'s)."""
    return json.dumps(event_callback(event, **fields)).encode()


def event_callback(
    event: JsonDict,
    *,
    team_id: str,
    event_id: str | None = None,
    event_time: int | None = None,
    bot_user_id: str = "U0BOT",
    api_app_id: str = APP_ID,
) -> JsonDict:
    """An Events API delivery (`event_callback`): an HTTP request's body, a Socket Mode
    envelope's payload."""
    return {
        "token": LEGACY_TOKEN,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {"team_id": team_id, "user_id": bot_user_id, "is_bot": True, "is_enterprise_install": False}
        ],
        "is_ext_shared_channel": False,
    }


def new_event_id() -> str:
    return "Ev" + uuid.uuid4().hex[:10].upper()
