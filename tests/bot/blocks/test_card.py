import json
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from bot import action_ids
from bot.blocks.card import (
    approval_card,
    card_buttons,
    card_text,
    decide_block_id,
    params_hash_from_block_id,
    result_reply,
)
from bot.blocks.text import slack_date
from tests.bot.blocks.checks import assert_message_valid, block, block_text, buttons, live_tokens, texts
from tests.bot.blocks.factories import APPROVER, CARDS, HASH, NOW, REQUESTER, make_card

HOSTILE = "<!channel> <!here|here> <@U0MALLORY> <#C0SECRET> <https://evil.example|your bank> & &amp; `x` ```"
DATE = "<!date^1714564800^{date_short_pretty} at {time_secs}|2024-05-01T12:00:00Z>"

APPROVE = (action_ids.APPROVE, "act_1", "primary")
REJECT = (action_ids.REJECT, "act_1", "danger")
EDIT = (action_ids.EDIT, "act_1", None)
ACKNOWLEDGE = (action_ids.ACKNOWLEDGE, "act_1", None)
VETO = (action_ids.VETO, "act_1", "danger")
REPORT_INCIDENT = (action_ids.REPORT_INCIDENT, "act_1", "danger")
RESOLVE_RAN = (action_ids.RESOLVE_RAN, "act_1", "primary")
RESOLVE_NOT_RUN = (action_ids.RESOLVE_NOT_RUN, "act_1", None)
ALLOW_SIMILAR = (action_ids.ALLOW_SIMILAR, "act_1", None)
UNDO = (action_ids.UNDO, "act_1", None)
EXPECTED_BUTTONS = {
    "pending": [APPROVE, REJECT, EDIT, ACKNOWLEDGE],
    "pending_acknowledged": [APPROVE, REJECT, EDIT],
    "pending_quorum": [APPROVE, REJECT, EDIT, ACKNOWLEDGE],
    "pending_low_confidence": [APPROVE, REJECT, EDIT, ACKNOWLEDGE],
    "scheduled": [VETO, ACKNOWLEDGE],
    "scheduled_acknowledged": [VETO],
    "succeeded_auto": [REPORT_INCIDENT],
    "unknown": [RESOLVE_RAN, RESOLVE_NOT_RUN],  # a person says whether it ran
    "unknown_known": [RESOLVE_RAN, RESOLVE_NOT_RUN],  # a run nobody approved can be reported as wrong
    # Approve stays: a click is refused (and told why) until the credential is connected.
    "pending_requester_not_connected": [APPROVE, REJECT, EDIT, ACKNOWLEDGE],
    "pending_approvers_own": [APPROVE, REJECT, EDIT, ACKNOWLEDGE],
    "pending_requester_sent_link": [APPROVE, REJECT, EDIT, ACKNOWLEDGE],
    "pending_approvers_own_from_slack": [APPROVE, REJECT, EDIT, ACKNOWLEDGE],  # Approve gets you your link
    "pending_allow_similar": [APPROVE, REJECT, EDIT, ALLOW_SIMILAR, ACKNOWLEDGE],
    "scheduled_by_rule": [VETO, ACKNOWLEDGE],  # the rule lifted it to a veto window; people may still stop it
    "succeeded_undo_offered": [UNDO],
    "compensation_pending": [APPROVE, REJECT, EDIT, ACKNOWLEDGE],  # an undo is approved like any draft
}


@pytest.mark.parametrize("name", CARDS)
def test_every_state_renders_a_valid_message(name):
    card = CARDS[name]
    assert_message_valid(card_text(card), approval_card(card))


@pytest.mark.parametrize("name", CARDS)
def test_buttons_by_state(name):
    blocks = approval_card(CARDS[name])
    assert buttons(blocks) == EXPECTED_BUTTONS.get(name, [])
    assert all(value == CARDS[name].action_public_id for _, value, _ in buttons(blocks))


@pytest.mark.parametrize("name", ["pending", "scheduled"])
def test_actions_block_id_carries_the_params_hash(name):
    actions = [b for b in approval_card(CARDS[name]) if b["type"] == "actions"]
    assert [b["block_id"] for b in actions] == [f"decide:{HASH}"]
    assert params_hash_from_block_id(actions[0]["block_id"]) == HASH


def test_params_hash_from_block_id():
    assert params_hash_from_block_id(decide_block_id(HASH, "act_9")) == HASH
    assert params_hash_from_block_id("decide:") is None
    assert params_hash_from_block_id("params") is None


