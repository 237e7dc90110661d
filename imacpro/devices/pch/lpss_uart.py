"""The PCH's two Serial IO (LPSS) UARTs, 00:1e.0 and 00:1e.1 (8086:a2a7 / 8086:a2a8, "200 Series
PCH Serial IO UART Controller #0/#1", class 118000, revision 00, subsystem 8086:7270), as Linux
6.1 drives them: intel-lpss-pci / intel-lpss (drivers/mfd) make a "dw-apb-uart" platform device
that 8250_dw and 8250_dwlib drive, with its clock from intel-lpss's clock tree (a 120 MHz fixed
clock, an enable gate, an M/N fractional divider and an update gate, all in CLOCK_PARAMS).

Nothing is wired to these UARTs on the real iMac Pro: `output` (a callable taking bytes) is
where transmitted bytes go, None for nothing; `feed()` is input from the line.

Configuration space: BAR0 (0x10) the registers below, 4 KiB, 64-bit; BAR1 (0x18, slot 2 here)
4 KiB, 64-bit: the PCH's mirror of this function's configuration space, not modelled (reads 0,
writes ignored: bus/pci.Unmodelled). Capabilities where the real function has them: 0x80 power
management (version 3, no D1/D2, no PME, NoSoftReset: D3hot -> D0 keeps every register) and
0x90 vendor-specific, 0x14 bytes (Intel's D0i3/power-gating controls: present, all zero, read
only). INTx: 1e.0 INTA#, 1e.1 INTB# (Intel's reference routing: GSI 20 and 21), level,
shareable; no MSI.

BAR0, 32-bit registers at a stride of 4 (Linux: reg-shift 2, reg-io-width 4):

    | off     | register               | model                                               |
    |---------|------------------------|-----------------------------------------------------|
    | 000-01C | RBR/THR/DLL, IER/DLH,  | the 16550A of devices/uart16550.py, with 64-byte    |
    |         | IIR/FCR, LCR, MCR,     | FIFOs (receive triggers 1, 16, 32, 62 bytes), MCR   |
    |         | LSR, MSR, SCR          | bit 5 (AFCE) kept, the interrupt not gated by OUT2  |
    | 07C     | USR (RO)               | BUSY (receive FIFO not empty), TFNF, TFE = 1, RFNE, |
    |         |                        | RFF                                                 |
    | 080/084 | TFL / RFL (RO)         | 0 / the receive FIFO's level                        |
    | 0B4     | RE_EN                  | absent: reads 0 (no RS-485: Linux uses em485)       |
    | 0C0     | DLF                    | absent: reads 0 (no fractional divisor: the LPSS    |
    |         |                        | M/N divider does that job)                          |
    | 0F4     | CPR (RO)               | 0x00041512: 64-byte FIFO, FIFO status, additional   |
    |         |                        | features, auto flow control, 32-bit APB             |
    | 0F8     | UCV (RO)               | 0x3331312A, "3.11*"                                 |
    | 0FC     | CTR (RO)               | 0x44570110, the DesignWare UART's component type    |
    | 200     | CLOCK_PARAMS           | bit 0 clock enable, M 15:1, N 30:16, bit 31 update: |
    |         |                        | a write with it set latches M/N (`clock_divider`)   |
    | 204     | RESETS                 | bit 0 function, 1 APB, 2 iDMA (1 = out of reset);   |
    |         |                        | the UART is held at its reset values (writes and    |
    |         |                        | input dropped) unless bits 0 and 1 are both set     |
    | 210/214 | active / idle LTR      | kept (the LTR message's bits: 0x9FFF9FFF)           |
    | 240/244 | REMAP_ADDR low / high  | kept (where the driver says BAR0 is, for the iDMA)  |
    | 2FC     | CAPS (RO)              | 0x110: type UART (1 << 4), no iDMA (bit 8)          |

Everything else reads 0 and ignores writes. Intel publishes neither CPR nor UCV for this
PCH: the values above are the feature bits Linux acts on, set to what the model does. Accesses
of 1, 2 or 4 bytes inside a dword reach its register (a narrow write reaches an 8-bit UART
register when it covers the dword's low byte, and merges into a 32-bit register); 8-byte
accesses are two dwords; others are guest errors (read 0, counted, the first few logged). In
D3hot BAR0 answers all ones and drops writes, and INTx stays deasserted.

What Linux does with it (6.1): intel-lpss reads CAPS (a UART, no iDMA: no idma64 cell is
added), writes RESETS 0 then 7, REMAP_ADDR, registers its clocks (the divider reads
CLOCK_PARAMS: M = N = 0 after reset, so the UART clock is the 120 MHz root: base_baud
7500000) and adds "dw-apb-uart.N". 8250_dw sets bits 0 and 31 (clock on), finds no RS-485
(RE_EN reads 0), reads UCV, finds no DLF, reads CPR (FIFO 64: type 16550A fixed, no
autoconfig; AFCE: UART_CAP_AFE) and registers the port; serial core prints "dw-apb-uart.N:
ttySn at MMIO 0x... (irq = N, base_baud = 7500000) is a 16550A". Runtime PM then clears the
clock bits, intel-lpss saves the 64 private dwords and the PCI core puts the function in
D3hot (with no PM capability it would stay in D0, silently: pci_target_state gives D0).

Not modelled: the iDMA controller the real function has at 0x800-0xFFF (CAPS says there is
none, so Linux registers no idma64 engine; 8250_dw still asks for its channels when a port
is opened and, finding none, warns "failed to request DMA" and uses PIO); baud timing (bytes
leave at once, input arrives as fed: M/N and the divisor latch are kept, not applied);
parity, framing and break; the transmit FIFO (always empty); IrDA; RS-485; the DesignWare
shadow, FIFO access and DMA handshake registers; the BAR1 configuration mirror; D0i3.

Saved state: the PCI function, the UART core (devices/uart16550.py's registers and receive
FIFO), CLOCK_PARAMS and the latched divider, RESETS, the LTR and remap registers, the guest
error count; the power state is the PMCSR in the configuration space. `output` is wiring.
"""

