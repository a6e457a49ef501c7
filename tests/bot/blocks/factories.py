"""Views as the lead's code will build them from database rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.blocks.views import CardView, CredentialView, TaskView

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HASH = "ab12cd34ef56" + "0" * 52
REQUESTER = "U0REQUESTER"
APPROVER = "U0APPROVER"


def make_card(**changes: Any) -> CardView:
    fields: dict[str, Any] = {
        "action_public_id": "act_1",
        "task_public_id": "tsk_1",
        "task_type": "refund",
        "tool": "issue_refund",
        "risk": "high",
        "mode": "hitl",
        "state": "pending",
        "requester": REQUESTER,
        "request_text": "Refund order A1: the mug arrived broken.",
        "rationale": "The order exists and the customer sent a photo of the damage.",
        "confidence": 0.9,
        "confidence_threshold": 0.7,
        "params": {"order_id": "A1", "amount_cents": 500},
        "params_hash": HASH,
    }
    fields.update(changes)
    return CardView(**fields)


DECIDED = {"decided_by": APPROVER, "decided_at": NOW}

# One card per state the app shows, with the fields it has in that state.
CARDS: dict[str, CardView] = {
    "pending": make_card(),
    "pending_acknowledged": make_card(acknowledged_by=APPROVER),
    "pending_quorum": make_card(quorum=2, approvals=1),
    "pending_low_confidence": make_card(mode="hitl", confidence=0.4, caps=("low confidence",)),
    "scheduled": make_card(mode="hotl", state="scheduled", run_at=NOW),
    "scheduled_acknowledged": make_card(mode="hotl", state="scheduled", run_at=NOW, acknowledged_by=APPROVER),
    "approved": make_card(state="approved", **DECIDED),
    "approved_with_edits": make_card(
        state="approved", diff={"amount_cents": {"from": 500, "to": 300}}, edited_by=APPROVER, **DECIDED
    ),
    "executing": make_card(state="executing", **DECIDED),
    "executing_after_veto_window": make_card(mode="hotl", state="executing", run_at=NOW, decided_at=NOW),
    "succeeded": make_card(state="succeeded", result={"refund_id": "re_1"}, **DECIDED),
    "succeeded_auto": make_card(mode="auto", state="succeeded", result={"refund_id": "re_1"}),
    "failed": make_card(state="failed", error="PaymentError: card declined", **DECIDED),
    "unknown": make_card(state="unknown", error="worker crashed", **DECIDED),
    "unknown_known": make_card(
        state="unknown",
        error="timed out",
        started_at=NOW,
        lease_owner="host:41:ab12",
        run_again_votes=1,
        quorum=2,
        **DECIDED,
    ),
    "unknown_resolved_ran": make_card(
        state="succeeded",
        error="timed out",
        resolution="resolve_ran",
        resolved_by=APPROVER,
        resolved_at=NOW,
        resolution_note="in the PSP log",
        **DECIDED,
    ),
    "unknown_resolved_not_run": make_card(
        state="failed",
        error="timed out",
        resolution="resolve_not_run",
        resolved_by=APPROVER,
        resolved_at=NOW,
        **DECIDED,
    ),
    "unknown_run_again": make_card(state="approved", resolution="run_again", resolved_by=APPROVER, **DECIDED),
    "rejected": make_card(state="rejected", decision_note="Only refund half: the box was opened.", **DECIDED),
    "vetoed": make_card(mode="hotl", state="vetoed", run_at=NOW, decision_note="wrong order", **DECIDED),
    "vetoed_without_reason": make_card(mode="hotl", state="vetoed", run_at=NOW, **DECIDED),
    "expired": make_card(state="expired", decided_at=NOW),
    "cancelled": make_card(state="cancelled", decided_at=NOW, decision_note="task stopped"),
    "refused": make_card(state="refused", error="amount_cents: must be positive"),
    "pending_allow_similar": make_card(mode="hotl", allow_similar=True),
    "scheduled_by_rule": make_card(mode="hotl", state="scheduled", run_at=NOW, rule_public_id="rule_1"),
    "succeeded_rule_made": make_card(state="succeeded", result={"refund_id": "re_1"}, rule_made="rule_2", **DECIDED),
    "succeeded_undo_offered": make_card(
        state="succeeded", result={"refund_id": "re_1"}, undo_until=NOW + timedelta(hours=1), rendered_at=NOW, **DECIDED
    ),
    "succeeded_undo_asked": make_card(
        state="succeeded",
        result={"refund_id": "re_1"},
        undo_action="act_2",
        undo_state="pending",
        undo_asked_by=APPROVER,
        **DECIDED,
    ),
    "compensation_pending": make_card(
        tool="reverse_refund", undoes="act_1", undoes_tool="issue_refund", undoes_summary="the refund of order A1"
    ),
    "pending_requester_not_connected": make_card(
        credential=CredentialView(
            mode="requester",
            names=("stripe_oauth",),
            owner=REQUESTER,
            connected=False,
            how=f"`countersign secrets connect stripe_oauth --owner {REQUESTER}`",
        )
    ),
    "pending_approvers_own": make_card(
        credential=CredentialView(
            mode="approver",
            names=("stripe_oauth",),
            owner=None,
            connected=None,
            how="`countersign secrets connect stripe_oauth --owner YOUR_SLACK_ID`",
        )
    ),
    "pending_requester_sent_link": make_card(
        credential=CredentialView(
            mode="requester",
            names=("stripe_oauth",),
            owner=REQUESTER,
            connected=False,
            how="the requester has been sent a link to connect",
            web=True,
        )
    ),
    "pending_approvers_own_from_slack": make_card(
        credential=CredentialView(
            mode="approver",
            names=("stripe_oauth",),
            owner=None,
            connected=None,
            how="approvers: click Approve to get your connect link",
            web=True,
        )
    ),
    "succeeded_as_approver": make_card(
        state="succeeded",
        result={"refund_id": "re_1"},
        credential=CredentialView(mode="approver", names=("stripe_oauth",), owner=APPROVER, connected=True, how=""),
        **DECIDED,
    ),
}


def make_task(**changes: Any) -> TaskView:
    fields: dict[str, Any] = {
        "task_public_id": "tsk_1",
        "task_type": "refund",
        "state": "running",
        "requester": REQUESTER,
        "request_text": "Refund order A1: the mug arrived broken.",
        "steps": 8,
        "tokens": 51234,
        "cost_usd": 0.5123,
    }
    fields.update(changes)
    return TaskView(**fields)
