"""MMIO dispatch: guest-physical ranges owned by devices, mapped into every vCPU.

Unicorn calls back on each access to an `mmio_map`ped range; the callback forwards to the
device's read/write with the offset inside its range. Ranges are page aligned (Unicorn maps
whole pages); a device smaller than its page sees offsets past its end and ignores them, as
its own docstring says. The local APIC is per CPU and mapped by the vCPU itself.
"""

from __future__ import annotations

from dataclasses import dataclass

PAGE = 0x1000


@dataclass(frozen=True)
class MmioRegion:
    base: int
    size: int
    device: object


class MmioBus:
    def __init__(self):
        self.regions: list[MmioRegion] = []

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
            map_device(uc, r.base, r.size, r.device)


def map_device(uc, base: int, size: int, device) -> None:
    def read(_uc, offset, size, _data):
        return device.read(offset, size)

    def write(_uc, offset, size, value, _data):
        device.write(offset, size, value)

    uc.mmio_map(base, size, read, None, write, None)