def test_untrusted_text_cannot_ping_or_forge_links():
    card = make_card(
        state="rejected",
        request_text=HOSTILE,
        rationale=HOSTILE,
        params={"note": HOSTILE},
        decision_note=HOSTILE,
        diff={"note": {"from": HOSTILE, "to": "x"}},
        edited_by=APPROVER,
        caps=(HOSTILE,),
        error=HOSTILE,
        **{"decided_by": APPROVER, "decided_at": NOW},
    )
    blocks = approval_card(card)
    assert_message_valid(card_text(card), blocks)
    assert live_tokens(blocks) == {f"<@{REQUESTER}>", f"<@{APPROVER}>", DATE}
    request = block_text(blocks, "request")
    assert "&lt;!channel&gt; &lt;!here|here&gt; &lt;@U0MALLORY&gt;" in request
    assert "&amp; &amp;amp;" in request
    # Untrusted text sits in verbatim text objects: Slack parses no bare @channel or links in them.
    for block_id in ("request", "proposal", "params", "diff", "outcome"):
        assert block(blocks, block_id)["text"]["verbatim"] is True
    assert all(field["verbatim"] for field in block(blocks, "params")["fields"])
    assert block(blocks, "params_json")["elements"][0]["verbatim"] is True


def test_request_is_quoted_and_names_the_requester():
    request = block_text(approval_card(make_card(request_text="line one\nline two")), "request")
    assert request == f"*Request* from <@{REQUESTER}>:\n>line one\n>line two"
    assert "via the API" in block_text(approval_card(make_card(requester=None)), "request")


def test_huge_request_params_and_rationale_stay_within_slack_limits():
    big = "<&>" * 34_000  # ~100 KB, longer still once escaped
    card = make_card(
        request_text=big,
        rationale=big,
        params={"blob": big, "items": list(range(20_000))},
        decision_note=big,
        diff={f"field_{i}": {"from": big, "to": big} for i in range(30)},
        caps=("high-risk tool", "low confidence"),
    )
    for state in ("pending", "rejected", "failed"):
        changed = make_card(**{**card.__dict__, "state": state, "error": big})
        blocks = approval_card(changed)
        assert_message_valid(card_text(changed), blocks)
    exact = block_text(blocks, "params_json")
    assert exact.startswith("*Exact JSON* (sha256 `") and "_truncated: " in exact
    assert "…and 20 more" in block_text(blocks, "diff")


def test_parameters_are_labelled_fields_with_the_exact_json_and_its_hash_below():
    params = {"order_id": "A1", "amount_cents": 500, "note": "café"}
    blocks = approval_card(make_card(params=params, risk="medium"))
    fields = [field["text"] for field in block(blocks, "params")["fields"]]
    assert fields == ["*Order id*\nA1", "*Amount cents*\n5.00 (500 cents)", "*Note*\ncafé"]
    exact = block_text(blocks, "params_json")
    assert exact == f"Exact JSON `{json.dumps(params, sort_keys=True, ensure_ascii=False, separators=(',', ':'))}`" + (
        f" · sha256 `{HASH[:12]}`"
    )
    text = block_text(approval_card(make_card(params={"note": "```<@U1>```"})), "params_json")
    assert "`" not in text.split("`", 1)[1].rsplit("`", 3)[0]  # backticks in values cannot end the span
    assert "&lt;@U1&gt;" in text


def test_parameters_follow_the_schema_and_edits_are_marked():
    schema = {
        "properties": {
            "when": {"type": "string", "format": "date-time", "description": "When it runs"},
            "link": {"type": "string", "format": "uri"},
            "amount": {"type": "integer", "description": "Amount in cents"},
            "enabled": {"type": "boolean"},
        }
    }
    params = {"when": "2024-05-01T12:00:00Z", "link": "https://example.com/a|b", "amount": 123456, "enabled": True}
    card = make_card(params=params, param_schema=schema, diff={"amount": {"from": 100, "to": 123456}}, risk="low")
    fields = [field["text"] for field in block(approval_card(card), "params")["fields"]]
    assert fields[0] == f"*When* · _When it runs_\n{DATE}"
    assert fields[1] == "*Link*\n<https://example.com/a%7Cb|https://example.com/a|b>"
    assert (
        fields[2] == "*Amount* · _Amount in cents_\n1,234.56 (123,456 cents)\n:pencil2: _edited, was_ 1.00 (100 cents)"
    )
    assert fields[3] == "*Enabled*\nyes"
    # Not a link unless the schema says so, nor one of another scheme.
    plain = make_card(params={"link": "javascript:alert(1)"}, param_schema=schema)
    assert "<" not in block_text(approval_card(plain), "params")


