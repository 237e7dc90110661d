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

    def __enter__(self) -> BigLock:
        self._lock.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self._lock.release()

    def condition(self) -> threading.Condition:
        """A condition of this lock, for threads that wait for work under it."""
        return threading.Condition(self._lock)

    @contextmanager
    def released(self):
        """Let go of the lock, every level this thread holds, for the span of the block (an
        engine running guest code); taken back after. A thread not holding it just runs the
        block (a test driving a vCPU directly)."""
        saved = self.release_all()
        try:
            yield
        finally:
            self.restore(saved)

    def release_all(self):
        """`released` without a context manager, for the run loop's every slice: let go of
        every level this thread holds; what `restore` takes back (None: none held)."""
        if not self._lock._is_owned():
            return None
        return self._lock._release_save()     # what Condition.wait uses: all levels at once

    def restore(self, saved) -> None:
        if saved is not None:
            self._lock._acquire_restore(saved)
