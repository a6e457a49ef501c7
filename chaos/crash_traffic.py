"""What the crash loop's servers meet: the Slack emulator counting the calls it is answering,
a model that does what each request says (some answers held a while), and the driver that
sends a round's work as Slack would (signed slash commands, Approve / Reject / Veto clicks).
Each counts what is under way, so that a kill can be said to have landed mid-click, mid-model
call or mid-Slack call.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, select

from bot import action_ids
from bot.blocks.card import decide_block_id
from bot.sandbox import SlackEmulator
from bot.sandbox.signed import (
    FORM,
    block_actions_payload,
    interaction_body,
    send,
    signed,
    slash_command_body,
    view_submission_payload,
)
from chaos.common import SECRET, TEAM, TOKEN
from chaos.crash_config import APPROVALS, APPROVERS, LANES, REQUESTERS
from core.models import Action

REF = re.compile(r"ref=(\w+)")  # the effect a request names


class CountingSlack(SlackEmulator):
    """The Slack emulator, counting the Web API calls it is answering right now."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.in_flight = Gauge()

    def call(self, method: str, params: dict[str, Any], token: str | None = None) -> Any:
        with self.in_flight.track():
            return super().call(method, params, token)


class Gauge:
    """Counts what is under way (`with gauge.track():` around each one); `since(t)` counts those
    begun at or after `t`: a killed server's calls may still be held here after it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._next = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        with self._lock:
            self._next += 1
            mine = self._next
            self._started[mine] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                del self._started[mine]

    def since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for began in self._started.values() if began >= moment)


class Model:
    """Answers the fake Messages API like a model that does what the request says: first turn,
    call the task type's tool with the request's `ref`; after the tool's result, say done.
    Some calls are held a while first, so that kills land mid-call."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.hang_share = rng, 0.3
        self.in_flight = Gauge()
        self.closing = threading.Event()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.in_flight.track():
            if self.rng.random() < self.hang_share:
                self.closing.wait(self.rng.uniform(0.3, 2.5))
            messages = body.get("messages") or []
            if any(message.get("role") == "assistant" for message in messages):
                return {"content": [{"type": "text", "text": "Done."}]}
            first = messages[0].get("content") if messages else ""
            found = REF.search(json.dumps(first))
            tool = (body.get("tools") or [{}])[0].get("name", "")
            params = {"ref": found.group(1) if found else "missing", "rationale": "asked to", "confidence": 0.95}
            return {"content": [{"type": "tool_use", "name": tool, "input": params}]}


class Driver:
    """Sends one round's work to the live servers (each request to one of them at random) until
    told to stop; a dead server is no error."""

    def __init__(
        self, urls: list[str], slack: SlackEmulator, reader: Engine, rng: random.Random, round_no: int
    ) -> None:
        self.urls = [url + "/slack/events" for url in urls]
        self.slack, self.reader, self.rng, self.round_no = slack, reader, rng, round_no
        self.in_flight = Gauge()
        self.sent: Counter[str] = Counter()

    def run(self, stop: threading.Event) -> None:
        for number in range(self.rng.choice([0, 1, 1])):  # Slack posts ~1/s: more would not drain
            if stop.is_set():
                return
            kind = self.rng.choice(["idem", "idem", "once", "once", "veto", "auto"])
            task_type, requester = f"{kind}{self.rng.randrange(LANES)}", self.rng.choice(REQUESTERS)
            ref = f"r{self.round_no:04d}n{number}x{self.rng.getrandbits(24):06x}"
            body = slash_command_body(
                team_id=TEAM,
                user_id=requester,
                channel_id=APPROVALS,
                text=f"run {task_type} record ref={ref}",
                response_url=self.slack.new_response_url(APPROVALS, None, requester),
                trigger_id=self.slack.new_trigger_id(requester),
            )
            self._send("command", body)
        while not stop.wait(self.rng.uniform(0.05, 0.2)):
            for public_id, state, params_hash in self._open_actions():
                if stop.is_set():
                    return
                self._decide(public_id, state, params_hash)

    def burst(self, clicks: int = 4) -> None:
        """Approve clicks on the newest actions, all at once, not waiting for the answers: on a
        decided one, a click is a refusal, which is written to the ledger all the same."""
        with self.reader.connect() as conn:
            newest = conn.execute(
                select(Action.public_id, Action.params_hash).order_by(Action.id.desc()).limit(clicks)
            ).all()
        for public_id, params_hash in newest:
            click = (action_ids.APPROVE, public_id, params_hash, self.rng.choice(APPROVERS))
            threading.Thread(target=self._click, args=click, daemon=True).start()

    def _open_actions(self) -> list[tuple[str, str, str]]:
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(Action.public_id, Action.state, Action.params_hash)
                .where(Action.state.in_(["pending", "scheduled"]))
                .order_by(Action.id.desc())
                .limit(20)
            ).all()
        return [(row[0], row[1], row[2]) for row in rows]

    def _decide(self, public_id: str, state: str, params_hash: str) -> None:
        roll, user = self.rng.random(), self.rng.choice(APPROVERS)
        if state == "scheduled":
            if roll < 0.05:
                self._click(action_ids.VETO, public_id, params_hash, user)
            return
        if roll < 0.45:
            self._click(action_ids.APPROVE, public_id, params_hash, user)
        elif roll < 0.5:  # a double click
            self._click(action_ids.APPROVE, public_id, params_hash, user)
            self._click(action_ids.APPROVE, public_id, params_hash, user)
        elif roll < 0.56:
            self._reject(public_id, params_hash, user)
        elif roll < 0.6:
            self._click(action_ids.ACKNOWLEDGE, public_id, params_hash, user)
        # else: left to its escalation chain

    def _click(self, action_id: str, public_id: str, params_hash: str, user: str) -> None:
        element = {"type": "button", "action_id": action_id, "value": public_id}
        action = {
            "type": "button",
            "action_id": action_id,
            "block_id": decide_block_id(params_hash),
            "value": public_id,
            "text": {"type": "plain_text", "text": action_id},
            "action_ts": f"{time.time():.6f}",
        }
        payload = block_actions_payload(
            team_id=TEAM,
            user_id=user,
            actions=[action],
            trigger_id=self.slack.new_trigger_id(user),
            message={"type": "message", "ts": "1.000001", "text": "card", "blocks": [element]},
            channel_id=APPROVALS,
            response_url=self.slack.new_response_url(APPROVALS, None, user),
        )
        self._send(action_id, interaction_body(payload))

    def _reject(self, public_id: str, params_hash: str, user: str) -> None:
        view = {
            "id": "V0CHAOS",
            "type": "modal",
            "callback_id": action_ids.REJECT_MODAL,
            "private_metadata": json.dumps({"action_id": public_id, "params_hash": params_hash}),
        }
        values = {"reason": {"reason": {"type": "plain_text_input", "value": "not this one"}}}
        payload = view_submission_payload(
            team_id=TEAM, user_id=user, view=view, values=values, trigger_id=self.slack.new_trigger_id(user)
        )
        self._send("reject", interaction_body(payload))

    def _send(self, what: str, body: bytes) -> None:
        try:
            with self.in_flight.track():
                reply = send(self.rng.choice(self.urls), signed(SECRET, body, FORM), timeout=5)
            self.sent[f"{what}:{reply.status}"] += 1
        except (OSError, http.client.HTTPException):
            self.sent[f"{what}:dropped"] += 1
