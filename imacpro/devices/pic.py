"""Cascaded 8259A interrupt controllers (ports 0x20-0x21, 0xA0-0xA1) and the ELCR (0x4D0-0x4D1)."""

from __future__ import annotations

import logging
from typing import Callable

from imacpro.devices import _state
from imacpro.devices.contract import StateError, save_fields
from imacpro.devices.lpc import ByteRegisters

log = logging.getLogger(__name__)

CASCADE_IR = 2  # the slave's INT output drives the master's IR2
# IRQs 0, 1, 2, 8 and 13 are edge-only on PC chipsets: their ELCR bits read 0 (PCH datasheet).
ELCR_MASK = (0xF8, 0xDE)

# Command port (offset 0) writes: ICW1 has bit 4 set, OCW3 bit 3, OCW2 neither.
ICW1, OCW3 = 0x10, 0x08
ICW1_IC4, ICW1_SNGL, ICW1_LTIM = 0x01, 0x02, 0x08
ICW4_AEOI, ICW4_SFNM = 0x02, 0x10
OCW3_POLL, OCW3_RR, OCW3_RIS, OCW3_ESMM, OCW3_SMM = 0x04, 0x02, 0x01, 0x40, 0x20
POLL_INT = 0x80

# OCW2 commands (bits 7:5 = R, SL, EOI).
(ROTATE_AEOI_CLEAR, EOI, NOP, SPECIFIC_EOI, ROTATE_AEOI_SET, ROTATE_EOI,
 SET_PRIORITY, ROTATE_SPECIFIC_EOI) = range(8)


class _Chip:
    """One 8259A's plain state and its priority logic."""

    SAVED = ("elcr", "levels", "irr", "isr", "imr", "top", "base", "icw3", "init_state",
             "need_icw4", "single", "auto_eoi", "rotate_on_aeoi", "sfnm", "read_isr", "poll",
             "special_mask")
    BYTES = ("elcr", "levels", "irr", "isr", "imr", "base", "icw3")

    def __init__(self, master: bool):
        self.master = master
        self.elcr_mask = ELCR_MASK[0 if master else 1]
        self.levels = 0  # input wire levels: driven from outside, kept across reset
        self.reset()

    def reset(self) -> None:
        self.elcr = 0
        self.init_reset()
        self.init_state = 0  # power-on: as after an initialization with all-zero ICWs

    def init_reset(self) -> None:
        """What ICW1 does (datasheet, "Initialization command words"); ELCR is kept."""
        self.irr = self.levels & self.elcr  # edge inputs need a new rising edge
        self.isr = 0
        self.imr = 0
        self.top = 0  # the IR with the highest priority: IR7 lowest after init
        self.base = 0
        self.icw3 = 0
        self.init_state = 1
        self.need_icw4 = False
        self.single = False
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.sfnm = False
        self.read_isr = False
        self.poll = False
        self.special_mask = False

    def checked(self, state: dict, where: str) -> _Chip:
        """A scratch chip holding `state`, checked (StateError), for load() to copy over."""
        _state.ranges(state, where, {**{name: (0, 0xFF) for name in self.BYTES},
                                     "top": (0, 7), "init_state": (0, 3)})
        if state["elcr"] & ~self.elcr_mask:
            raise StateError(f"{where}: ELCR bits {state['elcr']:#x} are fixed at 0 here")
        return _state.staged(_Chip(self.master), state, list(self.SAVED), where)

    def _priority(self, bits: int) -> int:
        """Rank (0 = highest) of the highest-priority set bit under rotation, 8 if none."""
        for rank in range(8):
            if bits >> ((rank + self.top) & 7) & 1:
                return rank
        return 8

    def pending(self) -> int | None:
        """The IR this chip would signal on INT now, if any."""
        rank = self._priority(self.irr & ~self.imr)
        if rank == 8:
            return None
        blocking = self.isr
        if self.special_mask:  # masked in-service levels do not hold off the others
            blocking &= ~self.imr
        if self.sfnm and self.master:  # fully nested: the slave may interrupt its own level
            blocking &= ~(1 << CASCADE_IR)
        if rank < self._priority(blocking):
            return (rank + self.top) & 7
        return None

    def input(self, ir: int, level: bool) -> None:
        bit = 1 << ir
        if self.elcr & bit:
            self.irr = self.irr | bit if level else self.irr & ~bit
        elif level and not self.levels & bit:
            self.irr |= bit  # edge: latched until acknowledged, even if the line drops
        self.levels = self.levels | bit if level else self.levels & ~bit

    def ack(self, ir: int) -> None:
        bit = 1 << ir
        if self.auto_eoi:
            if self.rotate_on_aeoi:
                self.top = (ir + 1) & 7
        else:
            self.isr |= bit
        if not self.elcr & bit:  # a level input's IRR follows its line
            self.irr &= ~bit

    def ocw2(self, value: int) -> None:
        command, level = value >> 5, value & 7
        if command in (EOI, ROTATE_EOI):
            rank = self._priority(self.isr)
            if rank < 8:
                ir = (rank + self.top) & 7
                self.isr &= ~(1 << ir)
                if command == ROTATE_EOI:
                    self.top = (ir + 1) & 7
        elif command in (SPECIFIC_EOI, ROTATE_SPECIFIC_EOI):
            self.isr &= ~(1 << level)
            if command == ROTATE_SPECIFIC_EOI:
                self.top = (level + 1) & 7
        elif command == SET_PRIORITY:
            self.top = (level + 1) & 7
        elif command in (ROTATE_AEOI_SET, ROTATE_AEOI_CLEAR):
            self.rotate_on_aeoi = command == ROTATE_AEOI_SET


