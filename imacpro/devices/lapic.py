"""Local APIC of one logical CPU, xAPIC mode (Intel SDM vol. 3A ch. 10)."""

from __future__ import annotations

import logging
from typing import Callable

from imacpro.clock import NS_PER_S, Clock
from imacpro.devices import _state
from imacpro.devices.apic_core import ApicCore
from imacpro.devices.apic_bus import (
    EXTINT, FIXED, INIT, LOWEST_PRIORITY, NMI, SMI, STARTUP, ApicBus)
from imacpro.devices.contract import StateError, load_fields, save_fields
from imacpro.memory.layout import LAPIC_BASE

log = logging.getLogger(__name__)

MASK32 = 0xFFFF_FFFF
MASK64 = 0xFFFF_FFFF_FFFF_FFFF
CRYSTAL_HZ = 25_000_000  # Skylake-SP/W core crystal: the APIC timer's clock (CPUID 0x15 ECX)
DEFAULT_TSC_HZ = 3_200_000_000  # until the CPU's MSR handler tells us its TSC rate

# Version: 0x15 (integrated xAPIC of Skylake), max LVT entry 6 = seven LVTs incl. CMCI.
# Bit 24 (EOI-broadcast suppression supported) stays 0: we do not model suppression.
VERSION_VALUE = 6 << 16 | 0x15

# IA32_APIC_BASE MSR bits (SDM 10.4.4).
BASE_BSP, BASE_X2APIC, BASE_ENABLE = 1 << 8, 1 << 10, 1 << 11

# Register offsets in the 4 KiB page (SDM table 10-1).
ID, VERSION, TPR, APR, PPR, EOI, RRD, LDR, DFR, SVR = (
    0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0)
ISR, TMR, IRR = 0x100, 0x180, 0x200  # eight 32-bit words each
ESR, LVT_CMCI, ICR_LOW, ICR_HIGH = 0x280, 0x2F0, 0x300, 0x310
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = range(0x320, 0x380, 0x10)
TIMER_INITIAL, TIMER_CURRENT, TIMER_DIVIDE = 0x380, 0x390, 0x3E0

# Writable bits of each LVT (SDM figure 10-8); delivery status (bit 12) always reads idle.
LVT_WRITABLE = {LVT_CMCI: 0x107FF, LVT_TIMER: 0x700FF, LVT_THERMAL: 0x107FF,
                LVT_PERF: 0x107FF, LVT_LINT0: 0x1A7FF, LVT_LINT1: 0x1A7FF, LVT_ERROR: 0x100FF}
LVT_MASKED, LVT_LEVEL, LVT_REMOTE_IRR, LVT_ACTIVE_LOW = 1 << 16, 1 << 15, 1 << 14, 1 << 13
ONE_SHOT, PERIODIC, TSC_DEADLINE = 0, 1, 2  # LVT timer bits 18:17

SVR_ENABLE = 1 << 8
SVR_WRITABLE = 0x1FF  # focus checking (bit 9) is reserved on Xeon; bit 12 not modelled
ICR_WRITABLE = 0x000C_CFFF  # vector, mode, dest mode, level, trigger, shorthand
ICR_LOGICAL, ICR_ASSERT, ICR_LEVEL_TRIGGER = 1 << 11, 1 << 14, 1 << 15

# ESR bits (SDM figure 10-9).
SEND_ILLEGAL_VECTOR, RECEIVE_ILLEGAL_VECTOR, ILLEGAL_REGISTER = 1 << 5, 1 << 6, 1 << 7

READ_ONLY = frozenset({VERSION, APR, PPR, RRD, TIMER_CURRENT, *range(ISR, IRR + 0x80, 0x10)})


def _top(bits: int) -> int:
    """Highest set vector of a 256-bit register, or 0 when empty (its priority class is 0)."""
    return max(bits.bit_length() - 1, 0)


