"""The background loop: an idle loop backs off, and a wakeup has it poll again at once."""

from __future__ import annotations

import threading

from agent.worker import Wakeup, work

BOUND_S = 10.0


def test_a_wakeup_makes_a_backed_off_loop_poll_at_once() -> None:
    polls: list[int] = []
    polled = threading.Event()

    def unit() -> bool:
        polls.append(1)
        polled.set()
        return False

    stop, wakeup = threading.Event(), Wakeup()
    # Pauses of an hour: only the wakeup can bring the second poll within the bound.
    loop = threading.Thread(target=work, args=([unit], stop), kwargs={"idle_s": 3600, "wakeup": wakeup})
    loop.start()
    try:
        assert polled.wait(BOUND_S)
        polled.clear()
        while not polled.is_set():  # a wake before the loop waits is lost: repeat until it lands
            wakeup.wake()
            polled.wait(0.05)
        assert len(polls) >= 2
    finally:
        stop.set()
        wakeup.wake(always=True)
        loop.join(BOUND_S)
    assert not loop.is_alive()


def test_requests_wake_the_loops_at_most_once_per_interval_and_a_stop_always() -> None:
    clock = [100.0]
    wakeup = Wakeup(min_interval_s=0.2, now=lambda: clock[0])

    def waiting() -> tuple[threading.Thread, list[bool]]:
        woken: list[bool] = []
        thread = threading.Thread(target=lambda: woken.append(wakeup.wait(BOUND_S)))
        thread.start()
        return thread, woken

    first, woken = waiting()
    while first.is_alive():  # a wake before the waiter waits is lost: repeat (past the interval) until it lands
        clock[0] += 0.3
        wakeup.wake()
        first.join(0.05)
    assert woken == [True]

    second, woken = waiting()
    for _ in range(4):  # within the interval of the last wake: every one of these is dropped
        wakeup.wake()
        second.join(0.05)
    assert second.is_alive() and woken == []
    while second.is_alive():
        wakeup.wake(always=True)  # a stop's wake is never dropped
        second.join(0.05)
    assert woken == [True]

    third, woken = waiting()
    clock[0] += 0.2  # the interval has passed: a request's wake goes through again
    while third.is_alive():
        wakeup.wake()
        third.join(0.05)
        clock[0] += 0.2
    assert woken == [True]
