"""A turn that runs past its time is measured on either run loop: the watchdog's statistics
(`imacpro status --json`, the soak's log) report the worst overrun and the run-loop thread's
CPU time in it, which tells device work from a host that did not run the thread.

The program writes once to a port whose device takes 150 ms of host time to answer (a slow
device model, a write the host throttles); a turn is 2 ms. Until the multi-threaded loop
measured its turns too, it reported 0 ms whatever happened.
"""

import time

import pytest
from baremetal import run_program

from imacpro.watchdog import interrupt_stats

SLOW_PORT = 0x510        # no device of the board's owns it
SLOW_S = 0.150

PROGRAM = r"""
main:
    mov $SLOW_PORT, %dx
    out %al, (%dx)
    jmp finish
""".replace("SLOW_PORT", str(SLOW_PORT))


class SlowDevice:
    def __init__(self, busy: bool):
        self.busy = busy

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if not self.busy:
            time.sleep(SLOW_S)       # the host blocks the thread: little CPU time in the turn
            return
        end = time.thread_time() + SLOW_S
        while time.thread_time() < end:
            pass                     # device work: the thread's CPU time (and so at least as
                                     # long in host time, however loaded the host)


@pytest.mark.parametrize("host_threads", [1, 2])
@pytest.mark.parametrize("busy", [True, False], ids=["device-work", "host-blocked"])
def test_a_slow_port_write_shows_as_the_worst_overrun(host_threads, busy):
    values, output, machine, result = run_program(
        PROGRAM, cpus=2, host_threads=host_threads,
        setup=lambda machine: machine.pio.register(SLOW_PORT, 1, SlowDevice(busy)))
    assert "DONE" in output, (result, output[-500:])
    stats = interrupt_stats(machine)
    assert stats["max_slice_overrun_ms"] >= SLOW_S * 1000 - 2, stats
    if busy:
        assert stats["max_slice_overrun_cpu_ms"] >= SLOW_S * 1000 - 2, stats
    else:
        assert stats["max_slice_overrun_cpu_ms"] < SLOW_S * 1000 / 2, stats
