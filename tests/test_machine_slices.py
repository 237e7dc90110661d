"""Time slices end at the next timer, so interrupts are not late by a whole slice."""

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.machine import MIN_SLICE_US, Machine


def test_slice_ends_at_the_next_timer():
    machine = Machine(configure(cpu=8), clock=Clock(realtime=True), cpus=1)
    for entry in list(machine.clock._timers):     # the PIT's power-on timer, for one
        entry[-1].cancel()
    assert machine._slice(2000) == 2000            # no timer: the full slice
    machine.clock.add_timer(machine.clock.now_ns() + 500_000, lambda: None)
    assert 300 <= machine._slice(2000) <= 500      # cut at the timer, 0.5 ms away
    machine.clock.add_timer(machine.clock.now_ns() - 1, lambda: None)
    assert machine._slice(2000) == MIN_SLICE_US    # overdue: the shortest slice
