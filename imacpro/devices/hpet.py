"""IA-PC High Precision Event Timer at MMIO 0xFED00000: one 64-bit counter, three comparators."""

from __future__ import annotations

import functools
import logging
import types
from typing import Callable

from imacpro.clock import NS_PER_S, Clock, Timer
from imacpro.devices import _state
from imacpro.devices.contract import StateError, save_fields
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

HPET_HZ = 14_318_180  # the PC's 14.31818 MHz crystal, as Intel PCHs clock their HPET
PERIOD_FS = 69_841_279  # 10^15 / HPET_HZ, the value GCAP_ID reports (spec 2.3.4)
TIMERS = 3
MASK32 = 0xFFFF_FFFF
MASK64 = 0xFFFF_FFFF_FFFF_FFFF
SIZE = 0x400

# General registers (spec 2.3.3, table 2).
GCAP_ID, GEN_CONF, GINTR_STA, MAIN_CNT = 0x000, 0x010, 0x020, 0x0F0
TIMER_BASE, TIMER_STRIDE = 0x100, 0x20
TN_CONF, TN_COMPARATOR = 0x00, 0x08  # 0x10 is the FSB route: reads 0 here

# GCAP_ID: REV_ID 7:0, NUM_TIM_CAP 12:8 (last timer), COUNT_SIZE_CAP 13, LEG_RT_CAP 15,
# VENDOR_ID 31:16, COUNTER_CLK_PERIOD 63:32.
CAPABILITIES = PERIOD_FS << 32 | 0x8086 << 16 | 1 << 15 | 1 << 13 | (TIMERS - 1) << 8 | 0x01

ENABLE_CNF, LEG_RT_CNF = 0x1, 0x2

# Timer N configuration and capability (spec 2.3.8).
INT_TYPE_LEVEL, INT_ENB, TYPE_PERIODIC, PER_INT_CAP, SIZE_CAP, VAL_SET, MODE32 = (
    1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 8)
ROUTE_SHIFT, ROUTE_MASK = 9, 0x1F << 9
# Linux (and the ACPI-less PCH default) picks a route from this bitmap: GSIs 20-23, the
# I/O APIC pins PCH HPETs offer. FSB (MSI) delivery is not offered (FSB_INT_DEL_CAP = 0).
ROUTE_CAP = 0x00F0_0000
WRITABLE = INT_TYPE_LEVEL | INT_ENB | TYPE_PERIODIC | VAL_SET | MODE32 | ROUTE_MASK
# Lost periods kept: one second's worth of the period (this many at the shortest period).
MAX_LOST = HPET_HZ
# A 64-bit match more than this far ahead is one the counter already passed: never again.
FAR_TICKS = 1 << 63


def hpet_routes() -> list[int]:
    """The I/O APIC pins a comparator may be routed to (ROUTE_CAP)."""
    return [pin for pin in range(32) if ROUTE_CAP >> pin & 1]


def _route_line(lines, route: int) -> IrqLine | None:
    try:
        return lines(route) if callable(lines) else lines.get(route)
    except (KeyError, IndexError, ValueError):
        return None


class _Comparator:
    """Timer N's plain state."""

    SAVED = ("config", "comparator", "period", "target", "lost")

    def __init__(self, index: int, timer: Timer | None):
        self.index = index
        self.timer = timer  # the clock timer armed at the next match
        self.reset()

    def reset(self) -> None:
        caps = SIZE_CAP | (PER_INT_CAP if self.index == 0 else 0)
        self.config = ROUTE_CAP << 32 | caps
        self.comparator = MASK64  # spec default: all ones
        self.period = 0           # the accumulator's increment (the last value written)
        self.target = 0           # absolute counter value of the armed match
        self.lost = 0             # periods the host ran late, still to give back as edges

    @property
    def width_mask(self) -> int:
        return MASK32 if self.config & MODE32 else MASK64

    def checked(self, state: dict, where: str) -> _Comparator:
        """A scratch comparator holding `state`, checked (StateError), for load() to copy."""
        _state.ranges(state, where, {"config": (0, MASK64), "comparator": (0, MASK64),
                                     "period": (0, MASK64), "target": (0, None),
                                     "lost": (0, MAX_LOST)})
        part = _Comparator(self.index, None)
        if (state["config"] ^ part.config) & ~WRITABLE:
            raise StateError(f"{where}: capability bits {state['config']:#x} are not timer "
                             f"{self.index}'s")
        if state["config"] & TYPE_PERIODIC and not part.config & PER_INT_CAP:
            raise StateError(f"{where}: timer {self.index} cannot be periodic")
        return _state.staged(part, state, list(self.SAVED), where)


