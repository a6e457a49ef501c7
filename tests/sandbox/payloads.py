"""Every kind of payload the app sends to Slack, from every renderer in `bot/blocks/`, over the
representative views of the block tests' factories: what the sandbox must be able to show."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from bot.blocks import approval_card, edit_modal, home_view, reject_modal, result_reply, task_message, veto_modal
from bot.blocks.changes import change_blocks, change_of
from bot.blocks.connect import connect_blocks, requester_connect
from bot.blocks.modals import resolve_modal
from bot.blocks.params import exact_json, params_blocks
from bot.blocks.ping import reminder, reminder_acknowledged, stall_alert
from bot.blocks.question import answer_modal, question_message
from bot.blocks.review import review_modal, review_result
from bot.blocks.rules import allow_similar_modal
from bot.blocks.views import ApproverView, ConnectLinkView, HomeView, QuestionView, ReviewItemView, ReviewView
from tests.bot.blocks.factories import APPROVER, CARDS, HASH, NOW, REQUESTER, make_task

Payload = dict[str, Any]  # {"kind": "message" | "modal" | "home", "blocks": [...], "view"?: {...}}
# Every function of bot/blocks/ that makes a message's blocks or a view; a new one must be added here.
COVERED = {
    "card.approval_card",
    "changes.change_blocks",
    "card.result_reply",
    "connect.connect_blocks",
    "connect.requester_connect",
    "home.home_view",
    "modals.edit_modal",
    "modals.reject_modal",
    "modals.resolve_modal",
    "modals.veto_modal",
    "params.exact_json",
    "params.params_blocks",
    "ping.reminder",
    "ping.reminder_acknowledged",
    "ping.stall_alert",
    "question.answer_modal",
    "question.question_message",
    "review.review_modal",
    "review.review_result",
    "rules.allow_similar_modal",
    "task.task_message",
}
HAS_PROPOSALS = importlib.util.find_spec("bot.blocks.proposal") is not None
if HAS_PROPOSALS:
    COVERED |= {"proposal.proposal_card", "proposal.review_card"}


class Speed(StrEnum):
    STANDARD = "standard"
    EXPRESS = "express"


class EveryKind(BaseModel):
    """One parameter of each kind the edit modal turns into an input."""

    order_id: str
    amount_cents: int = Field(ge=1, le=100_000)
    ratio: float = 0.5
    notify: bool = True
    reason: Literal["damaged", "late", "other"] = "other"
    speed: Speed = Speed.STANDARD
    note: str | None = None
    limit: int | None = None
    tags: list[str] = []
    extra: dict[str, Any] | None = None


TASKS = [
    make_task(state="paused", kind="budget", reason="It used its 8 steps."),
    make_task(state="paused", kind="loop", reason="The same call three times."),
    make_task(state="paused", reason="Stopped by a person."),
    make_task(state="stalled", kind="model_unavailable", reason="529 for 10 minutes."),
    make_task(state="running", kind="model_unavailable"),
    make_task(state="waiting"),
    make_task(state="succeeded", final_text="Refunded 5.00 USD for order A1."),
    make_task(state="failed", reason="The tool failed after 3 tries."),
    make_task(state="cancelled", reason="Stopped."),
    make_task(state="paused", candidates=("refund", "restart-service")),
]


def payloads() -> dict[str, Payload]:
    found: dict[str, Payload] = {}
    for name, card in CARDS.items():
        found[f"card:{name}"] = {"kind": "message", "blocks": approval_card(card)}
        found[f"result:{name}"] = {"kind": "message", "blocks": result_reply(card)[1]}
    for index, task in enumerate(TASKS):
        found[f"task:{index}:{task.state}"] = {"kind": "message", "blocks": task_message(task)[1]}
    for late in (False, True):
        found[f"reminder:{late}"] = {"kind": "message", "blocks": reminder(CARDS["pending"], "reminder", late)[1]}
    link = "https://countersign-sandbox.slack.com/archives/C0APPROVALS/p1700000000000100"
    found["reminder:linked"] = {"kind": "message", "blocks": reminder(CARDS["pending"], "reminder", False, link)[1]}
    warning = reminder(
        CARDS["pending"], "expiry_warning", False, link, expires_at=NOW + timedelta(hours=1), now=NOW, waiting=3
    )
    found["reminder:expiry_warning"] = {"kind": "message", "blocks": warning[1]}
    acknowledged = replace(CARDS["pending"], acknowledged_by=APPROVER, summary="the refund of order A1")
    for user in (APPROVER, "U0OTHER"):
        blocks = reminder_acknowledged(acknowledged, user, link)[1]
        found[f"reminder:acknowledged:{user}"] = {"kind": "message", "blocks": blocks}
    schema = {
        "properties": {
            "when": {"type": "string", "format": "date-time", "description": "When it runs"},
            "link": {"type": "string", "format": "uri"},
        }
    }
    when = {"when": "2024-05-01T12:00:00Z", "link": "https://example.com/x", "amount_cents": 500, "tags": ["a"]}
    found["params:fields"] = {
        "kind": "message",
        "blocks": params_blocks(when, "ab" * 32, schema, {"amount_cents": {"from": 400, "to": 500}}),
    }
    coding = {
        "bash": {"command": "export TOKEN=sk-abcdefghijklmnopqrstuvwx\n./deploy.sh", "description": "Deploy"},
        "edit": {"file_path": "/srv/a.py", "old_string": "A = 1\nB = 2", "new_string": "A = 1\nB = 3"},
        "write": {"file_path": "/srv/b.txt", "content": "\n".join(f"line {n}" for n in range(400))},
    }
    for name, params in coding.items():
        change = change_of(name.capitalize(), params)
        assert change is not None
        found[f"change:{name}"] = {"kind": "message", "blocks": change_blocks(change)}
    found["params:long_json"] = {"kind": "message", "blocks": [exact_json({"blob": "x" * 3000}, "ab" * 32)]}
    links = [
        ConnectLinkView(name="github_token", provider="github", url="https://cs.example/oauth/github/start?state=s")
    ]
    lasts = timedelta(minutes=10)
    found["connect:refusal"] = {"kind": "message", "blocks": connect_blocks("Connect it first.", links, lasts=lasts)}
    found["connect:dm"] = {"kind": "message", "blocks": requester_connect(CARDS["pending"], links, lasts=lasts)[1]}
    found["stall"] = {"kind": "message", "blocks": stall_alert(TASKS[3], "no model for 10 minutes", ["U0ADMIN"])[1]}
    if HAS_PROPOSALS:
        found.update(_proposals())
    cards = tuple(CARDS.values())
    homes = {
        "home:full": HomeView(user=APPROVER, waiting=cards[:6], recent=cards, levels=(("refund", "hitl"),)),
        "home:empty": HomeView(user=APPROVER),
        "home:admin": HomeView(
            user=APPROVER,
            waiting=cards[:2],
            review_all=5,
            review_by_type=(("flag", 1), ("refund", 4)),
            approvers=(
                ApproverView(
                    approver=APPROVER,
                    decisions=20,
                    approvals=19,
                    approval_rate=0.95,
                    median_read_s=2.0,
                    fast_share=0.7,
                    longest_fast_streak=9,
                    flagged=True,
                ),
            ),
        ),
    }
    for name, home in homes.items():
        view = home_view(home)
        found[name] = {"kind": "home", "blocks": view["blocks"], "view": view}
    params = {"order_id": "A1", "amount_cents": 500, "notify": False, "note": "two\nlines", "extra": {"a": 1}}
    modals = {
        "modal:reject": reject_modal("act_1", "ab" * 32, "{}"),
        "modal:veto": veto_modal("act_1", "ab" * 32, "{}"),
        "modal:resolve_ran": resolve_modal("act_1", "ab" * 32, True, 1, "{}"),
        "modal:resolve_not_run": resolve_modal("act_1", "ab" * 32, False, 2, "{}"),
        "modal:edit": edit_modal("act_1", "issue_refund", EveryKind.model_json_schema(), params, "{}"),
        "modal:edit_nothing": edit_modal("act_1", "ping", {"properties": {}}, {}, "{}"),
        "modal:review": review_modal(_review(12)),
        "modal:review_nothing": review_modal(_review(0)),
        "modal:allow_similar": allow_similar_modal(
            "act_1", "set_flag", "feature-flag", EveryKind.model_json_schema(), params, "{}"
        ),
        "modal:review_result": review_result(["the refund of order 1: approved"], ["You requested it."], ["x"]),
    }
    question = QuestionView(
        question_public_id="qst_1",
        task_type="payouts",
        asker="agent",
        subject="Release 4.2",
        text="Ship the release tonight?\nThe backup runs at 6 pm.",
        state="open",
        approvers=(APPROVER,),
        options=(("yes", "Ship it"), ("no", "Wait")),
    )
    answered = replace(question, state="answered", answer="Yes, after the backup.", option="yes", answered_by=APPROVER)
    found["question:open"] = {"kind": "message", "blocks": question_message(question)[1]}
    found["question:answered"] = {"kind": "message", "blocks": question_message(answered)[1]}
    modals["modal:answer"] = answer_modal(question, "{}")
    modals["modal:answer_plain"] = answer_modal(replace(question, options=()), "{}")
    for name, modal in modals.items():
        found[name] = {"kind": "modal", "blocks": modal["blocks"], "view": modal}
    return found


def _review(count: int) -> ReviewView:
    items = tuple(
        ReviewItemView(
            action_public_id=f"act_{index:016d}",
            task_type="refund",
            tool="issue_refund",
            summary=f"the refund of order {index}",
            risk="high",
            requester=REQUESTER,
            request_text="It broke.",
            rationale="broken",
            confidence=0.9,
            confidence_threshold=0.7,
            params={"order_id": str(index), "amount_cents": 500},
            params_hash=HASH,
            binding="b" * 22,
            drafted_at=NOW,
            diff={"amount_cents": {"from": 600, "to": 500}} if index == 1 else None,
            edited_by=APPROVER if index == 1 else None,
            tool_changed=index == 2,
        )
        for index in range(count)
    )
    return ReviewView(user=APPROVER, task_type=None, items=items, waiting=count, shown_at=NOW)


def _proposals() -> dict[str, Payload]:
    from bot.blocks.proposal import proposal_card, review_card
    from bot.blocks.views import ProposalView

    stats = {"samples": 12, "days": 3, "approvers": 2, "clean": 11, "rejected": 1, "clean_lower_bound": 0.65}
    found: dict[str, Payload] = {"review": {"kind": "message", "blocks": review_card(CARDS["succeeded_auto"])[1]}}
    for state in ("open", "promoted", "dismissed", "stale"):
        view = ProposalView(
            proposal_public_id="prp_1",
            task_type="refund",
            from_level="hitl",
            to_level="hotl",
            state=state,
            stats=stats,
            signatures=("U0ADMIN",),
            needed=2,
            decided_by=None if state == "open" else "U0ADMIN",
            recent=(
                ("act_1", "rejected", "wrong order", "the refund of order 1001"),
                ("act_2", "edited", None, "the refund of order 1002"),
            ),
        )
        found[f"proposal:{state}"] = {"kind": "message", "blocks": proposal_card(view)[1]}
    return found


def renderers() -> set[str]:
    """`module.function` of every public function in bot/blocks/ that returns blocks or a view."""
    import inspect
    import pkgutil

    import bot.blocks

    found = set()
    for info in pkgutil.iter_modules(bot.blocks.__path__):
        if info.name in ("kit", "text", "views"):  # builders and text helpers, not payloads
            continue
        module = importlib.import_module(f"bot.blocks.{info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            returns = str(function.__annotations__.get("return", ""))
            public = function.__module__ == module.__name__ and not name.startswith("_")
            if public and ("Block" in returns or name.endswith("_view")):
                found.add(f"{info.name}.{name}")
    # The card's own buttons (also shown in App Home, drawn with its states in CARDS) and its Approve's
    # confirm dialog; Home's review buttons.
    buttons = {"card.card_buttons", "card.incident_buttons", "card.undo_buttons", "card.approve_confirm"}
    return found - buttons - {"home.review_buttons"}


def types_used(all_payloads: dict[str, Payload]) -> tuple[set[str], set[str]]:
    """(block types, element and text-object types) in the payloads."""
    blocks: set[str] = set()
    elements: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("type"), str):
                elements.add(value["type"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for payload in all_payloads.values():
        for block in payload["blocks"]:
            blocks.add(block["type"])
            walk({key: item for key, item in block.items() if key != "type"})
    return blocks, elements
