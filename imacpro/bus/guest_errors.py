"""The guard at the buses: a device model's exception on a guest access never stops the machine.

A device model is written to take any guest access without raising; a bug that slips through
must not take down a user's running machine. Every bus (port I/O, MMIO, the local APIC page,
MSRs, device timers) catches what escapes a device, as QEMU's LOG_GUEST_ERROR channel
reports what it ignores: the access completes (a read returns all ones, a write is dropped),
the first error at each (device, access, register) is logged with its traceback and the rest
are counted. `imacpro status` shows the count; the log is `guest-errors.log` in the bundle.
"""

from __future__ import annotations

import logging
import traceback
from typing import Callable

log = logging.getLogger("imacpro.guest")

MAX_DISTINCT = 1000     # keys remembered; past this every error is counted, none logged


class GuestErrors:
    def __init__(self, write: Callable[[str], None] | None = None):
        """`write(text)`: where the log goes (a file in the bundle); the Python log otherwise."""
        self.count = 0
        self._seen: set[tuple[str, str, int]] = set()
        self._write = write

    def record(self, device: object, access: str, register: int, size: int = 0) -> None:
        """Called from an `except` block: `access` is "read", "write", "rdmsr", "timer"…"""
        self.count += 1
        name = type(device).__name__
        key = (name, access, register)
        if key in self._seen or len(self._seen) >= MAX_DISTINCT:
            return
        self._seen.add(key)
        where = f"{name} {access} at {register:#x}" + (f" ({size} bytes)" if size else "")
        text = f"guest error: {where}: the access completed, the machine goes on\n" + \
            traceback.format_exc()
        if self._write is not None:
            try:
                self._write(text)
                return
            except OSError:
                pass
        log.warning("%s", text.rstrip())

    def read(self, device, offset: int, size: int) -> int:
        """`device.read(offset, size)`, or all ones if it raises."""
        try:
            return device.read(offset, size)
        except Exception:
            self.record(device, "read", offset, size)
            return (1 << (8 * size)) - 1 if 0 < size <= 8 else 0

    def write(self, device, offset: int, size: int, value: int) -> None:
        try:
            device.write(offset, size, value)
        except Exception:
            self.record(device, "write", offset, size)

    def call(self, device, access: str, register: int, function: Callable[[], None]) -> None:
        """Run a device's callback (a timer firing), recording what escapes it."""
        try:
            function()
        except Exception:
            self.record(device, access, register)
