"""The demo's examples: the shop tools, the config they are listed in, and the offline script."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.model import ModelRequest
from agent.scripted_model import ScriptedModel
from agent.tools import load_tool_modules, spec_of
from bot.demo import CONFIG, SCRIPT
from core.config import AutonomyLevel, check_tool_names, load_config
from examples import shop_tools


@pytest.fixture(autouse=True)
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "shop.db"
    monkeypatch.setenv("COUNTERSIGN_SHOP_DB", str(path))
    return path


def test_lookup_reads_a_seeded_order() -> None:
    order = shop_tools.lookup_order("1001")
    assert order == {
        "order_id": "1001",
        "customer": "Maya Chen",
        "item": "Ceramic mug, set of 4",
        "total_cents": 2400,
        "status": "delivered",
        "refunded_cents": 0,
    }
    with pytest.raises(ValueError, match="no order '9999'"):
        shop_tools.lookup_order("9999")


def test_a_refund_runs_once_per_idempotency_key_and_never_over_the_total() -> None:
    first = shop_tools.issue_refund("1003", 2000, idempotency_key="act_1")
    again = shop_tools.issue_refund("1003", 2000, idempotency_key="act_1")
    assert first["refunded_cents"] == 2000 and "already_done" not in first
    assert again["already_done"] is True
    assert shop_tools.lookup_order("1003")["refunded_cents"] == 2000
    with pytest.raises(ValueError, match="between 1 and 1200"):
        shop_tools.issue_refund("1003", 1201, idempotency_key="act_2")
    with pytest.raises(ValueError, match="between 1 and 1200"):
        shop_tools.issue_refund("1003", 0, idempotency_key="act_3")


def test_flags_toggle_and_unknown_flags_are_refused() -> None:
    assert shop_tools.toggle_feature_flag("new-checkout", True) == {"flag": "new-checkout", "was": False, "now": True}
    assert shop_tools.toggle_feature_flag("new-checkout", True)["was"] is True
    with pytest.raises(ValueError, match="no feature flag 'nope'"):
        shop_tools.toggle_feature_flag("nope", True)


def test_a_deleted_shop_comes_back_seeded(shop: Path) -> None:
    shop_tools.issue_refund("1002", 100, idempotency_key="act_9")
    shop.unlink()
    assert shop_tools.lookup_order("1002")["refunded_cents"] == 0


def test_tool_policies_are_what_the_demo_shows() -> None:
    assert (spec_of(shop_tools.lookup_order).risk, spec_of(shop_tools.lookup_order).max_autonomy) == ("low", "auto")
    refund = spec_of(shop_tools.issue_refund)
    assert (refund.risk, refund.idempotent, refund.max_autonomy, refund.takes_idempotency_key) == (
        "high",
        True,
        "hitl",
        True,
    )
    assert "idempotency_key" not in refund.json_schema()["properties"]
    assert spec_of(shop_tools.toggle_feature_flag).risk == "medium"


def test_the_demo_config_shows_the_three_modes() -> None:
    config = load_config(CONFIG)
    registry = load_tool_modules(config.tools.modules)
    assert check_tool_names(config, registry.names()) == []
    levels = {name: task_type.autonomy for name, task_type in config.task_types.items()}
    assert levels == {
        "refund": AutonomyLevel.HITL,
        "feature-flag": AutonomyLevel.HOTL,
        "lookup": AutonomyLevel.AUTO,
        "coding": AutonomyLevel.HITL,  # Claude Code's calls (bot/sandbox/claude_code.py)
    }
    assert config.task_types["coding"].open_tools is not None
    assert config.task_types["feature-flag"].veto_window.total_seconds() == 30
    assert config.task_types["refund"].escalation[0].after.total_seconds() == 20
    assert config.task_types["refund"].graduation.min_samples <= 6  # the tour decides six refunds by step 7


@pytest.mark.parametrize(
    ("task_type", "text", "tool", "params"),
    [
        ("refund", "Refund order 1001, it arrived broken", "issue_refund", {"order_id": "1001", "amount_cents": 2400}),
        (
            "feature-flag",
            "Turn on new-checkout for everyone",
            "toggle_feature_flag",
            {"flag": "new-checkout", "enabled": "on"},
        ),
        ("feature-flag", "please switch off dark-mode", "toggle_feature_flag", {"flag": "dark-mode", "enabled": "off"}),
        ("lookup", "What about order #1004?", "lookup_order", {"order_id": "1004"}),
    ],
)
def test_the_script_picks_values_from_the_request(
    task_type: str, text: str, tool: str, params: dict[str, object]
) -> None:
    model = ScriptedModel.from_file(SCRIPT)
    reply = model.complete(
        ModelRequest(model="m", system="", messages=[{"role": "user", "content": text}], tools=[], task_type=task_type)
    )
    [use] = [block for block in reply.content if block["type"] == "tool_use"]
    assert use["name"] == tool
    assert {key: use["input"][key] for key in params} == params
    assert 0 < use["input"]["confidence"] <= 1 and use["input"]["rationale"]


def test_the_router_script_names_a_type_or_asks() -> None:
    model = ScriptedModel.from_file(SCRIPT)

    def routed(text: str) -> object:
        reply = model.complete(
            ModelRequest(model="m", system="", messages=[{"role": "user", "content": text}], tools=[])
        )
        return reply.content[0]["input"]["task_type"]

    assert routed("can you refund order 1002?") == "refund"
    assert routed("what is the weather") == "{kind}"  # not a type: the requester is asked to choose
