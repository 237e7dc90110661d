"""PCI: the host bridge's configuration access mechanisms and the functions behind them.

Configuration space is reached two ways (PCI Local Bus 3.0 §3.2.2.3.2; PCIe Base 4.0 §7.2.2):
  - ports 0xCF8 (CONFIG_ADDRESS, dword: enable bit 31, bus 23:16, device 15:11, function 10:8,
    register 7:2) and 0xCFC-0xCFF (CONFIG_DATA);
  - ECAM, memory-mapped at layout.ECAM_BASE: offset = bus << 20 | device << 15 | function << 12
    | register (4 KiB per function).
Port 0xCF9 shares the CF8 dword; byte accesses to it go to the chipset's reset control.
Absent functions read as all ones (vendor ID 0xFFFF), the way software detects them.
"""

from __future__ import annotations

import logging
import struct

log = logging.getLogger(__name__)

CONFIG_SPACE = 4096


class PciFunction:
    """A function's configuration space. Subclasses add BARs and capabilities."""

    def __init__(self, vendor: int, device: int, class_code: int, revision: int = 0,
                 subsystem_vendor: int = 0, subsystem: int = 0, header_type: int = 0):
        self.config = bytearray(CONFIG_SPACE)
        struct.pack_into("<HH", self.config, 0x00, vendor, device)
        struct.pack_into("<I", self.config, 0x08, (class_code << 8) | revision)
        self.config[0x0E] = header_type
        struct.pack_into("<HH", self.config, 0x2C, subsystem_vendor, subsystem)
        self._initial = bytes(self.config)
        # Writable bits: command register, cache line size, latency timer, interrupt line.
        self.writable = bytearray(CONFIG_SPACE)
        struct.pack_into("<H", self.writable, 0x04, 0x0547)
        self.writable[0x0C] = self.writable[0x0D] = self.writable[0x3C] = 0xFF

    def reset(self) -> None:
        self.config[:] = self._initial

    def read_config(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def write_config(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            mask = self.writable[offset + i]
            byte = (value >> (8 * i)) & 0xFF
            self.config[offset + i] = (self.config[offset + i] & ~mask) | (byte & mask)


class PciBus:
    """Bus 0: functions by (device, function)."""

    def __init__(self):
        self.functions: dict[tuple[int, int], PciFunction] = {}

    def attach(self, device: int, function: int, fn: PciFunction) -> None:
        self.functions[device, function] = fn

    def reset(self) -> None:
        for fn in self.functions.values():
            fn.reset()

    def read(self, bus: int, device: int, function: int, offset: int, size: int) -> int:
        fn = self.functions.get((device, function)) if bus == 0 else None
        if fn is None or size not in (1, 2, 4) or offset % size or offset + size > CONFIG_SPACE:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFFFFFFFF
        return fn.read_config(offset, size)

    def write(self, bus: int, device: int, function: int, offset: int, size: int,
              value: int) -> None:
        fn = self.functions.get((device, function)) if bus == 0 else None
        if fn is None or size not in (1, 2, 4) or offset % size or offset + size > CONFIG_SPACE:
            log.debug("config write to absent %02x:%02x.%x+%#x ignored", bus, device, function,
                      offset)
            return
        fn.write_config(offset, size, value)


class PciConfigPorts:
    """Ports 0xCF8-0xCFF (offsets 0-7): CONFIG_ADDRESS, the reset control at 0xCF9, CONFIG_DATA."""

    def __init__(self, bus: PciBus, reset_control):
        self.bus = bus
        self.reset_control = reset_control
        self.address = 0

    def reset(self) -> None:
        self.address = 0

    def _target(self, data_offset: int):
        a = self.address
        return (a >> 16) & 0xFF, (a >> 11) & 0x1F, (a >> 8) & 0x7, (a & 0xFC) + data_offset

    def read(self, offset: int, size: int) -> int:
        if offset == 0 and size == 4:
            return self.address
        if offset == 1 and size == 1:
            return self.reset_control.read(0, 1)
        if 4 <= offset < 8 and self.address & 0x8000_0000:
            return self.bus.read(*self._target(offset - 4), size)
        return (1 << (8 * size)) - 1 if 0 < size <= 8 else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 4:
            self.address = value & 0x80FF_FFFC
        elif offset == 1 and size == 1:
            self.reset_control.write(0, 1, value)
        elif 4 <= offset < 8 and self.address & 0x8000_0000:
            self.bus.write(*self._target(offset - 4), size, value)


class Ecam:
    """Memory-mapped configuration space (MMIO, ECAM_SIZE bytes)."""

    def __init__(self, bus: PciBus):
        self.bus = bus

    def reset(self) -> None:
        pass

    def read(self, offset: int, size: int) -> int:
        return self.bus.read(offset >> 20, (offset >> 15) & 0x1F, (offset >> 12) & 0x7,
                             offset & 0xFFF, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.bus.write(offset >> 20, (offset >> 15) & 0x1F, (offset >> 12) & 0x7,
                       offset & 0xFFF, size, value)


def host_bridge() -> PciFunction:
    """00:00.0, the Xeon W's DMI host bridge (Sky Lake-E, 8086:2020)."""
    return PciFunction(vendor=0x8086, device=0x2020, class_code=0x060000, revision=0x04)
