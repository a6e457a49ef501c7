"""How old a click is taken to be, and what cuts a decision's wait short (`bot.admission`);
clocks injected, the database real."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import prefork, server
from bot.admission import (
    ARRIVAL,
    DECISION_SLOTS,
    FIRST_HOLD_S,
    HOLD_WEIGHT,
    MAX_WAITING,
    Admission,
    Arrival,
    DecidingClick,
    Shed,
    SkewFloor,
    deciding_click,
)
from bot.sandbox.signed import FORM
from core.models import SeenRequestSignature


class Ticks:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_click_is_as_old_as_slacks_stamp_says_plus_the_time_it_spent_here() -> None:
    ticks, wall = Ticks(), Ticks(1_700_000_000.4)
    admission = Admission(budget_s=2.0, ticks=ticks, wall=wall)
    arrival = admission.arrived(ticks(), 1_700_000_000)
    assert arrival.before_s == pytest.approx(0.4)  # whole-second stamps: up to 1 s too old, never too young
    ticks.now += 1.0
    assert admission.left(arrival) == pytest.approx(0.6)

    waited = admission.arrived(ticks(), 1_700_000_000 - 3)  # it queued 3 s before our app saw it
    assert admission.left(waited) < 0


def test_a_server_clock_ahead_of_slacks_is_not_taken_for_waiting() -> None:
    ticks, wall = Ticks(), Ticks(1_700_000_005.2)  # 5 s ahead of Slack's
    admission = Admission(budget_s=2.0, ticks=ticks, wall=wall)
    fresh = admission.arrived(ticks(), 1_700_000_000)
    assert fresh.before_s == pytest.approx(1.0)  # skew beyond the stamp's second is taken off
    assert admission.left(fresh) > 0
    queued = admission.arrived(ticks(), 1_700_000_000 - 2)  # the freshest click still sets the floor
    assert queued.before_s == pytest.approx(3.0)
    assert admission.left(queued) < 0


def test_the_skew_floor_forgets_old_clicks() -> None:
    floor = SkewFloor(window_s=600, bucket_s=60)
    assert floor.skew(0.5, now=0) == 0.0
    assert floor.skew(4.0, now=300) == 0.0  # a fresh click 5 minutes ago still counts
    assert floor.skew(4.0, now=700) == pytest.approx(3.0)  # after 10 minutes only recent ones do


def test_a_click_without_an_arrival_is_as_old_as_its_time_here() -> None:
    ticks = Ticks()
    admission = Admission(budget_s=2.0, ticks=ticks)
    assert ARRIVAL.get() is None  # Socket Mode, or a listener called directly
    with admission.turn("approve") as turn:
        assert turn.arrival == Arrival(ticks.now)
    token = ARRIVAL.set(Arrival(ticks.now - 2.5))
    try:
        with pytest.raises(Shed) as shed, admission.turn("approve"):
            pytest.fail("a spent budget gives no turn")
        assert shed.value.reason == "late"
    finally:
        ARRIVAL.reset(token)


def test_a_decision_waiting_past_its_budget_for_the_database_is_rolled_back_and_shed(
    sessions: sessionmaker[Session],
) -> None:
    """SQLite's write turn, PostgreSQL's row lock: held by another transaction past the budget."""
    with sessions.begin() as session:
        session.add(SeenRequestSignature(digest="a" * 64, request_at=datetime(2026, 1, 1, tzinfo=UTC)))
    admission = Admission(budget_s=0.2)
    later = datetime(2027, 1, 1, tzinfo=UTC)

    def write(session: Session) -> None:
        session.execute(update(SeenRequestSignature).values(request_at=later))

    with sessions() as holder:
        write(holder)  # holds SQLite's write turn (this process's), or the row's lock
        with pytest.raises(Shed) as shed, admission.turn("approve") as turn, sessions.begin() as session:
            turn.bound(write)(session)
        holder.rollback()
    assert shed.value.reason == "busy"
    with sessions() as session:
        assert session.scalars(select(SeenRequestSignature.request_at)).one().year == 2026
    assert admission.slots.acquire(blocking=False)  # the slot was given back


def test_a_click_is_shed_at_once_when_those_waiting_would_use_up_its_budget() -> None:
    ticks = Ticks()
    admission = Admission(budget_s=2.0, slots=1, ticks=ticks)
    taken = admission.enter("approve", Arrival(ticks.now))  # the one slot
    ticks.now += 1.0
    admission.leave(taken)  # held 1 s: the moving average learns it
    assert admission.hold_s == pytest.approx(FIRST_HOLD_S + HOLD_WEIGHT * (1.0 - FIRST_HOLD_S))
    admission.hold_s = 1.0
    taken = admission.enter("approve", Arrival(ticks.now))
    admission.waiting = 2  # two clicks wait already: at 1 s a turn, a third would start after its budget
    with pytest.raises(Shed) as shed:
        admission.enter("approve", Arrival(ticks.now))
    assert (shed.value.kind, shed.value.reason) == ("approve", "busy")
    admission.hold_s, admission.waiting = 0.001, MAX_WAITING  # quick turns, but no server thread to wait in
    with pytest.raises(Shed):
        admission.enter("veto", Arrival(ticks.now))
    admission.leave(taken)


def _form(payload: object) -> bytes:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def test_deciding_clicks_are_told_from_the_rest_before_bolt_parses_them() -> None:
    click = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "team_id": "T0TEAM"},
        "response_url": "https://hooks.slack.com/actions/T0/1/abc",
        "actions": [{"action_id": "approve", "value": "act_1"}],
    }
    assert deciding_click(_form(click), FORM) == DecidingClick(
        "approve", "U0ALICE", "T0TEAM", "https://hooks.slack.com/actions/T0/1/abc"
    )
    home = {**click, "response_url": None, "team": {"id": "T0OTHER"}}
    assert deciding_click(_form(home), FORM) == DecidingClick("approve", "U0ALICE", "T0OTHER", None)
    not_deciding = [
        _form({**click, "actions": [{"action_id": "reject"}]}),  # opens a modal: decides nothing
        _form({**click, "type": "view_submission"}),  # modals take their turn in their listener
        _form({**click, "actions": []}),
        _form({**click, "actions": [{"action_id": ["approve"]}]}),  # unhashable: not a 500 (found by fuzz_inputs)
        _form({**click, "actions": [{"action_id": {"approve": 1}}]}),
        _form([1, 2]),
        b"payload=%7Bnot+json",
        b"command=%2Fcountersign&text=run",
    ]
    assert [deciding_click(body, FORM) for body in not_deciding] == [None] * len(not_deciding)
    assert deciding_click(_form(click), "application/json") is None


def test_clicks_waiting_for_a_slot_leave_server_threads_to_answer_the_rest() -> None:
    assert server.THREADS == prefork.THREADS  # waitress (one process) and gunicorn (--workers N)
    assert server.THREADS - DECISION_SLOTS - MAX_WAITING >= 0


def test_a_flood_keeps_the_line_short_where_a_burst_waits_whole() -> None:
    ticks = Ticks(1000.0)
    admission = Admission(budget_s=2.0, slots=4, ticks=ticks)
    admission.hold_s = 0.05  # 4 slots decide 80 clicks a second, 20 a quarter-second
    for _ in range(40):  # a burst: forty clicks at once
        admission._count_arrival()
    ticks.now += 0.25
    assert not admission.flooded()
    admission.waiting = 20
    assert admission._may_wait(left=1.9)  # its turn in 21 x 0.05 / 4 = 0.26 s: it waits

    for _ in range(4):  # a flood: 30 clicks every quarter-second for a second
        for _ in range(30):
            admission._count_arrival()
        ticks.now += 0.25
    assert admission.flooded()
    assert not admission._may_wait(left=1.9)  # 20 already wait: shed at once
    admission.waiting = 3
    assert admission._may_wait(left=1.9)  # a short line still waits
