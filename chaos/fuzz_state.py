"""The fuzz scenario's server state: seeded before the requests (tasks with pending actions
from two teams, a mention whose `event_id` is replayed later, a slash command whose exact
bytes are kept), then compared after them (`Snapshot`): only refusals may have been audited.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select

from bot.sandbox.signed import FORM, JSON, SignedRequest, event_callback_body, send, signed, slash_command_body
from chaos import tools
from chaos.common import API_TOKEN, SECRET, TEAM, ChaosFailure, wait_for
from chaos.fuzz_world import (
    ALICE,
    APPROVALS,
    INTRUDER_TOKEN,
    KEPT_TEXT,
    OTHER_TEAM,
    OTHER_USER,
    REQUESTER,
    SEEDED_EVENT,
    Seeded,
    Target,
)
from core.models import (
    Action,
    ApiClient,
    AuditEvent,
    Decision,
    OutboxMessage,
    SlackEvent,
    Task,
    Timer,
    UnchainedAuditEvent,
)

# Refusals are audited; so is every call of the actions API (`api.call`), a refused claim included.
ALLOWED_AUDIT_KINDS = frozenset({"decision.refused", "api.call"})


def seed_state(url: str, slack: Any, reader: Engine, servers: list[Any]) -> Seeded:
    def signed_command(user: str, team: str, text_: str) -> SignedRequest:
        body = slash_command_body(
            team_id=team,
            user_id=user,
            channel_id=APPROVALS,
            text=text_,
            response_url=slack.new_response_url(APPROVALS, None, user),
            trigger_id=slack.new_trigger_id(user),
        )
        request = signed(SECRET, body, FORM)
        reply = send(url + "/slack/events", request, timeout=15)
        if reply.status != 200:
            raise ChaosFailure(f"seeding command {text_!r} got {reply.status}: {reply.body}")
        return request

    kept = signed_command(REQUESTER, TEAM, f"run refund {KEPT_TEXT}")
    signed_command(REQUESTER, TEAM, "run flag flag dark-mode")
    signed_command(ALICE, TEAM, "run refund Refund order 12")  # Alice requested it: only Bob may approve
    signed_command(OTHER_USER, OTHER_TEAM, "run refund Refund order 13")
    mention = {
        "type": "app_mention",
        "user": REQUESTER,
        "text": "<@U0BOT> refund Refund order 14",
        "channel": APPROVALS,
    }
    body = event_callback_body(mention, team_id=TEAM, event_id=SEEDED_EVENT)
    reply = send(url + "/slack/events", signed(SECRET, body, JSON), timeout=15)
    if reply.status != 200:
        raise ChaosFailure(f"seeding the mention got {reply.status}: {reply.body}")

    def seeded() -> bool:
        with reader.connect() as conn:
            pending = conn.execute(select(func.count()).select_from(Action).where(Action.state == "pending"))
            undelivered = conn.execute(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
            )
            return pending.scalar_one() == 5 and undelivered.scalar_one() == 0

    wait_for(seeded, "5 pending actions with their cards posted", servers, 60)
    with reader.connect() as conn:
        rows = conn.execute(
            select(Action.public_id, Action.params_hash, Action.requester, Action.tool, Task.team_id).join(
                Task, Task.id == Action.task_id
            )
        ).all()
        tasks = dict(conn.execute(select(Task.public_id, Task.requester)).tuples().all())
    api_action = _seed_api(url, reader, servers)
    return Seeded(
        {row[0]: (row[1], row[2]) for row in rows},
        tasks,
        frozenset({SEEDED_EVENT}),
        tuple(Target(*row) for row in rows),
        kept,
        api_action,
    )


def _seed_api(url: str, reader: Engine, servers: list[Any]) -> str:
    """A pending action asked for with the env token (its card posted), and a second client
    given only `ops` (`INTRUDER_TOKEN`, written as `api-client create` writes one): the id."""
    body = {"task_type": "ops", "tool": "chaos_restart", "params": {"service": "db"}, "external_id": "fuzz-seed"}
    request = urllib.request.Request(  # noqa: S310 - the local server
        url + "/api/actions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=15) as reply:  # noqa: S310 - the local server
        action_id = str(json.loads(reply.read())["action_id"])
    with reader.begin() as conn:
        conn.execute(
            insert(ApiClient).values(
                name="fuzz-intruder",
                token_hash=hashlib.sha256(INTRUDER_TOKEN.encode()).hexdigest(),
                webhook_secret=None,
                task_types=["ops"],
                created_at=datetime.now(UTC),
            )
        )

    def posted() -> bool:
        with reader.connect() as conn:
            undelivered = conn.execute(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
            )
            return undelivered.scalar_one() == 0

    wait_for(posted, "the API action's card posted", servers, 60)
    return action_id


def replays_accepted(reader: Engine) -> int:
    """Tasks started by the kept command beyond the one it started while seeding (its replays
    are sent during the run): counted in the database, whatever the answers said."""
    with reader.connect() as conn:
        found = conn.execute(select(func.count()).select_from(Task).where(Task.request_text == KEPT_TEXT))
        return max(0, int(found.scalar_one()) - 1)


def new_rows(reader: Engine, before: Snapshot) -> list[str]:
    """The rows the requests added (evidence for a state change), a few per table."""
    queries = {
        "task": select(Task.public_id, Task.task_type, Task.requester, Task.team_id, Task.channel, Task.request_text),
        "decision": select(Decision.kind, Decision.actor, Decision.team_id, Decision.action_id, Decision.note),
        "action": select(Action.public_id, Action.state, Action.tool, Action.requester),
        "outbox": select(OutboxMessage.kind, OutboxMessage.ordering_key),
        "slack event": select(SlackEvent.event_id),
    }
    order = {"task": Task.id, "decision": Decision.id, "action": Action.id, "outbox": OutboxMessage.id}
    found = []
    with reader.connect() as conn:
        for name, query in queries.items():
            column = order.get(name)
            if column is None:
                rows = conn.execute(query.where(SlackEvent.event_id != SEEDED_EVENT).limit(5)).all()
            else:
                rows = conn.execute(query.where(column > before.last_ids[name]).order_by(column).limit(5)).all()
            found += [f"new {name}: {tuple(str(cell)[:80] for cell in row)}" for row in rows]
        # Who did it: the newest events of the kinds no request may cause, chained or not yet (seeding made some).
        for model in (AuditEvent, UnchainedAuditEvent):
            columns = (model.kind, model.actor, model.task_public_id, model.action_public_id, model.note)
            query = select(*columns).where(model.kind.not_in(ALLOWED_AUDIT_KINDS))
            rows = conn.execute(query.order_by(model.at.desc()).limit(5)).all()
            found += [f"new audit event: {tuple(str(cell)[:120] for cell in row)}" for row in rows]
    return found


def settled_snapshot(reader: Engine, seeded_ids: list[str], deadline_s: float = 20.0) -> Snapshot:
    """A snapshot once two taken a second apart agree (work a request started has finished)."""
    deadline = time.monotonic() + deadline_s
    previous = Snapshot.take(reader, seeded_ids)
    while True:
        time.sleep(1.0)
        current = Snapshot.take(reader, seeded_ids)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    audit_kinds: Counter[str]
    seeded: dict[str, tuple[str, str, str | None]]  # public id -> (state, params hash, decided_by)
    last_ids: dict[str, int]

    @classmethod
    def take(cls, reader: Engine, seeded_ids: list[str]) -> Snapshot:
        tables = {
            "tasks": select(func.count()).select_from(Task),
            "actions": select(func.count()).select_from(Action),
            "decisions": select(func.count()).select_from(Decision),
            "timers": select(func.count()).select_from(Timer),
            "slack_events": select(func.count()).select_from(SlackEvent),
            "outbox": select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind != "audit.head"),
        }
        with reader.connect() as conn:
            counts = {name: int(conn.execute(query).scalar_one()) for name, query in tables.items()}
            counts["tool calls"] = sum(tools.calls(reader).values())
            kinds = Counter(
                {
                    kind: int(n)
                    for kind, n in conn.execute(select(AuditEvent.kind, func.count()).group_by(AuditEvent.kind))
                }
            )
            rows = conn.execute(
                select(Action.public_id, Action.state, Action.params_hash, Action.decided_by).where(
                    Action.public_id.in_(seeded_ids)
                )
            ).all()
            ids = {"task": Task.id, "decision": Decision.id, "action": Action.id, "outbox": OutboxMessage.id}
            last_ids = {
                name: int(conn.execute(select(func.max(column))).scalar_one() or 0) for name, column in ids.items()
            }
        return cls(counts, kinds, {row[0]: (row[1], row[2], row[3]) for row in rows}, last_ids)

    def changes(self, after: Snapshot) -> list[str]:
        found = [
            f"{name}: {self.counts[name]} -> {after.counts[name]}"
            for name in self.counts
            if after.counts[name] != self.counts[name]
        ]
        for kind in sorted(set(after.audit_kinds) - ALLOWED_AUDIT_KINDS):
            if after.audit_kinds[kind] != self.audit_kinds.get(kind, 0):
                found.append(f"audit events {kind}: {self.audit_kinds.get(kind, 0)} -> {after.audit_kinds[kind]}")
        for public_id, before in self.seeded.items():
            if after.seeded.get(public_id) != before:
                found.append(f"seeded action {public_id}: {before} -> {after.seeded.get(public_id)}")
        return found
