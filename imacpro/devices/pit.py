"""Intel 8254 programmable interval timer (ports 0x40-0x43, IRQ 0) and port 0x61."""

from __future__ import annotations

import functools
import logging
import types

from imacpro.clock import NS_PER_S, Clock, Timer
from imacpro.devices import _state
from imacpro.devices.contract import StateError, load_fields, save_fields
from imacpro.devices.lpc import SIZES, ByteRegisters
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

# The PC's PIT input clock: 14.31818 MHz / 12 = 105/88 MHz = 1,193,181.8 Hz; every PC
# emulator and Linux (PIT_TICK_RATE) round it to this integer.
PIT_HZ = 1_193_182
MAX_LOST = PIT_HZ // 2  # lost edges kept: one second's worth at the fastest rate (count 2)
CHANNELS = 3
CONTROL = 3  # port offset of the control word register

# Control word (8254 datasheet, figure 7): SC 7:6, RW 5:4, M 3:1, BCD 0.
SC_READ_BACK = 3
RW_LATCH, RW_LSB, RW_MSB, RW_WORD = range(4)
# Read-back command: bit 5 = 0 latches the count, bit 4 = 0 latches the status, bits 3:1
# select counters 2, 1, 0.
RB_NO_COUNT, RB_NO_STATUS = 0x20, 0x10
STATUS_OUT, STATUS_NULL_COUNT = 0x80, 0x40

# Port 0x61 (PCH NMI_SC register; IBM AT "port B").
B_GATE2 = 0x01
B_WRITABLE = 0x0F  # gate 2, speaker enable, SERR# and IOCHK NMI enables
B_REFRESH, B_OUT2 = 0x10, 0x20
REFRESH_NS = 15_085  # the AT's DRAM refresh request: 18 PIT clocks (~15 us) per toggle


def _from_bcd(value: int) -> int:
    """Four BCD digits to binary; nibbles above 9 count as their value (garbage in, no raise)."""
    return sum(((value >> (4 * i)) & 0xF) * 10 ** i for i in range(4))


