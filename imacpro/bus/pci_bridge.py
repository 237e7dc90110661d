"""PCI-to-PCI bridges (PCIe root ports and switch ports) and the PCI Express capability.

A bridge is a function with a type 1 header (PCI-to-PCI Bridge Architecture 1.2 §3.2):

    | off | register                                                                        |
    |-----|---------------------------------------------------------------------------------|
    | 00  | vendor ID, device ID, command, status, revision, class 0604xx (as type 0)       |
    | 0E  | header type 01 (RO)                                                             |
    | 18  | primary, secondary, subordinate bus number (RW), secondary latency timer (RW)   |
    | 1C  | I/O base, I/O limit: bits 7:4 = port bits 15:12 (RW), 3:0 = 0 (16-bit I/O)      |
    | 1E  | secondary status (RO 0)                                                         |
    | 20  | memory base, memory limit: bits 15:4 = address bits 31:20 (RW)                  |
    | 24  | prefetchable base, limit: bits 15:4 = address bits 31:20 (RW), 3:0 = 1 (64-bit) |
    | 28  | prefetchable base, limit: address bits 63:32 (RW)                               |
    | 30  | I/O base, limit upper 16 bits (RO 0: 16-bit I/O)                                |
    | 34  | capabilities pointer (RO): the PCI Express capability                           |
    | 38  | expansion ROM (none: RO 0)                                                      |
    | 3C  | interrupt line (RW), interrupt pin (RO 0); bridge control (RW, no effect here)  |

A window's limit is inclusive (a memory limit of 0x123 covers up to 0x123F_FFFF); a base above
its limit closes the window. The bridge forwards configuration cycles for buses secondary to
subordinate (bus.py's routing), memory in its memory and prefetchable windows while the command
register's memory bit is set, and I/O in its I/O window while the I/O bit is set. Its own
registers hold all its state (the saved configuration space).

Each port carries the PCI Express capability (pcie.py) with its type and link.
"""

from __future__ import annotations

import struct

from imacpro.bus.pci import CMD_IO, CMD_MEMORY, PciFunction
from imacpro.bus.pcie import CAP_PCI_EXPRESS, pcie_capability

PRIMARY_BUS, SECONDARY_BUS, SUBORDINATE_BUS, SECONDARY_LATENCY = 0x18, 0x19, 0x1A, 0x1B
IO_BASE, IO_LIMIT = 0x1C, 0x1D
MEMORY_BASE, MEMORY_LIMIT = 0x20, 0x22
PREF_BASE, PREF_LIMIT, PREF_BASE_UPPER, PREF_LIMIT_UPPER = 0x24, 0x26, 0x28, 0x2C
BRIDGE_CONTROL = 0x3E
PREF_64BIT = 0x1
CLASS_PCI_BRIDGE = 0x060400

