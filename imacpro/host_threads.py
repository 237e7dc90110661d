"""The run loop on several host threads: vCPUs run at the same time, as under QEMU's MTTCG.

    worker 1 ─┐                            ┌─ engine runs guest code (no lock, no GIL)
    worker 2 ─┼─ pick a runnable vCPU ─────┤
      ...    ─┘   (under the big lock)     └─ callbacks: devices, under the big lock
    main thread: timers, host events, the watchdog, the end of the run (under the big lock)

A pool of `count` workers (no more than the host's cores: more would only make the host's
scheduler, which knows nothing of guest spinlocks, share them out) takes vCPUs in turn, as
the single-threaded loop (machine.py) does: a slice each, a CPU an interrupt woke from HLT
first, the CPUs whose last slices ended spinning on PAUSE again (in the order they queued)
after another's slice that did something else than wait. A vCPU runs on one worker at a
time. Everything in Python runs under the machine's big
lock (big_lock.py); the engines run guest code without it, and their guest atomics are host
atomics (engine.py, `set_parallel`).

The main thread keeps time: it sleeps until the next timer falls due or the host has input
(a timer armed for sooner, by a device a vCPU drives, wakes it), fires the timers, whose
interrupts reach a running vCPU at its next translated block, and serves the host's events.
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
        self._work = machine.lock.condition()    # workers wait here for a runnable vCPU
        self._stopping = False
        self._claimed: set[Vcpu] = set()
        self._next: dict[Vcpu, None] = {}       # to run ahead of the round: woken, spinners
        self._batch: dict[Vcpu, None] = {}      # those queued before the round's last pick
        self._round = 0
        self._idle_workers = 0
        self._failure: BaseException | None = None   # a worker's, raised by run()
        self._events: HostEvents | None = None

    # --- the workers ----------------------------------------------------------------------

    def _pick(self) -> Vcpu | None:
        """The CPUs queued ahead run once each between two picks of the round, as the
        single-threaded loop runs them between two slices of its round: queued ahead every
        time, they kept the round from moving, and a CPU preempted in its turn holding a
        lock with interrupts off waited for all of them again and again (36 vCPUs on two
        threads booted in 372 s, against 54 s on one)."""
        cpu = self._first(self._batch)
        if cpu is not None:
            return cpu
        cpus = self.machine.vcpus
        for k in range(len(cpus)):
            cpu = cpus[(self._round + k) % len(cpus)]
            if cpu not in self._claimed and cpu.runnable():
                self._round = (self._round + k + 1) % len(cpus)
                self._batch, self._next = self._next, self._batch
                return cpu
        return self._first(self._next)        # nothing in the round: no one to wait for

    def _first(self, queue: dict[Vcpu, None]) -> Vcpu | None:
        for cpu in list(queue):
            del queue[cpu]
            if cpu not in self._claimed and cpu.runnable():
                return cpu
        return None

    def _worker(self, slice_us: int) -> None:
        """A worker's life. What escapes it (not a guest's doing: the bus guard keeps those)
        ends the run and is raised from `run`, as the single-threaded loop would."""
        try:
            self._serve(slice_us)
        except BaseException as exc:            # noqa: BLE001 - handed to the main thread
            with self.lock:
                self._failure = self._failure or exc
                self._stopping = True
                self._work.notify_all()
                self._main_wake()

    def _serve(self, slice_us: int) -> None:
        machine = self.machine
        with self.lock:
            while not self._stopping:
                cpu = None if machine.reset_requested or machine.poweroff_requested \
                    else self._pick()
                if cpu is None:
                    if not self._claimed:
                        self._main_wake()       # every CPU waits: time may pass now
                    self._idle_workers += 1
                    self._work.wait()
                    self._idle_workers -= 1
                    continue
                self._claimed.add(cpu)
                try:
                    # Timers due fire first: the CPU must not read a clock that has moved
                    # past them before their interrupts are raised (machine.py, _run_slice).
                    machine.clock.run_due()
                    turn_end = time.monotonic_ns() + slice_us * 1000
                    turn_cpu = time.thread_time_ns()
                    cpu.run(slice_us)
                    machine.note_turn_end(turn_end, turn_cpu)
                finally:
                    self._claimed.discard(cpu)
                if cpu.progressed:
                    for other in machine.spinners(after=cpu):
                        self._next.setdefault(other)
                if machine.reset_requested or machine.poweroff_requested or \
                        cpu.state is State.SHUTDOWN:
                    self._main_wake()
                if cpu.runnable():
                    self._work.notify()         # another worker may be waiting for it

    def _on_wake(self, cpu: Vcpu) -> None:
        """An interrupt came for a halted CPU (from a device, a timer, another CPU)."""
        self._next.setdefault(cpu)
        self._work.notify()

    def _main_wake(self) -> None:
        if self._events is not None:
            self._events.wake()

    # --- the main thread ------------------------------------------------------------------

    def run(self, timeout_s: float | None, stop: Callable[[], bool] | None, slice_us: int,
            events: HostEvents | None) -> RunResult:
        machine = self.machine
        own_events = events is None
        self._events = events = events or HostEvents()
        for cpu in machine.vcpus:
            cpu.on_wake = self._on_wake
        clock = machine.clock
        clock.on_slice_cut = lambda _deadline: self._main_wake()
        workers = [threading.Thread(target=self._worker, args=(slice_us,),
                                    name=f"imacpro-vcpus-{n}", daemon=True)
                   for n in range(self.count)]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        switch_s = sys.getswitchinterval()
        with self.lock:
            self._stopping = False
            sys.setswitchinterval(GIL_SWITCH_S)
            for worker in workers:
                worker.start()
            try:
                return self._keep_time(deadline, stop, events, own_events)
            finally:
                self._stopping = True
                clock.slice_end_ns = None
                self._work.notify_all()
                for cpu in machine.vcpus:
                    cpu.uc.emu_stop()
                with self.lock.released():
                    for worker in workers:
                        worker.join()
                clock.on_slice_cut = machine._cut_slice
                for cpu in machine.vcpus:
                    cpu.on_wake = machine._woken.setdefault
                self._events = None
                if own_events:
                    events.close()
                sys.setswitchinterval(switch_s)

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
            waiting = [cpu for cpu in machine.vcpus
                       if cpu not in self._claimed and cpu.runnable()]
            busy = bool(self._claimed or waiting)
            if waiting and self._idle_workers:
                self._work.notify(len(waiting))  # a CPU that became runnable unannounced
            elif not busy and machine.bsp.state is State.SHUTDOWN:
                return RunResult("shutdown", machine.bsp.shutdown_reason)
            next_ns = clock.next_deadline()
            if not busy and next_ns is None and stop is None and own_events:
                return RunResult("halted", "every CPU is halted and no timer is armed")
            if not busy and next_ns is not None and machine.idle == "warp":
                clock.warp_to(next_ns)
                continue
            wait_s = IDLE_POLL_S
            if next_ns is not None:
                wait_s = min(wait_s, max(0.0, (next_ns - clock.now_ns()) / 1e9))
            if deadline is not None:
                wait_s = min(wait_s, max(0.0, deadline - time.monotonic()))
            # A timer armed meanwhile for sooner wakes this thread (clock.on_slice_cut).
            clock.slice_end_ns = clock.now_ns() + int(wait_s * 1e9)
            events.poll(wait_s, unlocked=self.lock.released)
            clock.slice_end_ns = None

