"""The time slice's timer: a POSIX timer of the host thread that runs the slice, whose signal
stops the engine (cpu/engine.py, the engine patch's uc.c).

The signal can land anywhere in that thread: inside a device callback (here a port read
that sleeps past the slice's end), where the slice must end once the callback returns and
not before; a thread that ran slices and ends takes its timer with it.
"""

import os
import threading
import time

import pytest

from imacpro.cpu.engine import Engine  # first: it points the unicorn binding at our engine
import unicorn  # noqa: E402, I001
from unicorn import x86_const as x  # noqa: E402

CODE = 0x1000
# Real mode: IN AL, 0x80 (a device callback), then JMP to itself for good.
IN_THEN_SPIN = bytes([0xE4, 0x80, 0xEB, 0xFE])
SPIN = bytes([0xEB, 0xFE])
RESCUE_S = 20  # a slice still running after this lost its timer's signal: stop it, and fail


def engine_with(code: bytes) -> Engine:
    engine = Engine(lambda: -1, lambda *_: (0, None))
    engine.uc.mem_map(0, 0x10000, unicorn.UC_PROT_ALL)
    engine.uc.mem_write(CODE, code)
    return engine


def run_slice(engine: Engine, timeout_us: int) -> bool:
    """One slice from CODE; False if it had to be rescued (its timer never stopped it)."""
    rescued = threading.Event()
    done = threading.Event()

    def rescue():
        if not done.wait(RESCUE_S):
            rescued.set()
            engine.uc.emu_stop()

    rescuer = threading.Thread(target=rescue)
    rescuer.start()
    engine.power_on()
    engine.uc.reg_write(x.UC_X86_REG_CS, 0)
    engine.uc.emu_start(CODE, 0xFFFF_FFFF, timeout=timeout_us)
    done.set()
    rescuer.join()
    return not rescued.is_set()


def test_a_slice_that_runs_out_in_a_device_callback_ends_when_the_callback_returns():
    engine = engine_with(IN_THEN_SPIN)
    reads = []

    def port_read(uc, port, size, _data):
        started = time.monotonic()
        time.sleep(0.03)                       # the slice's 1 ms runs out in here
        reads.append(time.monotonic() - started)
        return 0x5A

    engine.uc.hook_add(unicorn.UC_HOOK_INSN, port_read, None, 1, 0, x.UC_X86_INS_IN)
    for _ in range(100):     # a busy host can end the slice before it reaches the IN: again
        assert run_slice(engine, timeout_us=1000)
        if reads:
            break
    assert len(reads) == 1 and reads[0] >= 0.03   # the callback finished its work
    assert engine.uc.reg_read(x.UC_X86_REG_AL) == 0x5A
    assert engine.register(x.UC_X86_REG_RIP) == CODE + 2   # stopped in the loop after it


def test_many_slices_on_one_thread_each_end_by_their_own_time():
    engines = [engine_with(SPIN) for _ in range(3)]
    for _ in range(20):
        for engine in engines:
            assert run_slice(engine, timeout_us=200)


@pytest.mark.skipif(not os.path.exists("/proc/self/timers"), reason="no /proc/self/timers")
def test_a_thread_that_ran_slices_takes_its_timer_with_it():
    def timers() -> int:
        with open("/proc/self/timers") as listing:
            return sum(line.startswith("ID:") for line in listing)

    engine = engine_with(SPIN)
    before = timers()
    for _ in range(30):
        worker = threading.Thread(target=run_slice, args=(engine, 100))
        worker.start()
        worker.join()
    # Python's join returns when the thread's interpreter state is gone, a moment before the
    # host thread ends and runs its key destructors: wait for the last one. A leak would leave
    # thirty timers behind, and the wait would never see the count come back.
    deadline = time.monotonic() + 30
    while timers() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert timers() == before
