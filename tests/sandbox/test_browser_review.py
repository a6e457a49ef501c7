"""Review many at once in a real browser, on a demo of its own: App Home offers "Review N
waiting", the modal shows every waiting refund with an unchecked checkbox, and "Approve
selected" approves exactly the one checked. Every click reaches the app as a signed request."""

from __future__ import annotations

from typing import Any

import pytest

from bot.demo import Demo
from tests.sandbox.browser import need_browser

pytestmark = pytest.mark.slow
REQUESTER, APPROVER = "U0REQUESTER", "U0APPROVER"


def test_review_many_at_once_approves_only_what_is_checked(demo: Demo, page: Any) -> None:
    expect = need_browser().expect
    page.goto(f"{demo.url}?as={REQUESTER}&channel=C0PAYMENTS")
    expect(page.locator("#as-user")).to_have_value(REQUESTER)
    for order in ("1004", "1005"):
        page.fill("#composer-input", f"/countersign run refund Refund order {order}, it arrived broken")
        page.press("#composer-input", "Enter")
        cards = page.locator(".message", has=page.locator("button[data-action-id='approve']"))
        expect(cards.filter(has_text=f"order {order}")).to_have_count(1, timeout=30_000)
    page.select_option("#as-user", APPROVER)
    expect(page.locator("#as-user")).to_have_value(APPROVER)
    page.click(".side-item.app-home")
    review = page.locator(".home button[data-action-id='review_waiting']").first
    expect(review).to_have_text("Review 2 waiting")
    review.click()
    modal = page.locator("form.modal")
    expect(modal).to_contain_text("The refund of order 1004")
    expect(modal).to_contain_text("The refund of order 1005")
    boxes = modal.locator("input[type='checkbox']")
    expect(boxes).to_have_count(2)
    assert not boxes.nth(0).is_checked() and not boxes.nth(1).is_checked()
    modal.locator(".choice", has_text="The refund of order 1004").locator("input").check()
    modal.locator("button.btn-primary").click()
    expect(modal).to_contain_text("Approved (1)")
    expect(modal).to_contain_text("The refund of order 1004")
    modal.locator("button.btn", has_text="Done").click()
    expect(modal).to_have_count(0)
    page.click(".side-item.channel-payments")
    decided = page.locator(".message", has_text="order 1004").filter(has_text="Approved by @Avery")
    expect(decided.first).to_be_visible(timeout=30_000)
    waiting = page.locator(".message", has=page.locator("button[data-action-id='approve']"))
    expect(waiting.filter(has_text="order 1005")).to_have_count(1)