def test_a_high_risk_card_leads_with_its_consequence_and_approve_asks_to_confirm():
    params = {"order_id": "1001", "amount_cents": 120000, "note": "<!channel> broken"}
    card = make_card(risk="high", summary="the refund of order 1001", params=params)
    blocks = approval_card(card)
    assert_message_valid(card_text(card), blocks)
    # The layout changes: the consequence comes right after the header, and its parameter first.
    assert [b["block_id"] for b in blocks[:3]] == ["header", "consequence", "request"]
    assert block_text(blocks, "consequence") == (
        ":rotating_light: *The refund of order 1001* · *Amount cents: 1,200.00 (120,000 cents)*"
    )
    fields = [field["text"] for field in block(blocks, "params")["fields"]]
    assert fields[0] == ":point_right: *Amount cents*\n1,200.00 (120,000 cents)"
    [approve] = [e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == "approve"]
    assert approve["confirm"]["title"]["text"] == "High risk: approve?"
    assert approve["confirm"]["text"]["text"] == (
        "The refund of order 1001: Amount cents 1,200.00 (120,000 cents). Approve it?"
    )
    assert approve["confirm"]["confirm"]["text"] == "Approve"
    # Without an amount the first number leads, else the first parameter; no summary: the tool.
    card = make_card(risk="high", summary="", tool="restart", params={"service": "api", "replicas": 3})
    assert block_text(approval_card(card), "consequence") == ":rotating_light: *`restart`* · *Replicas: 3*"
    text = make_card(risk="high", summary="", tool="wipe", params={"target": "<!here> prod"})
    [approve] = [e for e in card_buttons(text) if e["action_id"] == "approve"]
    assert approve["confirm"]["text"]["text"] == "Wipe: Target &lt;!here&gt; prod. Approve it?"
    # Lower risks keep the usual layout and a plain Approve.
    for risk in ("low", "medium"):
        calm = make_card(risk=risk, params=params)
        assert "consequence" not in [b["block_id"] for b in approval_card(calm)]
        assert all("confirm" not in e for e in card_buttons(calm))


def test_many_parameters_stay_within_ten_fields():
    params = {f"p{i:02}": i for i in range(25)}
    blocks = approval_card(make_card(params=params))
    fields = block(blocks, "params")["fields"]
    assert len(fields) == 10 and "16 more" in fields[-1]["text"]
    assert_message_valid("card", blocks)


def test_short_hash_action_and_task_ids():
    meta = block_text(approval_card(make_card()), "meta")
    assert f"`{HASH[:12]}`" in meta and HASH[:13] not in meta
    assert "act_1" in meta and "tsk_1" in meta


def test_confidence_is_flagged_below_the_threshold():
    assert ":warning: low confidence" in block_text(approval_card(make_card(confidence=0.69)), "proposal")
    assert "*Confidence:* 69%" in block_text(approval_card(make_card(confidence=0.69)), "proposal")
    assert "low confidence" not in block_text(approval_card(make_card(confidence=0.7)), "proposal")
    # A malformed confidence counts as 0.
    assert "0% :warning: low confidence" in block_text(approval_card(make_card(confidence=float("nan"))), "proposal")


def test_mode_lines():
    assert block_text(approval_card(CARDS["pending"]), "mode") == ":raised_hand: Approve first"
    assert (
        block_text(approval_card(CARDS["pending_quorum"]), "mode") == ":raised_hand: Approve first · 1 of 2 approvals"
    )
    assert block_text(approval_card(CARDS["scheduled"]), "mode") == f":alarm_clock: Runs {DATE} unless vetoed"
    assert block_text(approval_card(CARDS["rejected"]), "mode") == "Mode: approve first"


