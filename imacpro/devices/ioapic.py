"""82093AA-style I/O APIC with 24 pins at MMIO 0xFEC00000."""

from __future__ import annotations

import logging
from typing import Callable

from imacpro.devices import _state
from imacpro.devices.apic_bus import FIXED, LOWEST_PRIORITY, ApicBus
from imacpro.devices.contract import StateError, load_fields, save_fields

log = logging.getLogger(__name__)

PINS = 24
VERSION = 0x20  # the PCH I/O APIC: has the EOI register
MASK32 = 0xFFFF_FFFF

# MMIO offsets.
IOREGSEL, IOWIN, IOEOI = 0x00, 0x10, 0x40
# Indirect registers (IOREGSEL values).
REG_ID, REG_VERSION, REG_ARBITRATION, REG_REDIRECTION = 0x00, 0x01, 0x02, 0x10

# Redirection entry bits (82093AA datasheet 3.2.4).
MASKED, LEVEL, REMOTE_IRR, ACTIVE_LOW, LOGICAL = 1 << 16, 1 << 15, 1 << 14, 1 << 13, 1 << 11
# Writable: destination 63:56, mask, trigger, polarity, destination mode, delivery mode, vector.
ENTRY_WRITABLE = 0xFF00_0000_0001_AFFF


class IoApic:
    """I/O APIC (Intel 82093AA datasheet; version 0x20 as in Intel PCHs), 24 input pins.

    MMIO (offsets from 0xFEC00000):

    | off | register                                                                       |
    |-----|--------------------------------------------------------------------------------|
    | 00  | IOREGSEL: index of the indirect register (bits 7:0); 1-, 2- or 4-byte access    |
    | 10  | IOWIN: the selected register, 32-bit access only                                |
    | 40  | EOI (version 0x20): writing a vector clears Remote IRR of level entries with it |

    Indirect registers: 00 ID (bits 31:24; 8 bits as in PCH parts and Linux, the 82093AA had
    4), 01 version 0x00170020 (max redirection entry 23), 02 arbitration ID (= ID, read-only),
    10-3F redirection entries, two 32-bit halves each: vector 7:0, delivery mode 10:8, logical
    destination 11, delivery status 12 (RO, always idle: delivery is instantaneous), polarity
    13 (1 = active low), Remote IRR 14 (RO), trigger 15 (1 = level), mask 16, destination 63:56.
    Other indexes read 0; other offsets, sizes and IOWIN/EOI accesses not 32-bit are logged and
    ignored (read 0). Reset masks every entry.

    Pins (`set_irq(gsi, level)`, or `input(gsi)` as an IrqLine sink) carry the wire level;
    an active-low entry inverts it. Edge entries deliver on a rising (active) edge; an edge on
    a masked pin is lost (datasheet, and QEMU). Level entries in fixed/lowest-priority mode
    deliver while active and set Remote IRR when at least one local APIC accepted; the EOI for
    that vector (`on_eoi`, registered on the bus, or the EOI register) clears it and the pin
    delivers again if still active; unmasking or rewriting an active level entry delivers
    then. NMI, SMI, INIT and ExtINT are edge by definition (datasheet: they must be programmed
    edge), so their trigger bit is ignored for delivery. Writing an entry as edge clears its
    Remote IRR (Linux's fallback EOI, __eoi_ioapic_pin, relies on this, as QEMU notes).

    Acknowledgements: `ack_listeners[pin]` is called when a local APIC EOIs the vector of
    that pin's unmasked entry, edge or level (the PIT gives back lost ticks on it); the bus's
    `edge_eoi_vectors` is kept to those vectors so that edge EOIs reach `on_eoi`.

    Fault injection (tests of the machine's watchdog; empty, so off, unless a test fills it):
    `drop_next` holds pins whose next message is lost after the I/O APIC counted it as
    accepted, so a level pin keeps Remote IRR with no CPU ever seeing the interrupt.

    Saved state: ID, IOREGSEL, the 24 entries as 64-bit ints (Remote IRR included: a loaded
    level pin still waits for its EOI) and the pins' wire levels, which an edge pin compares
    against. `load()` sends no message: what was delivered before the save is in the local
    APICs' saved IRR.
    """

    def __init__(self, bus: ApicBus, apic_id: int):
        self._bus = bus
        self.power_on_id = apic_id & 0xFF
        self.levels = [False] * PINS  # wire levels: driven by devices, kept across reset
        bus.eoi_listeners.append(self.on_eoi)
        self.drop_next: set[int] = set()  # fault injection, off: pins whose next message is lost
        self.ack_listeners: dict[int, Callable[[], None]] = {}
        self.reset()

    def reset(self) -> None:
        self.id = self.power_on_id
        self.ioregsel = 0
        self.entries = [MASKED] * PINS
        self._entries_changed()

    def add_ack_listener(self, pin: int, listener: Callable[[], None]) -> None:
        self.ack_listeners[pin] = listener
        self._entries_changed()

    def _entries_changed(self) -> None:
        self._bus.edge_eoi_vectors = {self.entries[pin] & 0xFF for pin in self.ack_listeners
                                      if not self.entries[pin] & MASKED}

    # --- saved state ------------------------------------------------------------------------

    def save(self) -> dict:
        return save_fields(self, _SAVED)

    def load(self, state: dict) -> None:
        where = "IoApic"
        _state.ranges(state, where, {"id": (0, 0xFF), "ioregsel": (0, 0xFF)})
        for entry in _state.int_list(state, "entries", where, 0, _state.U64, length=PINS):
            if entry & ~(ENTRY_WRITABLE | REMOTE_IRR):
                raise StateError(f"{where}: entry {entry:#x} has bits no guest can set")
        for n, level in enumerate(_state.list_field(state, "levels", where, length=PINS)):
            if not isinstance(level, bool):
                raise StateError(f"{where}.levels[{n}]: not a bool")
        load_fields(self, state, _SAVED)
        self._entries_changed()

    # --- pins -------------------------------------------------------------------------------

    def input(self, gsi: int) -> Callable[[bool], None]:
        if not 0 <= gsi < PINS:
            raise ValueError(f"I/O APIC has no pin {gsi}")
        return lambda level: self.set_irq(gsi, level)

    def set_irq(self, gsi: int, level: bool) -> None:
        if not 0 <= gsi < PINS:
            log.debug("set_irq on missing pin %r ignored", gsi)
            return
        was = self._active(gsi)
        self.levels[gsi] = bool(level)
        if self._is_level(self.entries[gsi]):
            self._service(gsi)
        elif self._active(gsi) and not was and not self.entries[gsi] & MASKED:
            self._deliver(gsi)

    def on_eoi(self, vector: int) -> None:
        for pin, entry in enumerate(self.entries):
            if entry & REMOTE_IRR and entry & 0xFF == vector:
                self.entries[pin] = entry & ~REMOTE_IRR
                self._service(pin)
        for pin, listener in self.ack_listeners.items():
            if self.entries[pin] & (MASKED | 0xFF) == vector:
                listener()

    def _active(self, pin: int) -> bool:
        return self.levels[pin] != bool(self.entries[pin] & ACTIVE_LOW)

    @staticmethod
    def _is_level(entry: int) -> bool:
        return bool(entry & LEVEL) and (entry >> 8) & 7 in (FIXED, LOWEST_PRIORITY)

    def _service(self, pin: int) -> None:
        """A level pin: deliver if active, unmasked and not waiting for an EOI."""
        entry = self.entries[pin]
        if self._is_level(entry) and self._active(pin) and not entry & (MASKED | REMOTE_IRR):
            if self._deliver(pin):
                self.entries[pin] |= REMOTE_IRR

    def _deliver(self, pin: int) -> int:
        if pin in self.drop_next:
            # Fault injection: the message is lost on its way, as if a CPU had taken it.
            self.drop_next.discard(pin)
            log.warning("fault injection: pin %d's interrupt dropped", pin)
            return 1
        entry = self.entries[pin]
        return self._bus.deliver(entry >> 56, bool(entry & LOGICAL), (entry >> 8) & 7,
                                 entry & 0xFF, self._is_level(entry))

    # --- MMIO -------------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset == IOREGSEL and size in (1, 2, 4):
            return self.ioregsel & ((1 << 8 * size) - 1)
        if offset == IOWIN and size == 4:
            return self._read_register(self.ioregsel)
        log.debug("read of %d bytes at %#x ignored", size, offset)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == IOREGSEL and size in (1, 2, 4):
            self.ioregsel = value & 0xFF
        elif offset == IOWIN and size == 4:
            self._write_register(self.ioregsel, value & MASK32)
        elif offset == IOEOI and size == 4:
            self.on_eoi(value & 0xFF)
        else:
            log.debug("write of %d bytes at %#x ignored", size, offset)

    def _read_register(self, index: int) -> int:
        if index in (REG_ID, REG_ARBITRATION):
            return self.id << 24
        if index == REG_VERSION:
            return (PINS - 1) << 16 | VERSION
        pin, high = divmod(index - REG_REDIRECTION, 2)
        if 0 <= pin < PINS:
            return self.entries[pin] >> (32 * high) & MASK32
        log.debug("read of register %#x ignored", index)
        return 0

    def _write_register(self, index: int, value: int) -> None:
        if index == REG_ID:
            self.id = value >> 24
            return
        pin, high = divmod(index - REG_REDIRECTION, 2)
        if not 0 <= pin < PINS:
            log.debug("write of register %#x ignored", index)
            return
        old = self.entries[pin]
        shift = 32 * high
        merged = (old & ~(MASK32 << shift)) | value << shift
        entry = (merged & ENTRY_WRITABLE) | (old & REMOTE_IRR)
        if not entry & LEVEL:
            entry &= ~REMOTE_IRR
        self.entries[pin] = entry
        if pin in self.ack_listeners:
            self._entries_changed()
        self._service(pin)


_SAVED = ("id", "ioregsel", "entries", "levels")
