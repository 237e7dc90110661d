"""The machine's one clock: nanoseconds since power-on, and timers on it.

Every time-keeping device (TSC, LAPIC timer, PIT, HPET, PM timer, RTC update) derives its count
from `now_ns()`, so they agree with each other. Two sources:

- `Clock(realtime=False)`: virtual time moves only when the run loop advances it (by the time the
  vCPUs' executed slices stand for) or warps it to the next timer when every vCPU is idle.
  Deterministic: tests use it.
- `Clock(realtime=True)`: follows the host's monotonic clock, so guest time matches the host's
  wall clock; an idle machine sleeps until its next timer instead of spinning.

Timers are one-shot callbacks run by `run_due()` from the run loop (never from another thread).
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable

NS_PER_S = 1_000_000_000


class Timer:
    __slots__ = ("deadline_ns", "callback", "cancelled")

    def __init__(self, deadline_ns: int, callback: Callable[[], None]):
        self.deadline_ns = deadline_ns
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    def __init__(self, realtime: bool = False):
        self.realtime = realtime
        self._virtual_ns = 0
        self._host_start = time.monotonic_ns()
        self._offset_ns = 0  # realtime: time skipped forward by warp()
        self._timers: list[tuple[int, int, Timer]] = []
        self._seq = itertools.count()

    def now_ns(self) -> int:
        if self.realtime:
            return time.monotonic_ns() - self._host_start + self._offset_ns
        return self._virtual_ns

    def at_host(self, host_monotonic_ns: int) -> int:
        """Guest time at a given host CLOCK_MONOTONIC reading (realtime); now (virtual)."""
        if self.realtime:
            return host_monotonic_ns - self._host_start + self._offset_ns
        return self._virtual_ns

    def advance(self, ns: int) -> None:
        """Virtual mode: let `ns` of guest time pass. Realtime mode: no effect (the host's clock
        moves by itself)."""
        if not self.realtime and ns > 0:
            self._virtual_ns += ns

    def warp_to(self, deadline_ns: int) -> None:
        """Jump forward to `deadline_ns` (idle skip). Never moves time backwards."""
        now = self.now_ns()
        if deadline_ns <= now:
            return
        if self.realtime:
            self._offset_ns += deadline_ns - now
        else:
            self._virtual_ns = deadline_ns

    def add_timer(self, deadline_ns: int, callback: Callable[[], None]) -> Timer:
        timer = Timer(deadline_ns, callback)
        heapq.heappush(self._timers, (deadline_ns, next(self._seq), timer))
        return timer

    def next_deadline(self) -> int | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def run_due(self) -> int:
        """Run every timer whose deadline has passed, in deadline order; returns how many ran."""
        ran = 0
        now = self.now_ns()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
                ran += 1
        return ran