def test_the_veto_card_says_when_to_the_second_and_how_long_is_left():
    scheduled = CARDS["scheduled"]
    assert scheduled.run_at is not None
    drawn = replace(scheduled, rendered_at=scheduled.run_at - timedelta(seconds=30))
    assert block_text(approval_card(drawn), "mode") == f":alarm_clock: Runs in 30 s, {DATE}, unless vetoed"
    later = replace(scheduled, rendered_at=scheduled.run_at - timedelta(minutes=4, seconds=10))
    assert "Runs in 4 min 10 s, " in block_text(approval_card(later), "mode")
    passed = replace(scheduled, rendered_at=scheduled.run_at + timedelta(seconds=1))
    assert block_text(approval_card(passed), "mode") == f":alarm_clock: Its veto window ended {DATE}: it runs now"
    assert "at today at" not in json.dumps(approval_card(CARDS["approved"]))


def test_caps_are_listed():
    caps = block_text(approval_card(make_card(caps=("high-risk tool", "low confidence"))), "caps")
    assert caps == ":lock: A person decides because: high-risk tool; low confidence"
    assert all(b["block_id"] != "caps" for b in approval_card(make_card()))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("approved", f":white_check_mark: Approved by <@{APPROVER}> {DATE}\n:hourglass_flowing_sand: Queued to run"),
        ("approved_with_edits", f":white_check_mark: Approved with edits by <@{APPROVER}> {DATE}"),
        ("executing", ":gear: Running…"),
        ("executing_after_veto_window", ":white_check_mark: Not vetoed in the veto window"),
        ("succeeded", ":large_green_circle: Succeeded (result in the thread)"),
        ("succeeded_auto", ":robot_face: Ran on its own (autonomous)"),
        ("failed", ":red_circle: Failed: PaymentError: card declined"),
        ("unknown", "interrupted or timed out mid-call and not re-run; a person must check"),
        ("unknown_resolved_ran", f"Outcome was unknown; <@{APPROVER}> says it ran {DATE} — in the PSP log"),
        ("unknown_resolved_not_run", f"Outcome was unknown; <@{APPROVER}> says it did not run {DATE}"),
        ("unknown_run_again", f":repeat: Its outcome was unknown; run again by <@{APPROVER}> {DATE}"),
        ("rejected", f":x: Rejected by <@{APPROVER}> {DATE} — Only refund half: the box was opened."),
        ("vetoed", f":no_entry: Vetoed by <@{APPROVER}> {DATE} — wrong order"),
        ("vetoed_without_reason", f":no_entry: Vetoed by <@{APPROVER}> {DATE}"),
        ("expired", f":hourglass: Expired {DATE}"),
        ("cancelled", f":heavy_multiplication_x: Cancelled {DATE} — task stopped"),
        ("refused", ":no_entry_sign: Refused: amount_cents: must be positive"),
    ],
)
def test_outcome_line_names_who_and_when(name, expected):
    assert expected in block_text(approval_card(CARDS[name]), "outcome")


def test_an_unknown_card_says_what_is_known():
    text = block_text(approval_card(CARDS["unknown_known"]), "unknown")
    assert f"the call started {DATE}, held by `host:41:ab12`" in text
    assert "idempotency key `act_1`" in text
    assert "(2 approvers needed)" in text and "1 of 2 asked to run it again" in text
    assert "a time not recorded" in block_text(approval_card(CARDS["unknown"]), "unknown")


def test_open_cards_have_no_outcome_line():
    for name in ("pending", "scheduled"):
        assert all(b["block_id"] != "outcome" for b in approval_card(CARDS[name]))


def test_edit_diff():
    diff = block_text(approval_card(CARDS["approved_with_edits"]), "diff")
    assert diff == f":pencil2: *Edited by <@{APPROVER}>:*\n`amount_cents`: 500 → 300"
    added = block_text(approval_card(make_card(diff={"note": {"to": "hi"}})), "diff")
    assert '`note`: _unset_ → "hi"' in added


def test_acknowledged_line_only_while_open():
    assert f"Acknowledged by <@{APPROVER}>" in block_text(approval_card(CARDS["pending_acknowledged"]), "ack")
    closed = make_card(state="rejected", acknowledged_by=APPROVER, decided_by=APPROVER, decided_at=NOW)
    assert all(b["block_id"] != "ack" for b in approval_card(closed))


@pytest.mark.parametrize("name", CARDS)
def test_card_text_is_plain_and_non_empty(name):
    text = card_text(CARDS[name])
    assert text.strip() and "<" not in text and CARDS[name].tool in text


def test_card_text_by_state():
    assert card_text(CARDS["pending"]) == "Approval needed: issue_refund (refund, high risk)"
    named = replace(CARDS["pending"], summary="the refund of order 1001")
    assert card_text(named) == "Approval needed: the refund of order 1001 (refund, high risk)"
    assert card_text(CARDS["rejected"]).startswith("Rejected: ")


