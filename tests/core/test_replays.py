"""Seen request signatures: each taken once, on every replica; kept only while a copy could
still pass the signature check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.config import Config
from core.models import SeenRequestSignature
from core.replays import CLOCK_SKEW, REPLAY_WINDOW, first_sighting, forget_expired
from escalations.jobs import periodic_jobs
from escalations.sweeper import Sweeper
from tests.bot.slack_app import CONFIG
from tests.fakes.clock import FrozenClock
from tests.fakes.directory import FakeDirectory

SIGNED_AT = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


def test_a_signature_is_seen_first_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert first_sighting(session, "v0=" + "a" * 64, SIGNED_AT)
    with sessions.begin() as session:
        assert not first_sighting(session, "v0=" + "a" * 64, SIGNED_AT)
        assert first_sighting(session, "v0=" + "b" * 64, SIGNED_AT)
    with sessions() as session:
        stored = session.scalars(select(SeenRequestSignature.digest)).all()
    assert len(stored) == 2 and all(len(digest) == 64 and "aaaa" not in digest for digest in stored)


def test_signatures_are_forgotten_once_no_copy_could_pass_the_signature_check(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        first_sighting(session, "v0=old", SIGNED_AT)
        first_sighting(session, "v0=new", SIGNED_AT + timedelta(minutes=2))
    kept_until = SIGNED_AT + REPLAY_WINDOW + CLOCK_SKEW
    with sessions.begin() as session:
        assert forget_expired(session, kept_until) == 0  # a copy might still be accepted somewhere
    with sessions.begin() as session:
        assert forget_expired(session, kept_until + timedelta(seconds=1)) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SeenRequestSignature)) == 1
    with sessions.begin() as session:  # forgotten: only the signature check now stands in the way
        assert first_sighting(session, "v0=old", SIGNED_AT)


def test_the_ticker_forgets_expired_signatures_every_minute(sessions: sessionmaker[Session]) -> None:
    clock = FrozenClock(SIGNED_AT)
    config = Config.model_validate(CONFIG)
    jobs = periodic_jobs(Sweeper(sessions, FakeDirectory(), clock), sessions, config, clock)
    forget, every_s = jobs["countersign-seen-signatures"]
    assert every_s == 60.0
    with sessions.begin() as session:
        first_sighting(session, "v0=once", SIGNED_AT)
    clock.advance(REPLAY_WINDOW + CLOCK_SKEW)
    assert forget() == 0
    clock.advance(timedelta(seconds=1))
    assert forget() == 1
