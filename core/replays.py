"""Replays: a signed request taken once is refused when the very same signature comes again.

Slack signs `v0:{timestamp}:{body}` and receivers accept a timestamp within five minutes of
their clock, so anyone who sees one request (a proxy's log, a captured packet) can send it
again within that window and act as the person who sent it. Slack's own retries are signed
afresh (a new timestamp), so only a copy repeats a signature. Each signature taken is kept,
hashed, in `seen_request_signatures`, shared by every replica through the database; the
insert of a seen one conflicts and the request is refused. Past the window (plus a margin
for clocks that disagree) a row refuses nothing, since the signature check refuses the
request first, so `forget_expired` deletes it and the table holds a few minutes of traffic.

Imports nothing from the other countersign packages.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.clock import utc
from core.models import SeenRequestSignature

# Slack's rule, which slack_sdk's SignatureVerifier applies: |now - timestamp| <= 5 minutes.
REPLAY_WINDOW = timedelta(minutes=5)
# Replicas' clocks may disagree a little: keep a row this much longer than the window.
CLOCK_SKEW = timedelta(minutes=1)


def first_sighting(session: Session, signature: str, request_at: datetime) -> bool:
    """Record `signature` (of a request signed at `request_at`); False if it was seen before.

    One INSERT … ON CONFLICT DO NOTHING: two replicas given the same request at once cannot
    both see it first. Call it in a transaction of its own, committed before the request acts
    (on PostgreSQL it turns off `synchronous_commit` for the rest of that transaction).
    """
    digest = hashlib.sha256(signature.encode()).hexdigest()
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # Every Slack request pays for this commit before its own. Not waiting for the WAL
        # flush halves it; what a database crash could lose is the last fraction of a second
        # of records, whose requests an eavesdropper would have to replay within 5 minutes
        # of that crash. Other replicas see the row at commit all the same.
        session.execute(text("SET LOCAL synchronous_commit = off"))
    insert = pg_insert if postgres else sqlite_insert
    statement = (
        insert(SeenRequestSignature)
        .values(digest=digest, request_at=utc(request_at))
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(SeenRequestSignature.digest)
    )
    return session.execute(statement).first() is not None


def forget_expired(session: Session, now: datetime) -> int:
    """Delete the signatures too old to be accepted again (signed before `now` minus the
    window and the skew margin); how many went."""
    cutoff = utc(now) - REPLAY_WINDOW - CLOCK_SKEW
    statement = delete(SeenRequestSignature).where(SeenRequestSignature.request_at < cutoff)
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)