def test_header_names_task_type_and_risk():
    assert texts(block(approval_card(make_card()), "header")) == [":red_circle: refund · high risk"]


def test_naive_dates_are_refused():
    with pytest.raises(ValueError, match="aware"):
        approval_card(make_card(state="scheduled", run_at=datetime(2024, 5, 1, 12, 0)))


def test_result_reply_for_a_success():
    text, blocks = result_reply(CARDS["succeeded"])
    assert_message_valid(text, blocks)
    assert text == ":large_green_circle: issue_refund succeeded."
    assert '"refund_id": "re_1"' in block_text(blocks, "result")


def test_result_reply_for_failures_and_unknown_outcomes():
    text, blocks = result_reply(CARDS["failed"])
    assert_message_valid(text, blocks)
    assert "failed" in text and "PaymentError: card declined" in block_text(blocks, "result")
    text, blocks = result_reply(CARDS["unknown"])
    assert_message_valid(text, blocks)
    assert "a person must check" in text


def test_result_reply_truncates_huge_results_and_escapes_them():
    card = make_card(state="succeeded", result={"rows": ["<!channel>" * 10] * 10_000})
    text, blocks = result_reply(card)
    assert_message_valid(text, blocks)
    assert "_truncated: " in block_text(blocks, "result")
    assert not live_tokens(blocks)
    text, blocks = result_reply(make_card(state="failed", error="<!here> " * 20_000))
    assert_message_valid(text, blocks)
    assert not live_tokens(blocks)


def test_slack_date_helper_matches_the_card():
    assert slack_date(NOW) == DATE


def test_a_card_says_whose_credential_the_tool_runs_with():
    waiting = approval_card(CARDS["pending_requester_not_connected"])
    assert block_text(waiting, "credential") == (
        f":warning: Runs with <@{REQUESTER}>'s own `stripe_oauth`, not connected yet: it cannot be approved "
        f"until they connect it (`countersign secrets connect stripe_oauth --owner {REQUESTER}`)."
    )
    anyone = approval_card(CARDS["pending_approvers_own"])
    assert block_text(anyone, "credential") == (
        ":key: Runs with the approver's own `stripe_oauth`: connect yours before you approve "
        "(`countersign secrets connect stripe_oauth --owner YOUR_SLACK_ID`)."
    )
    ran = approval_card(CARDS["succeeded_as_approver"])
    assert block_text(ran, "credential") == f":key: Runs with <@{APPROVER}>'s own `stripe_oauth`."
    assert all(b["block_id"] != "credential" for b in approval_card(CARDS["pending"]))


def test_a_credential_connected_from_slack_is_not_a_cli_command_on_the_card() -> None:
    requester = block_text(approval_card(CARDS["pending_requester_sent_link"]), "credential")
    assert requester.endswith(
        "not connected yet: it cannot be approved until they connect it "
        "(the requester has been sent a link to connect)."
    )
    approvers = block_text(approval_card(CARDS["pending_approvers_own_from_slack"]), "credential")
    assert approvers == (
        ":key: Runs with the approver's own `stripe_oauth`: approvers: click Approve to get your connect link."
    )
    for name in ("pending_requester_sent_link", "pending_approvers_own_from_slack"):
        assert "countersign secrets" not in str(approval_card(CARDS[name]))
        assert "http" not in str(approval_card(CARDS[name]))  # links are personal: never on the card


def test_a_card_whose_client_takes_no_edit_has_no_edit_button():
    assert buttons(approval_card(make_card(editable=False))) == [APPROVE, REJECT, ACKNOWLEDGE]


def test_a_run_handed_to_its_client_says_so_on_the_card_and_in_the_thread():
    handed = replace(CARDS["succeeded"], result={"handed_to": "the HumanLayer client <!channel>"})
    outcome = block_text(approval_card(handed), "outcome")
    assert ":outbox_tray: Handed to the HumanLayer client &lt;!channel&gt;, which runs it itself" in outcome
    text, blocks = result_reply(handed)
    assert_message_valid(text, blocks)
    assert "was handed to the HumanLayer client" in text and live_tokens(blocks) == set()
    # Anything more in the result is a result like any other.
    mixed = replace(CARDS["succeeded"], result={"handed_to": "x", "pid": 1})
    assert "Succeeded (result in the thread)" in block_text(approval_card(mixed), "outcome")
