"""Forged and malformed input: hypothesis-generated requests at a real `countersign serve`
and at the demo page; none may get a 5xx, and none may change anything but the audit
ledger's refusal events.

The server is seeded first (tasks with pending actions from two teams, one `app_mention`
whose `event_id` is then replayed, one slash command whose exact bytes are kept), and the
demo page (`SandboxPage`) started in this process on a free port, in a workspace of its own.
Then `--shapes` requests (default 100) of each of issue #14's shapes are generated
(`chaos.fuzz_shapes` says how), each with the only answers it may get:

- **large**: a declared length over the 512 KiB limit, signed or not, at `/slack/events` and
  `/api/tasks`, sent as headers only: 413 (the other families' bodies over the limit count
  here too);
- **exponent**: signed Edit-modal submissions by real approvers (the card's params hash) and
  by strangers whose number field holds `1e700000`, `9`*5000, `-1E-999999`...: each answered
  within Slack's 3 s, measured per request (a later answer fails, even if it came);
- **deep**: JSON nested 10,000-100,000 deep in a signed `payload=` form, an event body
  (400), a modal's `private_metadata` (the form's error) and at `/api/tasks` with the bearer
  token (422);
- **surrogate**: `\ud800`-style escapes and `\u0000` in the text of mentions, slash commands,
  rejection reasons and clicks a requester or approver might send (refused, nothing changed)
  and of `/api/tasks` bodies (422);
- **replay**: the kept slash command sent again, and signed requests sent twice: 401
  `replayed request`; `replays accepted` counts the kept command's tasks in the database;
- **cross-origin**: demo page requests with a foreign `Origin`, a wrong `Host` (DNS
  rebinding), a `text/plain` body, or a missing or wrong page token: 403 or 415; `demo
  cross-origin accepted` counts the ones answered otherwise plus anything the page's
  workspace gained. One request of the page's own (right host and token) must be answered.

Then `--count` requests are generated, each one of:

- **auth**: any body, real approvals included, with a forged or missing signature, a
  signature over another body or with another secret, a stale, future or non-numeric
  timestamp;
- **malformed**: correctly signed `block_actions`, `view_submission`, slash commands and
  `event_callback` bodies with missing fields, wrong types, huge values (up to ~1 MB; a body
  over 512 KiB is refused with 413 from its declared length, so only its headers are sent), random
  unicode, unknown action ids, real pending actions with wrong block_ids, clicks by strangers,
  requesters and users of other teams, truncated bodies and wrong content types. What a
  listed approver may legitimately do (approve with the card's params hash, reject with a
  reason, acknowledge, stop a task, start a task) is always given one flaw first;
- **garbage**: correctly signed random bytes, text, forms and JSON.

Then the database must be as it was: the same number of tasks, actions, decisions, timers,
Slack events and outbox rows (the per-minute `audit.head` rows aside, which no request
causes), the seeded actions in the same state with the same params, no tool call, and new
audit events only of kind `decision.refused`. Each malformed request whose fields the
product reads were of the wrong shape (a command with no `user_id`, a mention whose `user`
is not text...) counts as `malformed`: it too must change nothing.

    .venv/bin/python -m chaos.fuzz_inputs [--count 10000] [--shapes 100] [--backend sqlite|postgres] [--seed N]
        [--verbose]

Prints one summary line (new rows and wrong or late answers, if any, on stderr before it):
the requests per family and per shape with each shape's slowest answer, then the failures
(5xx, state changes, unanswered, wrong answers, late answers, replays accepted, demo
cross-origin accepted), and exits 1 on any of them.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import http.client
import json
import random
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sqlalchemy import Engine, create_engine, func, select  # noqa: E402

from bot import action_ids  # noqa: E402
from bot.blocks.card import decide_block_id, params_hash_from_block_id  # noqa: E402
from bot.sandbox.page import TOKEN_HEADER, SandboxPage  # noqa: E402
from bot.sandbox.signed import (  # noqa: E402
    FORM,
    JSON,
    SignedRequest,
    event_callback_body,
    send,
    signed,
    slash_command_body,
)
from bot.slack_ingress import MAX_SLACK_BODY  # noqa: E402
from chaos import tools  # noqa: E402
from chaos.common import (  # noqa: E402
    SECRET,
    TEAM,
    ChaosFailure,
    database,
    emulator,
    note,
    serve_env,
    serving,
    wait_for,
    write_yaml,
)
from chaos.fuzz_shapes import (  # noqa: E402
    SHAPES,
    SLACK_DEADLINE_S,
    Aim,
    Request,
    Target,
    demo_page,
    workspace_size,
)
from core.db import normalize_url  # noqa: E402
from core.models import Action, AuditEvent, Decision, OutboxMessage, SlackEvent, Task, Timer  # noqa: E402

NAME = "fuzz"
APPROVALS, ADMINS = "C0APPROVALS", "C0ADMINS"
REQUESTER, ALICE, BOB, MALLORY, ADMIN = "U0REQUESTER", "U0ALICE", "U0BOB", "U0MALLORY", "U0ADMIN"
OTHER_TEAM, OTHER_USER = "T0OTHER", "U0OTHER"
APPROVERS = (ALICE, BOB)
TASK_TYPES = ("refund", "flag")
TOOLS = ("chaos_refund", "chaos_flag")
SEEDED_EVENT = "Ev0SEEDED01"
KEPT_TEXT = "Refund order 11"  # the request of the seeded command that is replayed
ALLOWED_AUDIT_KINDS = frozenset({"decision.refused"})
HUGE = 1_000_000
SHAPE_COUNT = 100  # requests of each of issue #14's shapes: a fixed number, not a share of --count
CONFIG: dict[str, Any] = {
    "slack": {"approvals_channel": APPROVALS, "admin_channel": ADMINS, "admins": [ADMIN]},
    "tools": {"modules": ["chaos.tools"]},
    "task_types": {
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
MENTION = re.compile(r"<@[UW][A-Z0-9]+(\|[^>]*)?>")  # as bot.listeners.events strips it
CLICK_IDS = (  # weighted towards the buttons that decide
    action_ids.APPROVE,
    action_ids.APPROVE,
    action_ids.APPROVE,
    action_ids.APPROVE,
    action_ids.ACKNOWLEDGE,
    action_ids.VETO,
    action_ids.REJECT,
    action_ids.EDIT,
    action_ids.VETO,
    action_ids.ACKNOWLEDGE,
    action_ids.PROMOTE,
    action_ids.DISMISS,
    action_ids.EXTEND_BUDGET,
    action_ids.STOP_TASK,
    action_ids.CHOOSE_TYPE,
    action_ids.REPORT_INCIDENT,
    action_ids.REVIEW_OK,
)
VIEW_IDS = (
    action_ids.REJECT_MODAL,
    action_ids.REJECT_MODAL,
    action_ids.EDIT_MODAL,
    action_ids.EDIT_MODAL,
    action_ids.VETO_MODAL,
)
CONTENT_TYPES = (
    "application/json",
    FORM,
    FORM + "; charset=utf-8",
    "text/plain",
    "multipart/form-data; boundary=fuzz",
    "application/octet-stream",
    "",
)


# -- what the server holds ------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    """The seeded state the requests aim at."""

    pending: dict[str, tuple[str, str | None]]  # action public id -> (params hash, requester)
    tasks: tuple[str, ...]
    events: frozenset[str]
    targets: tuple[Target, ...] = ()  # the pending actions again, with their tools and teams
    kept: SignedRequest | None = None  # a legitimate slash command sent while seeding, to replay

    def hash_of(self, action_id: object) -> str | None:
        found = self.pending.get(action_id) if isinstance(action_id, str) else None
        return found[0] if found else None


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    audit_kinds: Counter[str]
    seeded: dict[str, tuple[str, str, str | None]]  # public id -> (state, params hash, decided_by)
    last_ids: dict[str, int]

    @classmethod
    def take(cls, reader: Engine, seeded_ids: list[str]) -> Snapshot:
        tables = {
            "tasks": select(func.count()).select_from(Task),
            "actions": select(func.count()).select_from(Action),
            "decisions": select(func.count()).select_from(Decision),
            "timers": select(func.count()).select_from(Timer),
            "slack_events": select(func.count()).select_from(SlackEvent),
            "outbox": select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind != "audit.head"),
        }
        with reader.connect() as conn:
            counts = {name: int(conn.execute(query).scalar_one()) for name, query in tables.items()}
            counts["tool calls"] = sum(tools.calls(reader).values())
            kinds = Counter(
                {
                    kind: int(n)
                    for kind, n in conn.execute(select(AuditEvent.kind, func.count()).group_by(AuditEvent.kind))
                }
            )
            rows = conn.execute(
                select(Action.public_id, Action.state, Action.params_hash, Action.decided_by).where(
                    Action.public_id.in_(seeded_ids)
                )
            ).all()
            ids = {"task": Task.id, "decision": Decision.id, "action": Action.id, "outbox": OutboxMessage.id}
            last_ids = {
                name: int(conn.execute(select(func.max(column))).scalar_one() or 0) for name, column in ids.items()
            }
        return cls(counts, kinds, {row[0]: (row[1], row[2], row[3]) for row in rows}, last_ids)

    def changes(self, after: Snapshot) -> list[str]:
        found = [
            f"{name}: {self.counts[name]} -> {after.counts[name]}"
            for name in self.counts
            if after.counts[name] != self.counts[name]
        ]
        for kind in sorted(set(after.audit_kinds) - ALLOWED_AUDIT_KINDS):
            if after.audit_kinds[kind] != self.audit_kinds.get(kind, 0):
                found.append(f"audit events {kind}: {self.audit_kinds.get(kind, 0)} -> {after.audit_kinds[kind]}")
        for public_id, before in self.seeded.items():
            if after.seeded.get(public_id) != before:
                found.append(f"seeded action {public_id}: {before} -> {after.seeded.get(public_id)}")
        return found


# -- what the product would do with a request (so that legitimate ones get a flaw) --------------


def click_effect(payload: object, seeded: Seeded) -> str:
    """`legit`, `malformed` (changes state only through a shape Slack never sends) or `none`,
    reading the click as `bot.listeners.payloads.click_from` and the decisions do."""
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return "none"
    actions, user = payload.get("actions"), payload.get("user")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        return "none"
    first = actions[0]
    user_id = user.get("id") if isinstance(user, dict) else None
    value, kind = first.get("value"), first.get("action_id")
    if not isinstance(user_id, str) or not isinstance(value, str) or not value:
        return "none"
    if kind == action_ids.APPROVE and value in seeded.pending:
        seen = params_hash_from_block_id(str(first.get("block_id") or "")) or ""
        params_hash, requester = seeded.pending[value]
        return "legit" if user_id in APPROVERS and user_id != requester and seen == params_hash else "none"
    if kind == action_ids.ACKNOWLEDGE and value in seeded.pending:
        return "legit" if user_id in APPROVERS else "none"
    if kind == action_ids.STOP_TASK and value in seeded.tasks:  # every seeded task is REQUESTER's
        return "legit" if user_id in (*APPROVERS, ADMIN, REQUESTER) else "none"
    if kind == action_ids.EXTEND_BUDGET and value in seeded.tasks:
        return "legit" if user_id in (*APPROVERS, ADMIN) else "none"
    if kind == action_ids.CHOOSE_TYPE and value.partition(":")[0] in seeded.tasks:
        return "legit"  # typed tasks refuse it; counted as allowed to be safe
    return "none"


def view_effect(payload: object, seeded: Seeded) -> str:
    if not isinstance(payload, dict) or payload.get("type") != "view_submission":
        return "none"
    view, user = payload.get("view"), payload.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(view, dict) or view.get("callback_id") not in (action_ids.REJECT_MODAL, action_ids.EDIT_MODAL):
        return "none"
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except (TypeError, ValueError):
        return "none"
    if not isinstance(metadata, dict) or not isinstance(metadata.get("action_id"), str):
        return "none"
    if metadata["action_id"] not in seeded.pending:
        return "none"
    if user_id not in APPROVERS:
        return "none"
    if view["callback_id"] == action_ids.REJECT_MODAL:
        try:
            reason = view["state"]["values"]["reason"]["reason"].get("value") or ""
        except (KeyError, TypeError, AttributeError):
            return "none"
        return "legit" if isinstance(reason, str) and reason.strip() else "none"
    params_hash, requester = seeded.pending[metadata["action_id"]]
    if user_id == requester or str(metadata.get("params_hash", "")) != params_hash:
        return "none"
    return "legit"  # the form is read with the action's own tool, whatever the metadata names


def command_effect(form: dict[str, str]) -> str:
    if form.get("command") != "/countersign":
        return "none"
    verb, _, rest = (form.get("text") or "").strip().partition(" ")
    task_type, _, text = rest.strip().partition(" ")
    if verb.lower() != "run" or task_type not in TASK_TYPES or not text.strip():
        return "none"
    return "legit" if form.get("user_id") else "malformed"


def event_effect(body: object, seeded: Seeded) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
        return "none"
    event = body["event"]
    if event.get("type") != "app_mention":
        return "none"
    raw = event.get("text") or ""
    if not isinstance(raw, str):
        return "none"  # the listener fails on it before writing anything
    text = html.unescape(MENTION.sub("", raw)).strip()
    first, _, rest = text.partition(" ")
    request = rest.strip() if first in TASK_TYPES else text
    event_id, channel, user = body.get("event_id"), event.get("channel"), event.get("user")
    if not event_id or not channel or not request or (isinstance(event_id, str) and event_id in seeded.events):
        return "none"
    well_formed = isinstance(event_id, str) and isinstance(channel, str) and isinstance(user, str) and user
    return "legit" if well_formed else "malformed"


# -- generating requests ----------------------------------------------------------------------


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
random_ids = st.one_of(
    st.from_regex(r"\A(act|tsk|prp)_[0-9A-Z]{1,26}\Z"),
    st.text(max_size=30),
    st.just(""),
)


def _huge(rnd: random.Random) -> str:
    size = int(10 ** rnd.uniform(3, 6))  # 1 kB to 1 MB, log-uniform
    unit = rnd.choice(["A", "é", "\u202e", "🦄", "\x00", "%", "&payload=", '"}'])
    return (unit * (size // len(unit.encode()) + 1))[: max(1, size // len(unit.encode()))]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(draw: st.DrawFn, rnd: random.Random, value: dict[str, Any]) -> dict[str, Any]:
    """0-3 of: drop a field, give it a wrong type, make it huge, add a stray field."""
    value = json.loads(json.dumps(value))
    for _ in range(rnd.choice([0, 0, 1, 1, 2, 3])):
        paths = _paths(value)
        if not paths:
            break
        path = paths[rnd.randrange(len(paths))]
        parent: Any = value
        for step in path[:-1]:
            parent = parent[step]
        operation = rnd.choice(["drop", "retype", "retype", "huge", "stray", "unicode"])
        if operation == "drop" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif operation == "huge":
            parent[path[-1]] = _huge(rnd)
        elif operation == "stray" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        elif operation == "unicode":
            parent[path[-1]] = draw(st.text(min_size=1, max_size=60))
        else:
            parent[path[-1]] = draw(json_values)
    return value


def _user(draw: st.DrawFn, rnd: random.Random) -> Any:
    if rnd.random() < 0.8:
        return rnd.choice([ALICE, BOB, REQUESTER, MALLORY, ADMIN, OTHER_USER])
    return draw(st.text(max_size=20) if rnd.random() < 0.5 else json_values)


def _action_value(draw: st.DrawFn, rnd: random.Random, seeded: Seeded) -> Any:
    roll = rnd.random()
    if roll < 0.55:
        return rnd.choice(sorted(seeded.pending))
    if roll < 0.65:
        task = rnd.choice(seeded.tasks)
        return task if rnd.random() < 0.5 else f"{task}:{rnd.choice(TASK_TYPES)}"
    return draw(random_ids if roll < 0.9 else json_values)


def _block_id(draw: st.DrawFn, rnd: random.Random, seeded: Seeded, value: Any) -> Any:
    right = seeded.hash_of(value)
    roll = rnd.random()
    if roll < 0.35 and right:
        return decide_block_id(right)
    if roll < 0.5:
        return decide_block_id(rnd.choice([params_hash for params_hash, _ in seeded.pending.values()]))
    if roll < 0.65:
        return decide_block_id(draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)))
    if roll < 0.8:
        return rnd.choice(["decide:", "decide", "", "decide::", f"decide:{right}:home", f"DECIDE:{right}"])
    return draw(st.text(max_size=80) if roll < 0.9 else json_values)


def _either(
    draw: st.DrawFn, rnd: random.Random, likely: list[Any], rare: st.SearchStrategy[Any], p: float = 0.9
) -> Any:
    """One of `likely` (uniformly), or, with probability 1 - p, a draw from `rare`."""
    return rnd.choice(likely) if rnd.random() < p else draw(rare)


def click_payload(draw: st.DrawFn, rnd: random.Random, seeded: Seeded) -> dict[str, Any]:
    user, team = _user(draw, rnd), _either(draw, rnd, [TEAM, TEAM, OTHER_TEAM, ""], st.text(max_size=12))
    value = _action_value(draw, rnd, seeded)
    action: dict[str, Any] = {
        "type": "button",
        "action_id": _either(draw, rnd, list(CLICK_IDS), st.text(max_size=20), 0.85),
        "block_id": _block_id(draw, rnd, seeded, value),
        "value": value,
        "text": {"type": "plain_text", "text": "Approve"},
        "action_ts": f"{time.time():.6f}",
    }
    extra = draw(st.lists(json_values, max_size=2)) if rnd.random() < 0.1 else []
    return {
        "type": _either(draw, rnd, ["block_actions"], st.sampled_from(["interactive_message", "", "BLOCK_ACTIONS"])),
        "user": {"id": user, "username": "fuzz", "team_id": team},
        "team": {"id": team, "domain": "sandbox"},
        "api_app_id": "A0SANDBOX",
        "token": "legacy-verification-token",
        "trigger_id": draw(st.text(max_size=30)),
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": APPROVALS},
        "channel": {"id": rnd.choice([APPROVALS, ADMINS, "C0NOWHERE"]), "name": "approvals"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "card"},
        "response_url": rnd.choice(["http://127.0.0.1:9/response/x", "not a url", ""]),
        "actions": [action, *extra],
        "state": {"values": {}},
    }


def view_payload(draw: st.DrawFn, rnd: random.Random, seeded: Seeded) -> dict[str, Any]:
    value = _action_value(draw, rnd, seeded)
    params_hash = seeded.hash_of(value) if rnd.random() < 0.7 else None
    params_hash = params_hash or draw(st.text(alphabet="0123456789abcdef", max_size=64))
    roll = rnd.random()
    if roll < 0.6:
        metadata = json.dumps({"action_id": value, "params_hash": params_hash, "tool": rnd.choice(TOOLS)})
    elif roll < 0.7:
        metadata = rnd.choice(["{{", "", "null", "[]", '{"action_id": 7}'])
    else:
        metadata = json.dumps(draw(json_values)) if roll < 0.85 else draw(st.text(max_size=60))
    roll = rnd.random()
    if roll < 0.5:
        values: Any = {"reason": {"reason": {"type": "plain_text_input", "value": draw(st.text(max_size=200))}}}
    elif roll < 0.8:
        field_name = rnd.choice(["order_id", "amount_cents", "flag", "enabled"])
        values = {field_name: {field_name: {"type": "plain_text_input", "value": draw(st.text(max_size=20))}}}
    else:
        values = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3))
    return {
        "type": _either(draw, rnd, ["view_submission"], st.sampled_from(["view_closed", "block_suggestion", ""])),
        "team": {"id": rnd.choice([TEAM, OTHER_TEAM]), "domain": "sandbox"},
        "user": {"id": _user(draw, rnd), "team_id": TEAM},
        "api_app_id": "A0SANDBOX",
        "trigger_id": draw(st.text(max_size=30)),
        "view": {
            "id": "V0FUZZ",
            "type": "modal",
            "callback_id": _either(draw, rnd, list(VIEW_IDS), st.text(max_size=20), 0.85),
            "private_metadata": metadata,
            "state": {"values": values},
        },
    }


def command_form(draw: st.DrawFn, rnd: random.Random, seeded: Seeded) -> dict[str, str]:
    verb = _either(draw, rnd, ["run", "run", "status", "autonomy", "audit", "help", "RUN"], st.text(max_size=12), 0.8)
    kind = _either(draw, rnd, [*TASK_TYPES, "nosuchtype", ""], st.text(max_size=12), 0.8)
    rest = _either(draw, rnd, ["Refund order 42", "flag dark-mode", *sorted(seeded.pending)], st.text(max_size=80))
    form = {
        "token": "legacy-verification-token",
        "team_id": rnd.choice([TEAM, TEAM, OTHER_TEAM, ""]),
        "team_domain": "sandbox",
        "channel_id": rnd.choice([APPROVALS, APPROVALS, "C0NOWHERE", ""]),
        "user_id": str(_user(draw, rnd)),
        "command": _either(draw, rnd, ["/countersign"], st.sampled_from(["/other", "countersign", "", "/COUNTERSIGN"])),
        "text": f"{verb} {kind} {rest}",
        "api_app_id": "A0SANDBOX",
        "response_url": "http://127.0.0.1:9/response/x",
        "trigger_id": draw(st.text(max_size=20)),
    }
    for key in list(form):
        roll = rnd.random()
        if roll < 0.02:
            del form[key]
        elif roll < 0.04:
            form[key] = draw(st.text(max_size=60))
        elif roll < 0.045:
            form[key] = _huge(rnd)
    return form


def event_envelope(draw: st.DrawFn, rnd: random.Random, seeded: Seeded) -> dict[str, Any]:
    kind = _either(draw, rnd, ["app_mention", "app_mention", "app_home_opened"], st.sampled_from(["message", ""]))
    if rnd.random() < 0.7:
        text = rnd.choice(["<@U0BOT> refund Refund order 7", "<@U0BOT> flag dark-mode", "<@U0BOT>", "<@U0BOT> "])
    else:
        text = "<@U0BOT> " + draw(st.text(max_size=80))
    event = {
        "type": kind,
        "user": _user(draw, rnd),
        "text": text,
        "channel": rnd.choice([APPROVALS, APPROVALS, "C0NOWHERE", ""]),
        "ts": "1700000001.000200",
        "event_ts": "1700000001.000200",
        "tab": rnd.choice(["home", "messages"]),
    }
    return {
        "token": "legacy-verification-token",
        "team_id": rnd.choice([TEAM, OTHER_TEAM]),
        "api_app_id": "A0SANDBOX",
        "event": event,
        "type": _either(draw, rnd, ["event_callback"], st.sampled_from(["url_verification", "app_rate_limited", ""])),
        "event_id": SEEDED_EVENT if rnd.random() < 0.2 else "Ev" + draw(random_ids),
        "event_time": int(time.time()),
        "challenge": draw(st.text(max_size=20)),
    }


def _flaw_click(rnd: random.Random, payload: dict[str, Any]) -> None:
    first = payload["actions"][0]
    choice = rnd.choice(["user", "self", "block", "value"])
    if choice == "block" and first.get("action_id") == action_ids.APPROVE:
        first["block_id"] = decide_block_id("0" * 64)
    elif choice == "value":
        first["value"] = "act_" + "Z" * 26
    else:
        user = REQUESTER if choice == "self" else rnd.choice([MALLORY, OTHER_USER])
        payload["user"] = {"id": user, "team_id": rnd.choice([TEAM, OTHER_TEAM])}


def _flaw_view(rnd: random.Random, payload: dict[str, Any]) -> None:
    choice = rnd.choice(["user", "metadata", "reason"])
    if choice == "user":
        payload["user"] = {"id": rnd.choice([MALLORY, OTHER_USER, REQUESTER])}
    elif choice == "metadata":
        payload["view"]["private_metadata"] = json.dumps({"action_id": "act_" + "Z" * 26, "params_hash": ""})
    else:
        payload["view"]["state"] = {"values": {"reason": {"reason": {"value": "   "}}}}
        payload["view"]["callback_id"] = action_ids.REJECT_MODAL


def _flaw_command(rnd: random.Random, form: dict[str, str]) -> None:
    form["text"] = rnd.choice(["run nosuchtype Refund order 1", "run refund", "status", "help", "autonomy refund"])


def _flaw_event(rnd: random.Random, body: dict[str, Any]) -> None:
    choice = rnd.choice(["replay", "empty", "no_channel"])
    if choice == "replay":
        body["event_id"] = SEEDED_EVENT
    elif choice == "empty":
        body["event"]["text"] = "<@U0BOT>  "
    else:
        body["event"].pop("channel", None)


def _flawed(
    verdict: Callable[[], str], flaw: Callable[[], None], last_resort: Callable[[], None], legit_allowed: bool
) -> str:
    """The request's verdict, after giving a legitimate one flaws until it is not (unless allowed)."""
    for _ in range(4):
        found = verdict()
        if found != "legit" or legit_allowed:
            return found
        flaw()
    last_resort()
    found = verdict()
    if found == "legit":
        raise AssertionError("a request meant to be flawed is still legitimate")
    return found