from __future__ import annotations

import logging
import struct
from typing import Callable

from imacpro.bus.pci import MemoryBar, PciFunction, Unmodelled
from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.uart16550 import FCR_ENABLE, IIR_NONE, Uart16550
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

# --- identity -----------------------------------------------------------------------------
VENDOR_INTEL = 0x8086
DEVICE_IDS = (0xA2A7, 0xA2A8)     # UART #0 (00:1e.0), UART #1 (00:1e.1)
SUBSYSTEM = (0x8086, 0x7270)
CLASS_SIGNAL_PROCESSING = 0x118000
REVISION = 0x00
INTERRUPT_PINS = (1, 2)           # INTA#, INTB#

# --- configuration space ------------------------------------------------------------------
BAR_SIZE = 4096
PM_CAPABILITY, VENDOR_CAPABILITY = 0x80, 0x90
CAP_PM, CAP_VENDOR = 0x01, 0x09
PMC = 0x0003                      # version 3; no D1, D2 or PME
PMCSR = PM_CAPABILITY + 4
PMCSR_NO_SOFT_RESET = 1 << 3
PM_STATE_MASK = 0x3
D0, D1, D2, D3HOT = 0, 1, 2, 3
VENDOR_CAPABILITY_LENGTH = 0x14

# --- DesignWare UART (0x000-0x1FF) --------------------------------------------------------
UART_REGISTERS_END = 0x20         # the eight 16550 registers, 4 bytes apart
USR, TFL, RFL, RE_EN, DLF, CPR, UCV, CTR = 0x7C, 0x80, 0x84, 0xB4, 0xC0, 0xF4, 0xF8, 0xFC
USR_BUSY, USR_TFNF, USR_TFE, USR_RFNE, USR_RFF = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
FIFO_DEPTH = 64
RX_TRIGGER = (1, FIFO_DEPTH // 4, FIFO_DEPTH // 2, FIFO_DEPTH - 2)   # FCR bits 7:6
MCR_AFCE = 1 << 5
DW_MCR_MASK = 0x1F | MCR_AFCE      # DTR, RTS, OUT1, OUT2, LOOP, AFCE (no SIRE: no IrDA)
CPR_APB_32BIT, CPR_AFCE_MODE, CPR_ADDITIONAL_FEATURES = 0x2, 1 << 4, 1 << 8
CPR_FIFO_STAT, CPR_ENCODED_PARAMS = 1 << 10, 1 << 12
CPR_VALUE = ((FIFO_DEPTH // 16) << 16 | CPR_ENCODED_PARAMS | CPR_FIFO_STAT
             | CPR_ADDITIONAL_FEATURES | CPR_AFCE_MODE | CPR_APB_32BIT)
UCV_VALUE = 0x3331312A            # "3.11*": before the fractional divisor and RS-485 (4.0x)
CTR_VALUE = 0x44570110

# --- LPSS private registers (0x200-0x2FF) -------------------------------------------------
PRIVATE, PRIVATE_END = 0x200, 0x300
CLOCK_PARAMS, RESETS, ACTIVE_LTR, IDLE_LTR = 0x200, 0x204, 0x210, 0x214
REMAP_LOW, REMAP_HIGH, CAPS = 0x240, 0x244, 0x2FC
CLOCK_ENABLE, CLOCK_UPDATE = 1 << 0, 1 << 31
DIVIDER_MASK, M_SHIFT, N_SHIFT = 0x7FFF, 1, 16
SOURCE_CLOCK_HZ = 120_000_000
RESETS_FUNCTION, RESETS_APB, RESETS_IDMA = 1 << 0, 1 << 1, 1 << 2
RESETS_MASK = RESETS_FUNCTION | RESETS_APB | RESETS_IDMA
RESETS_RELEASED = RESETS_FUNCTION | RESETS_APB
LTR_MASK = 0x9FFF_9FFF            # requirement 15/31, scale 12:10/28:26, value 9:0/25:16
CAPS_TYPE_UART, CAPS_NO_IDMA = 1 << 4, 1 << 8
CAPS_VALUE = CAPS_TYPE_UART | CAPS_NO_IDMA

U32 = 0xFFFF_FFFF
GUEST_ERRORS_LOGGED = 10

_PRIVATE_SAVED = ("clock_params", "resets", "active_ltr", "idle_ltr", "remap_low", "remap_high")


class DesignWareUart(Uart16550):
    """The DW_apb_uart core as the PCH configures it: 16550-compatible (LCR writable at any
    time, no busy-detect interrupt), 64-byte FIFOs, auto flow control. Its interrupt output
    is not gated by MCR.OUT2 (that gate is the PC's COM port wiring, not the DesignWare
    block's), and it reaches the pin in loopback too."""

    def __init__(self, irq: IrqLine, output: Callable[[bytes], None] | None = None):
        super().__init__(irq, output)
        self.hardware_reset()

    def hardware_reset(self) -> None:
        """The block's reset: unlike a 16550's master reset it clears the divisor latch and
        the scratch register too."""
        self.dll = self.dlm = self.scr = self.rbr = 0
        self.reset()

    def register_read(self, index: int) -> int:
        """One of the eight 16550 registers (offset / 4)."""
        return self._read_byte(index)

    def register_write(self, index: int, value: int) -> None:
        self._write_byte(index, value & 0xFF)

    def status(self) -> int:
        """USR. Nothing is ever in transmission (a byte leaves at once), so the block is busy
        exactly while received data waits."""
        usr = USR_TFNF | USR_TFE
        if self.rx:
            usr |= USR_RFNE | USR_BUSY
        if self.fcr & FCR_ENABLE and len(self.rx) >= FIFO_DEPTH:
            usr |= USR_RFF
        return usr

    # --- what differs from the PC's 16550A ---------------------------------------------------

    fifo_size, rx_trigger, mcr_mask = FIFO_DEPTH, RX_TRIGGER, DW_MCR_MASK

    def _update_irq(self) -> None:
        self._irq.set(self._interrupt_id() != IIR_NONE)


class LpssUart:
    """Serial IO UART #`index` (0: 00:1e.0, 1: 00:1e.1): the PCI function `.pci`, its BAR0
    registers (`read`/`write`), and the line: `output(bytes)` for what the guest sends,
    `feed(bytes)` for what it receives."""

    def __init__(self, index: int, intx: IrqLine | None = None,
                 output: Callable[[bytes], None] | None = None):
        if index not in (0, 1):
            raise ValueError("the PCH has Serial IO UARTs 0 and 1 on device 0x1e")
        self.index = index
        self.guest_errors = 0
        self.pci = _Function(self, DEVICE_IDS[index])
        self.pci.add_memory_bar(MemoryBar(0, BAR_SIZE, self))
        self.pci.add_memory_bar(MemoryBar(2, BAR_SIZE, Unmodelled()))     # the config mirror
        if intx is not None:
            self.pci.set_interrupt_pin(intx, INTERRUPT_PINS[index])
        self.power_state = D0
        # The core drives this line; the function's INTx follows it while in D0.
        self._core_irq = IrqLine(f"lpss-uart{index}", lambda level: self._update_intx())
        self.uart = DesignWareUart(self._core_irq, output)
        self._power_on()

    # --- reset ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Platform reset: the function (back to D0) and the controller (held in reset)."""
        self.pci.reset()
        self.power_state = D0
        self._power_on()

    def _power_on(self) -> None:
        self.clock_params = 0
        self.clock_divider = (0, 0)     # the M/N latched by the last update
        self.resets = 0
        self.active_ltr = self.idle_ltr = 0
        self.remap_low = self.remap_high = 0
        self.uart.hardware_reset()
        self._update_intx()

    @property
    def out_of_reset(self) -> bool:
        return self.resets & RESETS_RELEASED == RESETS_RELEASED

    @property
    def baud_clock_hz(self) -> int:
        """The UART's clock as Linux's clock tree computes it (M or N zero: the root clock);
        0 while the enable bit is clear. Informational: nothing is paced by it."""
        if not self.clock_params & CLOCK_ENABLE:
            return 0
        m, n = self.clock_divider
        return SOURCE_CLOCK_HZ * m // n if m and n else SOURCE_CLOCK_HZ

    # --- the line ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes arriving on the receive line (dropped while the controller is in reset)."""
        if not self.out_of_reset:
            log.debug("lpss-uart%d: %d input bytes dropped: in reset", self.index, len(data))
            return
        self.uart.feed(data)

    def rx_free(self) -> int:
        return self.uart.rx_free() if self.out_of_reset else 0

    # --- BAR0 -------------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size == 8:
            return self.read(offset, 4) | self.read(offset + 4, 4) << 32
        if not self._fits(offset, size):
            self._guest_error(f"read of {size} bytes at {offset:#x}")
            return 0
        if self.power_state != D0:
            return (1 << 8 * size) - 1          # D3hot: memory space does not answer
        shift = 8 * (offset & 3)
        return self._read_dword(offset & ~3) >> shift & ((1 << 8 * size) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 8:
            self.write(offset, 4, value & U32)
            self.write(offset + 4, 4, value >> 32 & U32)
            return
        if not self._fits(offset, size):
            self._guest_error(f"write of {size} bytes at {offset:#x}")
            return
        if self.power_state != D0:
            return
        shift = 8 * (offset & 3)
        mask = ((1 << 8 * size) - 1) << shift
        self._write_dword(offset & ~3, (value << shift) & mask, mask)

    @staticmethod
    def _fits(offset: int, size: int) -> bool:
        """An access of 1, 2 or 4 bytes inside one dword of the BAR."""
        return size in (1, 2, 4) and 0 <= offset < BAR_SIZE and (offset & 3) + size <= 4

    def _read_dword(self, offset: int) -> int:
        if offset < UART_REGISTERS_END:
            return self.uart.register_read(offset >> 2)
        if offset < PRIVATE:
            return self._uart_extra(offset)
        if offset < PRIVATE_END:
            return self._private(offset)
        return 0                            # the iDMA's space: no iDMA here

    def _uart_extra(self, offset: int) -> int:
        if offset == USR:
            return self.uart.status()
        if offset == RFL:
            return len(self.uart.rx)
        return {CPR: CPR_VALUE, UCV: UCV_VALUE, CTR: CTR_VALUE}.get(offset, 0)

    def _private(self, offset: int) -> int:
        return {CLOCK_PARAMS: self.clock_params, RESETS: self.resets,
                ACTIVE_LTR: self.active_ltr, IDLE_LTR: self.idle_ltr,
                REMAP_LOW: self.remap_low, REMAP_HIGH: self.remap_high,
                CAPS: CAPS_VALUE}.get(offset, 0)

    def _write_dword(self, offset: int, value: int, mask: int) -> None:
        if offset < UART_REGISTERS_END:
            # An 8-bit register: it is written when the access covers its byte.
            if mask & 0xFF and self.out_of_reset:
                self.uart.register_write(offset >> 2, value)
            return
        if not PRIVATE <= offset < PRIVATE_END:
            return                          # read-only, absent or the iDMA's: ignored
        value = (self._private(offset) & ~mask) | (value & mask)
        if offset == CLOCK_PARAMS:
            self.clock_params = value
            if value & CLOCK_UPDATE:
                self.clock_divider = (value >> M_SHIFT & DIVIDER_MASK,
                                      value >> N_SHIFT & DIVIDER_MASK)
        elif offset == RESETS:
            self.resets = value & RESETS_MASK
            if not self.out_of_reset:
                self.uart.hardware_reset()  # held: every register at its reset value
        elif offset == ACTIVE_LTR:
            self.active_ltr = value & LTR_MASK
        elif offset == IDLE_LTR:
            self.idle_ltr = value & LTR_MASK
        elif offset == REMAP_LOW:
            self.remap_low = value
        elif offset == REMAP_HIGH:
            self.remap_high = value

    def _guest_error(self, what: str) -> None:
        """Logged the first GUEST_ERRORS_LOGGED times, then only counted."""
        self.guest_errors += 1
        if self.guest_errors <= GUEST_ERRORS_LOGGED:
            log.warning("lpss-uart%d: %s ignored%s", self.index, what,
                        " (further ones are counted, not logged)"
                        if self.guest_errors == GUEST_ERRORS_LOGGED else "")

    # --- power management and the interrupt ------------------------------------------------

    def power_state_written(self) -> None:
        """PMCSR was written: D0 and D3hot are taken; D1 and D2 are not supported, so such a
        write leaves the state as it was (PCI PM 1.2, the PowerState field)."""
        state = self.pci.config[PMCSR] & PM_STATE_MASK
        if state in (D1, D2):
            self.pci.config[PMCSR] = (self.pci.config[PMCSR] & ~PM_STATE_MASK) | self.power_state
            return
        self.power_state = state
        self._update_intx()

    def _update_intx(self) -> None:
        self.pci.set_intx(self._core_irq.level and self.power_state == D0)

    # --- saved state ------------------------------------------------------------------------

    def save(self) -> dict:
        return {"pci": self.pci.save(), "uart": self.uart.save(),
                "clock_divider": list(self.clock_divider), "guest_errors": self.guest_errors,
                **{name: getattr(self, name) for name in _PRIVATE_SAVED}}

    def load(self, state: dict) -> None:
        where = "LpssUart"
        _state.mapping(state, where)
        _state.ranges(state, where, {name: (0, U32) for name in _PRIVATE_SAVED})
        if (state["resets"] & ~RESETS_MASK or state["active_ltr"] & ~LTR_MASK
                or state["idle_ltr"] & ~LTR_MASK):
            raise StateError(f"{where}: register bits that read 0")
        divider = _state.int_list(state, "clock_divider", where, 0, DIVIDER_MASK, length=2)
        errors = _state.int_field(state, "guest_errors", where, 0)
        pci = self.pci.check_state(_state.field(state, "pci", where))
        power_state = pci[0][PMCSR] & PM_STATE_MASK
        if power_state in (D1, D2):
            raise StateError(f"{where}: power state D{power_state}, which the function lacks")
        self.uart.load(_state.field(state, "uart", where))     # checks, then changes
        self.pci.apply_state(pci)
        self.power_state = power_state
        for name in _PRIVATE_SAVED:
            setattr(self, name, state[name])
        self.clock_divider = tuple(divider)
        self.guest_errors = errors
        self._update_intx()


class _Function(PciFunction):
    """The function's configuration space, its capabilities where the real one has them; a
    write to PMCSR changes the power state."""

    def __init__(self, owner: LpssUart, device_id: int):
        super().__init__(VENDOR_INTEL, device_id, CLASS_SIGNAL_PROCESSING, REVISION,
                         subsystem_vendor=SUBSYSTEM[0], subsystem=SUBSYSTEM[1])
        self.owner = owner
        self.place_next_capability(PM_CAPABILITY)
        self.add_capability(CAP_PM, struct.pack("<HHBB", PMC, PMCSR_NO_SOFT_RESET, 0, 0),
                            struct.pack("<HH", 0, PM_STATE_MASK))
        self.place_next_capability(VENDOR_CAPABILITY)
        self.add_capability(CAP_VENDOR, bytes([VENDOR_CAPABILITY_LENGTH])
                            + bytes(VENDOR_CAPABILITY_LENGTH - 3))

    def config_written(self, offset: int, size: int) -> None:
        if offset < PMCSR + 2 and offset + size > PMCSR:
            self.owner.power_state_written()
