"""The demo's undo: `reverse_refund` takes back the refund `issue_refund` made, once per key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.tools import spec_of
from examples import shop_tools


@pytest.fixture(autouse=True)
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "shop.db"
    monkeypatch.setenv("COUNTERSIGN_SHOP_DB", str(path))
    return path


def test_reverse_refund_takes_back_the_refund_once() -> None:
    assert spec_of(shop_tools.issue_refund).undo == "reverse_refund"
    params = {"order_id": "1004", "amount_cents": 2500}
    result = shop_tools.issue_refund("1004", 2500, idempotency_key="act_1")
    reversed_ = shop_tools.reverse_refund(params, result, idempotency_key="act_2")
    assert (reversed_["reversed_cents"], reversed_["refunded_cents_now"]) == (2500, 0)
    assert shop_tools.reverse_refund(params, result, idempotency_key="act_2")["already_done"] is True
    assert shop_tools.lookup_order("1004")["refunded_cents"] == 0
    with pytest.raises(ValueError, match="has 0 cents refunded, not 2500"):
        shop_tools.reverse_refund(params, result, idempotency_key="act_3")
    with pytest.raises(ValueError, match="names no amount"):
        shop_tools.reverse_refund(params, {"order_id": "1004"}, idempotency_key="act_4")
