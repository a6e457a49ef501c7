"""The review of many within Slack's limits: at most 10 options per checkboxes element, 100
blocks and 3,000 characters of metadata per modal; the oldest items that fit, and how many more
wait; every item shown once, grouped by task type and tool; nothing checked."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from approvals.decisions import shown_binding
from bot.blocks.home import home_view
from bot.blocks.review import MAX_ITEMS, groups, review_modal, review_result
from bot.blocks.views import HomeView, ReviewItemView, ReviewView
from tests.bot.blocks.checks import assert_view_valid, live_tokens
from tests.bot.blocks.factories import HASH, NOW, REQUESTER

USER = "U0ALICE"


def _item(index: int, *, task_type: str = "refund", tool: str = "issue_refund", **changes: object) -> ReviewItemView:
    fields: dict[str, object] = {
        "action_public_id": f"act_{index:016d}",
        "task_type": task_type,
        "tool": tool,
        "summary": f"the refund of order {1000 + index}",
        "risk": "high",
        "requester": REQUESTER,
        "request_text": f"Refund order {1000 + index}, it broke",
        "rationale": "It arrived broken.",
        "confidence": 0.9,
        "confidence_threshold": 0.7,
        "params": {"order_id": str(1000 + index), "amount_cents": 500},
        "params_hash": HASH,
        "binding": shown_binding(HASH, f"{index:064x}"),
        "drafted_at": NOW + timedelta(seconds=index),  # the lower the index, the older
    }
    fields.update(changes)
    return ReviewItemView(**fields)  # type: ignore[arg-type]


def _view(items: list[ReviewItemView], waiting: int | None = None, task_type: str | None = None) -> ReviewView:
    return ReviewView(
        user=USER,
        task_type=task_type,
        items=tuple(items),
        waiting=len(items) if waiting is None else waiting,
        shown_at=NOW,
    )


def _options(modal: dict[str, object]) -> list[str]:
    return [
        option["value"]
        for block in modal["blocks"]  # type: ignore[attr-defined]
        if block["type"] == "input"
        for option in block["element"]["options"]
    ]


def test_a_few_items_each_with_its_own_unchecked_checkbox_grouped_by_type_and_tool() -> None:
    items = [_item(0), _item(1, task_type="flag", tool="toggle_flag", params={"flag": "x"}), _item(2), _item(3)]
    modal = review_modal(_view(items))
    assert_view_valid(modal)
    assert modal["callback_id"] == "review_batch" and modal["submit"]["text"] == "Approve selected"
    assert modal["title"]["text"] == "Review 4 waiting"
    headings = [b["text"]["text"] for b in modal["blocks"] if b["block_id"].startswith("group:")]
    assert headings == ["*refund* · `issue_refund` · 3 waiting", "*flag* · `toggle_flag` · 1 waiting"]
    assert sorted(_options(modal)) == sorted(item.action_public_id for item in items)
    inputs = [b for b in modal["blocks"] if b["type"] == "input"]
    assert all(b["optional"] and "initial_options" not in b["element"] for b in inputs)
    metadata = json.loads(modal["private_metadata"])
    assert metadata["shown"] == {item.action_public_id: item.binding for item in items}
    assert metadata["at"] == NOW.isoformat() and metadata["type"] == ""
    item = next(b for b in modal["blocks"] if b["block_id"] == f"item:{items[0].action_public_id}")["text"]["text"]
    assert item.startswith("*1.* *The refund of order 1000* · :red_circle: high risk\nfrom <@U0REQUESTER>")
    assert "confidence 90%" in item and '`{"amount_cents": 500, "order_id": "1000"}`' in item


def test_similar_items_sit_together_within_a_group() -> None:
    items = [_item(i, params={"order_id": order, "amount_cents": 500}) for i, order in enumerate("BABA")]
    [group] = groups(items)
    assert [item.params["order_id"] for _, item in group.items] == ["A", "A", "B", "B"]
    assert [number for number, _ in group.items] == [1, 2, 3, 4]


@pytest.mark.parametrize("count", [11, 35, 60, 150])
def test_many_items_split_into_groups_of_ten_and_the_oldest_that_fit_are_shown(count: int) -> None:
    items = [_item(i, task_type="refund" if i % 3 else "flag", tool="t" if i % 3 else "u") for i in range(count)]
    modal = review_modal(_view(items, waiting=count + 7))
    assert_view_valid(modal)
    assert len(modal["blocks"]) <= 100 and len(modal["private_metadata"]) <= 3000
    inputs = [b for b in modal["blocks"] if b["type"] == "input"]
    assert all(1 <= len(b["element"]["options"]) <= 10 for b in inputs)
    shown = _options(modal)
    assert len(shown) == len(set(shown)) <= MAX_ITEMS
    assert set(shown) == {item.action_public_id for item in items[: len(shown)]}  # the oldest
    about = modal["blocks"][0]["elements"][0]["text"]
    assert f"{count + 7} wait for you; this shows the oldest {len(shown)}" in about


def test_untrusted_text_stays_text_and_huge_items_stay_within_limits() -> None:
    big = "<!channel> " * 2000
    items = [
        _item(
            i, summary=big, request_text=big, rationale=big, params={"note": big}, diff={"note": {"from": big, "to": 1}}
        )
        for i in range(12)
    ]
    modal = review_modal(_view(items))
    assert_view_valid(modal)
    assert live_tokens(modal) <= {f"<@{REQUESTER}>"} | {t for t in live_tokens(modal) if t.startswith("<!date^")}


def test_nothing_waiting_says_so_and_offers_no_submit() -> None:
    modal = review_modal(_view([]))
    assert_view_valid(modal)
    assert "submit" not in modal and "Nothing waits for you" in json.dumps(modal)


def test_the_result_lists_each_checked_item_and_why_one_was_not_approved() -> None:
    result = review_result(
        ["the refund of order 1 (action `act_1`): approved"],
        [":no_entry_sign: You requested the refund of order 2 (action `act_2`), so you cannot approve it."],
        ["the refund of order 3 (action `act_3`)"],
    )
    assert_view_valid(result)
    text = json.dumps(result)
    assert "Approved (1)" in text and "Not approved (1)" in text and "Not decided (1)" in text
    many = review_result([f"item {i} " + "x" * 200 for i in range(60)], [], [])
    assert_view_valid(many)


def test_app_home_offers_a_review_when_several_wait() -> None:
    one = home_view(HomeView(user=USER, review_all=1, review_by_type=(("refund", 1),)))
    assert all(b.get("block_id") != "review" for b in one["blocks"])
    view = home_view(HomeView(user=USER, review_all=5, review_by_type=(("flag", 1), ("refund", 4))))
    assert_view_valid(view)
    review = [b for b in view["blocks"] if b.get("block_id") == "review"]
    assert [(e["action_id"], e.get("value"), e["text"]["text"]) for e in review[0]["elements"]] == [
        ("review_waiting", None, "Review 5 waiting"),
        ("review_waiting", "refund", "Review 4 refund"),
    ]
