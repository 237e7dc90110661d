"""The machine's one lock (QEMU's "big lock"): all of the machine's Python runs under it.

A vCPU's engine runs guest code without it (and without Python's GIL: the engine is C, called
through ctypes); the engine's callbacks into Python (port and MMIO accesses, MSRs, the
interrupt acknowledge) take it, as do the run loop's turns, the timers and the host's events.
So a device model is only ever entered by one thread at a time, whether the machine runs its
vCPUs on one host thread or several (host_threads.py), and needs no locking of its own.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


class BigLock:
    def __init__(self):
        self._lock = threading.RLock()
        # Threads waiting for work under the lock (host_threads.py) wait on conditions of it.
        self.condition = lambda: threading.Condition(self._lock)

    def __enter__(self) -> BigLock:
        self._lock.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self._lock.release()

    @contextmanager
    def released(self):
        """Let go of the lock, every level this thread holds, for the span of the block (an
        engine running guest code); taken back after. A thread not holding it just runs the
        block (a test driving a vCPU directly)."""
        levels = 0
        while self._lock._is_owned():
            self._lock.release()
            levels += 1
        try:
            yield
        finally:
            for _ in range(levels):
                self._lock.acquire()
