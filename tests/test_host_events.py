"""The run loop's host side (host_events.py): a wait whose end another thread moves sooner."""

import threading
import time

from imacpro.clock import Clock
from imacpro.host_events import HostEvents


def test_a_wait_ends_when_another_thread_says_without_a_wake_up_before_then():
    events = HostEvents()
    try:
        start = time.monotonic_ns()
        at = start + 50_000_000                      # 50 ms from now
        mover = threading.Thread(target=events.wake_at, args=(at,))
        mover.start()
        mover.join()                                 # moved before the wait: it still holds
        events.poll(30.0)
        ended = time.monotonic_ns()
        assert ended >= at                           # a timerfd never fires early
        assert ended - start < 25_000_000_000        # and the 30 s wait did not run out

        events.wake_at(time.monotonic_ns() - 1)      # a time that has passed: at once
        start = time.monotonic_ns()
        events.poll(30.0)
        assert time.monotonic_ns() - start < 25_000_000_000
    finally:
        events.close()


def test_the_clock_says_when_the_host_reaches_a_guest_time():
    clock = Clock(realtime=True)
    now = clock.now_ns()
    assert clock.at_host(clock.host_at(now + 123_456)) == now + 123_456
    clock.warp_to(now + 10**9)                       # a warp moves the relation
    assert clock.at_host(clock.host_at(now + 2 * 10**9)) == now + 2 * 10**9
    assert Clock(realtime=False).host_at(5) is None  # virtual time has no host time
