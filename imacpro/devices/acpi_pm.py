"""ACPI fixed hardware: PM1 event and control registers and the PM timer (ports 0x600-0x60F)."""

from __future__ import annotations

import logging
from typing import Callable

from imacpro.clock import NS_PER_S, Clock
from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

# The register block: 16 ports (where they sit, 0x600, is the board's: board.py; the FADT's
# PM1a_EVT_BLK, PM1a_CNT_BLK and PM_TMR_BLK are that base plus these offsets).
PM_IO_SIZE = 0x10
PM1_STS, PM1_EN, PM1_CNT, PM_TMR = 0x0, 0x2, 0x4, 0x8
PM1_EVT_LEN, PM1_CNT_LEN, PM_TMR_LEN = 4, 2, 4   # PM1a_EVT: STS (2 bytes) then EN (2 bytes)

# The SCI (ISA IRQ 9 on the board) is level-triggered and driven active-high (True =
# asserted), as the PCH drives its SCI into I/O APIC pin 9; the MADT says so with an IRQ 9 ->
# GSI 9 override "level, active high" (firmware/acpi.py, from the board's row), which takes
# precedence over the ACPI default (level, active low) that Linux would otherwise program.

# PM timer (ACPI 6.4 §4.8, "Power Management Timer"): 3.579545 MHz, 24 bits as on Intel
# PCHs (PM1_TMR bits 31:24 reserved); TMR_VAL_EXT in the FADT says 32.
PM_TIMER_HZ = 3_579_545
TMR_VAL_EXT = False

# PM1 status / enable bits (ACPI 6.4 §4.8.4.1.1-2, Tables 4.11 and 4.12).
TMR_STS = 1 << 0
BM_STS = 1 << 4
GBL_STS = 1 << 5
PWRBTN_STS = 1 << 8
SLPBTN_STS = 1 << 9
RTC_STS = 1 << 10
PCIEXP_WAKE_STS = 1 << 14
WAK_STS = 1 << 15
STS_W1C = TMR_STS | BM_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS | PCIEXP_WAKE_STS | WAK_STS
TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN, PCIEXP_WAKE_DIS = (
    1 << 0, 1 << 5, 1 << 8, 1 << 9, 1 << 10, 1 << 14)
EN_WRITABLE = TMR_EN | GBL_EN | PWRBTN_EN | SLPBTN_EN | RTC_EN | PCIEXP_WAKE_DIS
# The events that raise the SCI when both status and enable are set.
SCI_EVENTS = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS

# PM1 control bits (ACPI 6.4 §4.8.4.2.1, Table 4.13).
SCI_EN = 1 << 0
BM_RLD = 1 << 1
GBL_RLS = 1 << 2          # write-only: would raise BIOS_STS for SMM firmware; we have none
SLP_TYP_SHIFT, SLP_TYP_MASK = 10, 0x7 << 10
SLP_EN = 1 << 13          # write-only
CNT_STORED = SCI_EN | BM_RLD | SLP_TYP_MASK

# SLP_TYP values, as Intel PCHs decode them (PCH datasheet, PM1_CNT); the DSDT's \_Sx packages
# carry the same numbers. Only \_S0 and \_S5 are declared, so Linux never asks for another.
SLP_TYP_S0, SLP_TYP_S1, SLP_TYP_S3, SLP_TYP_S4, SLP_TYP_S5 = 0, 1, 5, 6, 7


