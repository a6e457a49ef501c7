"""What the product would do with a generated request, read as its listeners and decisions
read it: `legit` (a change a listed person may make), `malformed` (a change only through a
shape Slack never sends) or `none`. The generators give every `legit` request a flaw first,
so that no fuzz request may change anything.
"""

from __future__ import annotations

import html
import json
import re

from bot import action_ids
from bot.blocks.card import params_hash_from_block_id
from chaos.fuzz_world import ADMIN, APPROVERS, TASK_TYPES, Seeded

MENTION = re.compile(r"<@[UW][A-Z0-9]+(\|[^>]*)?>")  # as bot.listeners.events strips it


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
    if kind == action_ids.STOP_TASK and value in seeded.tasks:  # its requester may, from any workspace
        return "legit" if user_id in (*APPROVERS, ADMIN, seeded.tasks[value]) else "none"
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
