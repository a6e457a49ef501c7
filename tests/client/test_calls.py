"""How the decorator turns a call into params and the approved params back into a call, and
what each state means to it (pure: no server)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from countersign_client import Action, CountersignError, Expired, NotApproved, Rejected
from countersign_client.action import outcome
from countersign_client.decorator import approved_call, call_params, jsonable
from countersign_client.protocol import WaitPlan


def restart(service: str, region: str = "eu", *, force: bool = False) -> str:
    return f"{service} {region} {force}"


def positional(a: int, /, b: int, *rest: int, c: int = 3, **extra: Any) -> tuple[Any, ...]:
    return a, b, rest, c, extra


def test_the_call_arguments_become_params_by_name_with_defaults() -> None:
    signature = inspect.signature(restart)
    assert call_params(signature, ("api",), {}) == {"service": "api", "region": "eu", "force": False}
    assert call_params(signature, (), {"service": "db", "force": True}) == {
        "service": "db",
        "region": "eu",
        "force": True,
    }


def test_star_args_are_a_list_and_star_kwargs_merge_in_by_name() -> None:
    params = call_params(inspect.signature(positional), (1, 2, 7, 8), {"colour": "red"})
    assert params == {"a": 1, "b": 2, "rest": [7, 8], "c": 3, "colour": "red"}


@pytest.mark.parametrize("function", [restart, positional])
def test_the_approved_params_make_the_same_call_back(function: Any) -> None:
    signature = inspect.signature(function)
    args = ("api", "us") if function is restart else (1, 2, 7, 8)
    bound = signature.bind(*args)
    params = call_params(signature, bound.args, bound.kwargs)
    again = approved_call(signature, params)
    assert call_params(signature, again.args, again.kwargs) == params


def test_an_edit_reaches_the_call() -> None:
    call = approved_call(inspect.signature(restart), {"service": "api", "region": "ap", "force": True})
    assert (call.args, call.kwargs) == (("api", "ap"), {"force": True})


def test_approved_params_the_function_cannot_take_are_refused_before_anything_runs() -> None:
    with pytest.raises(CountersignError, match=r"do not fit the function: unexpected \['colour'\]"):
        approved_call(inspect.signature(restart), {"service": "api", "colour": "red"})
    with pytest.raises(CountersignError, match="do not fit the function: missing a required argument: 'service'"):
        approved_call(inspect.signature(restart), {"region": "us"})


def test_a_result_is_reported_as_a_json_object_and_as_its_repr_when_json_cannot_carry_it() -> None:
    assert jsonable({"ok": [1, 2.5, None]}) == {"ok": [1, 2.5, None]}
    assert jsonable("restarted api") == {"value": "restarted api"}  # the server takes only an object
    assert jsonable([1, 2]) == {"value": [1, 2]}
    assert jsonable(None) == {"value": None}
    assert jsonable({1, 2}) == {"value": "{1, 2}"}
    assert jsonable(float("nan")) == {"value": "nan"}
    assert jsonable({"at": object}) == {"value": repr({"at": object})}


def test_an_action_reads_the_servers_answer_and_names_what_is_missing() -> None:
    action = Action.from_json(
        {
            "action_id": "act_1",
            "state": "approved",
            "params": {"service": "api"},
            "params_hash": "ab" * 32,
            "decided_by": "U0ALICE",
            "decided_at": "2026-12-07T14:00:00+00:00",
            "reason": None,
            "extra": 1,
        }
    )
    assert (action.params, action.decided_by, action.decided_at and action.decided_at.hour) == (
        {"service": "api"},
        "U0ALICE",
        14,
    )
    assert action.decided and action.raw["extra"] == 1
    assert not Action.from_json({"action_id": "act_1", "state": "scheduled"}).decided
    with pytest.raises(ValueError, match="needs text `action_id` and `state`"):
        Action.from_json({"action_id": "act_1"})
    with pytest.raises(ValueError, match="got list"):
        Action.from_json([])


@pytest.mark.parametrize(
    ("state", "reason", "error", "message"),
    [
        ("rejected", "not during the freeze", Rejected, "not during the freeze"),
        ("vetoed", "wrong region", Rejected, "wrong region"),
        ("vetoed", None, Rejected, "vetoed"),
        ("expired", None, Expired, "act_1 expired undecided"),
        ("unknown", None, NotApproved, "act_1 is unknown, not approved to run"),
    ],
)
def test_each_end_without_approval_is_its_error(state: str, reason: str | None, error: type, message: str) -> None:
    action = Action("act_1", state, reason=reason)
    with pytest.raises(error, match=message) as raised:
        outcome(action)
    assert raised.value.action is action
    if isinstance(raised.value, Rejected):
        assert raised.value.reason == message


def test_an_approved_action_may_run() -> None:
    action = Action("act_1", "approved", params={"service": "api"})
    assert outcome(action) is action


def test_a_wait_asks_for_what_is_left_at_most_a_minute_and_pauses_when_answered_early() -> None:
    unlimited = WaitPlan(None)
    assert (unlimited.next_wait(), unlimited.over()) == (60, False)
    assert [unlimited.pause_after_failure() for _ in range(6)] == [0.5, 1.0, 2.0, 5.0, 5.0, 5.0]
    assert unlimited.answered(asked_s=60, took_s=0.01) == 1.0  # undecided at once: not a tight loop
    assert unlimited.answered(asked_s=60, took_s=60.0) == 0.0  # the whole wait: ask again now
    assert unlimited.pause_after_failure() == 0.5  # an answer resets the backoff
    short = WaitPlan(2.5)
    assert short.next_wait() == 3  # rounded up: the wait ends at most a second after its timeout
    assert short.pause_after_failure() == 0.5
    assert WaitPlan(0.2).pause_after_failure() is None  # no time for a pause: the failure is raised
    with pytest.raises(ValueError, match="at least 0 seconds"):
        WaitPlan(-1)
