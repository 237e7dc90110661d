"""MMIO dispatch: guest-physical ranges owned by devices, mapped into every vCPU.

Unicorn calls back on each access to an `mmio_map`ped range; the callback forwards to the
device's read/write with the offset inside its range. Ranges are page aligned (Unicorn maps
whole pages); a device smaller than its page sees offsets past its end and ignores them, as
its own docstring says. The local APIC is per CPU and mapped by the vCPU itself. A device's
exception on an access is the guard's (guest_errors.py): reads return all ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from imacpro.bus.guest_errors import GuestErrors

PAGE = 0x1000


@dataclass(frozen=True)
class MmioRegion:
    base: int
    size: int
    device: object


class MmioBus:
    def __init__(self, errors: GuestErrors | None = None):
        self.regions: list[MmioRegion] = []
        self.errors = errors or GuestErrors()

    def register(self, base: int, size: int, device) -> None:
        size = (size + PAGE - 1) & ~(PAGE - 1)
        if base % PAGE:
            raise ValueError(f"MMIO base {base:#x} is not page aligned")
        for r in self.regions:
            if base < r.base + r.size and r.base < base + size:
                raise ValueError(f"MMIO {base:#x}+{size:#x} overlaps {r.device!r}")
        self.regions.append(MmioRegion(base, size, device))

    def map_into(self, uc) -> None:
        for r in self.regions:
            map_device(uc, r.base, r.size, r.device, self.errors)


def map_device(uc, base: int, size: int, device, errors: GuestErrors) -> None:
    def read(_uc, offset, size, _data):
        try:
            return device.read(offset, size)
        except Exception:
            errors.record(device, "read", base + offset, size)
            return (1 << (8 * size)) - 1

    def write(_uc, offset, size, value, _data):
        try:
            device.write(offset, size, value)
        except Exception:
            errors.record(device, "write", base + offset, size)

    uc.mmio_map(base, size, read, None, write, None)