def content(draw: st.DrawFn, rnd: random.Random, seeded: Seeded, *, legit_allowed: bool) -> tuple[str, bytes, str, str]:
    """(shape, body, natural content type, expectation) of a Slack-shaped request."""
    shape = rnd.choice(["click", "click", "click", "view", "command", "event"])
    if shape in ("click", "view"):
        build, effect, flaw = (
            (click_payload, click_effect, _flaw_click) if shape == "click" else (view_payload, view_effect, _flaw_view)
        )
        payload = _mutate(draw, rnd, build(draw, rnd, seeded))

        def stranger() -> None:
            payload["user"] = {"id": MALLORY}
            if shape == "click":
                payload["actions"][0]["value"] = "act_" + "Z" * 26

        verdict = _flawed(lambda: effect(payload, seeded), lambda: flaw(rnd, payload), stranger, legit_allowed)
        expect = "malformed" if verdict == "malformed" else "no_change"
        if rnd.random() < 0.9:
            return shape, urllib.parse.urlencode({"payload": json.dumps(payload)}).encode(), FORM, expect
        return shape, json.dumps(payload).encode(), JSON, expect
    if shape == "command":
        form = command_form(draw, rnd, seeded)
        verdict = _flawed(
            lambda: command_effect(form),
            lambda: _flaw_command(rnd, form),
            lambda: form.update(text="help"),
            legit_allowed,
        )
        return (
            shape,
            urllib.parse.urlencode(form).encode(),
            FORM,
            "malformed" if verdict == "malformed" else "no_change",
        )
    body = _mutate(draw, rnd, event_envelope(draw, rnd, seeded))
    verdict = _flawed(
        lambda: event_effect(body, seeded),
        lambda: _flaw_event(rnd, body),
        lambda: body.update(event_id=SEEDED_EVENT),
        legit_allowed,
    )
    return shape, json.dumps(body).encode(), JSON, "malformed" if verdict == "malformed" else "no_change"