class _Ports(ByteRegisters):
    """A port window onto one part of the pair, for the port bus to map."""

    def __init__(self, pair: Pic8259Pair, which: int):
        self._pair = pair
        self._which = which  # 0 master, 1 slave, 2 ELCR

    def reset(self) -> None:
        """The pair resets as a whole: see Pic8259Pair.reset()."""

    def _read_byte(self, offset: int) -> int:
        return self._pair._read_byte(self._which, offset)

    def _write_byte(self, offset: int, value: int) -> None:
        self._pair._write_byte(self._which, offset, value)


class Pic8259Pair:
    """Two cascaded Intel 8259A PICs and the ELCR, as in the PC and Intel's PCH (8259A
    datasheet, order no. 231468; PCH datasheet, "8259 Interrupt Controllers" and ELCR1/2).

    Three port windows, each a small object with read/write for the port bus:
    `master_ports` at 0x20 and `slave_ports` at 0xA0 (offsets 0-1), `elcr_ports` at 0x4D0
    (offset 0 = ELCR1 for IRQ 0-7, 1 = ELCR2 for IRQ 8-15).

    | off | read                                      | write                                |
    |-----|-------------------------------------------|--------------------------------------|
    | 0   | poll byte after OCW3 poll, else IRR or    | ICW1 (bit 4), OCW3 (bit 3), else OCW2 |
    |     | ISR (OCW3 RR/RIS; IRR after init)         |                                      |
    | 1   | IMR (poll byte after OCW3 poll)           | ICW2-ICW4 during init, else OCW1 (IMR)|

    ICW1: IC4 (ICW4 follows), SNGL (no ICW3); LTIM is ignored, as on the PCH: the ELCR sets
    each input edge or level. ICW2: vector base (bits 7:3). ICW3: stored; the wiring is fixed
    (slave on IR2). ICW4: AEOI, SFNM; uPM and buffered mode are ignored. OCW2: non-specific,
    specific and rotating EOIs, set priority, rotate in AEOI mode set/clear. OCW3: read
    IRR/ISR, poll (the next read is an acknowledge returning 0x80 | IR, or 0 when nothing is
    pending), special mask mode. Fixed priority IR0 > IR7 unless rotated.

    Inputs: `set_irq(irq, level)` for ISA IRQ 0-15 (IRQ 2 is the cascade and ignored), or
    `input(irq)` as an IrqLine sink. Edge inputs latch IRR on a rising edge (kept even if the
    line drops before INTA, as QEMU does, so a pulse() is never lost); level inputs' IRR
    follows the line. ELCR bits 0-2 and 8, 13 are fixed at 0 (edge).

    CPU side: `interrupt_pending()` is the master's INT (INTR) output; `on_intr_change(level)`
    is called when it changes; `acknowledge()` is the INTA cycle: the vector of the highest
    unmasked request, setting ISR (unless AEOI) and clearing an edge IRR. With no request left
    (the line dropped) it answers the spurious IR7 vector (base + 7) without setting ISR; a
    master IR2 acknowledge with nothing on the slave gives the slave's IR7 (IRQ 15) vector,
    with master ISR bit 2 set, as the hardware does. `ack_listeners[irq]` is called after an
    INTA that took that IRQ (the PIT gives back lost ticks on IRQ 0's).

    Power-on (`reset()`): IMR, IRR, ISR, ELCR 0, vector base 0, IR0 highest, ready (no init
    sequence pending), as QEMU; firmware or the OS must initialize before use. Multi-byte port
    accesses are split into byte accesses; bytes beyond a window read 0xFF; sizes other than
    1, 2, 4, 8 read 0 and are ignored.

    Saved state: {"master": chip, "slave": chip}, each chip its registers, ELCR, where it is in
    the initialization sequence, its OCW3 modes and its inputs' wire levels (edges are
    detected against them). INTR is derived: `load()` calls `on_intr_change` with it.
    """

    def __init__(self):
        self.master = _Chip(master=True)
        self.slave = _Chip(master=False)
        self.intr = False
        self.on_intr_change: Callable[[bool], None] | None = None
        self.ack_listeners: dict[int, Callable[[], None]] = {}
        self.master_ports = _Ports(self, 0)
        self.slave_ports = _Ports(self, 1)
        self.elcr_ports = _Ports(self, 2)

    def reset(self) -> None:
        self.master.reset()
        self.slave.reset()
        self._update()

    # --- saved state --------------------------------------------------------------------------

    def save(self) -> dict:
        return {"master": save_fields(self.master, _Chip.SAVED),
                "slave": save_fields(self.slave, _Chip.SAVED)}

    def load(self, state: dict) -> None:
        loaded = [chip.checked(_state.field(state, name, "Pic8259Pair"), f"Pic8259Pair.{name}")
                  for name, chip in (("master", self.master), ("slave", self.slave))]
        for source, chip in zip(loaded, (self.master, self.slave)):
            _state.copy_fields(source, chip, _Chip.SAVED)
        # INTR follows the loaded chips; drive the CPU's pin to it even if it seems unchanged
        # (the LAPIC on the other end may have been loaded or built after it was last driven).
        self.intr = self.master.pending() is not None
        if self.on_intr_change is not None:
            self.on_intr_change(self.intr)

    # --- inputs and the CPU side --------------------------------------------------------------

    def set_irq(self, irq: int, level: bool) -> None:
        if not 0 <= irq < 16 or irq == CASCADE_IR:
            log.debug("pic: input IRQ %r ignored", irq)
            return
        chip = self.master if irq < 8 else self.slave
        chip.input(irq & 7, bool(level))
        self._update()

    def input(self, irq: int) -> Callable[[bool], None]:
        return lambda level: self.set_irq(irq, level)

    def interrupt_pending(self) -> bool:
        return self.master.pending() is not None

    def acknowledge(self) -> int:
        master, slave = self.master, self.slave
        ir = master.pending()
        taken = None
        if ir is None:
            vector = master.base + 7  # spurious: the request went away before INTA
        else:
            if ir == CASCADE_IR and not master.single:
                slave_ir = slave.pending()
                if slave_ir is None:
                    vector = slave.base + 7  # spurious on the slave
                else:
                    slave.ack(slave_ir)
                    vector, taken = slave.base + slave_ir, 8 + slave_ir
                self._update()
            else:
                vector, taken = master.base + ir, ir
            master.ack(ir)
        self._update()
        listener = self.ack_listeners.get(taken)
        if listener is not None:
            listener()
        return vector & 0xFF

    def _update(self) -> None:
        self.master.input(CASCADE_IR, self.slave.pending() is not None)
        intr = self.master.pending() is not None
        if intr != self.intr:
            self.intr = intr
            if self.on_intr_change is not None:
                self.on_intr_change(intr)

    # --- ports --------------------------------------------------------------------------------

    def _read_byte(self, which: int, offset: int) -> int:
        if not 0 <= offset < 2:
            return 0xFF
        if which == 2:
            return (self.master, self.slave)[offset].elcr
        chip = (self.master, self.slave)[which]
        if chip.poll:
            chip.poll = False
            return self._poll(chip)
        if offset == 1:
            return chip.imr
        return chip.isr if chip.read_isr else chip.irr

    def _poll(self, chip: _Chip) -> int:
        ir = chip.pending()
        if ir is None:
            return 0
        chip.ack(ir)
        self._update()
        return POLL_INT | ir

    def _write_byte(self, which: int, offset: int, value: int) -> None:
        if not 0 <= offset < 2:
            log.debug("pic: write to offset %#x of window %d ignored", offset, which)
            return
        if which == 2:
            chip = (self.master, self.slave)[offset]
            chip.elcr = value & chip.elcr_mask
            chip.irr = (chip.irr & ~chip.elcr) | (chip.levels & chip.elcr)
        else:
            chip = (self.master, self.slave)[which]
            if offset == 0:
                self._command(chip, value)
            else:
                self._data(chip, value)
        self._update()

    def _command(self, chip: _Chip, value: int) -> None:
        if value & ICW1:
            chip.init_reset()
            chip.need_icw4 = bool(value & ICW1_IC4)
            chip.single = bool(value & ICW1_SNGL)
            if value & ICW1_LTIM:
                log.debug("pic: ICW1 LTIM ignored (the ELCR selects level inputs)")
        elif value & OCW3:
            chip.poll = bool(value & OCW3_POLL)
            if value & OCW3_RR:
                chip.read_isr = bool(value & OCW3_RIS)
            if value & OCW3_ESMM:
                chip.special_mask = bool(value & OCW3_SMM)
        else:
            chip.ocw2(value)

    @staticmethod
    def _data(chip: _Chip, value: int) -> None:
        if chip.init_state == 0:
            chip.imr = value  # OCW1
        elif chip.init_state == 1:
            chip.base = value & 0xF8  # ICW2
            chip.init_state = 3 if chip.single else 2
            if chip.single and not chip.need_icw4:
                chip.init_state = 0
        elif chip.init_state == 2:
            chip.icw3 = value
            chip.init_state = 3 if chip.need_icw4 else 0
        else:
            chip.auto_eoi = bool(value & ICW4_AEOI)
            chip.sfnm = bool(value & ICW4_SFNM)
            chip.init_state = 0