class Hpet:
    """IA-PC HPET, specification revision 1.0a (2004), sections 2.3 (registers) and 2.3.9
    (timer modes); 1 KiB of MMIO at 0xFED00000.

    | off         | register                                                           |
    |-------------|--------------------------------------------------------------------|
    | 000         | GCAP_ID (RO): rev 1, 3 timers, 64-bit counter, LEG_RT_CAP, vendor  |
    |             | 0x8086, period 69841279 fs (14.31818 MHz)                         |
    | 010         | GEN_CONF: ENABLE_CNF 0 (counter runs, interrupts allowed),          |
    |             | LEG_RT_CNF 1 (timer 0 -> IRQ 0, timer 1 -> IRQ 8)                  |
    | 020         | GINTR_STA: level-triggered timers' status, write 1 to clear        |
    | 0F0         | MAIN_CNT: 64-bit counter; writes only while halted                 |
    | 100 + 20*N  | Tn_CONF_CAP: INT_TYPE 1 (level), INT_ENB 2, TYPE 3 (periodic,      |
    |             | timer 0 only: PER_INT_CAP 4), SIZE_CAP 5 (all 64-bit), VAL_SET 6,   |
    |             | 32MODE 8, INT_ROUTE 13:9, FSB 14-15 (0), INT_ROUTE_CAP 63:32 (20-23)|
    | 108 + 20*N  | Tn_COMPARATOR                                                      |
    | 110 + 20*N  | Tn_FSB_ROUTE: reads 0, writes ignored (no FSB delivery)            |

    Accesses: 4- and 8-byte, naturally aligned, including either 32-bit half of a 64-bit
    register; 1- and 2-byte reads return those bytes of the register (no side effects); other
    writes, unaligned or odd-sized accesses and everything else in the 1 KiB (and beyond it)
    read 0 and are ignored.

    The counter is derived from `clock.now_ns()` while ENABLE_CNF is set (`base_count` at
    `base_ns`) and frozen when halted. Each enabled comparator (global ENABLE, and INT_ENB or
    level type) arms its own clock timer at the virtual time of its next match: the first
    counter value at or after now equal to the comparator in its low 32 (32MODE) or 64 bits.
    On a match: a level-triggered timer sets its GINTR_STA bit (even with INT_ENB clear, per
    the spec) and its line stays asserted while the bit, INT_ENB and ENABLE_CNF are set; an
    edge timer pulses its line if INT_ENB. Periodic (timer 0): the comparator advances by the
    period until it is ahead of the counter (missed periods merge into one interrupt). A write
    to the comparator of a periodic timer sets the period; with VAL_SET (or when one-shot) it
    also sets the comparator. Any comparator write clears VAL_SET (as QEMU, so the
    write-twice sequence Linux uses for AMD parts works). One-shot: fires again each time the
    counter's low 32 bits come round (32MODE), never in 64-bit mode.

    Lost periods are given back, as the PIT gives back lost ticks (pit.py): when the host
    runs a periodic edge timer's clock timer late by whole periods, the edges missed are
    counted in `lost` (at most one second's worth), and each time the guest acknowledges
    the line's interrupt (`acked(line)`: the I/O APIC's EOI listener, the 8259's INTA) one
    is sent at once. Linux ticks on timer 0's legacy route until its high-resolution timers
    take over, and checks at boot that 5 ticks come within 10 ticks of TSC time
    (`timer_irq_works`); a host that stalled the emulator for 30 ms merged periods and failed
    it ("MP-BIOS bug: 8254 timer not connected to IO-APIC"). A write to the timer's
    configuration or comparator, or to GEN_CONF, forgets them. A level-triggered timer's
    status bit has no count, so its missed periods merge as on silicon.

    Routes: `irq_lines` maps INT_ROUTE (an I/O APIC input, one of ROUTE_CAP) to a line; with
    LEG_RT_CNF timer 0 drives `legacy_irq0` and timer 1 `legacy_irq8`, and
    `on_legacy_change(enabled)` lets the machine disconnect the PIT and RTC. A route outside
    ROUTE_CAP is stored but delivers nothing. Timers sharing a level line assert it together.

    Saved state: GEN_CONF, GINTR_STA, the counter as (`base_count` at `base_ns`), and per
    comparator its configuration, comparator, period, the match it is armed for (`target`),
    the lost periods still to give back and its timer's deadline. `load()` re-asserts the
    level lines the loaded status holds and tells `on_legacy_change` if the legacy route
    differs from the one before.
    """

    def __init__(self, clock: Clock,
                 irq_lines: dict[int, IrqLine] | Callable[[int], IrqLine],
                 legacy_irq0: IrqLine | None = None, legacy_irq8: IrqLine | None = None):
        self._clock = clock
        self._irq_lines = irq_lines
        self._legacy = (legacy_irq0, legacy_irq8)
        self.on_legacy_change: Callable[[bool], None] | None = None
        self.timers = [_Comparator(n, None) for n in range(TIMERS)]
        for t in self.timers:
            t.timer = clock.timer(self._timer_callback(t))
        self._asserted: dict[int, IrqLine] = {}  # level lines we hold high, by id
        self.config = 0
        self.reset()

    def _timer_callback(self, t: _Comparator):
        """Comparator t's callback, fixed when its handle is made: a method bound to this HPET
        (the machine's guard names the device after `__self__`), applied to t."""
        return types.MethodType(functools.partial(Hpet._on_match, t=t), self)

    def reset(self) -> None:
        legacy_was = self.config & LEG_RT_CNF
        for t in self.timers:
            t.timer.cancel()
            t.reset()
        self.config = 0
        self.status = 0
        self.base_count = 0
        self.base_ns = self._clock.now_ns()
        self._update_lines()
        if legacy_was and self.on_legacy_change is not None:
            self.on_legacy_change(False)

    # --- saved state --------------------------------------------------------------------------

    def save(self) -> dict:
        timers = []
        for t in self.timers:
            saved = save_fields(t, _Comparator.SAVED)
            saved["timer"] = t.timer.deadline_ns
            timers.append(saved)
        state = save_fields(self, ("config", "status", "base_count", "base_ns"))
        state["timers"] = timers
        return state

    def load(self, state: dict) -> None:
        where = "Hpet"
        _state.ranges(state, where, {"config": (0, ENABLE_CNF | LEG_RT_CNF),
                                     "status": (0, (1 << TIMERS) - 1),
                                     "base_count": (0, None), "base_ns": (0, None)})
        saved = _state.list_field(state, "timers", where, length=TIMERS)
        loaded = [t.checked(_state.mapping(st, f"{where}.timers[{n}]"), f"{where}.timers[{n}]")
                  for n, (t, st) in enumerate(zip(self.timers, saved))]
        deadlines = [_state.timer_field(st, "timer", f"{where}.timers[{n}]")
                     for n, st in enumerate(saved)]
        legacy_was = self.config & LEG_RT_CNF
        self.config, self.status = state["config"], state["status"]
        self.base_count, self.base_ns = state["base_count"], state["base_ns"]
        for t, source, deadline_ns in zip(self.timers, loaded, deadlines):
            _state.copy_fields(source, t, _Comparator.SAVED)
            t.timer.arm_from(deadline_ns)
        if (self.config & LEG_RT_CNF) != legacy_was:
            self._legacy_changed()
        self._update_lines()

    def _legacy_changed(self) -> None:
        """LEG_RT_CNF changed: the machine moves IRQ 0 between the PIT and us. Turned off, we
        let go of the legacy lines first: lowered after the PIT drives IRQ 0 again, they would
        undo the PIT's level."""
        if not self.config & LEG_RT_CNF:
            self._update_lines()
        if self.on_legacy_change is not None:
            self.on_legacy_change(bool(self.config & LEG_RT_CNF))

    # --- the counter --------------------------------------------------------------------------

    def _ticks(self) -> int:
        """The main counter, unbounded (the guest sees it modulo 2^64)."""
        if not self.config & ENABLE_CNF:
            return self.base_count
        return self.base_count + (self._clock.now_ns() - self.base_ns) * HPET_HZ // NS_PER_S

    def _ns_at(self, ticks: int) -> int:
        """The first virtual time at which the running counter reads `ticks` or more."""
        return self.base_ns + -(-(ticks - self.base_count) * NS_PER_S // HPET_HZ)

    # --- guest access -------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4, 8) or offset % size or not 0 <= offset < SIZE:
            log.debug("hpet: read of %r bytes at %#x ignored", size, offset)
            return 0
        shift = 8 * (offset & 7)
        return (self._register(offset & ~7) >> shift) & ((1 << (8 * size)) - 1)

    def _register(self, offset: int) -> int:
        if offset == GCAP_ID:
            return CAPABILITIES
        if offset == GEN_CONF:
            return self.config
        if offset == GINTR_STA:
            return self.status
        if offset == MAIN_CNT:
            return self._ticks() & MASK64
        t, reg = self._timer_at(offset)
        if t is None:
            return 0
        if reg == TN_CONF:
            return t.config
        if reg == TN_COMPARATOR:
            return t.comparator
        return 0  # FSB route, reserved

    def _timer_at(self, offset: int) -> tuple[_Comparator | None, int]:
        n, reg = divmod(offset - TIMER_BASE, TIMER_STRIDE)
        if offset < TIMER_BASE or n >= TIMERS:
            return None, 0
        return self.timers[n], reg

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (4, 8) or offset % size or not 0 <= offset < SIZE:
            log.debug("hpet: write of %r bytes at %#x ignored", size, offset)
            return
        base, shift = offset & ~7, 8 * (offset & 7)
        mask = ((1 << (8 * size)) - 1) << shift  # the bits of the 64-bit register written
        value = (value << shift) & mask
        if base == GEN_CONF:
            self._write_config(value & mask & (ENABLE_CNF | LEG_RT_CNF) | self.config & ~mask)
        elif base == GINTR_STA:
            self.status &= ~(value & ((1 << TIMERS) - 1))
            self._update_lines()
        elif base == MAIN_CNT:
            if self.config & ENABLE_CNF:
                log.debug("hpet: main counter write while running ignored")
                return
            self.base_count = (self._ticks() & MASK64 & ~mask) | value
        else:
            t, reg = self._timer_at(base)
            if t is not None and reg == TN_CONF:
                self._write_timer_config(t, value, mask)
            elif t is not None and reg == TN_COMPARATOR:
                self._write_comparator(t, value, mask)
            else:
                log.debug("hpet: write to read-only or reserved %#x ignored", offset)

    def _write_config(self, config: int) -> None:
        changed = self.config ^ config
        if changed & ENABLE_CNF:
            self.base_count = self._ticks()  # freeze, or restart from, the count
            self.base_ns = self._clock.now_ns()
        self.config = config
        if changed & LEG_RT_CNF:
            self._legacy_changed()
        if changed:
            for t in self.timers:
                t.lost = 0
                self._arm(t)
            self._update_lines()

    def _write_timer_config(self, t: _Comparator, value: int, mask: int) -> None:
        writable = WRITABLE & mask
        if not t.config & PER_INT_CAP:
            writable &= ~TYPE_PERIODIC
        t.config = (t.config & ~writable) | (value & writable)
        t.lost = 0
        if t.config & MODE32:  # a 32-bit timer keeps 32-bit comparator and period
            t.comparator &= MASK32
            t.period &= MASK32
        self._arm(t)
        self._update_lines()

    def _write_comparator(self, t: _Comparator, value: int, mask: int) -> None:
        mask &= t.width_mask
        if not mask:
            log.debug("hpet: write to the upper half of 32-bit timer %d ignored", t.index)
            return
        value &= mask
        periodic = t.config & TYPE_PERIODIC
        if not periodic or t.config & VAL_SET:
            t.comparator = (t.comparator & ~mask) | value
        if periodic:
            t.period = (t.period & ~mask) | value
        t.config &= ~VAL_SET
        t.lost = 0
        self._arm(t)

    # --- matches ------------------------------------------------------------------------------

    def _arm(self, t: _Comparator, after: int | None = None) -> None:
        """Arm t's timer at its first match at or after counter value `after` (default now)."""
        if not self.config & ENABLE_CNF or not t.config & (INT_ENB | INT_TYPE_LEVEL):
            t.timer.cancel()
            return
        now = self._ticks()
        start = now if after is None else after
        t.target = start + ((t.comparator - start) & t.width_mask)
        if t.target - now >= FAR_TICKS:
            t.timer.cancel()
            return
        t.timer.arm(self._ns_at(t.target))

    def _on_match(self, t: _Comparator) -> None:
        bit = 1 << t.index
        line = None
        if t.config & INT_TYPE_LEVEL:
            self.status |= bit
            self._update_lines()
        elif t.config & INT_ENB:
            line = self._line_of(t)
            if line is not None:
                line.pulse()
        if t.config & TYPE_PERIODIC and t.period:
            now = self._ticks()
            passed = (now - t.target) // t.period + 1  # matches from `target` to now
            t.comparator = (t.target + passed * t.period) & t.width_mask
            if line is not None and passed > 1:  # one edge was sent for them all
                t.lost = min(t.lost + passed - 1, max(1, HPET_HZ // t.period))
            self._arm(t)
        else:
            self._arm(t, after=t.target + 1)

    def acked(self, line: IrqLine) -> None:
        """The guest took an interrupt from `line`: a periodic edge timer that drives it and
        has lost periods gives one back, as an edge."""
        for t in self.timers:
            if t.lost and t.config & INT_ENB and self._line_of(t) is line:
                t.lost -= 1
                line.pulse()
                return

    # --- interrupt lines ----------------------------------------------------------------------

    def _line_of(self, t: _Comparator) -> IrqLine | None:
        if self.config & LEG_RT_CNF and t.index < 2:
            return self._legacy[t.index]
        route = (t.config & ROUTE_MASK) >> ROUTE_SHIFT
        if not ROUTE_CAP >> route & 1:
            log.debug("hpet: timer %d routed to unsupported input %d", t.index, route)
            return None
        return _route_line(self._irq_lines, route)

    def _update_lines(self) -> None:
        """Hold high the lines of asserted level-triggered timers, and only those."""
        wanted: dict[int, IrqLine] = {}
        if self.config & ENABLE_CNF:
            for t in self.timers:
                level_on = INT_TYPE_LEVEL | INT_ENB
                if t.config & level_on == level_on and self.status >> t.index & 1:
                    line = self._line_of(t)
                    if line is not None:
                        wanted[id(line)] = line
        for key, line in self._asserted.items():
            if key not in wanted:
                line.set(False)
        for line in wanted.values():
            line.set(True)
        self._asserted = wanted