def mention_event(text: str) -> dict[str, Any]:
    return {"type": "app_mention", "user": REQUESTER, "text": text, "channel": APPROVALS, "ts": "1700000001.000300"}


def legit_content(draw: st.DrawFn, rnd: random.Random, seeded: Seeded) -> tuple[str, bytes, str]:
    """A request a listed approver or requester may really send: only its signature may fail."""
    action_id = rnd.choice(sorted(seeded.pending))
    params_hash, requester = seeded.pending[action_id]
    approver = rnd.choice([user for user in APPROVERS if user != requester])
    kind = rnd.choice(["approve", "acknowledge", "command", "mention"])
    if kind == "command":
        body = slash_command_body(
            team_id=TEAM,
            user_id=REQUESTER,
            channel_id=APPROVALS,
            text="run refund Refund order 9",
            response_url="http://127.0.0.1:9/response/x",
            trigger_id="t",
        )
        return "command", body, FORM
    if kind == "mention":
        event = {
            "type": "app_mention",
            "user": REQUESTER,
            "text": "<@U0BOT> refund Refund order 8",
            "channel": APPROVALS,
        }
        return "event", event_callback_body(event, team_id=TEAM, event_id=f"Ev{rnd.getrandbits(40):010X}"), JSON
    action = {"type": "button", "action_id": kind, "block_id": decide_block_id(params_hash), "value": action_id}
    payload = {"type": "block_actions", "user": {"id": approver, "team_id": TEAM}, "actions": [action]}
    return "click", urllib.parse.urlencode({"payload": json.dumps(payload)}).encode(), FORM


