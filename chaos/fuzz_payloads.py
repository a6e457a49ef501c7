"""The fuzz scenario's raw material: hypothesis strategies for JSON values and ids, and the
four Slack payloads it sends (a click, a modal submission, a slash command, an event), built
around the seeded state and then mutated (fields dropped, retyped, made huge, added).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from hypothesis import strategies as st

from bot import action_ids
from bot.blocks.card import decide_block_id
from chaos.common import TEAM
from chaos.fuzz_world import (
    ADMIN,
    ADMINS,
    ALICE,
    APPROVALS,
    BOB,
    MALLORY,
    OTHER_TEAM,
    OTHER_USER,
    REQUESTER,
    SEEDED_EVENT,
    TASK_TYPES,
    TOOLS,
    Seeded,
)

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


def huge_text(rnd: random.Random) -> str:
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


def mutate(draw: st.DrawFn, rnd: random.Random, value: dict[str, Any]) -> dict[str, Any]:
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
            parent[path[-1]] = huge_text(rnd)
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
        task = rnd.choice(sorted(seeded.tasks))
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
            form[key] = huge_text(rnd)
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
