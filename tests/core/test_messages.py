"""Outbox messages are typed: every kind round-trips through the JSON it is stored as, rows
written before the types existed still decode, and a payload that does not match its kind
fails loudly with `MalformedMessage` (the sender then gives the row up, see
`tests/bot/test_deliveries.py`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import MalformedMessage
from core.messages import (
    MESSAGES,
    ActionAcknowledged,
    ActionDecided,
    ActionExpired,
    ActionFailed,
    ActionSucceeded,
    ActionUnknown,
    AuditHead,
    BacklogAlert,
    BudgetAlert,
    CardPosted,
    CardUpdated,
    ConnectRequested,
    FatigueAlert,
    LevelChanged,
    Message,
    ProposalChanged,
    ProposalPosted,
    QuestionAnswered,
    QuestionAsked,
    Reminded,
    ReviewRequested,
    StallEscalated,
    TaskFinished,
    TaskPaused,
    TaskResumed,
    TaskStalled,
    TaskStarted,
    TypeChoiceAsked,
    decode,
)

ACT, TSK, PRP = "act_01jd3k9x2m4q7r8s", "tsk_01jd3k9x2m4q7r8s", "prp_01jd3k9x2m4q7r8s"
# One of each kind, with every optional field set, and with none set where that differs.
EXAMPLES: list[Message] = [
    CardPosted(ACT),
    CardPosted(ACT, low_confidence=True),
    CardUpdated(ACT),
    CardUpdated(ACT, approvals=1, quorum=2),
    ActionDecided(ACT, "approve", "U0ALICE"),
    ActionAcknowledged(ACT, "U0BOB"),
    ActionSucceeded(ACT),
    ActionFailed(ACT, tell="U0REQUESTER"),
    ActionUnknown(ACT),
    ActionExpired(ACT, None),
    ActionExpired(ACT, "U0REQUESTER"),
    ReviewRequested(ACT),
    ConnectRequested(ACT, "U0REQUESTER"),
    Reminded(ACT, ["U0ALICE"], "reminder", 0, False, "2026-01-05T09:05:00+00:00", 0.25),
    Reminded(ACT, ["U0ALICE", "U0BOB"], "ack_timeout", "ack_timeout", True),
    Reminded(ACT, ["U0ALICE"], "expiry_warning", 3, False, expires_at="2026-01-05T13:00:00+00:00"),
    TaskStarted(TSK),
    TaskResumed(TSK),
    TaskResumed(TSK, "model_available"),
    TaskPaused(TSK, "budget: 8 steps", "budget"),
    TaskStalled(TSK, "paused: model unavailable", "model_unavailable"),
    TypeChoiceAsked(TSK, ["lookup", "refund"], None),
    TaskFinished(TSK, text="Refunded."),
    TaskFinished(TSK, error="the model refused the request"),
    StallEscalated(TSK, "the model has been unavailable", ["U0ALICE", "U0ADMIN"]),
    ProposalPosted(PRP),
    ProposalChanged(PRP),
    LevelChanged("refund", "hitl", "hotl", "U0ADMIN", "promoted"),
    BudgetAlert("budget_cost", "firing", "refund", "2026-01-05", 1.7, 2.0, 0.85, 0.8, TSK, 1.3),
    BudgetAlert("budget_tokens", "firing", "refund", "2026-01-05", 8000, 10000, 0.8, 0.8),
    BacklogAlert("pending_approvals", "firing", 5, 3, "2026-01-05T09:00:00+00:00", {"refund": 5}, ACT),
    BacklogAlert("outbox_backlog", "resolved", 0, 4, None, last_error="SlackApiError: ratelimited"),
    FatigueAlert("fast_approvals", "firing", "U0ALICE", 20, 14, 0.7, 0.5, 7.0, 9, 1.5),
    FatigueAlert("fast_approvals", "resolved", "U0ALICE", 20, 4, 0.2, 0.5, 7.0, 2),
    AuditHead(3, "ab" * 32, "2026-01-05T09:00:00.000000+00:00"),
    QuestionAsked("qst_1"),
    QuestionAnswered("qst_1", "U0ALICE"),
]


def test_the_examples_cover_every_kind() -> None:
    assert {type(example) for example in EXAMPLES} == set(MESSAGES)
    kinds = [cls.KIND for cls in MESSAGES]
    assert len(set(kinds)) == len(kinds) - 2  # only ops.alert holds several shapes (three)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: f"{m.KIND}:{type(m).__name__}")
def test_each_kind_round_trips_through_its_stored_json(message: Message) -> None:
    stored = json.loads(json.dumps(message.to_payload()))  # as the JSON column gives it back
    assert decode(message.KIND, stored) == message
    assert isinstance(message.ordering_key, str) and message.ordering_key


def test_rows_written_before_the_types_still_decode() -> None:
    """Payloads exactly as the string-kind code wrote them (kinds and keys unchanged)."""
    old: list[tuple[str, dict[str, Any], Message]] = [
        ("action.decided", {"action_id": ACT, "decision": "cancel", "by": "U0ALICE"},
         ActionDecided(ACT, "cancel", "U0ALICE")),
        ("action.expired", {"action_id": ACT, "requester": None}, ActionExpired(ACT, None)),
        ("autonomy.changed", {"task_type": "refund", "from": "hotl", "to": "hitl", "by": "system", "reason": "r"},
         LevelChanged("refund", "hotl", "hitl", "system", "r")),
        ("ops.alert", {"kind": "outbox_backlog", "state": "firing", "count": 5, "threshold": 4, "oldest_at": None,
                       "last_error": None, "message": "Backlog: 5 Slack messages are waiting to be sent."},
         BacklogAlert("outbox_backlog", "firing", 5, 4, None)),
    ]  # fmt: skip
    for kind, payload, message in old:
        assert decode(kind, payload) == message


@pytest.mark.parametrize(
    ("kind", "payload", "problem"),
    [
        ("action.decided", {"action_id": ACT, "by": "U0ALICE"}, "decision: Field required"),
        ("action.card", {"action_id": ACT, "tell": "U0ALICE"}, "tell: Unexpected"),
        ("action.card", {"action_id": 42}, "action_id: Input should be a valid string"),
        ("task.paused", {"task_id": TSK, "reason": "r", "kind": "tired"}, "kind: Input should be 'budget' or 'loop'"),
        ("escalation.notify", {"action_id": ACT, "targets": "U0ALICE", "reason": "r", "step": 0, "late": False},
         "targets: Input should be a valid list"),
        ("ops.alert", {"kind": "disk_full", "state": "firing"}, "unknown alert kind 'disk_full'"),
        ("ops.alert", {"kind": "budget_cost", "state": "resolved"}, "state: Input should be 'firing'"),
        ("audit.head", ["not", "an", "object"], "the payload is list, not an object"),
        ("task.message", {"task_id": TSK}, "no message type has this kind"),
    ],
)  # fmt: skip
def test_a_payload_that_does_not_match_its_kind_fails_loudly(kind: str, payload: Any, problem: str) -> None:
    with pytest.raises(MalformedMessage, match=f"outbox message {kind!r} is malformed: .*{problem}"):
        decode(kind, payload)
