"""Port I/O dispatch: the 64 Ki x86 I/O ports, each owned by at most one device.

A lookup table per port keeps dispatch O(1) on the vCPU's IN/OUT path. Ports nobody owns read
as all ones and ignore writes, as on a PC's LPC bus. A device's exception on an access is the
guard's (guest_errors.py): the read returns all ones, the machine goes on.
"""

from __future__ import annotations

import logging

from imacpro.bus.guest_errors import GuestErrors

log = logging.getLogger(__name__)

PORT_COUNT = 0x10000


class PortIoBus:
    def __init__(self, errors: GuestErrors | None = None):
        self._owner: list[tuple[object, int] | None] = [None] * PORT_COUNT
        self.errors = errors or GuestErrors()

    def register(self, base: int, size: int, device) -> None:
        for port in range(base, base + size):
            if self._owner[port] is not None:
                raise ValueError(f"I/O port {port:#x} already taken by {self._owner[port][0]!r}")
        for port in range(base, base + size):
            self._owner[port] = (device, base)

    def read(self, port: int, size: int) -> int:
        owner = self._owner[port & 0xFFFF]
        if owner is None:
            return (1 << (8 * size)) - 1
        device, base = owner
        try:
            return device.read(port - base, size) & ((1 << (8 * size)) - 1)
        except Exception:
            self.errors.record(device, "in", port, size)
            return (1 << (8 * size)) - 1

    def write(self, port: int, size: int, value: int) -> None:
        owner = self._owner[port & 0xFFFF]
        if owner is None:
            log.debug("write to unowned port %#x (%d bytes) = %#x", port, size, value)
            return
        device, base = owner
        try:
            device.write(port - base, size, value & ((1 << (8 * size)) - 1))
        except Exception:
            self.errors.record(device, "out", port, size)
