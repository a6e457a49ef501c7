from enum import StrEnum
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from bot import action_ids
from bot.blocks.modals import edit_modal, parse_edit, reject_modal, resolve_modal, veto_modal
from tests.bot.blocks.checks import assert_view_valid, block, live_tokens


class Speed(StrEnum):
    STANDARD = "standard"
    EXPRESS = "express"


class RefundParams(BaseModel):
    """What pydantic makes of a tool's type hints (the tool registry's schema)."""

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
    message: str = "Sorry!"


SCHEMA = RefundParams.model_json_schema()
PARAMS = {
    "order_id": "A1 <!channel>",
    "amount_cents": 500,
    "ratio": 0.25,
    "notify": False,
    "reason": "damaged",
    "speed": "express",
    "note": "first line\nsecond line",
    "limit": 3,
    "tags": ["mug", "broken"],
    "extra": {"photo": True, "nested": [1, 2]},
    "message": "We are sorry & will refund.",
}


def submitted(view: dict[str, Any], **typed: str | None) -> dict[str, Any]:
    """`view.state.values` as Slack sends it: what is shown, with `typed` values entered over it."""
    values: dict[str, Any] = {}
    for b in view["blocks"]:
        if b["type"] != "input":
            continue
        element = b["element"]
        action = {"type": element["type"]}
        if element["type"] == "static_select":
            chosen = element.get("initial_option")
            if b["block_id"] in typed:
                chosen = next((o for o in element["options"] if o["value"] == typed[b["block_id"]]), None)
            action["selected_option"] = chosen
        else:
            action["value"] = typed.get(b["block_id"], element.get("initial_value"))
        values[b["block_id"]] = {element["action_id"]: action}
    return values


def test_reject_modal():
    view = reject_modal("act_1", "ab12cd34ef56" + "0" * 52, '{"action": "act_1"}')
    assert_view_valid(view)
    assert view["callback_id"] == action_ids.REJECT_MODAL
    assert view["private_metadata"] == '{"action": "act_1"}'
    reason = block(view["blocks"], "reason")
    assert reason["type"] == "input" and reason["optional"] is False
    assert reason["element"] == {
        "type": "plain_text_input",
        "action_id": "reason",
        "multiline": True,
        "max_length": 2000,
    }
    assert "`ab12cd34ef56`" in block(view["blocks"], "_about")["elements"][0]["text"]


def test_resolve_modals_take_an_optional_note_and_did_not_run_offers_to_run_it_again():
    ran = resolve_modal("act_1", "f" * 64, True, 1, "m")
    assert_view_valid(ran)
    assert ran["callback_id"] == action_ids.RESOLVE_MODAL
    assert block(ran["blocks"], "reason")["optional"] is True
    assert [b["block_id"] for b in ran["blocks"]] == ["_about", "reason"]
    not_run = resolve_modal("act_1", "f" * 64, False, 2, "m")
    assert_view_valid(not_run)
    choice = block(not_run["blocks"], "next")["element"]
    assert [o["value"] for o in choice["options"]] == ["leave", "run_again"]
    assert choice["initial_option"]["value"] == "leave"
    assert "2 approvers must ask" in choice["options"][1]["text"]["text"]


def test_veto_modal_reason_is_optional():
    view = veto_modal("act_1", "f" * 64, "m")
    assert_view_valid(view)
    assert view["callback_id"] == action_ids.VETO_MODAL
    assert block(view["blocks"], "reason")["optional"] is True


@pytest.mark.parametrize("modal", [reject_modal, veto_modal])
def test_private_metadata_over_3000_chars_is_refused(modal):
    modal("act_1", "f" * 64, "x" * 3000)
    with pytest.raises(ValueError, match="3001"):
        modal("act_1", "f" * 64, "x" * 3001)
    with pytest.raises(ValueError, match="3001"):
        edit_modal("act_1", "issue_refund", SCHEMA, PARAMS, "x" * 3001)


