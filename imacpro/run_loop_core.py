"""The multi-threaded run loop's core in C (`native/run_loop.c`, built by make into
`devices/_lib/libapic.so` with the local APIC's core): the pick of the next vCPU, its
slice, and the sleep and wake-up of host threads, so that a turn costs no Python (the C
file says why and how it shares its state between threads).

`RunState` is one vCPU's state as C and Python both read it (cpu/vcpu.py keeps its run
state there whichever loop runs it); `RunLoopCore` is one run's loop (host_threads.py).
"""

from __future__ import annotations

import ctypes

from unicorn import x86_const as x
from unicorn.unicorn_py3.unicorn import uclib

from imacpro.devices.apic_core import _lib

# What run_loop_serve answers: the run ends; timers are due; a CPU for Python to make ready
# before it runs; a CPU whose slice ended in something Python handles.
SERVE_STOP, SERVE_TIMERS, SERVE_PREPARE, SERVE_AFTER = range(4)
# What Python hands back with the CPU it had: nothing, run it, let it go.
HAND_NONE, HAND_RUN, HAND_RELEASE = range(3)


class RunState(ctypes.Structure):
    _fields_ = [("state", ctypes.c_int32), ("unmaskable", ctypes.c_int32),
                ("spinning", ctypes.c_int32), ("progressed", ctypes.c_int32),
                ("spinning_since", ctypes.c_int64), ("queued_since", ctypes.c_int64),
                ("running_on", ctypes.c_int64), ("attention", ctypes.c_int32),
                ("index", ctypes.c_int32), ("tsc_generation", ctypes.c_int64),
                ("windows_generation", ctypes.c_int64), ("status", ctypes.c_int32),
                ("claimed", ctypes.c_int32), ("uc", ctypes.c_void_p),
                ("core", ctypes.c_void_p), ("c0", ctypes.c_void_p)]


class HostLoad(ctypes.Structure):
    """Whether other work on the host wants its cores (`native/host_load.c`): an idle worker
    watches for work only while it does not."""
    _fields_ = [("busy_until", ctypes.c_int64), ("busy_windows", ctypes.c_uint64)]


_loop_p = ctypes.c_void_p
for _name, _restype, _argtypes in (
        ("run_loop_new", _loop_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_void_p]),
        ("run_loop_add", ctypes.c_int, [_loop_p, ctypes.POINTER(RunState)]),
        ("run_loop_serve", ctypes.c_int, [_loop_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int,
                                          ctypes.c_int, ctypes.POINTER(ctypes.c_int32)]),
        ("run_loop_defer", ctypes.c_int, [_loop_p, ctypes.c_int]),
        ("run_loop_unhold", None, [_loop_p, ctypes.c_int]),
        ("run_loop_busy", ctypes.c_int, [_loop_p]),
        ("run_loop_set_hold", None, [_loop_p, ctypes.c_int]),
        ("run_loop_wait_quiet", None, [_loop_p]),
        ("run_loop_set_windows_generation", None, [_loop_p, ctypes.c_int64]),
        ("run_loop_set_wake_when_idle", None, [_loop_p, ctypes.c_int]),
        ("run_loop_set_idle_help", None, [_loop_p, ctypes.c_void_p]),
        ("run_loop_stop", None, [_loop_p]),
        ("run_loop_stats", None, [_loop_p, ctypes.POINTER(ctypes.c_int64),
                                  ctypes.POINTER(ctypes.c_int64),
                                  ctypes.POINTER(ctypes.c_uint64)]),
        ("run_loop_wake", None, [_loop_p, ctypes.c_int]),
        ("run_loop_trace", ctypes.c_int64, [_loop_p, ctypes.c_void_p, ctypes.c_int64]),
        ("run_loop_free", None, [_loop_p]),
        ("host_load_note", None, [ctypes.POINTER(HostLoad)]),
        ("host_load_busy", ctypes.c_int, [ctypes.POINTER(HostLoad)]),
        ("host_load_judge", ctypes.c_int, [ctypes.POINTER(HostLoad), ctypes.c_int64,
                                           ctypes.c_int64, ctypes.c_int64])):
    _function = getattr(_lib, _name)
    _function.restype, _function.argtypes = _restype, _argtypes

WAKE = ctypes.cast(_lib.run_loop_wake, ctypes.c_void_p).value


