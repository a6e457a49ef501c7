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
        wakeup.wake()
        loop.join(BOUND_S)
    assert not loop.is_alive()