class LocalApic:
    """Local APIC in xAPIC mode at MMIO 0xFEE00000 (SDM vol. 3A ch. 10).

    | off   | register                                                                    |
    |-------|-----------------------------------------------------------------------------|
    | 020   | ID, bits 31:24 (writable, as on QEMU/KVM; routing uses the current value)   |
    | 030   | version 0x00060015: version 0x15, max LVT entry 6 (CMCI..error)            |
    | 080   | TPR 7:0     | 090 APR (RO, SDM 10.8.3.1 formula) | 0A0 PPR (RO, 10.8.3.1) |
    | 0B0   | EOI (WO)    | 0C0 remote read (reads 0)          | 0D0 LDR 31:24          |
    | 0E0   | DFR 31:28 (27:0 read 1)                          | 0F0 SVR 8:0            |
    | 100-170 ISR, 180-1F0 TMR, 200-270 IRR (RO), vector n in word n/32, bit n%32      |
    | 280   | ESR: a write latches the errors seen since the last write; reads the latch  |
    | 2F0   | LVT CMCI | 300/310 ICR low/high (writing low sends; delivery status idle)  |
    | 320   | LVT timer: vector, mask 16, mode 18:17 (one-shot, periodic, TSC-deadline)   |
    | 330-370 LVT thermal, perf, LINT0, LINT1, error                                    |
    | 380   | initial count | 390 current count (RO) | 3E0 divide (bits 3,1:0)            |

    Access: only aligned 32-bit accesses at 16-byte strides reach a register; any other size,
    alignment or offset outside the page is logged and ignored (reads 0), as are all accesses
    while the APIC is hardware-disabled. An aligned access to an unimplemented offset sets
    ESR "illegal register address"; writes to read-only registers are ignored.

    Timer (SDM 10.5.4): counts at `timer_hz` (25 MHz on Skylake-SP/W: the core crystal clock,
    which CPUID 0x15 reports; Linux derives the APIC timer rate from it) divided by 1..128.
    The current count is derived from `clock.now_ns()`, never ticked; one clock timer is armed
    at the next expiry. A masked timer keeps counting and expires silently. Periodic re-arms
    from the original phase; expiries missed by a late run loop coalesce into one interrupt.
    A divide or one-shot/periodic change restarts the count from its current value.
    Switching into or out of TSC-deadline mode disarms the timer and clears the initial count
    and the deadline (SDM 10.5.4.1). In TSC-deadline mode writes to the initial count are
    ignored; `write_tsc_deadline()` (MSR 0x6E0) arms it at TSC = now_ns * tsc_hz / 1e9 + IA32_TSC_ADJUST, a
    deadline in the past fires at once, and firing clears the deadline. That mode is the core's
    (native/tsc_deadline.c: the guest's WRMSR and RDMSR of the deadline are served in C, and
    its deadlines are the clock's through the bus's cores); this class says when the core
    serves it and what firing delivers.

    The vectors' state (IRR, ISR, TMR, TPR), the INTA cycle, the EOI, the INTR pin and the
    page's common reads are the core's (`core`, devices/apic_core.py: in C, so that taking an
    interrupt costs no Python); this class keeps the rest and tells the core what it needs.

    Interrupts (SDM 10.8): `accept()` sets IRR and, per 10.8.4, TMR for level / clears it for
    edge; vectors 0-15 set ESR "received illegal vector" and are dropped. `highest_pending()`
    is the highest IRR vector whose class beats PPR's; `acknowledge()` (INTA) moves it to
    ISR, or returns the spurious vector. EOI clears the highest ISR bit and, if its TMR bit is
    set, broadcasts the EOI on the bus (EOI-broadcast suppression is not offered).
    While software-disabled (SVR bit 8 = 0) every LVT is masked and stays masked, fixed and
    lowest-priority messages are dropped, IRR/ISR are held (nothing is deliverable);
    NMI, INIT and SIPI still arrive (10.4.7.2). Hardware-disabled (IA32_APIC_BASE bit 11 = 0):
    the APIC returns to its INIT state and accepts nothing; LINT0/LINT1 then act as the CPU's
    INTR and NMI pins (10.4.3). Re-enabling is allowed (x2APIC-era parts allow it); the
    x2APIC bit and base relocation are ignored (the vCPU maps the page at 0xFEE00000).

    NMI, INIT, SIPI and ExtINT are flags the CPU polls (`take_nmi`, `take_init`, `take_sipi`,
    `extint_pending`); `on_event` is called when any of them or the deliverable state may have
    changed (never from `reset`, `init_reset` or `acknowledge`, which the CPU itself drives).
    `extint_pending` is true while LINT0 is asserted in unmasked ExtINT mode (virtual wire),
    or after an ExtINT message from the bus (an I/O APIC pin in ExtINT mode): that latch stays
    until reset/INIT, the CPU asks the PIC whether it really has an interrupt.
    LINT pins: polarity applies; NMI/INIT/SMI modes are edge; fixed level mode keeps the LVT's
    remote IRR until the EOI of its vector, then redelivers if still asserted.

    `reset()` is power-on: ID and APIC base from construction, then `init_reset()`; on the BSP
    LINT0 = ExtINT and LINT1 = NMI, unmasked, as PC firmware leaves them for virtual wire mode
    (MP spec 3.6.2.2; QEMU does the same for LINT0) since our firmware has no BIOS to do it.
    `init_reset()` is what INIT does (10.4.7.3): everything to its power-up value except the
    APIC ID, the APIC base MSR and the pending NMI/INIT/SIPI flags (a SIPI follows the INIT).

    Saved state: the registers (IRR, ISR and TMR as 256-bit ints, the LVTs by offset), the
    APIC base MSR, the NMI/INIT/SIPI/ExtINT latches the CPU has not taken, the LINT levels last
    seen, the timer's count base and the deadlines of its two clock timers (count; TSC
    deadline). `timer_hz` and `tsc_hz` are the CPU's configuration, not state. `load()` calls
    `on_event` so the CPU's pins follow the loaded state.
    """

    def __init__(self, apic_id: int, clock: Clock, bus: ApicBus, timer_hz: int = CRYSTAL_HZ,
                 bsp: bool = False, tsc_hz: int = DEFAULT_TSC_HZ):
        self._clock = clock
        self._bus = bus
        self.timer_hz = timer_hz
        self.bsp = bsp
        self.power_on_id = apic_id & 0xFF
        self.on_event: Callable[[], None] | None = None
        self.core = ApicCore(clock.view)
        self.tsc_hz = tsc_hz
        clock.watch(bus.cores)                  # the cores' TSC deadlines are the clock's
        # The pins' input levels: driven from outside, so reset keeps them; saved all the same,
        # since what a pin does next (an edge or not) depends on the level the APIC last saw.
        self.lint_level = [False, False]
        # Statistics, not state, kept by the core: when each vector in IRR got there (guest
        # ns), and the longest any waited for its INTA (the watchdog and the soak read them).
        self._count_timer = clock.timer(self._count_expired)        # one-shot and periodic
        self.reset()

    # --- reset ----------------------------------------------------------------------------

    def reset(self) -> None:
        self._base = LAPIC_BASE | BASE_ENABLE | (BASE_BSP if self.bsp else 0)
        self.apic_id = self.power_on_id
        self.nmi_pending = self.init_pending = self.extint_latched = False
        self.sipi_vector: int | None = None
        self.init_reset()
        if self.bsp:
            self.lvt[LVT_LINT0] = EXTINT << 8
            self.lvt[LVT_LINT1] = NMI << 8
        self._sync_core()

    def init_reset(self) -> None:
        self._cancel_timer()
        self.core.clear_pending_since()
        self.tpr = self.ldr = 0
        self.dfr = MASK32
        self.svr = 0xFF
        self.irr = self.isr = self.tmr = 0  # 256-bit bitmaps, bit n = vector n
        self.esr = self.esr_pending = 0
        self.icr_low = self.icr_high = 0
        self.lvt = {offset: LVT_MASKED for offset in LVT_WRITABLE}
        self.initial_count = self.divide_config = 0
        self.counting = False
        self.count_base_ns = self.count_base_remaining = 0
        self.tsc_deadline = 0
        self.extint_latched = False
        self._sync_core()

    # --- saved state ----------------------------------------------------------------------

    def save(self) -> dict:
        state = save_fields(self, _SAVED)
        state["apic_base"] = self._base
        state["count_timer"] = self._count_timer.deadline_ns
        state["deadline_timer"] = self.core.deadline_ns
        return state

    def load(self, state: dict) -> None:
        where = "LocalApic"
        _state.ranges(state, where, _RANGES, none=("sipi_vector",))
        base = _state.int_field(state, "apic_base", where, 0, MASK64)
        lvt = _state.mapping(_state.field(state, "lvt", where), f"{where}.lvt")
        for offset in LVT_WRITABLE:
            _state.int_field(lvt, str(offset), f"{where}.lvt", 0, MASK32)
        for n, level in enumerate(_state.list_field(state, "lint_level", where, length=2)):
            if not isinstance(level, bool):
                raise StateError(f"{where}.lint_level[{n}]: not a bool")
        if _state.bool_field(state, "counting", where) and not state["initial_count"]:
            raise StateError(f"{where}: counting with an initial count of 0")
        count_at = _state.timer_field(state, "count_timer", where)
        deadline_at = _state.timer_field(state, "deadline_timer", where)
        load_fields(self, state, _SAVED, optional_none=("sipi_vector",))   # checks the rest
        self.core.clear_pending_since()
        now = self._clock.now_ns()
        for vector in range(256):               # pending since the machine came back
            if self.irr >> vector & 1:
                self.core.c.pending_since[vector] = now
        self._base = base
        self._count_timer.arm_from(count_at)
        self.core.set_deadline(self.tsc_deadline, deadline_at)
        self._notify()  # the CPU's pins follow the loaded IRR/ISR/TPR and latches

    # --- the core's registers ---------------------------------------------------------------

    irr = property(lambda self: self.core.irr, lambda self, v: setattr(self.core, "irr", v))
    isr = property(lambda self: self.core.isr, lambda self, v: setattr(self.core, "isr", v))
    tmr = property(lambda self: self.core.tmr, lambda self, v: setattr(self.core, "tmr", v))
    tpr = property(lambda self: self.core.c.tpr,
                   lambda self, v: setattr(self.core.c, "tpr", v))
    icr_high = property(lambda self: self.core.c.icr_high,
                        lambda self, v: setattr(self.core.c, "icr_high", v))
    icr_low = property(lambda self: self.core.c.icr_low,
                       lambda self, v: setattr(self.core.c, "icr_low", v))
    tsc_deadline = property(lambda self: self.core.c.tsc_deadline,
                            lambda self, v: setattr(self.core.c, "tsc_deadline", v))
    # The CPU's TSC rate and IA32_TSC_ADJUST (its TSC minus the clock's count), which the
    # core turns a deadline into guest ns with (the CPU's MSRs set them).
    tsc_hz = property(lambda self: self.core.c.tsc_hz,
                      lambda self, v: setattr(self.core.c, "tsc_hz", v))
    tsc_offset = property(lambda self: self.core.c.tsc_offset,
                          lambda self, v: setattr(self.core.c, "tsc_offset", v))

    @property
    def esr_pending(self) -> int:
        return self._esr_pending | self.core.c.esr_pending   # the core's: from a firing

    @esr_pending.setter
    def esr_pending(self, value: int) -> None:
        self.core.take_esr()
        self._esr_pending = value

    @property
    def apic_id(self) -> int:
        return self.core.c.id_reg >> 24

    @apic_id.setter
    def apic_id(self, value: int) -> None:
        if self.core.c.id_reg != (value & 0xFF) << 24:
            self.core.c.id_reg = (value & 0xFF) << 24
            self._bus.cores.ids_changed()       # the cores' physical destinations

    @property
    def max_latency_ns(self) -> int:
        return self.core.c.max_latency_ns

    def pending_since(self, vector: int) -> int | None:
        """When `vector` got into IRR (guest ns), if it is there."""
        return self.core.pending_since(vector) if self.irr >> vector & 1 else None

    def _sync_core(self) -> None:
        """What the core needs of the rest of the APIC: the enables, the timer's vector,
        whether it serves the TSC deadline and what a deadline's firing delivers."""
        core = self.core.c
        core.hw_enabled = int(self.hardware_enabled)
        core.sw_enabled = int(self.software_enabled)
        timer, error = self.lvt[LVT_TIMER], self.lvt[LVT_ERROR]
        core.timer_vector = timer & 0xFF
        core.deadline_vector = -1 if timer & LVT_MASKED else timer & 0xFF
        core.error_vector = -1 if error & LVT_MASKED else error & 0xFF
        core.deadline_mode = int(self.hardware_enabled and self._timer_mode() == TSC_DEADLINE)

    # --- state seen by the bus and the CPU -------------------------------------------------

    @property
    def hardware_enabled(self) -> bool:
        return bool(self._base & BASE_ENABLE)

    @property
    def software_enabled(self) -> bool:
        return self.hardware_enabled and bool(self.svr & SVR_ENABLE)

    @property
    def apic_base(self) -> int:
        return self._base

    @apic_base.setter
    def apic_base(self, value: int) -> None:
        value &= MASK64
        if value & BASE_X2APIC or value & ~0xFFF != LAPIC_BASE:
            log.debug("APIC %d: base %#x: x2APIC/relocation not supported, ignored",
                      self.apic_id, value)
        if self.hardware_enabled and not value & BASE_ENABLE:
            self.init_reset()
            self._base &= ~BASE_ENABLE
        elif value & BASE_ENABLE:
            self._base |= BASE_ENABLE
        self._notify()

    @property
    def extint_pending(self) -> bool:
        if not self.hardware_enabled:
            return self.lint_level[0]  # LINT0 is the INTR pin
        lvt = self.lvt[LVT_LINT0]
        if not lvt & LVT_MASKED and (lvt >> 8) & 7 == EXTINT and self._lint_active(0):
            return True
        return self.extint_latched

    def take_nmi(self) -> bool:
        pending, self.nmi_pending = self.nmi_pending, False
        return pending

    def take_init(self) -> bool:
        pending, self.init_pending = self.init_pending, False
        return pending

    def take_sipi(self) -> int | None:
        vector, self.sipi_vector = self.sipi_vector, None
        return vector

    def processor_priority(self) -> int:
        return self.core.ppr()

    def arbitration_priority(self) -> int:
        irrv, isrv = _top(self.irr), _top(self.isr)
        if self.tpr >> 4 >= irrv >> 4 and self.tpr >> 4 > isrv >> 4:
            return self.tpr
        return max(self.tpr & 0xF0, isrv & 0xF0, irrv & 0xF0)

    def highest_pending(self) -> int | None:
        return self.core.deliverable()

    def acknowledge(self) -> int:
        vector = self.core.acknowledge()
        if vector is None:
            return self.svr & 0xFF  # the interrupt went away (TPR raised): spurious
        return vector

    def oldest_pending(self) -> tuple[int, int] | None:
        """(vector, guest ns since it is in IRR) of the vector that has waited longest. Read
        from another thread than the CPU's while it runs: a vector the CPU takes between the
        look at IRR and the look at its arrival time has no time any more (the acknowledge
        clears it), and taking that for 0 reported a vector "waiting since power-on" (run 11
        of the soak, docs/RELIABILITY.md). So a vector counts only if it is in IRR before
        and after its time is read, and has one (it gets one as it arrives)."""
        irr = self.irr
        times = [(self.core.pending_since(vector), vector) for vector in range(256)
                 if irr >> vector & 1]
        irr = self.irr
        waiting = [(since, vector) for since, vector in times
                   if since is not None and irr >> vector & 1]
        if not waiting:
            return None
        since, vector = min(waiting)
        return vector, since

    def timer_summary(self) -> str:
        """The timer's mode and what it is armed for, in a few words (for reports)."""
        mode = ("one-shot", "periodic", "tsc-deadline")[self._timer_mode()]
        masked = " masked" if self.lvt[LVT_TIMER] & LVT_MASKED else ""
        due = self._count_timer.deadline_ns
        if due is None:
            due = self.core.deadline_ns
        armed = f"due at {due / NS_PER_S:.3f}s" if due is not None else "not armed"
        return f"{mode}{masked}, {armed}"

    # --- messages in ------------------------------------------------------------------------

    def receive(self, delivery_mode: int, vector: int, level_triggered: bool) -> bool:
        """A message from the bus (or a local source); True if this APIC accepted it."""
        if not self.hardware_enabled:
            return False
        if delivery_mode == FIXED:
            return self.accept(vector, level_triggered)
        if delivery_mode == NMI:
            self.nmi_pending = True
        elif delivery_mode == INIT:
            self.init_pending = True
        elif delivery_mode == STARTUP:
            self.sipi_vector = vector & 0xFF
        elif delivery_mode == EXTINT and self.software_enabled:
            self.extint_latched = True
        else:
            log.debug("APIC %d: delivery mode %d dropped", self.apic_id, delivery_mode)
            return False
        self._notify()
        return True

    def signal_cmci(self) -> None:
        """A machine-check bank this CPU owns logged a corrected error (cpu/mca.py)."""
        self._local_deliver(LVT_CMCI)

    def accept(self, vector: int, level_triggered: bool) -> bool:
        if not self.software_enabled:
            log.debug("APIC %d disabled: vector %#x dropped", self.apic_id, vector)
            return False
        vector &= 0xFF
        if vector < 16:
            self._error(RECEIVE_ILLEGAL_VECTOR)
            return False
        self.core.accept(vector, level_triggered)
        self._notify()
        return True

    def set_lint(self, pin: int, level: bool) -> None:
        if pin not in (0, 1):
            log.debug("APIC %d: no LINT%r", self.apic_id, pin)
            return
        was = self._lint_active(pin)
        self.lint_level[pin] = bool(level)
        now = self._lint_active(pin)
        if not self.hardware_enabled:
            if pin == 1 and now and not was:
                self.nmi_pending = True  # LINT1 is the NMI pin
            self._notify()
            return
        offset = LVT_LINT0 if pin == 0 else LVT_LINT1
        lvt = self.lvt[offset]
        if (lvt >> 8) & 7 == EXTINT:
            self._notify()  # extint_pending follows the pin
        elif _lint_is_level(lvt):
            self._lint_level_deliver(offset)
        elif now and not was:
            self._local_deliver(offset)

    # --- TSC-deadline MSR (IA32_TSC_DEADLINE, 0x6E0) -------------------------------------

    def write_tsc_deadline(self, deadline_tsc: int, tsc_hz: int | None = None,
                           tsc_offset: int | None = None) -> None:
        """The guest's WRMSR, which the core serves itself while `deadline_mode` is on
        (this is the way in for the rest, and for tests). `tsc_hz`, `tsc_offset`: the
        CPU's TSC rate and IA32_TSC_ADJUST, if they changed."""
        if tsc_hz:
            self.tsc_hz = tsc_hz
        if tsc_offset is not None:
            self.tsc_offset = tsc_offset
        if not self.core.c.deadline_mode:
            log.debug("APIC %d: TSC deadline written outside TSC-deadline mode", self.apic_id)
            return
        self.core.tsc_deadline_msr(True, deadline_tsc & MASK64)   # 0 disarms

    def read_tsc_deadline(self) -> int:
        return self.core.tsc_deadline_msr(False) if self.core.c.deadline_mode else 0

    # --- MMIO -------------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if not self._register_access(offset, size, "read"):
            return 0
        if offset == ID:
            return self.apic_id << 24
        if offset == VERSION:
            return VERSION_VALUE
        if offset == TPR:
            return self.tpr
        if offset == APR:
            return self.arbitration_priority()
        if offset == PPR:
            return self.processor_priority()
        if offset in (EOI, RRD):
            return 0
        if offset == LDR:
            return self.ldr
        if offset == DFR:
            return self.dfr
        if offset == SVR:
            return self.svr
        for base, bits in ((ISR, self.isr), (TMR, self.tmr), (IRR, self.irr)):
            if base <= offset < base + 0x80:
                return bits >> (2 * (offset - base)) & MASK32  # word k at base + 16k
        if offset == ESR:
            return self.esr
        if offset in self.lvt:
            return self.lvt[offset]
        if offset == ICR_LOW:
            return self.icr_low
        if offset == ICR_HIGH:
            return self.icr_high
        if offset == TIMER_INITIAL:
            return self.initial_count
        if offset == TIMER_CURRENT:
            self._catch_up(self._count_timer, self._count_expired)
            return self.current_count()
        if offset == TIMER_DIVIDE:
            return self.divide_config
        self._error(ILLEGAL_REGISTER)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if not self._register_access(offset, size, "write"):
            return
        value &= MASK32
        if offset == ID:
            self.apic_id = value >> 24
        elif offset == TPR:
            self.tpr = value & 0xFF
            self._notify()
        elif offset == EOI:
            self._eoi()
        elif offset == LDR:
            self.ldr = value & 0xFF00_0000
        elif offset == DFR:
            self.dfr = value | 0x0FFF_FFFF
        elif offset == SVR:
            self.svr = value & SVR_WRITABLE
            if not self.svr & SVR_ENABLE:
                for lvt_offset in self.lvt:
                    self.lvt[lvt_offset] |= LVT_MASKED
            self._notify()
        elif offset == ESR:
            self.esr = self._esr_pending | self.core.take_esr()
            self._esr_pending = 0
        elif offset == LVT_TIMER:
            self._write_lvt_timer(value)
        elif offset in (LVT_LINT0, LVT_LINT1):
            self._write_lvt_lint(offset, value)
        elif offset in self.lvt:
            self.lvt[offset] = self._lvt_value(offset, value)
            self._sync_core()                   # the error LVT: a deadline may raise it
        elif offset == ICR_LOW:
            self.icr_low = value & ICR_WRITABLE
            self._send_ipi()
        elif offset == ICR_HIGH:
            self.icr_high = value & 0xFF00_0000
        elif offset == TIMER_INITIAL:
            self._write_initial_count(value)
        elif offset == TIMER_DIVIDE:
            current = self.current_count()
            self.divide_config = value & 0xB
            self._count_on_from(current)
        elif offset in READ_ONLY:
            log.debug("APIC %d: write to read-only register %#x ignored", self.apic_id, offset)
        else:
            self._error(ILLEGAL_REGISTER)

    def _register_access(self, offset: int, size: int, what: str) -> bool:
        if size != 4 or offset & 0xF or not 0 <= offset < 0x1000:
            log.debug("APIC %d: %s of %d bytes at %#x ignored", self.apic_id, what, size, offset)
            return False
        if not self.hardware_enabled:
            log.debug("APIC %d: %s at %#x while hardware-disabled", self.apic_id, what, offset)
            return False
        return True

    # --- internals --------------------------------------------------------------------------

    def _notify(self) -> None:
        self._sync_core()
        if self.on_event is not None:
            self.on_event()

    def _error(self, bit: int) -> None:
        self.esr_pending |= bit
        lvt = self.lvt[LVT_ERROR]
        if lvt & LVT_MASKED:
            return
        if lvt & 0xFF < 16:
            self.esr_pending |= RECEIVE_ILLEGAL_VECTOR  # and no interrupt: it would loop
        else:
            self.accept(lvt & 0xFF, False)

    def _eoi(self) -> None:
        vector = self.core.eoi()
        if vector is not None:
            self.eoi_done(vector)

    def eoi_done(self, vector: int) -> None:
        """After the core cleared `vector`'s ISR bit: the I/O APICs hear of a level-triggered
        one (or an edge they asked for), a LINT pin's remote IRR clears."""
        if self.tmr >> vector & 1 or vector in self._bus.edge_eoi_vectors:
            self._bus.eoi(vector)
        for offset in (LVT_LINT0, LVT_LINT1):
            lvt = self.lvt[offset]
            if lvt & LVT_REMOTE_IRR and lvt & 0xFF == vector:
                self.lvt[offset] = lvt & ~LVT_REMOTE_IRR
                self._lint_level_deliver(offset)
        self._notify()

    def _send_ipi(self) -> None:
        icr = self.icr_low
        vector, mode = icr & 0xFF, (icr >> 8) & 7
        if mode in (FIXED, LOWEST_PRIORITY) and vector < 16:
            self._error(SEND_ILLEGAL_VECTOR)
            return
        # Xeon ignores the trigger bit except for INIT (SDM 10.6.1): IPIs are edge.
        self._bus.deliver(self.icr_high >> 24, bool(icr & ICR_LOGICAL), mode, vector,
                          mode == INIT and bool(icr & ICR_LEVEL_TRIGGER),
                          shorthand=(icr >> 18) & 3, source=self,
                          level_assert=bool(icr & ICR_ASSERT))

    def _lvt_value(self, offset: int, value: int) -> int:
        value &= LVT_WRITABLE[offset]
        return value if self.svr & SVR_ENABLE else value | LVT_MASKED

    def _local_deliver(self, offset: int) -> bool:
        lvt = self.lvt[offset]
        if lvt & LVT_MASKED:
            return False
        mode = FIXED if offset in (LVT_TIMER, LVT_ERROR) else (lvt >> 8) & 7
        if mode not in (FIXED, SMI, NMI, INIT):
            log.debug("APIC %d: LVT %#x mode %d not deliverable", self.apic_id, offset, mode)
            return False
        level = offset in (LVT_LINT0, LVT_LINT1) and _lint_is_level(lvt)
        return self.receive(mode, lvt & 0xFF, level)

    # LINT pins

    def _lint_active(self, pin: int) -> bool:
        offset = LVT_LINT0 if pin == 0 else LVT_LINT1
        return self.lint_level[pin] != bool(self.lvt[offset] & LVT_ACTIVE_LOW)

    def _lint_level_deliver(self, offset: int) -> None:
        lvt = self.lvt[offset]
        pin = 0 if offset == LVT_LINT0 else 1
        if (_lint_is_level(lvt) and not lvt & (LVT_MASKED | LVT_REMOTE_IRR)
                and self._lint_active(pin) and self._local_deliver(offset)):
            self.lvt[offset] |= LVT_REMOTE_IRR

    def _write_lvt_lint(self, offset: int, value: int) -> None:
        remote_irr = self.lvt[offset] & LVT_REMOTE_IRR
        new = self._lvt_value(offset, value)
        self.lvt[offset] = new | (remote_irr if _lint_is_level(new) else 0)
        self._lint_level_deliver(offset)  # an asserted level pin delivers once unmasked
        self._notify()

    # Timer

    def _timer_mode(self) -> int:
        mode = (self.lvt[LVT_TIMER] >> 17) & 3
        return mode if mode in (PERIODIC, TSC_DEADLINE) else ONE_SHOT  # 3 is reserved

    def _divisor(self) -> int:
        code = (self.divide_config & 3) | (self.divide_config >> 1 & 4)
        return 1 << ((code + 1) & 7)  # 000 = /2 ... 110 = /128, 111 = /1

    def _counts_since_base(self, now: int) -> int:
        return (now - self.count_base_ns) * self.timer_hz // (self._divisor() * NS_PER_S)

    def current_count(self) -> int:
        if not self.counting:
            return 0
        elapsed = self._counts_since_base(self._clock.now_ns())
        remaining = self.count_base_remaining
        if elapsed < remaining:
            return remaining - elapsed
        if self._timer_mode() == PERIODIC:
            return self.initial_count - (elapsed - remaining) % self.initial_count
        return 0

    def _write_lvt_timer(self, value: int) -> None:
        old_mode = self._timer_mode()
        new = self._lvt_value(LVT_TIMER, value)
        new_mode = (new >> 17) & 3
        if (old_mode == TSC_DEADLINE) != (new_mode == TSC_DEADLINE):
            self._cancel_timer()
            self.lvt[LVT_TIMER] = new
            self.counting = False
            self.initial_count = 0
        else:
            current = self.current_count()
            self.lvt[LVT_TIMER] = new
            self._count_on_from(current)
        self._sync_core()                       # the core's deadline mode and vector

    def _count_on_from(self, current: int) -> None:
        """After a divide or one-shot/periodic change: count on from the current value."""
        if self.counting:
            self.count_base_ns = self._clock.now_ns()
            self.count_base_remaining = current
            self._arm_count()

    def _write_initial_count(self, value: int) -> None:
        if self._timer_mode() == TSC_DEADLINE:
            log.debug("APIC %d: initial count ignored in TSC-deadline mode", self.apic_id)
            return
        self._cancel_timer()
        self.initial_count = value
        self.counting = value != 0  # zero stops the timer
        self.count_base_ns = self._clock.now_ns()
        self.count_base_remaining = value
        if self.counting:
            self._arm_count()

    def _arm_count(self) -> None:
        elapsed = self._counts_since_base(self._clock.now_ns())
        target = self.count_base_remaining
        if elapsed >= target and self._timer_mode() == PERIODIC:
            target += ((elapsed - target) // self.initial_count + 1) * self.initial_count
        ns = -(-target * self._divisor() * NS_PER_S // self.timer_hz)
        self._count_timer.arm(self.count_base_ns + ns)

    def _count_expired(self) -> None:
        if self._timer_mode() == PERIODIC:
            self._arm_count()
        else:
            self.counting = False
        self._local_deliver(LVT_TIMER)

    def _catch_up(self, timer, expired) -> None:
        """A count the guest finds run out (it reads 0) has fired: its interrupt is pending
        from that read on, as on hardware, not only once the clock runs its timers after the
        slice (later still when the host is slow to end it). The deadline MSR's read does
        the same in C."""
        if timer.deadline_ns is not None and timer.deadline_ns <= self._clock.now_ns():
            timer.cancel()
            expired()

    def _cancel_timer(self) -> None:
        self._count_timer.cancel()
        self.core.set_deadline(0, None)


# What save() holds besides the APIC base and the two timers' deadlines.
_SAVED = ("apic_id", "nmi_pending", "init_pending", "sipi_vector", "extint_latched", "tpr",
          "ldr", "dfr", "svr", "irr", "isr", "tmr", "esr", "esr_pending", "icr_low", "icr_high",
          "lvt", "initial_count", "divide_config", "counting", "count_base_ns",
          "count_base_remaining", "tsc_deadline", "lint_level")
_RANGES = {"apic_id": (0, 0xFF), "sipi_vector": (0, 0xFF), "tpr": (0, 0xFF),
           "ldr": (0, MASK32), "dfr": (0, MASK32), "svr": (0, SVR_WRITABLE),
           "irr": (0, (1 << 256) - 1), "isr": (0, (1 << 256) - 1), "tmr": (0, (1 << 256) - 1),
           "esr": (0, MASK32), "esr_pending": (0, MASK32), "icr_low": (0, MASK32),
           "icr_high": (0, MASK32), "initial_count": (0, MASK32), "divide_config": (0, 0xB),
           "count_base_ns": (0, None), "count_base_remaining": (0, MASK32),
           "tsc_deadline": (0, MASK64)}


def _lint_is_level(lvt: int) -> bool:
    """Level triggering exists only in fixed mode; NMI, SMI, INIT and ExtINT are edge/own."""
    return (lvt >> 8) & 7 == FIXED and bool(lvt & LVT_LEVEL)
