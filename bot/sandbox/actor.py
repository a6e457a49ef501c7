"""What a person's Slack client does, for the sandbox page: type a slash command or an
@mention, click a button, submit or close a modal, open the App Home. Each becomes the
signed request Slack would send the app (`bot.sandbox.signed`), and the app's answer is
applied to the emulated workspace as Slack applies it (an ephemeral reply to a command,
inline errors or a closed modal after a submission).
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox import signed
from bot.sandbox.slack_api import SlackEmulator
from bot.sandbox.workspace import JsonDict, SlackError, View, parse_view

TROUBLE = "We had some trouble connecting. Try again?"


@dataclass(frozen=True)
class Persona:
    """A seeded person the page can act as."""

    id: str
    name: str  # display name, e.g. "Riley"
    role: str  # requester | approver | admin | stranger: what the demo config lets them do
    about: str = ""


@dataclass
class _Modal:
    closed: bool = False
    errors: dict[str, str] = field(default_factory=dict)


class Actor:
    """Acts in the emulated workspace as the people of the page, and talks to the app as Slack."""

    def __init__(
        self,
        emulator: SlackEmulator,
        events_url: str,
        signing_secret: str,
        personas: list[Persona],
        *,
        command: str = "/countersign",
        timeout_s: float = 10.0,
    ) -> None:
        self.emulator, self.events_url, self.secret = emulator, events_url, signing_secret
        self.personas, self.command, self.timeout_s = personas, command, timeout_s
        self.workspace = emulator.workspace
        self.team_id, self.bot_user_id = self.workspace.team_id, self.workspace.bot_user_id
        self._lock = threading.Lock()
        self._authors: dict[tuple[str, str], str] = {}  # (channel, ts) of messages people wrote
        self._modals: dict[str, _Modal] = {}

    # -- what the snapshot needs -----------------------------------------------------------
    def author(self, channel: str, ts: str) -> str | None:
        with self._lock:
            return self._authors.get((channel, ts))

    def modal_for(self, user: str) -> tuple[View, dict[str, str]] | None:
        """The modal on top of this person's screen, with its inline errors."""
        with self._lock:
            for view in reversed(self.workspace.views()):
                state = self._modals.get(view.id, _Modal())
                if view.user == user and view.payload.get("type") == "modal" and not state.closed:
                    return view, dict(state.errors)
        return None

    # -- the composer ----------------------------------------------------------------------
    def compose(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> JsonDict:
        """A message typed in the composer: a slash command, or a message (which may mention the app)."""
        text = text.strip()
        if not text:
            return {"ok": False, "notice": "Type a message first."}
        if text.startswith("/"):
            name, _, rest = text.partition(" ")
            if name != self.command:
                self.workspace.post_ephemeral(channel, user, f"`{name}` is not a valid command.", [], via="client")
                return {"ok": True}
            return self._slash_command(user, channel, rest.strip())
        return self._message(user, channel, text, thread_ts)

    def _slash_command(self, user: str, channel: str, text: str) -> JsonDict:
        body = signed.slash_command_body(
            team_id=self.team_id,
            user_id=user,
            user_name=self._name(user),
            channel_id=channel,
            channel_name=self._channel_name(channel),
            text=text,
            command=self.command,
            response_url=self.emulator.new_response_url(channel, None, user),
            trigger_id=self.emulator.new_trigger_id(user),
        )
        reply = self._send(body, signed.FORM)
        if reply.status != 200:
            failed = f'`{self.command}` failed with the error "http_error_{reply.status}"'
            self.workspace.post_ephemeral(channel, user, failed, [], via="slash_command")
            return {"ok": False, "notice": failed}
        answer = _json_or_text(reply.body)
        text_, blocks = str(answer.get("text") or ""), answer.get("blocks") or []
        if text_ or blocks:
            if answer.get("response_type") == "in_channel":
                self.workspace.post(channel, text_, blocks, via="slash_command")
            else:
                self.workspace.post_ephemeral(channel, user, text_, blocks, via="slash_command")
        return {"ok": True}

    def _message(self, user: str, channel: str, text: str, thread_ts: str | None) -> JsonDict:
        # The Slack client escapes what people type, then turns @mentions into `<@U…>` tokens.
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = re.sub(r"@countersign\b", f"<@{self.bot_user_id}>", text, flags=re.IGNORECASE)
        for persona in self.personas:
            text = re.sub(rf"@{re.escape(persona.name)}\b", f"<@{persona.id}>", text, flags=re.IGNORECASE)
        message = self.workspace.post(channel, text, [], thread_ts=thread_ts, via="client")
        with self._lock:
            self._authors[(message.channel, message.ts)] = user
        if f"<@{self.bot_user_id}>" not in text:
            return {"ok": True}
        event: JsonDict = {
            "type": "app_mention",
            "user": user,
            "text": text,
            "ts": message.ts,
            "channel": message.channel,
            "event_ts": message.ts,
            "team": self.team_id,
            "client_msg_id": str(uuid.uuid4()),
        }
        if message.thread_ts:
            event["thread_ts"] = message.thread_ts
        return self._result(self._send(signed.event_callback_body(event, **self._event_ids()), signed.JSON))

    # -- clicks, modals, App Home ----------------------------------------------------------
    def click(self, user: str, where: JsonDict, block_id: str, element: JsonDict) -> JsonDict:
        """A click on an element the person saw: in a message (`channel`, `ts`) or a view (`view_id`)."""
        action = signed.button_action(element, block_id)
        if "selected_option" in element:
            action["selected_option"] = element["selected_option"]
        common: dict[str, Any] = {
            "team_id": self.team_id,
            "user_id": user,
            "user_name": self._name(user),
            "actions": [action],
            "trigger_id": self.emulator.new_trigger_id(user),
        }
        if where.get("view_id"):
            view = self._view(str(where["view_id"]))
            payload = signed.block_actions_payload(**common, view=self.workspace.view_to_slack(view))
        else:
            channel, ts = str(where.get("channel") or ""), str(where.get("ts") or "")
            ephemeral = bool(where.get("ephemeral"))
            message = {"type": "message", "ts": ts, "text": ""}
            if not ephemeral:
                try:
                    message = self.workspace.to_slack(self.workspace.message(channel, ts))
                except SlackError:
                    return {"ok": False, "notice": "That message is gone."}
            payload = signed.block_actions_payload(
                **common,
                message=message,
                channel_id=channel,
                channel_name=self._channel_name(channel),
                response_url=self.emulator.new_response_url(channel, None if ephemeral else ts, user),
                is_ephemeral=ephemeral,
            )
        return self._result(self._send(signed.interaction_body(payload), signed.FORM))

    def submit(self, user: str, view_id: str, values: JsonDict) -> JsonDict:
        view = self._view(view_id)
        payload = signed.view_submission_payload(
            team_id=self.team_id,
            user_id=user,
            user_name=self._name(user),
            view=self.workspace.view_to_slack(view),
            values=values,
            trigger_id=self.emulator.new_trigger_id(user),
        )
        reply = self._send(signed.interaction_body(payload), signed.FORM)
        if reply.status != 200:
            return {"ok": False, "notice": TROUBLE}
        answer = _json_or_text(reply.body)
        action = answer.get("response_action")
        with self._lock:
            state = self._modals.setdefault(view_id, _Modal())
            if action == "errors":
                state.errors = {str(k): str(v) for k, v in (answer.get("errors") or {}).items()}
                return {"ok": True}
            if action == "clear":
                for other in self.workspace.views():
                    if other.user == user:
                        self._modals.setdefault(other.id, _Modal()).closed = True
                return {"ok": True}
            state.errors = {}
            if action not in ("update", "push"):
                state.closed = True
                return {"ok": True}
        try:
            new_view = parse_view(answer.get("view"), kinds=("modal",))
            if action == "update":
                self.workspace.update_view(view_id, None, None, new_view)
            else:
                self.workspace.push_view(self.emulator.new_trigger_id(user), new_view, strict=False)
        except SlackError as exc:
            return {"ok": False, "notice": f"The app answered with a view Slack refuses: {exc.code}"}
        return {"ok": True}

    def close(self, user: str, view_id: str) -> JsonDict:
        with self._lock:
            self._modals.setdefault(view_id, _Modal()).closed = True
        return {"ok": True}

    def open_home(self, user: str) -> JsonDict:
        event = {"type": "app_home_opened", "user": user, "channel": "D" + user[1:], "tab": "home"}
        event["event_ts"] = self.workspace.next_ts()
        return self._result(self._send(signed.event_callback_body(event, **self._event_ids()), signed.JSON))

    # -- helpers ---------------------------------------------------------------------------
    def _send(self, body: bytes, content_type: str) -> signed.AppReply:
        try:
            return signed.send(self.events_url, signed.signed(self.secret, body, content_type), timeout=self.timeout_s)
        except OSError:
            return signed.AppReply(503, "")  # the app is down or too slow: Slack shows a notice

    def _result(self, reply: signed.AppReply) -> JsonDict:
        if reply.status == 200:
            return {"ok": True}
        return {"ok": False, "notice": f"countersign didn't respond in time (HTTP {reply.status}). {TROUBLE}"}

    def _event_ids(self) -> dict[str, Any]:
        return {"team_id": self.team_id, "bot_user_id": self.bot_user_id}

    def _view(self, view_id: str) -> View:
        for view in self.workspace.views():
            if view.id == view_id:
                return view
        for persona in self.personas:
            home = self.workspace.home(persona.id)
            if home is not None and home.id == view_id:
                return home
        raise SlackError("not_found")

    def _name(self, user: str) -> str:
        return next((p.name.lower() for p in self.personas if p.id == user), user.lower())

    def _channel_name(self, channel: str) -> str:
        try:
            return self.workspace.channel(channel).name
        except SlackError:
            return channel.lower()


def _json_or_text(body: str) -> JsonDict:
    """An ack's body: JSON (Bolt's `ack(text=…)`, `response_action`), or plain text, or nothing."""
    if not body.strip():
        return {}
    try:
        value = signed.AppReply(200, body).json()
    except ValueError:
        return {"text": body}
    return value if isinstance(value, dict) else {"text": body}
