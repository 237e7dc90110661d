"""The run loop on several host threads: vCPUs run at the same time, as under QEMU's MTTCG.

    worker 1 ─┐   the C core (run_loop_core.py):      ┌─ engine runs guest code (no lock,
    worker 2 ─┼─ pick a runnable vCPU, run its slice ──┤   no GIL)
      ...    ─┘   halt, spin, wake, sleep              └─ callbacks: devices, under the big lock
          └── Python only when the core hands it work: timers due, a CPU to make ready
              (its TSC, its PCI windows), a slice that ended in a triple fault, an engine
              error, an INIT or SIPI that came while it ran, a hook's exception
    main thread: timers, host events, the watchdog, the end of the run (under the big lock)

A pool of `count` workers (no more than the host's cores: more would only make the host's
scheduler, which knows nothing of guest spinlocks, share them out) takes vCPUs in turn, as
the single-threaded loop (machine.py) does: a slice each, a CPU an interrupt woke from HLT
first, the CPUs whose last slices ended spinning on PAUSE again (in the order they queued)
after another's slice that did something else than wait. A vCPU runs on one worker at a
time. The turns are C's (native/run_loop.c): a worker calls into it without the machine's
big lock or the GIL and stays there, picking CPUs, running their slices and sleeping when
none is runnable, until Python has work; a halted CPU that an IPI from the local APIC's
core wakes is queued there too. Everything in Python runs under the machine's big lock
(big_lock.py); the engines run guest code without it, and their guest atomics are host
atomics (engine.py, `set_parallel`).

Python code that changes a vCPU's run state from another thread goes through the core: an
interrupt for a halted CPU queues it (`run_loop_wake`), an INIT or SIPI, which rewrites its
registers, is applied only while no worker has the CPU (`defer`/`unhold`, vcpu.py), and a
reset or power-off holds every pick (`hold`).

The main thread keeps time: it sleeps until the next timer falls due or the host has input
(a timer armed for sooner, by a device a vCPU drives, wakes it), fires the timers, whose
interrupts reach a running vCPU at its next translated block, and serves the host's events.
The local APICs' TSC deadlines, every CPU's tick and hrtimers under Linux, are not its: the
workers fire them in C (native/tsc_deadline.c, run_loop.c).
When every vCPU waits (halted, or waiting for its SIPI), it lets guest time pass as the
single-threaded loop does (`idle`: sleep or warp).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Callable

from imacpro.cpu.vcpu import State, Vcpu
from imacpro.host_events import HostEvents
from imacpro.run_loop_core import (HAND_NONE, HAND_RELEASE, HAND_RUN, SERVE_AFTER, SERVE_STOP,
                                   WAKE, RunLoopCore, run_loop_wake)
from imacpro.t2 import xts

if TYPE_CHECKING:
    from imacpro.machine import Machine, RunResult

IDLE_POLL_S = 0.01   # the main thread looks at stop(), the deadline and the watchdog this often
# How long a thread that wants Python's GIL waits before asking its holder to let go (CPython's
# switch interval, 5 ms by default), while the workers run. A worker back from its engine, or a
# callback from it, waits for the GIL whenever another thread runs Python, and those stretches
# are short but not always: at 5 ms, one in a hundred wake-ups of a halted CPU took more than
# 400 us. At 200 us (2026-12-04, docs/PERFORMANCE.md) an interrupt's round trip between two
# sleeping CPUs went from 84 to 70 us and a 16-vCPU boot from 15.9-16.3 s to 15.4-15.7 s;
# parallel guest work and the SSD did not move. It is the process's, so it is put back after.
GIL_SWITCH_S = 0.0002


def default_count(vcpus: int) -> int:
    """The host threads `--host-threads auto` gives a machine of `vcpus` CPUs: one per host core
    this process may run on, no more than the vCPUs (a one-CPU machine runs on the
    single-threaded loop: a second thread would only keep time, handing every timer's
    interrupt across threads, which made a one-CPU boot 10-20% slower)."""
    return max(1, min(len(os.sched_getaffinity(0)), vcpus))


class HostThreads:
    def __init__(self, machine: Machine, count: int):
        self.machine = machine
        self.count = count
        self.lock = machine.lock
        self.core: RunLoopCore | None = None    # this run's loop in C
        self._failure: BaseException | None = None   # a worker's, raised by run()
        self._events: HostEvents | None = None

    # --- the workers ----------------------------------------------------------------------

    def _worker(self, slice_us: int) -> None:
        """A worker's life. What escapes it (not a guest's doing: the bus guard keeps those)
        ends the run and is raised from `run`, as the single-threaded loop would."""
        try:
            self._serve(slice_us)
        except BaseException as exc:            # noqa: BLE001 - handed to the main thread
            with self.lock:
                self._failure = self._failure or exc
                self.core.stop()
                self._main_wake()

    def _serve(self, slice_us: int) -> None:
        """The C core runs the turns (run_loop_core.py); it hands the worker what Python
        must do, and the worker does it under the machine's lock."""
        machine, core = self.machine, self.core
        thread = threading.get_ident()
        cpu_index, hand = -1, HAND_NONE
        while True:
            answer, cpu_index = core.serve(thread, slice_us, cpu_index, hand)
            if answer == SERVE_STOP:
                return
            hand = HAND_RUN
            with self.lock:
                # Timers due fire first: the CPU must not read a clock that has moved past
                # them before their interrupts are raised (machine.py, _run_slice).
                machine.clock.run_due()
                if cpu_index < 0:
                    continue
                cpu = machine.vcpus[cpu_index]
                cpu.running_on = thread         # an INIT or SIPI now is applied here
                if answer == SERVE_AFTER:
                    cpu.after_slice()
                    hand = HAND_RELEASE
                    if machine.reset_requested or machine.poweroff_requested or \
                            cpu.state is State.SHUTDOWN:
                        self._main_wake()
                else:
                    if cpu._start_deferred:
                        cpu._start_deferred = False
                        cpu.update_pins()
                    cpu.prepare()

    def _on_wake(self, cpu: Vcpu) -> None:
        """An interrupt came for a halted CPU (from a device, a timer, another CPU)."""
        run_loop_wake(self.core, cpu.index)

    def _main_wake(self) -> None:
        if self._events is not None:
            self._events.wake()

    def _timer_sooner(self, deadline_ns: int) -> None:
        """A timer was armed to fall due before the main thread's wait ends: its wait ends
        then instead. Not a wake-up now: a guest re-arms its timer on most entries to idle
        (a random read's did, once per read), and each wake-up took a core from a worker
        and the machine's lock for a look that found nothing due."""
        events = self._events
        host_ns = self.machine.clock.host_at(deadline_ns)
        if events is None:
            return
        if host_ns is None:
            events.wake()
        else:
            events.wake_at(host_ns)

    # --- the main thread ------------------------------------------------------------------

    def run(self, timeout_s: float | None, stop: Callable[[], bool] | None, slice_us: int,
            events: HostEvents | None) -> RunResult:
        machine = self.machine
        own_events = events is None
        self._events = events = events or HostEvents()
        self.core = core = RunLoopCore([cpu.rs for cpu in machine.vcpus], machine.clock.view,
                                       events.wake_fd)
        core.windows_moved(machine.mmio.generation)
        # A worker watching for guest work decrypts the SSD's parts meanwhile: the pool's
        # helpers run at the host's idle priority, so a watching worker keeps them off its core.
        core.idle_help(xts.pool_help_address())
        # Only a warp needs the main thread when every CPU waits; in real time it sleeps
        # until its next timer (or host input) and looks at the rest every IDLE_POLL_S.
        core.wake_when_idle(machine.idle == "warp")
        for cpu in machine.vcpus:
            cpu.on_wake = self._on_wake
            cpu.run_loop = core
        machine.run_loop = core
        machine.apic_bus.cores.wake_in_c(WAKE, core.handle)
        clock = machine.clock
        clock.on_slice_cut = self._timer_sooner
        workers = [threading.Thread(target=self._worker, args=(slice_us,),
                                    name=f"imacpro-vcpus-{n}", daemon=True)
                   for n in range(self.count)]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        switch_s = sys.getswitchinterval()
        with self.lock:
            sys.setswitchinterval(GIL_SWITCH_S)
            core.hold(machine.reset_requested or machine.poweroff_requested)
            for worker in workers:
                worker.start()
            try:
                return self._keep_time(deadline, stop, events, own_events)
            finally:
                core.stop()
                clock.slice_end_ns = None
                for cpu in machine.vcpus:
                    cpu.uc.emu_stop()
                with self.lock.released():
                    for worker in workers:
                        worker.join()
                self._note_overrun()
                machine.apic_bus.cores.wake_in_python()
                machine.run_loop = None
                clock.on_slice_cut = machine._cut_slice
                for cpu in machine.vcpus:
                    cpu.on_wake = machine._woken.setdefault
                    cpu.run_loop = None
                    cpu.running_on = None
                core.close()
                self.core = None
                self._events = None
                if own_events:
                    events.close()
                sys.setswitchinterval(switch_s)

    def _note_overrun(self) -> None:
        """The C core's worst turn, as the machine's statistics keep it (watchdog.py)."""
        overrun, cpu_ns, _turns = self.core.stats()
        machine = self.machine
        if overrun > machine.max_slice_overrun_ns:
            machine.max_slice_overrun_ns = overrun
            machine.max_slice_overrun_cpu_ns = cpu_ns

    def _keep_time(self, deadline: float | None, stop: Callable[[], bool] | None,
                   events: HostEvents, own_events: bool) -> RunResult:
        """The main thread's loop: `own_events` says no host input can come (the events are
        this run's own, for waking it)."""
        from imacpro.machine import RunResult
        machine, clock = self.machine, self.machine.clock
        while True:
            if self._failure is not None:
                raise self._failure
            clock.run_due()
            ended = machine.guest_ended() or machine.host_ended(events, stop, deadline)
            if ended is not None:
                return ended
            self._note_overrun()
            busy = self.core.busy()     # (and a CPU that became runnable unannounced runs)
            if not busy and machine.bsp.state is State.SHUTDOWN:
                return RunResult("shutdown", machine.bsp.shutdown_reason)
            next_ns = clock.next_deadline()
            if not busy and next_ns is None and stop is None and own_events:
                return RunResult("halted", "every CPU is halted and no timer is armed")
            if not busy and next_ns is not None and machine.idle == "warp":
                clock.warp_to(next_ns)
                continue
            # The local APICs' TSC deadlines are the workers' to fire (run_loop.c): this
            # thread waits for the clock's own timers only.
            wait_s = IDLE_POLL_S
            own_ns = clock.next_timer()
            if own_ns is not None:
                wait_s = min(wait_s, max(0.0, (own_ns - clock.now_ns()) / 1e9))
            if deadline is not None:
                wait_s = min(wait_s, max(0.0, deadline - time.monotonic()))
            # A timer armed meanwhile for sooner wakes this thread (clock.on_slice_cut).
            clock.slice_end_ns = clock.now_ns() + int(wait_s * 1e9)
            events.poll(wait_s, unlocked=self.lock.released)
            clock.slice_end_ns = None

