"""The crash loop's world: its people and channels, its task types (four kinds of work, each in
a few lanes), the `countersign serve` config they make, and how long the loop waits for what.
"""

from __future__ import annotations

from typing import Any

APPROVALS, ADMINS = "C0APPROVALS", "C0ADMINS"
ALICE, BOB, ADMIN = "U0ALICE", "U0BOB", "U0ADMIN"
REQUESTERS = ("U0REQ0", "U0REQ1", "U0REQ2", "U0REQ3")  # expiry notices are DMs: one channel each
APPROVERS = [ALICE, BOB]
# Past every lease a killed server can leave (agent 300 s, outbox 60 s, executor timeout + 30 s)
# and every chain's expiry, short of the 30 min after which waiting tasks count as stalled.
SETTLE_OFFSET_S = 600.0
SETTLE_DEADLINE_S = 120.0
HEALTH_DEADLINE_S = 60.0
SLACK_HANG_METHODS = ("chat.postMessage", "chat.update", "conversations.open")
KINDS: dict[str, dict[str, Any]] = {
    "idem": {  # people approve; the tool dedupes on its idempotency key
        "description": "Idempotent effect, approved by a person",
        "tools": ["chaos_idempotent"],
        "autonomy": "hitl",
        "escalation": [{"after": "12s", "then": "expire"}],
    },
    "once": {  # people approve; the tool must never run twice
        "description": "Non-idempotent effect, approved by a person",
        "tools": ["chaos_once"],
        "autonomy": "hitl",
        "escalation": [{"after": "12s", "then": "expire"}],
    },
    "veto": {  # runs when its veto window ends, unless vetoed
        "description": "Non-idempotent effect in a veto window",
        "tools": ["chaos_once"],
        "autonomy": "hotl",
        "veto_window": "2s",
        # Vetoes can demote the type to hitl (3 of the last 10); its drafts then wait for a
        # person, and expire like the others.
        "escalation": [{"after": "12s", "then": "expire"}],
    },
    "auto": {  # runs at once
        "description": "Idempotent effect, no person",
        "tools": ["chaos_idempotent"],
        "autonomy": "auto",
    },
}
# Each kind in a few lanes, each lane a task type with its own channel: the outbox sender
# posts at most once a second per channel, and every kill leaves it a backlog to drain.
LANES = 3
TASK_TYPES = [f"{kind}{lane}" for kind in KINDS for lane in range(LANES)]
CHANNELS = [f"C0{name.upper()}" for name in TASK_TYPES]
CONFIG: dict[str, Any] = {
    "slack": {"approvals_channel": APPROVALS, "admin_channel": ADMINS, "admins": [ADMIN]},
    "tools": {"modules": ["chaos._crash_support"]},
    "task_types": {
        f"{kind}{lane}": {
            **spec,
            "instructions": "Record the effect named in the request.",
            "approvers": APPROVERS,
            "channel": f"C0{kind.upper()}{lane}",
        }
        for kind, spec in KINDS.items()
        for lane in range(LANES)
    },
}
# One lane of each person-approved kind also reminds the approvers before the expiry.
for name in ("idem0", "once0"):
    CONFIG["task_types"][name]["escalation"] = [
        {"after": "3s", "notify": "approvers"},
        {"after": "12s", "then": "expire"},
    ]