def test_edit_modal_has_one_prefilled_input_per_parameter():
    view = edit_modal("act_1", "issue_refund", SCHEMA, PARAMS, "meta")
    assert_view_valid(view)
    assert view["callback_id"] == action_ids.EDIT_MODAL
    assert len(view["title"]["text"]) <= 24 and view["submit"]["text"] == "Approve edits"
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert list(inputs) == list(SCHEMA["properties"])
    assert inputs["order_id"]["element"]["initial_value"] == "A1 <!channel>"  # plain_text: never parsed
    assert "optional" not in inputs["order_id"]
    assert inputs["amount_cents"]["element"] == {
        "type": "number_input",
        "action_id": "amount_cents",
        "is_decimal_allowed": False,
        "initial_value": "500",
        "min_value": "1",
        "max_value": "100000",
    }
    assert inputs["ratio"]["element"]["is_decimal_allowed"] is True
    assert inputs["ratio"]["element"]["initial_value"] == "0.25"
    assert inputs["notify"]["element"]["type"] == "static_select"
    assert inputs["notify"]["element"]["initial_option"]["value"] == "false"
    assert [o["text"]["text"] for o in inputs["reason"]["element"]["options"]] == ["damaged", "late", "other"]
    assert inputs["speed"]["element"]["initial_option"]["text"]["text"] == "express"  # via $ref
    assert inputs["note"]["element"]["multiline"] is True
    assert inputs["tags"]["element"]["initial_value"] == '[\n  "mug",\n  "broken"\n]'
    assert all(inputs[name]["optional"] is True for name in inputs if name not in ("order_id", "amount_cents"))
    assert not live_tokens(view)


def test_edit_round_trip_gives_back_the_params():
    view = edit_modal("act_1", "issue_refund", SCHEMA, PARAMS, "meta")
    params, errors = parse_edit(SCHEMA, submitted(view))
    assert errors == {}
    assert params == PARAMS
    RefundParams.model_validate(params)


def test_edit_changes_are_parsed_to_the_right_types():
    view = edit_modal("act_1", "issue_refund", SCHEMA, PARAMS, "meta")
    values = submitted(
        view, amount_cents="300", ratio="1.5", notify="true", reason='"late"', note=None, limit=None, extra=None
    )
    params, errors = parse_edit(SCHEMA, values)
    assert errors == {}
    assert params["amount_cents"] == 300 and type(params["amount_cents"]) is int
    assert params["ratio"] == 1.5 and params["notify"] is True and params["reason"] == "late"
    assert params["note"] is None and params["limit"] is None and params["extra"] is None  # cleared


def test_defaults_fill_an_edit_of_a_draft_without_them():
    view = edit_modal("act_1", "issue_refund", SCHEMA, {"order_id": "A1", "amount_cents": 5}, "meta")
    assert_view_valid(view)
    params, errors = parse_edit(SCHEMA, submitted(view))
    assert errors == {}
    assert params == RefundParams(order_id="A1", amount_cents=5).model_dump(mode="json")


@pytest.mark.parametrize(
    ("block_id", "typed", "message"),
    [
        ("amount_cents", "12abc", "Enter a whole number, like 42."),
        ("amount_cents", "2.5", "Enter a whole number, like 42."),
        ("ratio", "fast", "Enter a number, like 2.5."),
        ("ratio", "inf", "Enter a number, like 2.5."),
        ("tags", "[mug", "Not valid JSON: Expecting value (line 1, column 2)."),
        ("amount_cents", None, "This field is required."),
        # Only plain ASCII decimal literals, though `Decimal` takes all of these.
        ("amount_cents", "1_000", "Enter a whole number, like 42."),
        ("amount_cents", "\u0663", "Enter a whole number, like 42."),  # ARABIC-INDIC DIGIT THREE
        ("amount_cents", "+5", "Enter a whole number, like 42."),
        ("ratio", ".5", "Enter a number, like 2.5."),
        ("ratio", "NaN", "Enter a number, like 2.5."),
    ],
)
def test_what_cannot_be_parsed_is_an_error_keyed_by_block_id(block_id, typed, message):
    view = edit_modal("act_1", "issue_refund", SCHEMA, PARAMS, "meta")
    params, errors = parse_edit(SCHEMA, submitted(view, **{block_id: typed}))
    assert errors == {block_id: message}
    assert block_id not in params