def _to_bcd(value: int) -> int:
    return sum((value // 10 ** i % 10) << (4 * i) for i in range(4))


class _Channel:
    """One counter's plain state; the Pit8254 methods give it behaviour."""

    SAVED = ("mode_bits", "mode", "rw", "bcd", "count", "loaded", "gate", "held", "start_ns",
             "frozen", "low_byte", "read_msb", "latch", "status", "null_count",
             "pending_count", "timer_tick")
    NULLABLE = ("start_ns", "low_byte", "status", "pending_count", "timer_tick")

    def __init__(self, index: int, timer: Timer | None):
        self.index = index
        self.timer = timer       # the clock timer of OUT's next transition (counter 0's)
        self.timer_tick: int | None = None   # the tick that transition comes after
        self.reset(now=None)

    def reset(self, now: int | None) -> None:
        # What PC firmware leaves (and QEMU's reset): mode 3, LSB-then-MSB, count 65536,
        # running; channel 2's gate is low until port 0x61 raises it.
        self.mode_bits = 3       # M2:M0 as written (the status byte echoes them)
        self.mode = 3            # effective mode: 6 and 7 are aliases of 2 and 3
        self.rw = RW_WORD
        self.bcd = False
        self.count = 0x10000     # the count in effect, binary, a written 0 meaning the maximum
        self.loaded = now is not None  # False: waiting for a count (or a mode 1/5 trigger)
        self.gate = self.index != 2
        self.held = 0            # ticks counted before `start_ns`
        self.start_ns = now if (now is not None and self.gate) else None
        self.frozen = 0          # the value shown while no count is loaded
        self.low_byte: int | None = None  # first byte of an LSB-then-MSB count write
        self.read_msb = False    # flip-flop of unlatched LSB-then-MSB reads
        self.latch: list[int] = []  # latched count bytes still to be read
        self.status: int | None = None  # latched status byte
        self.null_count = False
        self.pending_count: int | None = None  # mode 1/5: loaded at the next trigger

    @property
    def modulus(self) -> int:
        return 10_000 if self.bcd else 0x10000

    def checked(self, state: dict, where: str) -> _Channel:
        """A scratch counter holding `state`, checked (StateError), for load() to copy over."""
        _state.ranges(state, where, {
            "mode_bits": (0, 7), "mode": (0, 5), "rw": (RW_LSB, RW_WORD), "count": (1, 0x10000),
            "held": (0, None), "start_ns": (0, None), "frozen": (0, 0xFFFF),
            "low_byte": (0, 0xFF), "status": (0, 0xFF), "pending_count": (1, 0x10000),
            "timer_tick": (0, None)}, none=self.NULLABLE)
        latch = _state.int_list(state, "latch", where, 0, 0xFF, max_length=2)
        mode_bits = state["mode_bits"]
        if state["mode"] != (mode_bits - 4 if mode_bits >= 6 else mode_bits):
            raise StateError(f"{where}: mode {state['mode']} does not go with M = {mode_bits}")
        part = _state.staged(_Channel(self.index, None), state,
                             [name for name in self.SAVED if name != "latch"], where,
                             optional_none=self.NULLABLE)
        part.latch = list(latch)  # 0 to 2 bytes: load_fields takes lists of one length only
        return part


class Pit8254(ByteRegisters):
    """Intel 8254 PIT (8254 datasheet, order no. 231164; PC wiring as in the IBM AT).

    Ports (offsets from 0x40):

    | off | read                                  | write                                  |
    |-----|---------------------------------------|----------------------------------------|
    | 0-2 | counter 0-2: latched status, latched   | counter 0-2: count (LSB, MSB or LSB    |
    |     | count, or the live count (RW mode)     | then MSB, per the control word)        |
    | 3   | 0xFF (the control register is W/O)    | control word: SC 7:6, RW 5:4, M 3:1,   |
    |     |                                       | BCD 0; SC=3 read-back, RW=0 latch      |

    Counter wiring: all clocked at PIT_HZ; counter 0's OUT drives IRQ 0 (`irq0`); counter 1
    (DRAM refresh on the AT) is free; counter 2's gate and OUT are bits 0 and 5 of port 0x61
    (`SystemControlPortB`); gates 0 and 1 are tied high.

    Counting is derived from `clock.now_ns()`: a counter stores when it started and how many
    ticks it counted before (a gate can pause it), never ticks in a loop. Modes (6, 7 alias
    2, 3): 0 interrupt on terminal count (OUT low, high after N ticks, the count wraps on),
    1 hardware one-shot (gate rising edge), 2 rate generator (OUT low for the last tick of
    each period), 3 square wave (high for ceil(N/2), low for floor(N/2)), 4 software strobe
    and 5 hardware strobe (OUT low for one tick after N). A count of 0 means 65536 (10000 in
    BCD); BCD counts and reads in BCD. Gates: low pauses modes 0 and 4, stops modes 2 and 3
    with OUT high; a rising edge restarts 1, 2, 3 and 5.

    Each counter owns a clock timer; counter 0's is armed at OUT's next transition (the tick
    it stands for kept in `timer_tick`) and re-armed from there; a late timer still produces
    the edge it stood for. OUT 1 and OUT 2 drive no interrupt: their timers stay idle.

    Lost ticks are given back (KVM's PIT "reinject" policy). When the host runs the timer
    late by several periods of a periodic mode (2 or 3), the rising edges missed are counted
    in `lost_edges` (at most one second's worth), and each time the guest acknowledges IRQ 0
    (`irq0_acked()`: the PIC's INTA, or the local APIC's EOI of the I/O APIC pin's vector)
    one of them is sent as an edge at once. Without this a host that stalls the emulator
    for a few periods makes a guest that counts ticks lose them: Linux's boot-time check
    `timer_irq_works` wants 5 ticks within 10 ticks of TSC time, and misses them after a
    stall of 30 ms ("MP-BIOS bug: 8254 timer not connected to IO-APIC"). A new mode or count,
    or IRQ 0 handed to the HPET, forgets the lost edges.

    Simplifications (documented, harmless to PC software): a count is loaded at the write,
    not at the next clock edge (so OUT rises N ticks after the write instead of N+1); a new
    count in modes 2 and 3 takes effect at once rather than at the end of the current period;
    counts of 1 in modes 2 and 3 (illegal per the datasheet) act as 2; NULL COUNT clears as
    soon as the count is loaded. Multi-byte port accesses are split into byte accesses;
    bytes outside 0..3 read 0xFF; sizes other than 1, 2, 4, 8 read 0 and are ignored.
    `reset()` leaves what PC firmware leaves: every counter in mode 3 with count 65536,
    counter 0 giving IRQ 0 at 18.2 Hz.

    Beyond read/write/reset: `set_gate(index, level)` and `out(index)` are counter pins (port
    0x61 uses counter 2's); `set_irq0_enabled(False)` disconnects OUT 0 from IRQ 0, for the
    HPET's legacy replacement route (the chipset does this, and QEMU).

    Saved state: the three counters (mode, count, gate, the start of counting and the ticks
    held before it, the byte flip-flops, latches and status, the timer's deadline and tick),
    whether OUT 0 is connected, the level last driven on IRQ 0 (it lags OUT while a
    timer is due but has not run) and the lost edges still to give back; `load()` drives
    IRQ 0 to that level.
    """

    def __init__(self, clock: Clock, irq0: IrqLine):
        self.clock = clock
        self._irq0 = irq0
        self.irq0_enabled = True  # cleared while the HPET's legacy replacement owns IRQ 0
        self.irq0_level = False   # what the PIT last drove on IRQ 0
        self.lost_edges = 0       # counter 0's periods the host ran late, still to give back
        self._rising_edges = 0    # rising edges driven on IRQ 0 so far (counts lost ones)
        self.channels = [_Channel(i, None) for i in range(CHANNELS)]
        for ch in self.channels:
            ch.timer = clock.timer(self._timer_callback(ch))
        self.reset()

    def _timer_callback(self, ch: _Channel):
        """Counter ch's callback, fixed when its handle is made: a method bound to this PIT
        (the machine's guard names the device after `__self__`), applied to ch."""
        return types.MethodType(functools.partial(Pit8254._on_timer, ch=ch), self)

    # --- saved state ------------------------------------------------------------------------

    def save(self) -> dict:
        channels = []
        for ch in self.channels:
            saved = save_fields(ch, _Channel.SAVED)
            saved["timer"] = ch.timer.deadline_ns
            channels.append(saved)
        return {"irq0_enabled": self.irq0_enabled, "irq0_level": self.irq0_level,
                "lost_edges": self.lost_edges, "channels": channels}

    def load(self, state: dict) -> None:
        where = "Pit8254"
        enabled = _state.bool_field(state, "irq0_enabled", where)
        level = _state.bool_field(state, "irq0_level", where)
        lost = _state.int_field(state, "lost_edges", where, 0, MAX_LOST)
        saved = _state.list_field(state, "channels", where, length=CHANNELS)
        loaded = [ch.checked(_state.mapping(st, f"{where}.channels[{n}]"),
                             f"{where}.channels[{n}]")
                  for n, (ch, st) in enumerate(zip(self.channels, saved))]
        deadlines = [_state.timer_field(st, "timer", f"{where}.channels[{n}]")
                     for n, st in enumerate(saved)]
        for ch, source, deadline_ns in zip(self.channels, loaded, deadlines):
            _state.copy_fields(source, ch, _Channel.SAVED)
            ch.timer.arm_from(deadline_ns)
        self.irq0_enabled, self.irq0_level, self.lost_edges = enabled, level, lost
        if enabled:  # disconnected, the line is the HPET's to drive
            self._irq0.set(level)

    def reset(self) -> None:
        now = self.clock.now_ns()
        self.lost_edges = 0
        for ch in self.channels:
            ch.timer.cancel()
            ch.timer_tick = None
            ch.reset(now)
        self._update_irq()

    # --- guest access -----------------------------------------------------------------------


    def _read_byte(self, offset: int) -> int:
        if not 0 <= offset < CONTROL:
            return 0xFF
        ch = self.channels[offset]
        if ch.status is not None:
            status, ch.status = ch.status, None
            return status
        if ch.latch:
            return ch.latch.pop(0)
        value = self._value(ch)
        if ch.rw == RW_MSB or (ch.rw == RW_WORD and ch.read_msb):
            byte = value >> 8
        else:
            byte = value & 0xFF
        if ch.rw == RW_WORD:
            ch.read_msb = not ch.read_msb
        return byte

    def _write_byte(self, offset: int, value: int) -> None:
        if offset == CONTROL:
            self._control(value)
        elif 0 <= offset < CONTROL:
            self._write_count(self.channels[offset], value)
        else:
            log.debug("pit: write to offset %#x ignored", offset)

    def _control(self, value: int) -> None:
        select, rw = value >> 6, (value >> 4) & 3
        if select == SC_READ_BACK:
            for ch in self.channels:
                if value & (2 << ch.index):
                    if not value & RB_NO_COUNT:
                        self._latch_count(ch)
                    if not value & RB_NO_STATUS and ch.status is None:
                        ch.status = self._status(ch)
            return
        ch = self.channels[select]
        if rw == RW_LATCH:
            self._latch_count(ch)
            return
        # A new mode: the control logic resets and the counter waits for a count.
        ch.frozen = self._value_binary(ch)
        ch.mode_bits = (value >> 1) & 7
        ch.mode = ch.mode_bits - 4 if ch.mode_bits >= 6 else ch.mode_bits
        ch.rw, ch.bcd = rw, bool(value & 1)
        ch.loaded, ch.start_ns, ch.held = False, None, 0
        ch.low_byte, ch.read_msb, ch.pending_count = None, False, None
        ch.null_count = True
        self._changed(ch)

    def _latch_count(self, ch: _Channel) -> None:
        if ch.latch:  # a second latch before the first is read is ignored (datasheet)
            return
        value = self._value(ch)
        ch.latch = {RW_LSB: [value & 0xFF], RW_MSB: [value >> 8]}.get(
            ch.rw, [value & 0xFF, value >> 8])

    def _status(self, ch: _Channel) -> int:
        out = STATUS_OUT if self._out(ch, self._elapsed(ch)) else 0
        null = STATUS_NULL_COUNT if ch.null_count else 0
        return out | null | ch.rw << 4 | ch.mode_bits << 1 | int(ch.bcd)

    def _write_count(self, ch: _Channel, byte: int) -> None:
        if ch.rw == RW_WORD and ch.low_byte is None:
            ch.low_byte = byte
            if ch.mode == 0:  # the first byte stops counting and drops OUT (datasheet)
                ch.frozen = self._value_binary(ch)
                ch.loaded, ch.start_ns, ch.held = False, None, 0
                self._changed(ch)
            return
        if ch.rw == RW_WORD:
            raw = ch.low_byte | byte << 8
            ch.low_byte = None
        else:
            raw = byte << 8 if ch.rw == RW_MSB else byte
        count = _from_bcd(raw) if ch.bcd else raw
        count = count or ch.modulus
        if ch.mode in (2, 3):
            count = max(count, 2)
        if ch.mode in (1, 5):
            ch.pending_count = count  # loaded by the next gate trigger
            ch.null_count = True
            return
        ch.count, ch.loaded, ch.null_count = count, True, False
        ch.held = 0
        ch.start_ns = self.clock.now_ns() if ch.gate else None
        self._changed(ch)

    # --- gate (port 0x61 for counter 2) -----------------------------------------------------

    def set_gate(self, index: int, level: bool) -> None:
        if not 0 <= index < CHANNELS:
            return
        ch = self.channels[index]
        level = bool(level)
        if level == ch.gate:
            return
        now = self.clock.now_ns()
        ch.held, ch.start_ns = self._elapsed(ch), None  # pause; resumed below as the mode says
        ch.gate = level
        if ch.mode in (1, 5):
            if level:  # trigger: load the count and start over
                if ch.pending_count is not None:
                    ch.count, ch.pending_count = ch.pending_count, None
                    ch.loaded, ch.null_count = True, False
                ch.held = 0
            if ch.loaded:  # the gate level does not stop a triggered one-shot
                ch.start_ns = now
        elif level and ch.loaded:
            if ch.mode in (2, 3):  # a rising gate reloads the count
                ch.held = 0
            ch.start_ns = now
        self._changed(ch)

    def out(self, index: int) -> bool:
        """The OUT pin of counter `index` now."""
        ch = self.channels[index]
        return self._out(ch, self._elapsed(ch))

    def set_irq0_enabled(self, enabled: bool) -> None:
        """The HPET's legacy replacement route disconnects counter 0 from IRQ 0."""
        self.irq0_enabled = bool(enabled)
        if not self.irq0_enabled:
            self.lost_edges = 0
            self._drive_irq0(False)
        self._update_irq()

    # --- counting, derived from the clock ---------------------------------------------------

    def _elapsed(self, ch: _Channel) -> int:
        if ch.start_ns is None:
            return ch.held
        return ch.held + (self.clock.now_ns() - ch.start_ns) * PIT_HZ // NS_PER_S

    def _value_binary(self, ch: _Channel) -> int:
        if not ch.loaded:
            return ch.frozen
        e, n = self._elapsed(ch), ch.count
        if ch.mode == 2:
            value = n - e % n
        elif ch.mode == 3:  # counts down by two; odd counts spend one more tick high
            high = (n + 1) // 2
            phase = e % n
            value = n - 2 * (phase if phase < high else phase - high)
        else:
            value = n - e
        return value % ch.modulus

    def _value(self, ch: _Channel) -> int:
        value = self._value_binary(ch)
        return _to_bcd(value) if ch.bcd else value

    @staticmethod
    def _out(ch: _Channel, e: int) -> bool:
        """OUT after `e` ticks of the loaded count (8254 datasheet, "Mode definitions")."""
        if not ch.loaded:
            return ch.mode != 0
        n = ch.count
        if ch.mode in (0, 1):
            return e >= n
        if ch.mode in (2, 3) and not ch.gate:
            return True
        if ch.mode == 2:
            return e % n != n - 1
        if ch.mode == 3:
            return e % n < (n + 1) // 2
        return e != n  # modes 4 and 5: one tick low at terminal count

    @staticmethod
    def _next_change(ch: _Channel, e: int) -> int | None:
        """The tick after which OUT next changes, or None while it cannot change."""
        if not ch.loaded or ch.start_ns is None:
            return None
        n = ch.count
        if ch.mode in (0, 1):
            return n if e < n else None
        if ch.mode == 2:
            phase = e % n
            return e + (n - 1 - phase) if phase < n - 1 else e + 1
        if ch.mode == 3:
            high, phase = (n + 1) // 2, e % n
            return e + (high - phase) if phase < high else e + (n - phase)
        if e < n:
            return n
        return n + 1 if e == n else None

    # --- IRQ 0 ------------------------------------------------------------------------------

    def _changed(self, ch: _Channel) -> None:
        if ch.index == 0:
            self.lost_edges = 0  # a new mode or count: the old period's ticks mean nothing
            self._update_irq()

    def _drive_irq0(self, level: bool) -> None:
        if level and not self.irq0_level:
            self._rising_edges += 1
        self.irq0_level = level
        self._irq0.set(level)

    def irq0_acked(self) -> None:
        """The guest took an IRQ 0 (INTA at the PIC, or EOI of its vector at a local APIC):
        give back one lost edge, if any, as a pulse on the line."""
        if not self.lost_edges or not self.irq0_enabled:
            return
        self.lost_edges -= 1
        level = self.irq0_level
        self._irq0.set(not level)  # low then high, or high then low: one rising edge
        self._irq0.set(level)

    def _update_irq(self, scheduled_tick: int | None = None) -> None:
        """Drive IRQ 0 from counter 0's OUT and arm a timer for its next transition."""
        ch = self.channels[0]
        tick = None
        if self.irq0_enabled:
            e = self._elapsed(ch)
            if scheduled_tick is not None:  # the transition this timer stood for, even if late
                self._drive_irq0(self._out(ch, scheduled_tick))
            self._drive_irq0(self._out(ch, e))
            tick = self._next_change(ch, e)
        ch.timer_tick = tick
        if tick is None:
            ch.timer.cancel()
        else:
            delta_ns = -(-(tick - ch.held) * NS_PER_S // PIT_HZ)  # ceil: OUT has changed by then
            ch.timer.arm(ch.start_ns + delta_ns)

    def _on_timer(self, ch: _Channel) -> None:
        tick, ch.timer_tick = ch.timer_tick, None
        if ch.index != 0:
            return
        edges_before = self._rising_edges
        self._update_irq(tick)
        if ch.mode in (2, 3) and ch.loaded and self.irq0_enabled and tick is not None:
            # OUT rises at every multiple of the count. Nothing changed before `tick` (the
            # timer was armed for it); the rises from there to now, less the edge just
            # driven, were lost to a timer the host ran late.
            crossed = self._elapsed(ch) // ch.count - (tick - 1) // ch.count
            lost = crossed - (self._rising_edges - edges_before)
            if lost > 0:
                self.lost_edges = min(self.lost_edges + lost, max(1, PIT_HZ // ch.count))


class SystemControlPortB:
    """Port 0x61: NMI status and control / "port B" (Intel PCH datasheet, NMI_SC; IBM AT).

    | bit | name        | access | meaning                                                  |
    |-----|-------------|--------|----------------------------------------------------------|
    | 0   | TIM_CNT2_EN | R/W    | gate of PIT counter 2                                    |
    | 1   | SPKR_DAT_EN | R/W    | speaker data enable (no speaker here: stored only)       |
    | 2   | PCI_SERR_EN | R/W    | stored; 1 disables SERR# NMIs (none are ever raised)     |
    | 3   | IOCHK_NMI_EN| R/W    | stored; 1 disables IOCHK NMIs (none are ever raised)     |
    | 4   | REF_TOGGLE  | RO     | flips every ~15 us, derived from the clock               |
    | 5   | TMR2_OUT_STS| RO     | PIT counter 2's OUT                                      |
    | 6-7 | IOCHK/SERR  | RO     | NMI sources: always 0                                    |

    Linux calibrates the TSC by gating counter 2 here and polling bit 5 (pit_calibrate_tsc)
    or the counter's MSB (quick_pit_calibrate); both follow the machine clock. One byte at
    offset 0: bytes beyond it read 0xFF; sizes other than 1, 2, 4, 8 read 0 and are ignored.
    `reset()` clears the register and lowers counter 2's gate.

    Saved state: the four writable bits. Counter 2's gate is the PIT's state and is saved
    there, so `load()` leaves the PIT alone.
    """

    def __init__(self, pit: Pit8254):
        self._pit = pit
        self.value = 0

    def reset(self) -> None:
        self.value = 0
        self._pit.set_gate(2, False)

    def save(self) -> dict:
        return save_fields(self, ("value",))

    def load(self, state: dict) -> None:
        _state.int_field(state, "value", "SystemControlPortB", 0, B_WRITABLE)
        load_fields(self, state, ("value",))

    def read(self, offset: int, size: int) -> int:
        if size not in SIZES:
            log.debug("port 0x61: read of bad size %r at %#x", size, offset)
            return 0
        return sum(self._read_byte(offset + i) << (8 * i) for i in range(size))

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in SIZES:
            log.debug("port 0x61: write of bad size %r at %#x", size, offset)
            return
        if offset == 0:
            self.value = value & B_WRITABLE
            self._pit.set_gate(2, bool(value & B_GATE2))
        if offset != 0 or size != 1:
            log.debug("port 0x61: bytes of a %d-byte write at %#x ignored", size, offset)

    def _read_byte(self, offset: int) -> int:
        if offset != 0:
            return 0xFF
        refresh = B_REFRESH if (self._pit.clock.now_ns() // REFRESH_NS) & 1 else 0
        out2 = B_OUT2 if self._pit.out(2) else 0
        return self.value | refresh | out2