class PciBridge(PciFunction):
    """A PCIe port with a type 1 header; `child_bus` is the board bus on its secondary side."""

    def __init__(self, vendor: int, device: int, child_bus: int, port_type: int, gts: float,
                 width: int, revision: int = 0, subsystem_vendor: int = 0, subsystem: int = 0,
                 port_number: int = 0):
        super().__init__(vendor, device, CLASS_PCI_BRIDGE, revision, header_type=1)
        # A type 1 header has no subsystem IDs at 0x2C (that is the prefetchable limit's
        # upper half); a bridge gives them in the subsystem ID capability (not modelled).
        del subsystem_vendor, subsystem
        self.child_bus = child_bus
        w = self.writable
        w[PRIMARY_BUS] = w[SECONDARY_BUS] = w[SUBORDINATE_BUS] = w[SECONDARY_LATENCY] = 0xFF
        w[IO_BASE] = w[IO_LIMIT] = 0xF0
        struct.pack_into("<HH", w, MEMORY_BASE, 0xFFF0, 0xFFF0)
        struct.pack_into("<HHII", w, PREF_BASE, 0xFFF0, 0xFFF0, 0xFFFF_FFFF, 0xFFFF_FFFF)
        struct.pack_into("<H", w, BRIDGE_CONTROL, 0x0FFF)
        struct.pack_into("<HH", self.config, PREF_BASE, PREF_64BIT, PREF_64BIT)
        # Closed windows at reset: base above limit.
        struct.pack_into("<HH", self.config, MEMORY_BASE, 0xFFF0, 0)
        struct.pack_into("<HH", self.config, PREF_BASE, 0xFFF0 | PREF_64BIT, PREF_64BIT)
        self.config[IO_BASE], self.config[IO_LIMIT] = 0xF0, 0
        self._initial = bytes(self.config)
        body, writable = pcie_capability(port_type, gts, width, port_number)
        self.add_capability(CAP_PCI_EXPRESS, body, writable)

    # --- what the bus asks -----------------------------------------------------------------

    def decoding(self) -> None:
        """Its windows decide what the functions below it decode: every write to them or
        to its command register counts as a change (bus.pci's write_config)."""
        return None

    @property
    def secondary_bus(self) -> int:
        return self.config[SECONDARY_BUS]

    @property
    def subordinate_bus(self) -> int:
        return self.config[SUBORDINATE_BUS]

    def windows(self, space: str) -> list[tuple[int, int]]:
        """The open windows of `space` ("memory" or "io") as [start, end) ranges."""
        if space == "io":
            base = (self.config[IO_BASE] & 0xF0) << 8
            limit = ((self.config[IO_LIMIT] & 0xF0) << 8) | 0xFFF
            return [(base, limit + 1)] if base <= limit else []
        out = []
        base, limit = struct.unpack_from("<HH", self.config, MEMORY_BASE)
        base, limit = (base & 0xFFF0) << 16, ((limit & 0xFFF0) << 16) | 0xF_FFFF
        if base <= limit:
            out.append((base, limit + 1))
        base, limit, base_hi, limit_hi = struct.unpack_from("<HHII", self.config, PREF_BASE)
        base = base_hi << 32 | (base & 0xFFF0) << 16
        limit = limit_hi << 32 | (limit & 0xFFF0) << 16 | 0xF_FFFF
        if base <= limit:
            out.append((base, limit + 1))
        return out

    def forwards(self, space: str, address: int, size: int) -> bool:
        """Whether the bridge passes [address, address + size) of `space` to its secondary."""
        if not self.command & (CMD_IO if space == "io" else CMD_MEMORY):
            return False
        return any(start <= address and address + size <= end
                   for start, end in self.windows(space))

    def set_io_window(self, window: tuple[int, int] | None) -> None:
        """Program the I/O window (firmware): [start, end) aligned to 4 KiB, or None."""
        if window is None:
            self.config[IO_BASE], self.config[IO_LIMIT] = 0xF0, 0
        else:
            self.config[IO_BASE] = (window[0] >> 8) & 0xF0
            self.config[IO_LIMIT] = ((window[1] - 1) >> 8) & 0xF0
        self.on_decode_change()

    def set_memory_windows(self, memory: tuple[int, int] | None,
                           prefetchable: tuple[int, int] | None) -> None:
        """Program the memory windows (firmware): each [start, end) aligned to 1 MiB, or
        None (closed)."""
        if memory is None:
            struct.pack_into("<HH", self.config, MEMORY_BASE, 0xFFF0, 0)
        else:
            struct.pack_into("<HH", self.config, MEMORY_BASE, (memory[0] >> 16) & 0xFFF0,
                             ((memory[1] - 1) >> 16) & 0xFFF0)
        if prefetchable is None:
            struct.pack_into("<HHII", self.config, PREF_BASE, 0xFFF0 | PREF_64BIT, PREF_64BIT,
                             0, 0)
        else:
            start, last = prefetchable[0], prefetchable[1] - 1
            struct.pack_into("<HHII", self.config, PREF_BASE,
                             ((start >> 16) & 0xFFF0) | PREF_64BIT,
                             ((last >> 16) & 0xFFF0) | PREF_64BIT, start >> 32, last >> 32)
        self.on_decode_change()
