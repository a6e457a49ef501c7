from bot import action_ids
from bot.blocks.card import approval_card, card_buttons, params_hash_from_block_id
from bot.blocks.home import home_view
from bot.blocks.views import HomeView
from tests.bot.blocks.checks import assert_view_valid, block_text, buttons, live_tokens
from tests.bot.blocks.factories import APPROVER, CARDS, HASH, REQUESTER, make_card

USER = "U0VIEWER"


def test_empty_home_says_so_in_each_section():
    view = home_view(HomeView(user=USER))
    assert_view_valid(view)
    assert view["type"] == "home"
    ids = [b["block_id"] for b in view["blocks"]]
    assert {"waiting_empty", "recent_empty", "levels_empty"} <= set(ids)


def test_home_with_waiting_recent_and_levels():
    waiting = (CARDS["pending"], make_card(action_public_id="act_2", state="scheduled", mode="hotl", run_at=None))
    recent = (CARDS["rejected"], CARDS["succeeded"])
    view = home_view(
        HomeView(user=USER, waiting=waiting, recent=recent, levels=(("refund", "hitl"), ("restart", "hotl")))
    )
    assert_view_valid(view)
    blocks = view["blocks"]
    veto = [(action_ids.VETO, "act_2", "danger"), (action_ids.ACKNOWLEDGE, "act_2", None)]
    assert buttons(blocks) == [*buttons(approval_card(waiting[0])), *veto]
    summary = block_text(blocks, "summary:act_1")
    assert f"*refund* · `issue_refund` · high risk · from <@{REQUESTER}>" in summary
    assert '`{"amount_cents": 500, "order_id": "A1"}`' in summary
    assert f"params `{HASH[:12]}`" in summary
    assert f"Rejected by <@{APPROVER}>" in block_text(blocks, "recent:act_1")
    assert block_text(blocks, "levels_list") == "• `refund`: approve first (hitl)\n• `restart`: veto window (hotl)"


def test_buttons_blocks_are_unique_even_for_equal_params():
    cards = tuple(make_card(action_public_id=f"act_{i}") for i in range(3))  # same params hash
    blocks = home_view(HomeView(user=USER, waiting=cards))["blocks"]
    actions = [b["block_id"] for b in blocks if b["type"] == "actions"]
    assert actions == [f"decide:{HASH}:act_{i}" for i in range(3)]
    assert {params_hash_from_block_id(block_id) for block_id in actions} == {HASH}
    for card, block in zip(cards, (b for b in blocks if b["type"] == "actions"), strict=True):
        assert block["elements"] == card_buttons(card)


def test_the_same_action_twice_is_shown_once():
    view = home_view(HomeView(user=USER, waiting=(CARDS["pending"], CARDS["pending"])))
    assert_view_valid(view)


def test_long_lists_stay_within_100_blocks():
    waiting = tuple(make_card(action_public_id=f"act_w{i}", request_text="x" * 5000) for i in range(200))
    recent = tuple(make_card(action_public_id=f"act_r{i}", state="rejected", decided_by=APPROVER) for i in range(200))
    levels = tuple((f"type-{i}-{'x' * 40}", "hitl") for i in range(500))
    view = home_view(HomeView(user=USER, waiting=waiting, recent=recent, levels=levels))
    assert_view_valid(view)
    blocks = view["blocks"]
    assert "…and 170 more waiting" in block_text(blocks, "waiting_more")
    assert "…and 180 more" in block_text(blocks, "recent_more")
    assert "more_" in block_text(blocks, "levels_list")


def test_untrusted_text_is_escaped_in_home():
    card = make_card(request_text="<!channel> <@U0MALLORY>", rationale="<!here>", params={"x": "<!everyone>"})
    view = home_view(HomeView(user=USER, waiting=(card,), recent=(card,)))
    assert_view_valid(view)
    assert live_tokens(view) == {f"<@{REQUESTER}>"}


def test_recently_decided_rows_say_what_each_was_and_link_its_card():
    link = "https://example.slack.com/archives/C0PAYMENTS/p1700000000000100"
    shown = make_card(summary="the refund of order 1001 | <b>", state="rejected", decided_by=APPROVER)
    unlinked = make_card(action_public_id="act_9", summary="the refund of order 1002", state="rejected")
    view = home_view(HomeView(user=USER, recent=(shown, unlinked), links={"act_1": link}))
    assert_view_valid(view)
    row = block_text(view["blocks"], "recent:act_1")
    # What it was, linked to its card (the label cannot end the link early), then how it ended.
    assert row.startswith(f"<{link}|The refund of order 1001 ¦ &lt;b&gt;> (refund): :x: Rejected by <@{APPROVER}>")
    assert block_text(view["blocks"], "recent:act_9").startswith("The refund of order 1002 (refund): :x: Rejected")