def run_loop_wake(core: RunLoopCore, index: int) -> None:
    """A halted CPU has an interrupt: it runs ahead of the round (any thread)."""
    _lib.run_loop_wake(core.handle, index)


def _address(function) -> int:
    return ctypes.cast(function, ctypes.c_void_p).value


class RunLoopCore:
    """One run's loop over `states` (every vCPU's RunState, in index order), reading guest
    time from `clock_view`; the main thread is woken by a byte written to `wake_fd`."""

    def __init__(self, states: list[RunState], clock_view, wake_fd: int):
        self._states = states                   # kept alive with the loop
        self._clock_view = clock_view
        self.handle = _lib.run_loop_new(
            ctypes.addressof(clock_view), wake_fd, x.UC_X86_REG_RFLAGS,
            _address(uclib.uc_imacpro_run), _address(uclib.uc_imacpro_wait_since),
            _address(uclib.uc_imacpro_queued_since), _address(uclib.uc_reg_read))
        if not self.handle:
            raise MemoryError("the run loop's core")
        for state in states:
            if not _lib.run_loop_add(self.handle, ctypes.byref(state)):
                raise ValueError("too many vCPUs for the run loop's core")

    def serve(self, thread: int, slice_us: int, handed: int, hand: int) -> tuple[int, int]:
        """A worker's turns (called without the machine's lock): what Python must do now,
        and the CPU it has (-1 none)."""
        cpu = ctypes.c_int32(-1)
        answer = _lib.run_loop_serve(self.handle, thread, slice_us, handed, hand,
                                     ctypes.byref(cpu))
        return answer, cpu.value

    def defer(self, index: int) -> bool:
        """True: a worker has the CPU and hands it to Python before it runs again; False:
        it is held for the caller until `unhold`."""
        return bool(_lib.run_loop_defer(self.handle, index))

    def unhold(self, index: int) -> None:
        _lib.run_loop_unhold(self.handle, index)

    def busy(self) -> bool:
        """A CPU runs or may run (idle workers are told of one that waits)."""
        return bool(_lib.run_loop_busy(self.handle))

    def hold(self, on: bool) -> None:
        """A reset or power-off is under way: no CPU is picked."""
        _lib.run_loop_set_hold(self.handle, int(on))

    def wait_quiet(self) -> None:
        """While held: wait until no CPU is claimed and no TSC deadline is being fired (the
        caller stopped the engines and does not hold the machine's lock, which a worker may
        need to hand its CPU back)."""
        _lib.run_loop_wait_quiet(self.handle)

    def wake_when_idle(self, on: bool) -> None:
        """Whether the main thread is woken whenever every CPU waits (on at first)."""
        _lib.run_loop_set_wake_when_idle(self.handle, int(on))

    def idle_help(self, address: int | None) -> None:
        """A C function `int help(void)` an idle worker calls while it watches for work: it
        does a piece of the host's pending work for the machine (the SSD pool's parts) and
        says whether there was any. None: no such work."""
        _lib.run_loop_set_idle_help(self.handle, address)

    def windows_moved(self, generation: int) -> None:
        _lib.run_loop_set_windows_generation(self.handle, generation)

    def stop(self) -> None:
        _lib.run_loop_stop(self.handle)

    def stats(self) -> tuple[int, int, int]:
        """The worst turn's overrun (ns), that turn's CPU time (ns), the turns run."""
        overrun, cpu, turns = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_uint64()
        _lib.run_loop_stats(self.handle, ctypes.byref(overrun), ctypes.byref(cpu),
                            ctypes.byref(turns))
        return overrun.value, cpu.value, turns.value

    def trace(self, capacity: int) -> None:
        """From now on, record up to `capacity` slices' starts and ends (`traced`)."""
        self._trace = (ctypes.c_int32 * capacity)()
        _lib.run_loop_trace(self.handle, self._trace, capacity)

    def traced(self) -> list[tuple[int, bool]]:
        """The slices recorded since `trace`: (CPU, True) as one starts, (CPU, False) as it
        ends, in the order they did; the recording stops."""
        length = _lib.run_loop_trace(self.handle, None, 0)
        return [(entry >> 1, bool(entry & 1)) for entry in self._trace[:length]]

    def close(self) -> None:
        if self.handle:
            _lib.run_loop_free(self.handle)
            self.handle = None
