"""What the fuzz scenario's pieces share: its people and teams, the server's config and model
script, the state seeded before the requests (`Seeded`), the seeded actions as the shapes aim
at them (`Target`, `Aim`), and one generated request with the answers it may get (`Request`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from bot.sandbox.signed import SignedRequest

APPROVALS, ADMINS = "C0APPROVALS", "C0ADMINS"
REQUESTER, ALICE, BOB, MALLORY, ADMIN = "U0REQUESTER", "U0ALICE", "U0BOB", "U0MALLORY", "U0ADMIN"
OTHER_TEAM, OTHER_USER = "T0OTHER", "U0OTHER"
APPROVERS = (ALICE, BOB)
TASK_TYPES = ("refund", "flag")
TOOLS = ("chaos_refund", "chaos_flag")
SEEDED_EVENT = "Ev0SEEDED01"
KEPT_TEXT = "Refund order 11"  # the request of the seeded command that is replayed
# The actions API: one external tool on two task types; the seeded API action is the env token's
# (all task types), and a second client (`INTRUDER_TOKEN`) was given `ops` only.
EXTERNAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"service": {"type": "string", "maxLength": 64}, "replicas": {"type": "integer", "minimum": 1}},
    "required": ["service"],
    "additionalProperties": False,
}
INTRUDER_TOKEN = "cs_fuzz-intruder-token"  # noqa: S105 - a local test server's client
CONFIG: dict[str, Any] = {
    "slack": {"approvals_channel": APPROVALS, "admin_channel": ADMINS, "admins": [ADMIN]},
    "tools": {"modules": ["chaos.tools"]},
    "external_tools": {"chaos_restart": {"description": "Restart a service", "params": EXTERNAL_SCHEMA}},
    "task_types": {
        "ops": {"tools": ["chaos_restart"], "autonomy": "hitl", "approvers": list(APPROVERS)},
        "ops2": {"tools": ["chaos_restart"], "autonomy": "hitl", "approvers": list(APPROVERS)},
        "refund": {
            "description": "Refund an order",
            "instructions": "Refund broken orders.",
            "tools": ["chaos_refund"],
            "autonomy": "hitl",
            "approvers": list(APPROVERS),
        },
        "flag": {
            "description": "Turn a feature flag on",
            "instructions": "Turn flags on when asked.",
            "tools": ["chaos_flag"],
            "autonomy": "hitl",
            "approvers": list(APPROVERS),
        },
    },
}
SCRIPT: dict[str, Any] = {
    "refund": {
        "match": r"order (?P<order_id>\d+)",
        "replies": [
            {"tool_use": [{"name": "chaos_refund", "input": {"order_id": "{order_id}", "amount_cents": 500}}]},
            {"text": "Refunded order {order_id}."},
        ],
    },
    "flag": {
        "match": r"flag (?P<flag>[\w-]+)",
        "replies": [
            {"tool_use": [{"name": "chaos_flag", "input": {"flag": "{flag}", "enabled": True}}]},
            {"text": "Flag {flag} is on."},
        ],
    },
}


@dataclass(frozen=True)
class Target:
    """A seeded pending action as the shapes aim at it."""

    public_id: str
    params_hash: str
    requester: str | None
    tool: str
    team: str | None


@dataclass(frozen=True)
class Seeded:
    """The seeded state the requests aim at."""

    pending: dict[str, tuple[str, str | None]]  # action public id -> (params hash, requester)
    tasks: dict[str, str | None]  # task public id -> its requester
    events: frozenset[str]
    targets: tuple[Target, ...] = ()  # the pending actions again, with their tools and teams
    kept: SignedRequest | None = None  # a legitimate slash command sent while seeding, to replay
    api_action: str = ""  # a pending action asked for through the actions API (the env token's)

    def hash_of(self, action_id: object) -> str | None:
        found = self.pending.get(action_id) if isinstance(action_id, str) else None
        return found[0] if found else None


@dataclass(frozen=True)
class Aim:
    """What the shapes need from the seeded server."""

    actions: tuple[Target, ...]
    approvers: tuple[str, ...]
    strangers: tuple[str, ...]
    channel: str
    kept: SignedRequest  # a legitimate slash command, already sent and answered
    page_port: int  # the demo page's
    page_token: str
    # A signed-to-be Slack request (shape, body, content type) flawed so that it changes
    # nothing: `chaos.fuzz_requests.content`, bound to the seeded state.
    flawed: Callable[[st.DrawFn, random.Random], tuple[str, bytes, str]]


@dataclass
class Request:
    family: str  # auth | malformed | garbage, or one of `chaos.fuzz_shapes.SHAPES`
    shape: str  # what was sent: click | view | command | event | ... (or the shape's variant)
    body: bytes
    headers: dict[str, str]
    expect: str  # refused | no_change | malformed, or the answers a shape must get, as text
    path: str = "/slack/events"
    target: str = "app"  # app | page (the demo page)
    method: str = "POST"
    answers: frozenset[int] | None = None  # the only statuses allowed (None: anything but a 5xx)
    marker: bytes = b""  # text the answer must contain
    deadline_s: float | None = None  # an answer later than this is a failure, even if it came
    declared: int | None = None  # a Content-Length sent without its body (a large body)
    again: bool = False  # sent twice, the second time checked: a replay of a request just sent
