"""The machine's one clock: nanoseconds since power-on, and timers on it.

Every time-keeping device (TSC, LAPIC timer, PIT, HPET, PM timer, RTC update) derives its count
from `now_ns()`, so they agree with each other. Two sources:

- `Clock(realtime=False)`: virtual time moves only when the run loop advances it (by the time the
  vCPUs' executed slices stand for) or warps it to the next timer when every vCPU is idle.
  Deterministic: tests use it.
- `Clock(realtime=True)`: follows the host's monotonic clock, so guest time matches the host's
  wall clock; an idle machine sleeps until its next timer instead of spinning.

A device owns its timers: `clock.timer(callback)` gives a handle the device arms at a deadline,
re-arms and cancels; the handle's `deadline_ns` is plain state (None when idle), so a device
saves it and re-arms it on load. Callbacks run from `run_due()` in the run loop (never from
another thread). A timer armed while a vCPU runs, due before its slice ends, ends the slice
then (`slice_end_ns`, `on_slice_cut`): the LAPIC timer a guest arms for 50 µs fires in 50 µs.

Timers kept in C count as the clock's too: the local APICs' TSC deadlines (devices/
apic_core.py, native/tsc_deadline.c) are a deadline source (`watch`) whose earliest deadline
`next_deadline()` includes and whose due deadlines `run_due()` fires. C arms and fires them
by itself as well: it ends the arming CPU's slice by then (`ClockView.cuts` counts those
ends), and the multi-threaded run loop fires them between slices.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import time
from typing import Callable

NS_PER_S = 1_000_000_000
NO_TIMER = 2**63 - 1  # ClockView.next_timer_ns with no timer armed
COMPACT_MIN = 256   # the timer heap drops stale entries when it grows past this (and doubles)


class Timer:
    """A one-shot timer owned by a device: armed at one deadline at a time."""

    __slots__ = ("_clock", "callback", "deadline_ns", "_generation")

    def __init__(self, clock: Clock, callback: Callable[[], None]):
        self._clock = clock
        self.callback = callback
        self.deadline_ns: int | None = None
        self._generation = 0    # heap entries of an earlier arming are stale

    @property
    def armed(self) -> bool:
        return self.deadline_ns is not None

    def arm(self, deadline_ns: int) -> None:
        """Fire at `deadline_ns` (replacing any earlier deadline); a past deadline fires at the
        next `run_due()`."""
        if deadline_ns == self.deadline_ns:
            return              # already armed there (devices re-arm on every register write)
        self._generation += 1
        self.deadline_ns = deadline_ns
        clock = self._clock
        clock._push(deadline_ns, self, self._generation)
        if clock.slice_end_ns is not None and deadline_ns < clock.slice_end_ns:
            clock.slice_end_ns = deadline_ns
            clock.on_slice_cut(deadline_ns)

    def cancel(self) -> None:
        self._generation += 1
        self.deadline_ns = None

    def arm_from(self, deadline_ns: int | None) -> None:
        """Load: armed at a saved deadline, or idle."""
        if deadline_ns is None:
            self.cancel()
        else:
            self.arm(deadline_ns)


class ClockView(ctypes.Structure):
    """The clock as C code reads it (the local APIC's core, devices/apic_core.py; the run
    loop's, run_loop_core.py): realtime, guest ns = CLOCK_MONOTONIC ns + offset_ns; else
    virtual_ns. `generation` is the clock's; no timer falls due before `next_timer_ns`;
    `cuts` counts the slices C ended sooner for a deadline armed in them."""
    _fields_ = [("realtime", ctypes.c_int64), ("offset_ns", ctypes.c_int64),
                ("virtual_ns", ctypes.c_int64), ("generation", ctypes.c_int64),
                ("next_timer_ns", ctypes.c_int64), ("cuts", ctypes.c_uint64)]


class Clock:
    def __init__(self, realtime: bool = False):
        self.realtime = realtime
        self.view = ClockView(realtime=int(realtime), next_timer_ns=NO_TIMER)
        # Counts the changes of guest time's relation to the host's (a warp, a load, virtual
        # time advanced): what was derived from that relation (a vCPU's TSC anchor) is old.
        self.generation = 0
        self._virtual_ns = 0
        self._host_start = time.monotonic_ns()
        self._offset_ns = 0  # realtime: time skipped forward by warp()
        self._sync_view()
        self._timers: list[tuple[int, int, int, Timer]] = []
        self._seq = itertools.count()
        self._compact_at = COMPACT_MIN
        self._sources: list = []    # deadlines kept in C (`watch`)
        # While a vCPU runs a slice (realtime): when it ends, and what ends it sooner when a
        # timer is armed to fall due before that (the run loop's; machine.py).
        self.slice_end_ns: int | None = None
        self.on_slice_cut: Callable[[int], None] | None = None
        # Called, inside the `except`, when a timer's callback raises (the machine's guard
        # logs it and goes on); None: the exception propagates.
        self.on_error: Callable[[Timer], None] | None = None

    def now_ns(self) -> int:
        if self.realtime:
            return time.monotonic_ns() - self._host_start + self._offset_ns
        return self._virtual_ns

    def at_host(self, host_monotonic_ns: int) -> int:
        """Guest time at a given host CLOCK_MONOTONIC reading (realtime); now (virtual)."""
        if self.realtime:
            return host_monotonic_ns - self._host_start + self._offset_ns
        return self._virtual_ns

    def host_at(self, guest_ns: int) -> int | None:
        """The host CLOCK_MONOTONIC reading at which guest time reads `guest_ns` (realtime; as
        the relation stands now: a warp or a load moves it); None in virtual time."""
        if self.realtime:
            return guest_ns - self._offset_ns + self._host_start
        return None

    def advance(self, ns: int) -> None:
        """Virtual mode: let `ns` of guest time pass. Realtime mode: no effect (the host's clock
        moves by itself)."""
        if not self.realtime and ns > 0:
            self._virtual_ns += ns
            self.view.virtual_ns = self._virtual_ns
            self.generation += 1
            self.view.generation = self.generation

    def warp_to(self, deadline_ns: int) -> None:
        """Jump forward to `deadline_ns` (idle skip). Never moves time backwards."""
        now = self.now_ns()
        if deadline_ns <= now:
            return
        if self.realtime:
            self._offset_ns += deadline_ns - now
        else:
            self._virtual_ns = deadline_ns
        self._sync_view()

    def set_now(self, now_ns: int) -> None:
        """Load: the clock reads `now_ns` from here on (it goes on from a saved machine's time)."""
        if self.realtime:
            self._offset_ns = now_ns - (time.monotonic_ns() - self._host_start)
        else:
            self._virtual_ns = now_ns
        self._sync_view()

    def _sync_view(self) -> None:
        self.generation += 1
        self.view.generation = self.generation
        self.view.offset_ns = self._offset_ns - self._host_start
        self.view.virtual_ns = self._virtual_ns

    # --- timers ---------------------------------------------------------------------------

    def timer(self, callback: Callable[[], None]) -> Timer:
        """A new idle timer that runs `callback` when it fires."""
        return Timer(self, callback)

    def add_timer(self, deadline_ns: int, callback: Callable[[], None]) -> Timer:
        """A timer armed at once (for owners that need no handle to save)."""
        timer = Timer(self, callback)
        timer.arm(deadline_ns)
        return timer

    def watch(self, source) -> None:
        """Timers kept elsewhere count as this clock's: `source.next_deadline()` gives the
        earliest of them (guest ns or None) and how many are armed, `source.fire(now_ns)`
        fires those due (the local APICs' TSC deadlines, devices/apic_core.py)."""
        if all(known is not source for known in self._sources):
            self._sources.append(source)

    def _push(self, deadline_ns: int, timer: Timer, generation: int) -> None:
        heapq.heappush(self._timers, (deadline_ns, next(self._seq), generation, timer))
        if len(self._timers) > self._compact_at:
            # Re-armed and cancelled timers leave entries behind; drop them in one pass.
            self._timers = [entry for entry in self._timers if self._live(entry)]
            heapq.heapify(self._timers)
            self._compact_at = max(COMPACT_MIN, 2 * len(self._timers))
        self._top_moved()

    def _top_moved(self) -> None:
        """The heap's first entry changed: C readers learn when the next timer may be due (a
        stale first entry only makes them ask early)."""
        self.view.next_timer_ns = self._timers[0][0] if self._timers else NO_TIMER

    @staticmethod
    def _live(entry) -> bool:
        _, _, generation, timer = entry
        return generation == timer._generation and timer.deadline_ns is not None

    def next_timer(self) -> int | None:
        """The earliest of this clock's own timers (not the sources')."""
        while self._timers and not self._live(self._timers[0]):
            heapq.heappop(self._timers)
        self._top_moved()
        return self._timers[0][0] if self._timers else None

    def next_deadline(self) -> int | None:
        """The earliest deadline of every timer, the sources' included."""
        next_ns = self.next_timer()
        for source in self._sources:
            ns, _ = source.next_deadline()
            if ns is not None and (next_ns is None or ns < next_ns):
                next_ns = ns
        return next_ns

    def pending(self) -> int:
        """How many timers are armed (stale heap entries are not counted)."""
        return sum(1 for entry in self._timers if self._live(entry)) + \
            sum(source.next_deadline()[1] for source in self._sources)

    def run_due(self) -> int:
        """Run every timer whose deadline has passed: the sources' first, then this clock's in
        deadline order; returns how many ran."""
        now = self.now_ns()
        ran = sum(source.fire(now) for source in self._sources)
        try:
            while self._timers and self._timers[0][0] <= now:
                entry = heapq.heappop(self._timers)
                if self._live(entry):
                    timer = entry[3]
                    timer.deadline_ns = None
                    timer._generation += 1
                    try:
                        timer.callback()
                    except Exception:
                        if self.on_error is None:
                            raise
                        self.on_error(timer)
                    ran += 1
        finally:
            self._top_moved()
        return ran
