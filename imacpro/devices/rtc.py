"""MC146818-compatible CMOS real-time clock and 256 bytes of CMOS RAM (ports 0x70-0x73, IRQ 8)."""

from __future__ import annotations

import logging
import math
import time

from imacpro.clock import NS_PER_S, Clock
from imacpro.devices import _state
from imacpro.devices.contract import StateError, load_fields, save_fields
from imacpro.devices.lpc import ByteRegisters
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

XTAL_HZ = 32_768  # the time base the divider (register A DV = 010) expects
UIP_NS = 244_141  # UIP rises 8 time-base cycles (244 us) before each update (datasheet, tBUC)
DAY_S = 86_400

# Port offsets from 0x70.
INDEX0, DATA0, INDEX1, DATA1 = range(4)

# CMOS indexes (MC146818A datasheet, figure 3; century at 0x32 is the PC/ACPI convention).
SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = range(6)
WEEKDAY, DAY, MONTH, YEAR, REG_A, REG_B, REG_C, REG_D = range(6, 14)
CENTURY = 0x32
TIME_REGS = (SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR, CENTURY)
ALARM_ANY = 0xC0  # an alarm byte of 11xxxxxx matches every value ("don't care")

A_UIP, A_DV, A_RS = 0x80, 0x70, 0x0F
A_DV_NORMAL = 0x20  # 32.768 kHz time base; DV above this holds the divider in reset
B_SET, B_PIE, B_AIE, B_UIE, B_SQWE, B_DM_BINARY, B_24H, B_DSE = (
    0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01)
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10  # PF/AF/UF line up with PIE/AIE/UIE
D_VRT = 0x80  # valid RAM and time: the battery is good

POWER_ON_A = 0x26  # divider running, periodic rate 1024 Hz
POWER_ON_B = B_24H  # BCD, 24-hour: what PC firmware leaves and what Linux on x86 expects

