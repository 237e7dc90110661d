"""Message signalled interrupts: the MSI and MSI-X capabilities of a PCI function.

An MSI is a DMA write of `data` to `address` (PCI Local Bus 3.0 §6.8). The function hands
(address, data) to its `send_msi` (bus/pci.py); the machine turns writes to 0xFEEx_xxxx into
interrupt messages on the APIC bus (Intel SDM vol. 3A 10.11) and lets any other address be an
ordinary memory write, as a real bus would.

MSI capability (ID 05h), 64-bit, 1 to 32 vectors, no per-vector masking:

    | off | register                                                                     |
    |-----|------------------------------------------------------------------------------|
    | +2  | message control: enable 0 (RW), MMC 3:1 (RO: log2 of the vectors offered),  |
    |     | MME 6:4 (RW: log2 of those granted), 64-bit capable 7                        |
    | +4  | message address, bits 31:2 (RW)                                              |
    | +8  | message upper address (RW)                                                   |
    | +C  | message data, 16 bits (RW); vector n of 2^MME sends it with n in its low bits |

MSI-X capability (ID 11h, PCI 3.0 §6.8.2) with its table and PBA in a memory BAR:

    | off | register                                                                     |
    |-----|------------------------------------------------------------------------------|
    | +2  | message control: table size - 1 10:0 (RO), function mask 14, enable 15 (RW)  |
    | +4  | table offset 31:3, BIR 2:0 (RO)                                              |
    | +8  | PBA offset 31:3, BIR 2:0 (RO)                                                |

    table entry n at table offset + 16n: address low (bits 1:0 RO 0), address high, data,
    vector control (mask bit 0; set at reset); PBA: one pending bit per vector (RO).
A vector masked (or the function masked) when it fires sets its pending bit; unmasking sends
the message and clears it. MSI-X takes precedence over MSI, MSI over INTx (§6.8.3.3).

Saved state: both capabilities' registers are configuration space, saved with the function.
MSI has nothing else (no per-vector masking, so nothing pending): its state is an empty
mapping. MSI-X adds its table (the vectors' address, data and mask, as bytes) and the PBA.
Loading sends nothing: a pending vector is sent when software unmasks it, as before the save.
"""

from __future__ import annotations

import struct

from imacpro.bus.pci import PciFunction
from imacpro.devices import _state
from imacpro.devices.contract import StateError

MSI_ID, MSIX_ID = 0x05, 0x11
MSI_ENABLE, MSI_64BIT = 1 << 0, 1 << 7
MSIX_FUNCTION_MASK, MSIX_ENABLE = 1 << 14, 1 << 15
MSIX_ENTRY, VECTOR_MASKED = 16, 1


