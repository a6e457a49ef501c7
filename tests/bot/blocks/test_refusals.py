from datetime import UTC, datetime

from approvals.errors import (
    AlreadyAcknowledged,
    AlreadyApprovedByYou,
    AlreadyDecided,
    InvalidEdit,
    NotAnApprover,
    NotApplicable,
    OtherWorkspace,
    SelfApproval,
    StaleParams,
)
from approvals.proposals import NotAnAdmin
from bot.blocks.refusals import refusal_text
from tests.bot.slack_texts import bare_user_ids

WHAT = "the refund of order 1001 (action `act_1`)"
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DATE = "<!date^1714564800^{date_short_pretty} at {time_secs}|2024-05-01T12:00:00Z>"


def test_each_refusal_speaks_to_the_clicker_and_names_people_by_mention():
    told = {
        "not_an_approver": refusal_text(NotAnApprover("act_1", "U0STRANGER"), WHAT),
        "self": refusal_text(SelfApproval("act_1", "U0REQ"), WHAT),
        "twice": refusal_text(AlreadyApprovedByYou("act_1", "U0ALICE"), WHAT),
        "stale": refusal_text(StaleParams("act_1", "a" * 64, "b" * 64), WHAT),
        "decided": refusal_text(AlreadyDecided("act_1", "succeeded", "U0ALICE", AT), WHAT),
        "rejected": refusal_text(AlreadyDecided("act_1", "rejected", "U0BOB", None), WHAT),
        "acknowledged": refusal_text(AlreadyAcknowledged("act_1", "U0BOB", AT), WHAT),
        "not_applicable": refusal_text(NotApplicable("act_1", "pending", "veto"), WHAT),
        "admin": refusal_text(NotAnAdmin("prp_1", "U0APPROVER"), None),
        "other": refusal_text(OtherWorkspace("act_1"), None),
        "edit": refusal_text(InvalidEdit("act_1", {"amount_cents": "must be positive"}), WHAT),
    }
    assert told["not_an_approver"] == f":no_entry_sign: You are not an approver of {WHAT}: your click changed nothing."
    assert told["self"] == f":no_entry_sign: You requested {WHAT}, so you cannot approve it: someone else must."
    assert told["twice"] == f":no_entry_sign: You already approved {WHAT}; it needs another approver."
    assert (
        told["decided"]
        == f":information_source: {WHAT[:1].upper()}{WHAT[1:]} already succeeded: decided by <@U0ALICE> {DATE}."
    )
    assert told["rejected"].endswith("is already rejected: decided by <@U0BOB>.")
    assert told["acknowledged"].endswith(f"was already acknowledged by <@U0BOB> {DATE}.")
    assert told["admin"] == ":no_entry_sign: You are not an admin: only admins change autonomy levels."
    assert told["other"] == ":no_entry_sign: There is no action `act_1` in your workspace."
    assert told["edit"] == f"the edited parameters of {WHAT} are invalid: amount_cents: must be positive"
    assert "changed since you saw them" in told["stale"] and "cannot take a veto" in told["not_applicable"]
    assert not [name for name, text in told.items() if bare_user_ids(text)]
