"""A decision as one statement on PostgreSQL: lock, check, write, in one round trip.

`Decisions.approve`, `reject` and `veto` come here first on PostgreSQL. One data-modifying CTE
locks the action's row (`FOR UPDATE`), checks everything that can change under a click (its
state, its params hash and tool definition, whether this person already approved those),
inserts the decision, compare-and-sets the state when the decision closes the action (quorum
reached, or a rejection or veto), and inserts the audit events (unchained: `approvals.audit`)
and the outbox row: the rows `Decisions`' ORM path writes, with the same values, in the same
transaction, and returns the row as it was before.

One caveat shapes it: a statement reads with the snapshot it started with, and only the row
it locks is re-read once the lock is granted. With quorum 1 that is enough (the first
decision closes the action, which the re-read row shows). Above quorum 1, decisions that
committed while the statement waited for its lock are not in its snapshot, so it writes
nothing the first time and runs again, lock held, with a fresh snapshot: two round trips.

What does not change under a click is checked against inputs read before the statement:
whether the clicker is a listed approver is `approvers ?| identities`, `identities` being
the clicker and the approver groups (`@group`) they are in, from the directory's cache.
When the statement writes nothing, the ORM path decides in the same transaction, the row
already locked: it explains a refusal (costing its queries only then) and decides what the
statement cannot decide exactly: a clicker listed through a group this process has not seen
yet, a task type whose tools run with a person's credential (the check reads the vault).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from approvals import audit, masking
from core.messages import ActionDecided, CardUpdated
from core.states import ActionState

# CardUpdated's payload keys, as `to_payload` writes them.
_CARD_KEYS = [CardUpdated.KEYS.get(name, name) for name in ("action_public_id", "approvals", "quorum")]

# The statement's inputs, typed once (psycopg sends strings untyped).
_GIVEN = """
given AS (
    SELECT CAST(:action AS text) AS action, CAST(:actor AS text) AS actor, CAST(:team AS text) AS team,
           CAST(:identities AS text[]) AS identities, CAST(:delegated AS text[]) AS delegated,
           CAST(:open_state AS text) AS open_state, CAST(:target AS text) AS target,
           CAST(:closes AS boolean) AS closes, CAST(:fresh AS boolean) AS fresh,
           CAST(:seen_hash AS text) AS seen_hash, CAST(:seen_tool AS text) AS seen_tool,
           CAST(:kind AS text) AS kind, CAST(:note AS text) AS note, CAST(:audit_note AS text) AS audit_note,
           CAST(:now AS timestamptz) AS now,
           CAST(:decision_event AS text) AS decision_event, CAST(:move_event AS text) AS move_event,
           CAST(:decided_kind AS text) AS decided_kind, CAST(:decided_payload AS json) AS decided_payload,
           CAST(:updated_kind AS text) AS updated_kind, CAST(:card_keys AS text[]) AS card_keys
)"""

# The locked row, as it was, with its task's public id and workspace.
_LOCKED = """
locked AS (
    SELECT a.id, a.public_id, a.task_type, a.tool, a.params_hash, a.tool_hash, a.tool_changed_at, a.state,
           a.requester, a.approvers, a.quorum, a.decided_by, a.decided_at, a.created_at, a.api_client_id,
           t.public_id AS task_public_id, t.team_id,
           a.approvers::jsonb ?| given.identities AS listed
    FROM actions a JOIN tasks t ON t.id = a.task_id, given
    WHERE a.public_id = given.action
    FOR UPDATE OF a
),
mine AS (
    SELECT EXISTS (
        SELECT 1 FROM decisions d JOIN locked ON d.action_id = locked.id, given
        WHERE d.actor = given.actor AND d.kind IN ('approve', 'edit') AND d.params_hash = locked.params_hash
          AND d.tool_hash = locked.tool_hash
    ) AS already
)"""

_CHECKS = """
    WHERE locked.state = given.open_state
      AND locked.api_client_id IS NULL
      AND (given.team IS NULL OR locked.team_id IS NULL OR locked.team_id = given.team)
      AND locked.listed
      AND NOT (locked.task_type = ANY(given.delegated))
      AND (locked.quorum = 1 OR given.fresh)"""

_APPROVAL_CHECKS = """
      AND locked.requester IS DISTINCT FROM given.actor
      AND locked.params_hash = given.seen_hash
      AND (locked.tool_hash = given.seen_tool OR (given.seen_tool IS NULL AND locked.tool_changed_at IS NULL))
      AND NOT mine.already"""

_WRITES = """
decision AS (
    INSERT INTO decisions (action_id, kind, actor, team_id, params_hash, tool_hash, note, at)
    SELECT ok.id, given.kind, given.actor, given.team, ok.params_hash, ok.tool_hash, given.note, given.now
    FROM ok, given
    RETURNING id
),
tally AS (
    -- Approvals on the params hash: the others', and the clicker's, this one included (a CTE
    -- does not see its siblings' inserts).
    SELECT (
        SELECT count(DISTINCT d.actor) FROM decisions d
        WHERE d.action_id = ok.id AND d.kind IN ('approve', 'edit') AND d.params_hash = ok.params_hash
          AND d.tool_hash = ok.tool_hash AND d.actor <> given.actor
    ) + CASE WHEN NOT given.closes OR mine.already THEN 1 ELSE 0 END AS approvals
    FROM ok, mine, given
),
moved AS (
    UPDATE actions SET state = given.target, decided_by = given.actor, decided_at = given.now, updated_at = given.now
    FROM ok, tally, given
    WHERE actions.id = ok.id AND actions.state = ok.state AND (given.closes OR tally.approvals >= ok.quorum)
    RETURNING actions.id
),
events AS (
    INSERT INTO audit_unchained
        (at, kind, actor, task_public_id, action_public_id, task_type, params_hash, from_state, to_state, note)
    SELECT now, decision_event, actor, task_public_id, public_id, task_type, params_hash, NULL, state, audit_note
    FROM ok, given
    UNION ALL
    SELECT now, move_event, actor, task_public_id, public_id, task_type, params_hash, state, target, audit_note
    FROM ok, given WHERE EXISTS (SELECT 1 FROM moved)
    UNION ALL
    SELECT now, 'action.awaiting_quorum', actor, task_public_id, public_id, task_type, params_hash, NULL, state,
           tally.approvals || ' of ' || ok.quorum || ' approvals'
    FROM ok, tally, given WHERE NOT EXISTS (SELECT 1 FROM moved)
),
messages AS (
    INSERT INTO outbox (kind, ordering_key, payload, created_at, available_at, attempts)
    SELECT decided_kind, public_id, decided_payload, now, now, 0
    FROM ok, given WHERE EXISTS (SELECT 1 FROM moved)
    UNION ALL
    SELECT updated_kind, public_id,
           json_build_object(card_keys[1], public_id, card_keys[2], tally.approvals, card_keys[3], ok.quorum),
           now, now, 0
    FROM ok, tally, given WHERE NOT EXISTS (SELECT 1 FROM moved)
)
SELECT locked.*, mine.already,
       (SELECT id FROM decision) AS decision_id,
       (SELECT approvals FROM tally) AS approvals,
       EXISTS (SELECT 1 FROM moved) AS moved
FROM locked, mine"""


def _statement(approval: bool) -> str:
    checks = _CHECKS + (_APPROVAL_CHECKS if approval else "")
    ok = f"ok AS (\n    SELECT locked.* FROM locked, mine, given{checks}\n)"  # noqa: S608 - constants only
    return f"WITH {_GIVEN},{_LOCKED},\n{ok},{_WRITES}"


_STATEMENTS = {True: text(_statement(True)), False: text(_statement(False))}


@dataclass(frozen=True)
class Attempt:
    kind: str  # approve, reject or veto
    action_public_id: str
    actor: str
    identities: list[str]  # the actor and the groups they are in
    delegated: list[str]  # task types whose approvals check a person's credential
    team_id: str | None
    note: str | None
    now: datetime
    open_state: ActionState
    target: ActionState
    seen_hash: str | None = None  # approvals: the params hash the clicker saw
    seen_tool: str | None = None  # approvals: the tool definition the clicker saw (None: not shown)


def run(session: Session, attempt: Attempt) -> Any:
    """The locked row as it was (named columns, plus `decision_id`, `approvals`, `moved`) if the
    decision was made and written; None if nothing was written, for the ORM path to decide."""
    approval = attempt.kind == "approve"
    decided = ActionDecided(attempt.action_public_id, attempt.kind, attempt.actor)
    params = {
        "action": attempt.action_public_id,
        "actor": attempt.actor,
        "identities": attempt.identities,
        "delegated": attempt.delegated,
        "team": attempt.team_id,
        "open_state": attempt.open_state.value,
        "kind": attempt.kind,
        "note": attempt.note,
        "audit_note": masking.mask_text(attempt.note) if attempt.note else attempt.note,  # as `audit.record` has it
        "now": attempt.now,
        "target": attempt.target.value,
        "closes": not approval,
        "decision_event": f"decision.{attempt.kind}",
        "move_event": f"action.{attempt.target.value}",
        "decided_kind": ActionDecided.KIND,
        "decided_payload": json.dumps(decided.to_payload(), separators=(",", ":")),
        "updated_kind": CardUpdated.KIND,
        "card_keys": _CARD_KEYS,
        "seen_hash": attempt.seen_hash,
        "seen_tool": attempt.seen_tool,
    }
    statement = _STATEMENTS[approval]
    row = session.execute(statement, {**params, "fresh": False}).first()
    if row is not None and row.decision_id is None and row.quorum > 1:
        # Decisions on the action committed while this statement waited for its lock are not
        # in its snapshot; now that the lock is held, a second statement sees them all.
        row = session.execute(statement, {**params, "fresh": True}).first()
    if row is None or row.decision_id is None:
        return None
    audit.inserted(session)
    return row