# Conventional PC memory-size bytes, as QEMU's pc_cmos_init() and SeaBIOS use them.
CMOS_BASE_MEM, CMOS_EXT_MEM, CMOS_EXT_MEM2 = 0x15, 0x17, 0x30
CMOS_MEM_ABOVE_16M, CMOS_MEM_ABOVE_4G = 0x34, 0x5B
CMOS_CHECKSUM = 0x2E  # IBM AT checksum of 0x10-0x2D, high byte first
KIB, MIB = 1024, 1024 * 1024


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (any year; day may overflow)."""
    year -= month <= 2
    era, yoe = divmod(year, 400)
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    era, doe = divmod(days + 719_468, 146_097)
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


def _period_cycles(rate_select: int) -> int:
    """Time-base cycles between periodic interrupts (datasheet table 3, 32.768 kHz column)."""
    if rate_select == 0:
        return 0
    return 1 << (rate_select + 6) if rate_select <= 2 else 1 << (rate_select - 1)


class CmosRtc(ByteRegisters):
    """Motorola MC146818A real-time clock plus 256 bytes of CMOS RAM (PC ports 0x70-0x73).

    Ports (offsets from 0x70): 0 = bank-0 index (bits 6:0; bit 7 masks NMI, kept in
    `nmi_masked`), 1 = bank-0 data, 2 = bank-1 index (bits 6:0 select bytes 0x80-0xFF, as
    Intel's PCH upper bank), 3 = bank-1 data. The index ports are write-only and read 0xFF.

    Bank 0 (MC146818A datasheet, "Address map" and "Registers"):

    | index | register                                                                    |
    |-------|-----------------------------------------------------------------------------|
    | 00-09 | seconds, sec alarm, minutes, min alarm, hours, hour alarm, weekday, day,    |
    |       | month, year: BCD or binary (B.DM), 12-hour hours carry PM in bit 7 (B.24H) |
    | 0A  A | UIP (read-only), DV 6:4 (010 runs; 11x holds the divider), RS 3:0 (periodic |
    |       | rate: 1 = 256 Hz, 2 = 128 Hz, n >= 3: 65536 >> n Hz)                       |
    | 0B  B | SET, PIE, AIE, UIE, SQWE (no pin), DM (1 = binary), 24/12, DSE (stored only) |
    | 0C  C | IRQF, PF, AF, UF; read-only, reading clears it and lowers IRQ 8             |
    | 0D  D | VRT = 1; read-only                                                          |
    | 32    | century, encoded like the other fields (BCD at power-on); 0x0E-0x7F is RAM |

    Time: the clock shows `start_time` (UTC, default the host's time.time()) at power-on and
    then advances with `clock.now_ns()`. The 1 Hz update and the periodic taps come from one
    divider whose phase is `div_offset_ns`; the seconds count is that divider's second plus
    `sec_delta`, so the guest setting the clock only changes `sec_delta` (the divider keeps
    its phase, as in the chip). While SET is set or the divider is held, the time registers are
    frozen RAM the guest may rewrite; on release the clock counts on from them, and the first
    update after a divider reset comes 500 ms later (datasheet). The weekday is derived from
    the date. Out-of-range time fields are clamped to their range and a day past the month's end
rolls into the next month; an invalid alarm field never matches.

    Interrupts: PF, AF and UF are set by the divider events whether or not they are enabled
    (evaluated lazily when needed); IRQF = (PF & PIE) | (AF & AIE) | (UF & UIE). IRQ 8 is
    raised when IRQF becomes set and lowered by reading register C. One clock timer is armed
    at the next event that could set IRQF; none while nothing is enabled. UIP reads 1 for the
    244 us before each update (the update itself is instantaneous).

    `reset()` is the chip's RESET pin: PIE, AIE, UIE, SQWE and the flags clear; time, RAM,
    registers A and the rest of B survive. Multi-byte accesses are split into byte accesses;
    bytes outside 0..3 read 0xFF; sizes other than 1, 2, 4, 8 read 0 and are ignored.

    Saved state: the 256 CMOS bytes (registers A and B, the alarm and, while frozen, the time
    registers among them), the divider's phase (`div_offset_ns`) and `sec_delta`, the flags
    folded in up to `synced_ns`, the index registers, the NMI mask bit and the timer's
    deadline. IRQ 8 follows IRQF, so `load()` drives it from the loaded flags and register B.
    """

    def __init__(self, clock: Clock, irq: IrqLine, start_time: float | None = None):
        self._clock = clock
        self._irq = irq
        self._timer = clock.timer(self._on_timer)  # the next divider event that sets IRQF
        now = clock.now_ns()
        start = time.time() if start_time is None else start_time
        whole = math.floor(start)  # split first: a float has no room for epoch nanoseconds
        start_ns = whole * NS_PER_S + round((start - whole) * NS_PER_S)
        self.cmos = bytearray(256)
        self.cmos[REG_A] = POWER_ON_A
        self.cmos[REG_B] = POWER_ON_B
        self.div_offset_ns = start_ns - now
        self.sec_delta = 0
        self.synced_ns = now  # divider events up to here are folded into `flags`
        self.flags = 0
        self.index = 0
        self.ext_index = 0
        self.nmi_masked = False

    def reset(self) -> None:
        now = self._clock.now_ns()
        self._sync(now)
        self.cmos[REG_B] &= ~(B_PIE | B_AIE | B_UIE | B_SQWE)
        self.flags = 0
        self.index = 0
        self.ext_index = 0
        self.nmi_masked = False
        self._irq.set(False)
        self._rearm(now)

    def save(self) -> dict:
        state = save_fields(self, _SAVED)
        state["timer"] = self._timer.deadline_ns
        return state

    def load(self, state: dict) -> None:
        where = "CmosRtc"
        _state.ranges(state, where, {"div_offset_ns": (None, None), "sec_delta": (None, None),
                                     "synced_ns": (0, None), "flags": (0, C_PF | C_AF | C_UF),
                                     "index": (0, 0x7F), "ext_index": (0, 0x7F)})
        if state["flags"] & ~(C_PF | C_AF | C_UF):
            raise StateError(f"{where}: flags {state['flags']:#x} are not PF, AF and UF")
        deadline_ns = _state.timer_field(state, "timer", where)
        load_fields(self, state, _SAVED)  # checks the rest (CMOS RAM: 256 bytes)
        self._timer.arm_from(deadline_ns)
        self._irq.set(self._irqf())

    def slept(self, ns: int) -> None:
        """The machine was suspended for `ns`: the battery kept the clock counting, so the
        time registers move on by that much (the divider events missed meanwhile are not
        replayed: the machine was off)."""
        now = self._clock.now_ns()
        self._sync(now)
        self.div_offset_ns += max(0, ns)
        self._rearm(now)

    def set_memory_size(self, below_4g_bytes: int, above_4g_bytes: int) -> None:
        """Fill the conventional memory-size bytes the way QEMU/SeaBIOS do."""
        if below_4g_bytes < 0 or above_4g_bytes < 0:
            raise ValueError("memory sizes must not be negative")
        base = min(below_4g_bytes // KIB, 640)
        ext = min(max(below_4g_bytes - MIB, 0) // KIB, 0xFFFF)
        above_16m = min(max(below_4g_bytes - 16 * MIB, 0) // (64 * KIB), 0xFFFF)
        above_4g = min(above_4g_bytes // (64 * KIB), 0xFFFFFF)
        for index, value, width in ((CMOS_BASE_MEM, base, 2), (CMOS_EXT_MEM, ext, 2),
                                    (CMOS_EXT_MEM2, ext, 2), (CMOS_MEM_ABOVE_16M, above_16m, 2),
                                    (CMOS_MEM_ABOVE_4G, above_4g, 3)):
            self.cmos[index:index + width] = value.to_bytes(width, "little")
        checksum = sum(self.cmos[0x10:CMOS_CHECKSUM]) & 0xFFFF
        self.cmos[CMOS_CHECKSUM:CMOS_CHECKSUM + 2] = checksum.to_bytes(2, "big")

    # -- port access -------------------------------------------------------------------------


    def _read_byte(self, port: int) -> int:
        if port == DATA0:
            return self._read_register(self.index)
        if port == DATA1:
            return self.cmos[0x80 | self.ext_index]
        log.debug("rtc: read of write-only or unknown port offset %#x", port)
        return 0xFF

    def _write_byte(self, port: int, value: int) -> None:
        if port == INDEX0:
            self.nmi_masked = bool(value & 0x80)
            self.index = value & 0x7F
        elif port == DATA0:
            self._write_register(self.index, value)
        elif port == INDEX1:
            self.ext_index = value & 0x7F
        elif port == DATA1:
            self.cmos[0x80 | self.ext_index] = value
        else:
            log.debug("rtc: write %#x to unknown port offset %#x ignored", value, port)

    def _read_register(self, index: int) -> int:
        now = self._clock.now_ns()
        if index in TIME_REGS and self._time_running():
            self._latch(now)
        elif index == REG_A:
            uip = self._time_running() and self._div_ns(now) % NS_PER_S >= NS_PER_S - UIP_NS
            return self.cmos[REG_A] | (A_UIP if uip else 0)
        elif index == REG_C:
            self._sync(now)
            value = self.flags | (C_IRQF if self._irqf() else 0)
            self.flags = 0
            self._irq.set(False)
            self._rearm(now)
            return value
        elif index == REG_D:
            return D_VRT
        return self.cmos[index]

    def _write_register(self, index: int, value: int) -> None:
        if index in (REG_C, REG_D):
            log.debug("rtc: write %#x to read-only register %#x ignored", value, index)
            return
        now = self._clock.now_ns()
        self._sync(now)  # events so far count under the old settings
        was_running, divider_was_running = self._time_running(), self._divider_running()
        if was_running and (index in TIME_REGS or index == REG_B and value & B_SET
                            or index == REG_A and (value & A_DV) > A_DV_NORMAL):
            self._latch(now)  # freeze (or edit) the registers at the current time
        if index == REG_A:
            self.cmos[REG_A] = value & ~A_UIP
            if self._divider_running() and not divider_was_running:
                self.div_offset_ns = NS_PER_S // 2 - now  # first update 500 ms after release
        elif index == REG_B:
            self.cmos[REG_B] = value & ~B_UIE if value & B_SET else value  # SET clears UIE
        else:
            self.cmos[index] = value
        if self._time_running() and (not was_running or index in TIME_REGS):
            self.sec_delta = self._decode_time() - self._div_ns(now) // NS_PER_S
        self._irq.set(self._irqf())
        self._rearm(now)

    # -- time keeping ------------------------------------------------------------------------

    def _divider_running(self) -> bool:
        return self.cmos[REG_A] & A_DV <= A_DV_NORMAL

    def _time_running(self) -> bool:
        return self._divider_running() and not self.cmos[REG_B] & B_SET

    def _div_ns(self, now: int) -> int:
        return now + self.div_offset_ns

    def _seconds(self, now: int) -> int:
        return self._div_ns(now) // NS_PER_S + self.sec_delta

    def _irqf(self) -> bool:
        return bool(self.flags & self.cmos[REG_B] & (B_PIE | B_AIE | B_UIE))

    def _encode(self, value: int) -> int:
        return value if self.cmos[REG_B] & B_DM_BINARY else (value // 10) << 4 | value % 10

    def _decode(self, byte: int) -> int:
        return byte if self.cmos[REG_B] & B_DM_BINARY else (byte >> 4) * 10 + (byte & 0x0F)

    def _latch(self, now: int) -> None:
        """Write the current time into the time registers."""
        days, tod = divmod(self._seconds(now), DAY_S)
        year, month, day = civil_from_days(days)
        hour, rest = divmod(tod, 3600)
        if self.cmos[REG_B] & B_24H:
            hour_byte = self._encode(hour)
        else:
            hour_byte = self._encode(hour % 12 or 12) | (0x80 if hour >= 12 else 0)
        enc = self._encode
        for index, value in ((SECONDS, enc(rest % 60)), (MINUTES, enc(rest // 60)),
                             (HOURS, hour_byte), (WEEKDAY, enc((days + 4) % 7 + 1)),
                             (DAY, enc(day)), (MONTH, enc(month)), (YEAR, enc(year % 100)),
                             (CENTURY, enc(year // 100 % 100))):
            self.cmos[index] = value

    def _hour(self, byte: int) -> int:
        if self.cmos[REG_B] & B_24H:
            return self._decode(byte)
        return self._decode(byte & 0x7F) % 12 + (12 if byte & 0x80 else 0)

    def _decode_time(self) -> int:
        """The time registers as seconds since the epoch, out-of-range fields clamped."""
        def field(index: int, low: int, high: int) -> int:
            return min(max(self._decode(self.cmos[index]), low), high)
        year = field(CENTURY, 0, 99) * 100 + field(YEAR, 0, 99)
        days = days_from_civil(year, field(MONTH, 1, 12), field(DAY, 1, 31))
        hour = min(self._hour(self.cmos[HOURS]), 23)
        return days * DAY_S + hour * 3600 + field(MINUTES, 0, 59) * 60 + field(SECONDS, 0, 59)

    def _alarm_values(self, index: int, limit: int) -> range | list[int]:
        byte = self.cmos[index]
        if byte & ALARM_ANY == ALARM_ANY:
            return range(limit)
        digits = byte & (0x7F if index == HOURS_ALARM else 0xFF)
        if not self.cmos[REG_B] & B_DM_BINARY and (digits >> 4 > 9 or digits & 0x0F > 9):
            return []  # not valid BCD: the clock never shows it
        if index == HOURS_ALARM and not self.cmos[REG_B] & B_24H:
            if not 1 <= self._decode(digits) <= 12:
                return []
            return [self._hour(byte)]
        value = self._decode(byte)
        return [value] if value < limit else []

    def _next_alarm(self, after: int) -> int | None:
        """The first second after `after` whose time matches the alarm registers."""
        hours = self._alarm_values(HOURS_ALARM, 24)
        minutes = self._alarm_values(MINUTES_ALARM, 60)
        seconds = self._alarm_values(SECONDS_ALARM, 60)
        day0 = after - after % DAY_S
        for day in (day0, day0 + DAY_S):
            for hour in hours:
                at_hour = day + hour * 3600
                if at_hour + 3599 <= after:
                    continue
                for minute in minutes:
                    at_minute = at_hour + minute * 60
                    if at_minute + 59 <= after:
                        continue
                    for second in seconds:
                        if at_minute + second > after:
                            return at_minute + second
        return None

    def _sync(self, now: int) -> None:
        """Fold the divider events in (synced_ns, now] into the flags."""
        then, self.synced_ns = self.synced_ns, max(now, self.synced_ns)
        if now <= then or not self._divider_running():
            return
        cycles = _period_cycles(self.cmos[REG_A] & A_RS)
        if cycles:
            per = cycles * NS_PER_S
            if self._div_ns(now) * XTAL_HZ // per > self._div_ns(then) * XTAL_HZ // per:
                self.flags |= C_PF
        if self._time_running():
            first, last = self._seconds(then), self._seconds(now)
            if last > first:
                self.flags |= C_UF
                alarm = self._next_alarm(first)
                if alarm is not None and alarm <= last:
                    self.flags |= C_AF

    def _rearm(self, now: int) -> None:
        """Arm the timer at the next divider event that could set IRQF."""
        if not self._divider_running():
            self._timer.cancel()
            return
        wanted = self.cmos[REG_B] & ~self.flags  # enabled sources whose flag is still clear
        deadlines = []
        cycles = _period_cycles(self.cmos[REG_A] & A_RS)
        if wanted & B_PIE and cycles:
            per = cycles * NS_PER_S
            tick = self._div_ns(now) * XTAL_HZ // per + 1
            deadlines.append(-(-tick * per // XTAL_HZ) - self.div_offset_ns)
        if self._time_running():
            if wanted & B_UIE:
                deadlines.append((self._div_ns(now) // NS_PER_S + 1) * NS_PER_S
                                 - self.div_offset_ns)
            if wanted & B_AIE:
                alarm = self._next_alarm(self._seconds(now))
                if alarm is not None:
                    deadlines.append((alarm - self.sec_delta) * NS_PER_S - self.div_offset_ns)
        if deadlines:
            self._timer.arm(min(deadlines))
        else:
            self._timer.cancel()

    def _on_timer(self) -> None:
        now = self._clock.now_ns()
        self._sync(now)
        if self._irqf():
            self._irq.set(True)
        self._rearm(now)


_SAVED = ("cmos", "div_offset_ns", "sec_delta", "synced_ns", "flags", "index", "ext_index",
          "nmi_masked")