@pytest.mark.parametrize(
    ("block_id", "typed", "message"),
    [
        # int(Decimal("1e700000")) held the GIL for seconds: the exponent is refused before.
        ("amount_cents", "1e700000", "amount_cents: the exponent must be between -30 and 30."),
        ("amount_cents", "1e31", "amount_cents: the exponent must be between -30 and 30."),
        ("amount_cents", "9" * 41, "amount_cents: at most 40 characters (this has 41)."),
        ("ratio", "1e-31", "ratio: the exponent must be between -30 and 30."),
        ("ratio", "1e400", "ratio: the exponent must be between -30 and 30."),  # was float('inf')
        ("extra", '{"photo": 1e999}', "extra: a number in it is refused: the exponent must be between -30 and 30."),
        ("extra", '{"n": 1' + "0" * 40 + "}", "extra: a number in it is refused: at most 40 characters (this has 41)."),
        (
            "extra",
            '{"n": NaN}',
            "extra: a number in it is refused: NaN and infinities are not numbers a tool can take.",
        ),
        ("tags", "[" * 1400 + "]" * 1400, "tags: nested too deeply."),
        ("tags", "[" + "1," * 1500 + "1]", "tags: at most 3,000 characters (this has 3,003)."),
    ],
)
def test_numbers_beyond_the_bounds_are_a_field_error_naming_the_field_and_the_limit(block_id, typed, message):
    view = edit_modal("act_1", "issue_refund", SCHEMA, PARAMS, "meta")
    params, errors = parse_edit(SCHEMA, submitted(view, **{block_id: typed}))
    assert errors == {block_id: message}
    assert block_id not in params


def test_numbers_within_the_bounds_stay_exact():
    view = edit_modal("act_1", "issue_refund", SCHEMA, PARAMS, "meta")
    typed = {
        "amount_cents": "1e30",
        "limit": "-" + "9" * 39,
        "ratio": "-12.5e-3",
        "extra": '{"n": 12345678901234567890123}',
    }
    params, errors = parse_edit(SCHEMA, submitted(view, **typed))
    assert errors == {}
    assert params["amount_cents"] == 10**30 and type(params["amount_cents"]) is int
    assert params["limit"] == -(10**39 - 1)
    assert params["ratio"] == -0.0125
    assert params["extra"] == {"n": 12345678901234567890123}


def test_a_forged_option_value_is_an_error():
    values = {"reason": {"reason": {"type": "static_select", "selected_option": {"value": '"refund everything"'}}}}
    assert parse_edit(SCHEMA, values) == ({}, {"reason": "Choose one of the options."})


def test_a_value_too_long_to_edit_is_shown_and_left_out():
    long_params = {**PARAMS, "message": "x" * 3001}
    view = edit_modal("act_1", "issue_refund", SCHEMA, long_params, "meta")
    assert_view_valid(view)
    assert block(view["blocks"], "message")["type"] == "context"
    params, errors = parse_edit(SCHEMA, submitted(view))
    assert errors == {} and "message" not in params
    assert {**long_params, **params} == long_params


def test_a_tool_without_parameters():
    view = edit_modal("act_1", "ping", {"properties": {}, "type": "object"}, {}, "meta")
    assert_view_valid(view)
    assert parse_edit({"properties": {}}, {}) == ({}, {})


def test_too_many_parameters_for_one_modal():
    schema = {"properties": {f"p{i}": {"type": "string"} for i in range(100)}}
    with pytest.raises(ValueError, match="at most 99"):
        edit_modal("act_1", "wide", schema, {}, "meta")
    schema = {"properties": {f"p{i}": {"type": "string"} for i in range(99)}}
    assert_view_valid(edit_modal("act_1", "wide", schema, {}, "meta"))