class AcpiPm:
    """ACPI fixed-hardware power management block (ACPI 6.4 §4.8; the PCH's PMBASE registers).

    16 ports (at 0x600 on the board):

    | off | size | register                                                                |
    |-----|------|-------------------------------------------------------------------------|
    | 0   | 2    | PM1a_STS: TMR_STS 0, BM_STS 4, GBL_STS 5, PWRBTN_STS 8, SLPBTN_STS 9,    |
    |     |      | RTC_STS 10, PCIEXP_WAKE_STS 14, WAK_STS 15; write 1 to clear             |
    | 2   | 2    | PM1a_EN: TMR_EN 0, GBL_EN 5, PWRBTN_EN 8, SLPBTN_EN 9, RTC_EN 10,        |
    |     |      | PCIEXP_WAKE_DIS 14                                                      |
    | 4   | 2    | PM1a_CNT: SCI_EN 0, BM_RLD 1, GBL_RLS 2 (WO), SLP_TYP 12:10, SLP_EN 13   |
    |     |      | (WO)                                                                    |
    | 6   | 2    | reserved: reads 0, writes ignored                                       |
    | 8   | 4    | PM_TMR: 3,579,545 Hz count in bits 23:0 (31:0 with timer_32bit), RO     |
    | C   | 4    | reserved: reads 0, writes ignored                                       |

    Any access of 1, 2, 4 or 8 bytes at any offset works byte-wise across registers, as an LPC
    device decodes it (a 4-byte access at 0 reaches STS and EN at once); the timer is sampled
    once per access, so a 4-byte read never tears. Other sizes read 0 and are ignored; bytes
    beyond the 16 read 0xFF.

    SCI_EN is set at power-on: the FADT declares no SMI_CMD port, which tells the OS the
    machine is always in ACPI mode (ACPI 6.4 §5.2.9, SMI_CMD). The SCI line (`sci`, ISA IRQ 9)
    is asserted while SCI_EN is set and some event in SCI_EVENTS has both its status and enable
    bits set; it is a level: it stays up until the guest clears the status.

    TMR_STS is set each time bit 23 (bit 31 with timer_32bit) of the count changes; while
    TMR_EN is set a clock timer is armed for the next change so the SCI rises on time.
    `press_power_button()` sets PWRBTN_STS. Writing SLP_EN with SLP_TYP S5 calls
    `on_poweroff()`; S0 is a no-op; S1/S3/S4 and the reserved types are logged and the machine
    "wakes" at once (WAK_STS is set), so an OS polling WAK_STS after a sleep it thought it
    entered does not spin for ever. `reset()` clears status, enables and SLP_TYP; the timer
    counts from the machine's power-on and is not reset.

    Saved state: PM1 status (without TMR_STS, which is derived: `tmr_epoch` is the count's
    MSB period when it was last cleared), enable and control, the timer's deadline, and the
    SCI level last driven (it lags TMR_STS while the timer is due but has not run); `load()`
    drives the SCI to it. The PM timer's count is the clock's, so it needs no saving.
    """

    def __init__(self, clock: Clock, sci: IrqLine | None = None,
                 on_poweroff: Callable[[], None] | None = None, *, timer_32bit: bool = TMR_VAL_EXT):
        self._clock = clock
        self._sci = sci or IrqLine("sci")
        self._on_poweroff = on_poweroff or (lambda: None)
        self.timer_bits = 32 if timer_32bit else 24
        self._timer = clock.timer(self._update)  # armed for TMR_STS's next change, when enabled
        self.sci_level = False                    # what `_update` last drove on the SCI
        self.reset()

    def reset(self) -> None:
        self.sts = 0           # status bits other than TMR_STS (derived from the count)
        self.en = 0
        self.cnt = SCI_EN
        self._tmr_epoch = self._epoch()   # the count's MSB period when TMR_STS was last clear
        self._update()

    # --- the PM timer ---------------------------------------------------------------------

    def ticks(self) -> int:
        """PM timer ticks since power-on (unmasked)."""
        return self._clock.now_ns() * PM_TIMER_HZ // NS_PER_S

    def timer_value(self) -> int:
        return self.ticks() & ((1 << self.timer_bits) - 1)

    def _epoch(self) -> int:
        """How many times the count's MSB has changed since power-on."""
        return self.ticks() >> (self.timer_bits - 1)

    def _ns_of_tick(self, tick: int) -> int:
        return -(-tick * NS_PER_S // PM_TIMER_HZ)  # the first ns at which ticks() >= tick

    # --- status and the SCI ----------------------------------------------------------------

    @property
    def status(self) -> int:
        return self.sts | (TMR_STS if self._epoch() != self._tmr_epoch else 0)

    def press_power_button(self) -> None:
        """The power button was pressed (and released): PWRBTN_STS, and the SCI if enabled."""
        log.info("ACPI power button pressed")
        self.sts |= PWRBTN_STS
        self._update()

    def _update(self) -> None:
        status = self.status
        self.sci_level = bool(self.cnt & SCI_EN) and bool(status & self.en & SCI_EVENTS)
        self._sci.set(self.sci_level)
        if self.en & TMR_EN and not status & TMR_STS:
            # Armed at the same deadline again is a no-op: a guest writing in a loop adds no
            # timers to the clock.
            self._timer.arm(self._ns_of_tick((self._epoch() + 1) << (self.timer_bits - 1)))
        else:
            self._timer.cancel()

    # --- saved state -----------------------------------------------------------------------

    def save(self) -> dict:
        return {"sts": self.sts, "en": self.en, "cnt": self.cnt, "tmr_epoch": self._tmr_epoch,
                "sci_level": self.sci_level, "timer": self._timer.deadline_ns}

    def load(self, state: dict) -> None:
        where = "AcpiPm"
        _state.ranges(state, where, {"sts": (0, 0xFFFF), "en": (0, EN_WRITABLE),
                                     "cnt": (0, CNT_STORED), "tmr_epoch": (0, None)})
        if state["sts"] & ~STS_W1C & 0xFFFF or state["sts"] & TMR_STS \
                or state["en"] & ~EN_WRITABLE or state["cnt"] & ~CNT_STORED:
            raise StateError(f"{where}: register bits no guest can set")
        sci_level = _state.bool_field(state, "sci_level", where)
        deadline_ns = _state.timer_field(state, "timer", where)
        self.sts, self.en, self.cnt = state["sts"], state["en"], state["cnt"]
        self._tmr_epoch = state["tmr_epoch"]
        self.sci_level = sci_level
        self._sci.set(sci_level)
        self._timer.arm_from(deadline_ns)

    # --- register access -------------------------------------------------------------------

    def _image(self) -> bytes:
        """The 16 bytes of registers as the guest reads them now."""
        return (self.status.to_bytes(2, "little") + self.en.to_bytes(2, "little")
                + (self.cnt & CNT_STORED).to_bytes(2, "little") + bytes(2)
                + self.timer_value().to_bytes(4, "little") + bytes(4))

    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4, 8):
            log.debug("acpi-pm: read of bad size %r at %r", size, offset)
            return 0
        image = self._image()
        value = 0
        for i in range(size):
            at = offset + i
            value |= (image[at] if 0 <= at < PM_IO_SIZE else 0xFF) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4, 8):
            log.debug("acpi-pm: write of bad size %r at %r", size, offset)
            return
        value &= (1 << (8 * size)) - 1
        # Gather the written bytes per 16-bit register: (value, mask of bytes written).
        touched: dict[int, list[int]] = {}
        for i in range(size):
            at = offset + i
            if not 0 <= at < PM_IO_SIZE:
                log.debug("acpi-pm: write beyond the block at %#x ignored", at)
                continue
            reg = at & ~1
            shift = 8 * (at & 1)
            entry = touched.setdefault(reg, [0, 0])
            entry[0] |= ((value >> (8 * i)) & 0xFF) << shift
            entry[1] |= 0xFF << shift
        for reg, (bits, mask) in touched.items():
            self._write_register(reg, bits, mask)
        self._update()

    def _write_register(self, reg: int, bits: int, mask: int) -> None:
        if reg == PM1_STS:
            clear = bits & mask & STS_W1C
            if clear & TMR_STS:
                self._tmr_epoch = self._epoch()
            self.sts &= ~clear
        elif reg == PM1_EN:
            self.en = (self.en & ~mask) | (bits & mask & EN_WRITABLE)
        elif reg == PM1_CNT:
            self.cnt = (self.cnt & ~mask) | (bits & mask & CNT_STORED)
            if bits & mask & SLP_EN:
                self._sleep((self.cnt & SLP_TYP_MASK) >> SLP_TYP_SHIFT)
        else:
            log.debug("acpi-pm: write %#x to read-only/reserved offset %#x ignored", bits, reg)

    def _sleep(self, slp_typ: int) -> None:
        if slp_typ == SLP_TYP_S5:
            log.info("ACPI S5 (soft off) requested")
            self._on_poweroff()
        elif slp_typ == SLP_TYP_S0:
            log.debug("acpi-pm: SLP_EN with SLP_TYP S0 (working state): nothing to do")
        else:
            log.info("acpi-pm: sleep type %d not supported; waking at once", slp_typ)
            self.sts |= WAK_STS