class Msi:
    def __init__(self, fn: PciFunction, vectors: int = 1):
        if vectors not in (1, 2, 4, 8, 16, 32):
            raise ValueError("MSI offers a power of two vectors, at most 32")
        self.fn = fn
        body = struct.pack("<HIIH", MSI_64BIT | (vectors.bit_length() - 1) << 1, 0, 0, 0)
        writable = struct.pack("<HIIH", MSI_ENABLE | 0x70, 0xFFFF_FFFC, 0xFFFF_FFFF, 0xFFFF)
        self.offset = fn.add_capability(MSI_ID, body, writable)

    @property
    def enabled(self) -> bool:
        return bool(self.fn.config[self.offset + 2] & MSI_ENABLE)

    def save(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        self.apply_state(self.check_state(state))

    def check_state(self, state: dict) -> None:
        if _state.mapping(state, "Msi"):
            raise StateError(f"Msi: unknown saved fields {sorted(state)}")

    def apply_state(self, checked: None) -> None:
        """Nothing: the capability's registers came back with the function's config space."""

    @property
    def granted(self) -> int:
        """How many vectors software enabled (MME), never more than offered (MMC)."""
        control = self.fn.config[self.offset + 2]
        return 1 << min((control >> 4) & 7, (control >> 1) & 7)

    def message(self, vector: int = 0) -> tuple[int, int]:
        """Vector `vector`'s message, (address, data): the data with the vector in its low
        bits (PCI 3.0 §6.8.1.6); a vector beyond those granted folds onto them."""
        low, high, data = struct.unpack_from("<IIH", self.fn.config, self.offset + 4)
        mask = self.granted - 1
        return high << 32 | low, (data & ~mask) | (vector & mask)

    def send(self, vector: int = 0) -> None:
        self.fn.send_msi(*self.message(vector))


class MsiX:
    """The capability and, as a BAR device at `table_offset`/`pba_offset`, its table and PBA."""

    def __init__(self, fn: PciFunction, vectors: int, bir: int, table_offset: int,
                 pba_offset: int):
        if not 1 <= vectors <= 2048 or table_offset % 8 or pba_offset % 8:
            raise ValueError("bad MSI-X geometry")
        self.fn = fn
        self.vectors = vectors
        self.table_offset, self.pba_offset = table_offset, pba_offset
        self.table_end = table_offset + vectors * MSIX_ENTRY
        self.pba_end = pba_offset + 8 * ((vectors + 63) // 64)
        body = struct.pack("<HII", vectors - 1, table_offset | bir, pba_offset | bir)
        writable = struct.pack("<H", MSIX_FUNCTION_MASK | MSIX_ENABLE)
        self.offset = fn.add_capability(MSIX_ID, body, writable)
        self.reset()

    def reset(self) -> None:
        self.table = bytearray(self.vectors * MSIX_ENTRY)
        for n in range(self.vectors):
            self.table[n * MSIX_ENTRY + 12] = VECTOR_MASKED
        self.pending = 0

    def save(self) -> dict:
        return {"table": bytes(self.table), "pending": self.pending}

    def load(self, state: dict) -> None:
        self.apply_state(self.check_state(state))

    def check_state(self, state: dict) -> tuple[bytes, int]:
        """The saved state, checked (StateError); for a device that loads it with others."""
        table = _state.bytes_field(state, "table", "MsiX", self.vectors * MSIX_ENTRY)
        pending = _state.int_field(state, "pending", "MsiX", 0, (1 << self.vectors) - 1)
        for n in range(self.vectors):
            entry = table[n * MSIX_ENTRY:(n + 1) * MSIX_ENTRY]
            if entry[0] & 3 or entry[12] & ~VECTOR_MASKED or any(entry[13:]):
                raise StateError(f"MsiX: table entry {n} has bits that read 0")
        return table, pending

    def apply_state(self, checked: tuple[bytes, int]) -> None:
        table, self.pending = checked
        self.table = bytearray(table)

    @property
    def control(self) -> int:
        return struct.unpack_from("<H", self.fn.config, self.offset + 2)[0]

    @property
    def enabled(self) -> bool:
        return bool(self.control & MSIX_ENABLE)

    def _masked(self, vector: int) -> bool:
        return bool(self.control & MSIX_FUNCTION_MASK
                    or self.table[vector * MSIX_ENTRY + 12] & VECTOR_MASKED)

    def signal(self, vector: int) -> None:
        """The device's interrupt for `vector` (a vector past the table is dropped)."""
        if not 0 <= vector < self.vectors:
            return
        if self._masked(vector):
            self.pending |= 1 << vector
        else:
            self._send(vector)

    def _send(self, vector: int) -> None:
        low, high, data = struct.unpack_from("<III", self.table, vector * MSIX_ENTRY)
        self.fn.send_msi(high << 32 | low, data)

    def unmasked(self) -> None:
        """After a write that may have unmasked vectors: send what is pending."""
        if not self.pending or not self.enabled:
            return
        for vector in range(self.vectors):
            if self.pending >> vector & 1 and not self._masked(vector):
                self.pending &= ~(1 << vector)
                self._send(vector)

    # --- the table and PBA, in the BAR ---------------------------------------------------

    def holds(self, offset: int) -> bool:
        return self.table_offset <= offset < self.table_end or \
            self.pba_offset <= offset < self.pba_end

    def read(self, offset: int, size: int) -> int:
        if self.table_offset <= offset and offset + size <= self.table_end:
            at = offset - self.table_offset
            return int.from_bytes(self.table[at:at + size], "little")
        if self.pba_offset <= offset and offset + size <= self.pba_end:
            shift = 8 * (offset - self.pba_offset)
            return (self.pending >> shift) & ((1 << (8 * size)) - 1)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if not (self.table_offset <= offset and offset + size <= self.table_end):
            return                          # the PBA is read-only
        at = offset - self.table_offset
        self.table[at:at + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        for n in range(at // MSIX_ENTRY, (at + size - 1) // MSIX_ENTRY + 1):
            self.table[n * MSIX_ENTRY] &= 0xFC        # message address is dword aligned
            self.table[n * MSIX_ENTRY + 12] &= VECTOR_MASKED
            self.table[n * MSIX_ENTRY + 13:n * MSIX_ENTRY + 16] = bytes(3)
        self.unmasked()