def garbage(draw: st.DrawFn, rnd: random.Random) -> tuple[str, bytes, str]:
    shape = rnd.choice(["bytes", "text", "form", "json", "payload"])
    if shape == "bytes":
        body = draw(st.binary(max_size=400))
    elif shape == "text":
        body = draw(st.text(max_size=400)).encode("utf-8", "surrogatepass")
    elif shape == "form":
        pairs = draw(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=6))
        body = urllib.parse.urlencode(pairs).encode()
    elif shape == "json":
        body = json.dumps(draw(json_values)).encode()
    else:
        body = b"payload=" + urllib.parse.quote(json.dumps(draw(json_values))).encode()
    if rnd.random() < 0.03:
        body += _huge(rnd).encode()
    return shape, body, rnd.choice([FORM, JSON])


def _signature(secret: str, stamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def sign_headers(rnd: random.Random, body: bytes, *, flaw: str | None) -> dict[str, str]:
    now = int(time.time())
    stamp = str(now)
    if flaw in ("stale", "future"):
        drift = int(10 ** rnd.uniform(2.48, 8))  # 301 s to three years
        stamp = str(now - drift if flaw == "stale" else now + drift)
    elif flaw == "bad_timestamp":
        stamp = rnd.choice(["", "abc", f"{now}.5", str(now) + "0" * 30, "-1", "1e10", "0x" + format(now, "x")])
    signature = _signature(SECRET, stamp, body)
    if flaw == "forged":
        signature = "v0=" + "".join(rnd.choice("0123456789abcdef") for _ in range(64))
    elif flaw == "wrong_secret":
        signature = _signature(SECRET + "x", stamp, body)
    elif flaw == "other_body":
        signature = _signature(SECRET, stamp, body + b"&x=1")
    elif flaw == "other_stamp":
        signature = _signature(SECRET, str(now - 1), body)
    elif flaw == "v1":
        signature = "v1=" + signature[3:]
    elif flaw == "truncated":
        signature = signature[: rnd.randrange(len(signature))]
    elif flaw == "upper":
        signature = "v0=" + signature[3:].upper()
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
    if flaw == "no_signature":
        headers.pop("X-Slack-Signature")
    elif flaw == "no_timestamp":
        headers.pop("X-Slack-Request-Timestamp")
    elif flaw == "no_headers":
        headers.clear()
    return headers


AUTH_FLAWS = (
    "forged",
    "wrong_secret",
    "other_body",
    "other_stamp",
    "stale",
    "future",
    "bad_timestamp",
    "v1",
    "truncated",
    "upper",
    "no_signature",
    "no_timestamp",
    "no_headers",
)


@st.composite
def requests(draw: st.DrawFn, seeded: Seeded) -> Request:
    rnd = draw(st.randoms(use_true_random=True))
    roll = rnd.random()
    if roll < 0.3:
        if rnd.random() < 0.4:
            shape, body, content_type = legit_content(draw, rnd, seeded)
        else:
            shape, body, content_type, _ = content(draw, rnd, seeded, legit_allowed=True)
        headers = sign_headers(rnd, body, flaw=rnd.choice(AUTH_FLAWS))
        return Request("auth", shape, body, {"Content-Type": content_type, **headers}, "refused")
    if roll < 0.85:
        family = "malformed"
        shape, body, content_type, expect = content(draw, rnd, seeded, legit_allowed=False)
        if rnd.random() < 0.1:  # cut short, then signed as sent
            body = body[: rnd.randrange(len(body) + 1)]
        if rnd.random() < 0.1:
            content_type = rnd.choice(CONTENT_TYPES)
    else:
        family = "garbage"
        shape, body, content_type = garbage(draw, rnd)
        expect = "no_change"
    headers = {"Content-Type": content_type} if content_type else {}
    return Request(family, shape, body, {**headers, **sign_headers(rnd, body, flaw=None)}, expect)


# -- sending --------------------------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)  # issue #14's shapes, large bodies included
    slowest: dict[str, float] = field(default_factory=dict)  # shape -> its slowest answer (s)
    server_errors: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    unsigned_accepted: list[str] = field(default_factory=list)
    wrong_answers: list[str] = field(default_factory=list)  # a shape answered other than it must be
    late: list[str] = field(default_factory=list)  # answered after the shape's deadline
    accepted: Counter[str] = field(default_factory=Counter)  # shape -> requests answered 2xx it must refuse
    by_shape: Counter[str] = field(default_factory=Counter)
    huge: int = 0

    def record(self, request: Request, status: int | None, answer: bytes = b"", elapsed: float = 0.0) -> None:
        sample = f"{request.family}/{request.shape} {request.headers} {request.body[:300]!r} -> {status}"
        sample += f" {answer[:200]!r}" + (f" in {elapsed:.2f} s" if status is not None else "")
        large = request.declared is not None or len(request.body) > MAX_SLACK_BODY
        shape = "large" if large else request.family if request.family in SHAPES else None
        with self.lock:
            self.sent += 1
            self.families[f"{request.family}:{request.expect}"] += 1
            self.huge += len(request.body) >= 100_000
            if shape:
                self.shapes[shape] += 1
                self.slowest[shape] = max(self.slowest.get(shape, 0.0), elapsed)
            if status is None:
                self.unanswered.append(sample)
                return
            self.statuses[f"{status // 100}xx" if status != 401 else "401"] += 1
            self.by_shape[f"{request.family}/{request.shape}/{request.expect} {status}"] += 1
            answers = frozenset({413}) if large else request.answers
            if status >= 500:
                self.server_errors.append(sample)
            elif request.family == "auth" and status < 300:
                self.unsigned_accepted.append(sample)
            if shape and status < 300 and answers is not None and status not in answers:
                self.accepted[shape] += 1
            if status < 500 and answers is not None and (status not in answers or request.marker not in answer):
                self.wrong_answers.append(sample)
            if request.deadline_s is not None and elapsed > request.deadline_s:
                self.late.append(sample)


class Sender:
    """Sends requests from a few threads, one keep-alive connection each to the app and the page."""

    def __init__(self, url: str, tally: Tally, threads: int = 6, page_port: int | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.hosts = {"app": (parsed.hostname or "127.0.0.1", parsed.port or 80)}
        if page_port is not None:
            self.hosts["page"] = ("127.0.0.1", page_port)
        self.tally = tally
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fuzz-send")
        self.slots = threading.BoundedSemaphore(threads * 4)
        self.local = threading.local()

    def submit(self, request: Request) -> None:
        self.slots.acquire()
        future = self.pool.submit(self._send, request)
        future.add_done_callback(lambda _: self.slots.release())

    def _send(self, request: Request) -> None:
        try:
            if request.again:  # a replay: the first answer is the original's, the second is checked
                self._exchange(request)
            status, answer, elapsed = self._exchange(request)
        except (OSError, http.client.HTTPException) as exc:
            self.tally.record(request, None, f"{type(exc).__name__}: {exc}".encode())
            return
        self.tally.record(request, status, answer, elapsed)

    def _exchange(self, request: Request) -> tuple[int, bytes, float]:
        """(status, answer, seconds from the first byte sent to the last read)."""
        if not hasattr(self.local, "connections"):
            self.local.connections = {}
        connections: dict[str, http.client.HTTPConnection | None] = self.local.connections
        for attempt in (1, 2):  # a keep-alive connection the server closed is retried once
            connection = connections.get(request.target)
            if connection is None:
                host, port = self.hosts[request.target]
                connection = connections[request.target] = http.client.HTTPConnection(host, port, timeout=60)
            began = time.monotonic()
            try:
                declared = request.declared
                if declared is None and len(request.body) > MAX_SLACK_BODY:
                    declared = len(request.body)
                if declared is not None:
                    # Refused (413) from its declared length, before a byte of it is read: the
                    # server answers and closes while a client would still be sending. Send the
                    # headers only, as a client waiting for `100 Continue` does, and read that.
                    connection.putrequest(request.method, request.path)
                    for name, value in {**request.headers, "Content-Length": str(declared)}.items():
                        connection.putheader(name, value)
                    connection.endheaders()
                else:
                    connection.request(request.method, request.path, body=request.body, headers=request.headers)
                reply = connection.getresponse()
                answer = reply.read()
                elapsed = time.monotonic() - began
                if reply.will_close or reply.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connections[request.target] = None
                return reply.status, answer, elapsed
            except (OSError, http.client.HTTPException):
                connection.close()
                connections[request.target] = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def fuzz(strategy: st.SearchStrategy[Request], count: int, seed: int, sender: Sender) -> None:
    """Generate and send `count` requests: hypothesis draws them, without shrinking or a database."""
    done = 0
    while done < count:
        batch = count - done

        @hypothesis_seed(seed + done)
        @settings(
            max_examples=batch,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def one(request: Request) -> None:
            nonlocal done
            if done < count:
                sender.submit(request)
                done += 1

        one()


# -- seeding --------------------------------------------------------------------------------------


def seed_state(url: str, slack: Any, reader: Engine, servers: list[Any]) -> Seeded:
    def signed_command(user: str, team: str, text_: str) -> SignedRequest:
        body = slash_command_body(
            team_id=team,
            user_id=user,
            channel_id=APPROVALS,
            text=text_,
            response_url=slack.new_response_url(APPROVALS, None, user),
            trigger_id=slack.new_trigger_id(user),
        )
        request = signed(SECRET, body, FORM)
        reply = send(url + "/slack/events", request, timeout=15)
        if reply.status != 200:
            raise ChaosFailure(f"seeding command {text_!r} got {reply.status}: {reply.body}")
        return request

    kept = signed_command(REQUESTER, TEAM, f"run refund {KEPT_TEXT}")
    signed_command(REQUESTER, TEAM, "run flag flag dark-mode")
    signed_command(ALICE, TEAM, "run refund Refund order 12")  # Alice requested it: only Bob may approve
    signed_command(OTHER_USER, OTHER_TEAM, "run refund Refund order 13")
    mention = {
        "type": "app_mention",
        "user": REQUESTER,
        "text": "<@U0BOT> refund Refund order 14",
        "channel": APPROVALS,
    }
    body = event_callback_body(mention, team_id=TEAM, event_id=SEEDED_EVENT)
    reply = send(url + "/slack/events", signed(SECRET, body, JSON), timeout=15)
    if reply.status != 200:
        raise ChaosFailure(f"seeding the mention got {reply.status}: {reply.body}")

    def seeded() -> bool:
        with reader.connect() as conn:
            pending = conn.execute(select(func.count()).select_from(Action).where(Action.state == "pending"))
            undelivered = conn.execute(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
            )
            return pending.scalar_one() == 5 and undelivered.scalar_one() == 0

    wait_for(seeded, "5 pending actions with their cards posted", servers, 60)
    with reader.connect() as conn:
        rows = conn.execute(
            select(Action.public_id, Action.params_hash, Action.requester, Action.tool, Task.team_id).join(
                Task, Task.id == Action.task_id
            )
        ).all()
        tasks = conn.execute(select(Task.public_id)).scalars().all()
    return Seeded(
        {row[0]: (row[1], row[2]) for row in rows},
        tuple(tasks),
        frozenset({SEEDED_EVENT}),
        tuple(Target(*row) for row in rows),
        kept,
    )


def replays_accepted(reader: Engine) -> int:
    """Tasks started by the kept command beyond the one it started while seeding (its replays
    are sent during the run): counted in the database, whatever the answers said."""
    with reader.connect() as conn:
        found = conn.execute(select(func.count()).select_from(Task).where(Task.request_text == KEPT_TEXT))
        return max(0, int(found.scalar_one()) - 1)


def new_rows(reader: Engine, before: Snapshot) -> list[str]:
    """The rows the requests added (evidence for a state change), a few per table."""
    queries = {
        "task": select(Task.public_id, Task.task_type, Task.requester, Task.team_id, Task.channel, Task.request_text),
        "decision": select(Decision.kind, Decision.actor, Decision.team_id, Decision.action_id, Decision.note),
        "action": select(Action.public_id, Action.state, Action.tool, Action.requester),
        "outbox": select(OutboxMessage.kind, OutboxMessage.ordering_key),
        "slack event": select(SlackEvent.event_id),
    }
    order = {"task": Task.id, "decision": Decision.id, "action": Action.id, "outbox": OutboxMessage.id}
    found = []
    with reader.connect() as conn:
        for name, query in queries.items():
            column = order.get(name)
            if column is None:
                rows = conn.execute(query.where(SlackEvent.event_id != SEEDED_EVENT).limit(5)).all()
            else:
                rows = conn.execute(query.where(column > before.last_ids[name]).order_by(column).limit(5)).all()
            found += [f"new {name}: {tuple(str(cell)[:80] for cell in row)}" for row in rows]
    return found


def settled_snapshot(reader: Engine, seeded_ids: list[str], deadline_s: float = 20.0) -> Snapshot:
    """A snapshot once two taken a second apart agree (work a request started has finished)."""
    deadline = time.monotonic() + deadline_s
    previous = Snapshot.take(reader, seeded_ids)
    while True:
        time.sleep(1.0)
        current = Snapshot.take(reader, seeded_ids)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


# -- main -----------------------------------------------------------------------------------------


def aim_at(seeded: Seeded, page: SandboxPage) -> Aim:
    assert seeded.kept is not None
    return Aim(
        actions=seeded.targets,
        approvers=APPROVERS,
        strangers=(MALLORY, OTHER_USER, REQUESTER),
        channel=APPROVALS,
        kept=seeded.kept,
        page_port=page.port,
        page_token=page.token,
        sign=lambda rnd, body: sign_headers(rnd, body, flaw=None),
        flawed=lambda draw, rnd: content(draw, rnd, seeded, legit_allowed=False)[:3],
    )


def page_answers(page: SandboxPage) -> bool:
    """The page answers its own requests (so that its refusals of the others mean something)."""
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
    try:
        connection.request("GET", "/api/personas", headers={"Host": f"127.0.0.1:{page.port}", TOKEN_HEADER: page.token})
        reply = connection.getresponse()
        return reply.status == 200 and bool(json.loads(reply.read()))
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="requests to send (default 10000)")
    shapes_help = f"requests of each of issue #14's shapes (default {SHAPE_COUNT})"
    parser.add_argument("--shapes", type=int, default=SHAPE_COUNT, help=shapes_help)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--threads", type=int, default=6, help="concurrent senders (default 6)")
    parser.add_argument("--verbose", action="store_true", help="answers per kind of request, on stderr")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    began = time.monotonic()
    tally = Tally()
    people = {REQUESTER: "requester", ALICE: "approver", BOB: "approver", MALLORY: "stranger"}
    with (
        tempfile.TemporaryDirectory(prefix="cs-chaos-fuzz-") as directory,
        database(args.backend, NAME) as url,
        emulator([APPROVALS, ADMINS], [REQUESTER, ALICE, BOB, MALLORY, ADMIN, OTHER_USER]) as slack,
    ):
        workdir = Path(directory)
        config = write_yaml(workdir, "countersign.yml", CONFIG)
        script = write_yaml(workdir, "script.yml", SCRIPT)
        reader = create_engine(normalize_url(url))
        try:
            with (
                serving(NAME, serve_env(url, config, slack, script=script), workdir) as server,
                demo_page(server.events_url, APPROVALS, people) as (page, page_slack),
            ):
                seeded = seed_state(server.url, slack, reader, [server])
                before = Snapshot.take(reader, sorted(seeded.pending))
                page_before, page_up = workspace_size(page_slack), page_answers(page)
                sender = Sender(server.url, tally, threads=args.threads, page_port=page.port)
                try:
                    # The shapes first: the kept command's replays must come within Slack's 5 minutes.
                    aim = aim_at(seeded, page)
                    for offset, shape in enumerate(SHAPES.values()):
                        fuzz(shape(aim), args.shapes, seed + offset * 7919, sender)
                    fuzz(requests(seeded), args.count, seed, sender)
                finally:
                    sender.close()
                after = settled_snapshot(reader, sorted(seeded.pending))
                evidence = new_rows(reader, before) if before.changes(after) else []
                replayed = replays_accepted(reader)
                page_changes = workspace_size(page_slack) - page_before
                alive = server.alive()
                log_tail = server.output(2000)
        finally:
            reader.dispose()
    changes = before.changes(after)
    refusals = after.audit_kinds["decision.refused"] - before.audit_kinds.get("decision.refused", 0)
    cross_origin = tally.accepted["cross-origin"] + abs(page_changes)
    problems = (
        [f"state change: {change}" for change in changes]
        + evidence
        + [f"5xx: {sample}" for sample in tally.server_errors[:10]]
        + [f"no answer: {sample}" for sample in tally.unanswered[:10]]
        + [f"wrong answer: {sample}" for sample in tally.wrong_answers[:10]]
        + [f"answered after {SLACK_DEADLINE_S:.0f} s: {sample}" for sample in tally.late[:10]]
        + ([f"the kept command's replays started {replayed} more tasks"] if replayed else [])
        + ([f"the demo page's workspace changed by {page_changes}"] if page_changes else [])
        + ([] if page_up else ["the demo page did not answer its own request"])
        + ([] if alive else [f"the server died: {log_tail}"])
    )
    for problem in problems:
        note(NAME, problem[:2000])
    if args.verbose:
        for sample in tally.unsigned_accepted[:5]:
            note(NAME, f"forged request answered 2xx: {sample[:600]}")
        for kind, count in sorted(tally.by_shape.items()):
            note(NAME, f"{count:6d} {kind}")
    # A forged request answered 2xx but refused all the same (it changed nothing) is reported, not failed.
    passed = not (
        changes
        or tally.server_errors
        or tally.unanswered
        or tally.wrong_answers
        or tally.late
        or replayed
        or cross_origin
        or not page_up
        or not alive
    )
    families = ", ".join(f"{name} {count}" for name, count in sorted(tally.families.items()) if ":" in name)
    statuses = ", ".join(f"{name}={count}" for name, count in sorted(tally.statuses.items()))
    shapes = ", ".join(f"{name} {tally.shapes[name]} (slowest {tally.slowest.get(name, 0.0):.1f} s)" for name in SHAPES)
    print(
        f"{NAME}: {tally.sent} requests ({families}; {tally.huge} over 100 kB; shapes: {shapes}), "
        f"5xx={len(tally.server_errors)}, state changes={len(changes)}, unanswered={len(tally.unanswered)}, "
        f"wrong answers={len(tally.wrong_answers)}, late answers={len(tally.late)}, replays accepted={replayed}, "
        f"demo cross-origin accepted={cross_origin}, forged answered 2xx={len(tally.unsigned_accepted)}, "
        f"answers {statuses}, audit refusals={refusals}, seed {seed}, {time.monotonic() - began:.0f} s, "
        f"{'PASS' if passed else 'FAIL'}",
        flush=True,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
