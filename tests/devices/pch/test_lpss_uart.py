"""The Serial IO UARTs driven the way Linux 6.1 drives them: intel-lpss-pci and intel-lpss
(drivers/mfd), 8250_dw and 8250_dwlib, the 8250 core's startup and set_termios, runtime PM;
then by a hostile guest."""

import random
from fractions import Fraction

import pytest

from imacpro.bus.pci import (BAR0, CAP_POINTER, CMD_BUS_MASTER, CMD_MEMORY, COMMAND,
                             INTERRUPT_PIN, PciBus, PciMemoryWindow)
from imacpro.devices.contract import StateError
from imacpro.devices.pch import lpss_uart as L
from imacpro.irq import IrqLine

BARS = {0: 0xB100_0000, 1: 0xB100_2000}           # BAR0 of each function
MIRRORS = {0: 0xB100_1000, 1: 0xB100_3000}        # BAR1 (slot 2)
PRIV = 0x200

# The 16550 registers at reg-shift 2.
RBR = THR = DLL = 0x00
IER = DLM = 0x04
IIR = FCR = 0x08
LCR, MCR, LSR, MSR, SCR = 0x0C, 0x10, 0x14, 0x18, 0x1C
LSR_DR, LSR_OE, LSR_THRE, LSR_TEMT = 0x01, 0x02, 0x20, 0x40
IIR_NO_INT, IIR_THRI, IIR_RDI, IIR_RX_TIMEOUT = 0x01, 0x02, 0x04, 0x0C
IER_RDI, IER_THRI, IER_RLSI = 0x01, 0x02, 0x04
MCR_DTR, MCR_RTS, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x08, 0x10


class Linux:
    """The kernel's steps, as configuration and register accesses."""

    def __init__(self, index=0):
        self.index = index
        self.sent = bytearray()
        self.intx = IrqLine(f"gsi{20 + index}")
        self.dev = L.LpssUart(index, intx=self.intx, output=self.sent.extend)
        self.bus = PciBus()
        self.bus.attach(0x1E, index, self.dev.pci)
        self.window = PciMemoryWindow(self.bus, 0)
        self.bar = BARS[index]
        self.saved_private = None

    # --- access ----------------------------------------------------------------------------

    def cfg(self, offset, size=4):
        return self.bus.read(0, 0x1E, self.index, offset, size)

    def set_cfg(self, offset, size, value):
        self.bus.write(0, 0x1E, self.index, offset, size, value)

    def readl(self, offset):
        return self.window.read(self.bar + offset, 4)

    def writel(self, offset, value):
        self.window.write(self.bar + offset, 4, value)

    def rmw(self, offset, clear, set_):               # clk_gate_endisable, clk_fd_set_rate
        self.writel(offset, (self.readl(offset) & ~clear) | set_)

    # --- the firmware and the PCI core ------------------------------------------------------

    def firmware(self):
        """What imacpro's firmware does: size and place the BARs, turn memory decoding on."""
        for slot, address in ((0, BARS[self.index]), (2, MIRRORS[self.index])):
            offset = BAR0 + 4 * slot
            self.set_cfg(offset, 4, 0xFFFF_FFFF)
            self.set_cfg(offset + 4, 4, 0xFFFF_FFFF)
            assert self.cfg(offset) & 0xF == 0x4                 # 64-bit memory, not prefetch.
            assert -(self.cfg(offset) & ~0xF) & 0xFFFF_FFFF == 4096
            self.set_cfg(offset, 4, address)
            self.set_cfg(offset + 4, 4, 0)
        self.set_cfg(COMMAND, 2, self.cfg(COMMAND, 2) | CMD_MEMORY)

    def capabilities(self):
        found, offset = {}, self.cfg(CAP_POINTER, 1)
        while offset:
            found[self.cfg(offset, 1)] = offset
            offset = self.cfg(offset + 1, 1)
        return found

    def pci_enable(self):
        """pci_pm_init finds the PM capability; pcim_enable_device (the function in D0,
        memory on), pci_set_master, pci_try_set_mwi."""
        self.pm = self.capabilities()[0x01]
        assert self.cfg(self.pm + 2, 2) & 0x7 == 3                 # PM version 3
        assert self.cfg(self.pm + 2, 2) & 0xF800 == 0              # no PME: nothing printed
        self.set_cfg(self.pm + 4, 2, 0)                            # D0
        self.set_cfg(COMMAND, 2, self.cfg(COMMAND, 2) | CMD_MEMORY | CMD_BUS_MASTER)
        self.set_cfg(0x0C, 1, 64 // 4)

    # --- intel-lpss ------------------------------------------------------------------------

    def lpss_probe(self):
        caps = self.readl(PRIV + 0xFC)
        assert (caps >> 4) & 0xF == 1, "intel_lpss_assign_devs: not a UART"
        assert caps & (1 << 8), "the iDMA cell would be added"
        self.writel(PRIV + 0x04, 0)                                # intel_lpss_init_dev
        self.writel(PRIV + 0x04, 0x3 | 0x4)
        self.writel(PRIV + 0x40, self.bar & 0xFFFF_FFFF)           # lo_hi_writeq
        self.writel(PRIV + 0x44, self.bar >> 32)
        value = self.readl(PRIV + 0x00)                            # clk_fd_recalc_rate
        m, n = (value >> 1) & 0x7FFF, (value >> 16) & 0x7FFF
        self.rate = 120_000_000 if not m or not n else 120_000_000 * m // n
        self.readl(PRIV + 0x10)                                    # intel_lpss_cache_ltr
        self.readl(PRIV + 0x14)

    def clk_enable(self):       # the enable gate (bit 0), then the update gate (bit 31)
        self.rmw(PRIV, 0, 1 << 0)
        self.rmw(PRIV, 0, 1 << 31)

    def clk_disable(self):
        self.rmw(PRIV, 1 << 31, 0)
        self.rmw(PRIV, 1 << 0, 0)

    # --- 8250_dw ---------------------------------------------------------------------------

    def dw_probe(self, line):
        self.clk_enable()
        self.uartclk = self.rate
        self.writel(0xB4, 1)                                       # dw8250_detect_rs485_hw
        rs485 = self.readl(0xB4)
        self.writel(0xB4, 0)
        assert rs485 == 0
        assert self.readl(0xF8) != 0                               # UCV: additional features
        old = self.readl(0xC0)
        self.writel(0xC0, 0xFFFF_FFFF)
        assert self.readl(0xC0) == 0, "a DLF: Linux would use the fractional divisor"
        self.writel(0xC0, old)
        cpr = self.readl(0xF4)
        assert cpr, "CPR 0: 8250_dw would dereference its NULL platform data"
        self.fifosize = ((cpr >> 16) & 0xFF) * 16
        assert self.fifosize == 64                                 # PORT_16550A, fixed type
        assert cpr & (1 << 4) and not cpr & (1 << 6)               # AFE; no IrDA
        self.writel(MCR, 0)                                        # uart_configure_port
        return (f"dw-apb-uart.{self.index}: ttyS{line} at MMIO {self.bar:#x} "
                f"(irq = {20 + self.index}, base_baud = {self.uartclk // 16}) is a 16550A")

    def probe(self):
        self.firmware()
        self.pci_enable()
        self.lpss_probe()
        return self.dw_probe(line=1 + self.index)

    # --- runtime PM --------------------------------------------------------------------------

    def runtime_suspend(self):
        self.clk_disable()                                         # dw8250_runtime_suspend
        self.saved_private = [self.readl(PRIV + 4 * i) for i in range(64)]
        self.set_cfg(self.pm + 4, 2, (self.cfg(self.pm + 4, 2) & ~3) | 3)
        assert self.cfg(self.pm + 4, 2) & 3 == 3, "Refused to change power state"

    def runtime_resume(self):
        pmcsr = self.cfg(self.pm + 4, 2)
        assert pmcsr != 0xFFFF and pmcsr & (1 << 3)                # NoSoftRst: no restore
        self.set_cfg(self.pm + 4, 2, 0)
        self.writel(PRIV + 0x04, 0x7)                              # intel_lpss_resume
        for i, value in enumerate(self.saved_private):
            self.writel(PRIV + 4 * i, value)
        self.clk_enable()                                          # dw8250_runtime_resume

    # --- the 8250 core -----------------------------------------------------------------------

    def startup(self):
        """serial8250_do_startup, as far as it touches the port."""
        self.writel(FCR, 0x01)                                     # serial8250_clear_fifos
        self.writel(FCR, 0x07)
        self.writel(FCR, 0)
        for reg in (LSR, RBR, IIR, MSR):
            self.readl(reg)
        assert self.readl(LSR) != 0xFF, "LSR safety check engaged!"
        self.writel(IER, IER_THRI)                                 # the THRE test
        iir1 = self.readl(IIR)
        self.writel(IER, 0)
        self.writel(IER, IER_THRI)
        iir = self.readl(IIR)
        self.writel(IER, 0)
        assert not (not iir1 & IIR_NO_INT and iir & IIR_NO_INT), "UART_BUG_THRE"
        self.writel(LCR, 0x03)
        self.writel(MCR, MCR_OUT2 | MCR_DTR | MCR_RTS)
        self.writel(IER, IER_THRI)                                 # the TXEN test
        lsr, iir = self.readl(LSR), self.readl(IIR)
        self.writel(IER, 0)
        assert not (lsr & LSR_TEMT and iir & IIR_NO_INT), "UART_BUG_TXEN"
        for reg in (LSR, RBR, IIR, MSR):
            self.readl(reg)
        self.writel(IER, IER_RLSI | IER_RDI)

    def set_termios(self, baud=115200):
        """dw8250_set_termios: the clock to 16 x baud through the M/N divider, then
        serial8250_do_set_termios."""
        self.clk_disable()
        ratio = Fraction(baud * 16, 120_000_000).limit_denominator(0x7FFF)
        m, n = ratio.numerator, ratio.denominator
        self.rmw(PRIV, 0x7FFF << 1 | 0x7FFF << 16, m << 1 | n << 16)
        self.uartclk = 120_000_000 * m // n
        self.clk_enable()
        quot = self.uartclk // (16 * baud)
        self.writel(LCR, 0x83)
        self.writel(DLL, quot & 0xFF)
        self.writel(DLM, quot >> 8)
        self.writel(LCR, 0x03)
        self.writel(FCR, 0x81)                     # 16550A: FIFO on, trigger "10"
        self.writel(MCR, MCR_OUT2 | MCR_DTR | MCR_RTS)
        self.writel(IER, IER_RLSI | IER_RDI)

    def open(self):
        self.startup()
        self.set_termios()

    def transmit(self, data):
        for byte in data:
            assert self.readl(LSR) & LSR_THRE
            self.writel(THR, byte)

    def interrupt(self):
        """serial8250_handle_irq: what one interrupt reads."""
        iir = self.readl(IIR)
        received = bytearray()
        if iir & IIR_NO_INT:
            return iir, received
        lsr = self.readl(LSR)
        while lsr & LSR_DR:
            received.append(self.readl(RBR))
            lsr = self.readl(LSR)
        return iir, received


@pytest.fixture
def linux():
    driver = Linux()
    driver.probe()
    return driver


def test_the_function_is_the_real_ones():
    for index, device_id, pin in ((0, 0xA2A7, 1), (1, 0xA2A8, 2)):
        kernel = Linux(index)
        assert kernel.cfg(0x00) == device_id << 16 | 0x8086
        assert kernel.cfg(0x08) == 0x118000 << 8                 # revision 00
        assert kernel.cfg(0x2C) == 0x7270 << 16 | 0x8086
        assert kernel.cfg(INTERRUPT_PIN, 1) == pin
        assert kernel.capabilities() == {0x01: 0x80, 0x09: 0x90}
        assert kernel.cfg(0x92, 1) == 0x14                       # "Len=14"
        kernel.firmware()                                        # both BARs: 64-bit, 4 KiB
        assert kernel.window.read(MIRRORS[index], 4) == 0        # the mirror: not modelled
    with pytest.raises(ValueError):
        L.LpssUart(2)
    assert L.LpssUart(0).pci.config[INTERRUPT_PIN] == 0          # no line: no pin


def test_probe_sees_a_fixed_16550a_with_64_byte_fifos_and_no_idma():
    kernel = Linux()
    line = kernel.probe()
    assert line == (f"dw-apb-uart.0: ttyS1 at MMIO {BARS[0]:#x} (irq = 20, "
                    "base_baud = 7500000) is a 16550A")
    dev = kernel.dev
    assert dev.resets == 7 and dev.out_of_reset
    assert (dev.remap_high << 32 | dev.remap_low) == BARS[0]
    assert kernel.readl(PRIV) == 1 << 31 | 1                     # clock on, update set
    assert dev.baud_clock_hz == 120_000_000
    assert kernel.readl(0xFC) == 0x44570110
    assert kernel.readl(0x7C) == L.USR_TFNF | L.USR_TFE          # idle, FIFOs empty
    assert not kernel.intx.level


def test_runtime_suspend_to_d3hot_and_back_keeps_the_port(linux):
    linux.writel(SCR, 0x5A)
    linux.writel(IER, IER_RDI)
    linux.runtime_suspend()
    assert linux.saved_private[0x3F] == 0x110                    # CAPS, read with the rest
    assert linux.readl(LSR) == 0xFFFF_FFFF                       # D3hot: memory does not answer
    linux.writel(SCR, 0)                                         # ... and takes nothing
    linux.dev.feed(b"x")
    assert not linux.intx.level                                  # no INTx from D3hot
    linux.set_cfg(linux.pm + 4, 2, 1)                            # D1: not supported
    assert linux.cfg(linux.pm + 4, 2) & 3 == 3
    linux.runtime_resume()
    assert linux.intx.level                                      # the pending byte, in D0
    assert linux.readl(SCR) == 0x5A and linux.readl(RBR) == ord("x")
    assert linux.dev.resets == 7 and linux.readl(PRIV) == 1 << 31 | 1


def test_a_byte_sent_comes_out_of_output(linux):
    linux.open()
    assert linux.dev.clock_divider == (48, 3125)                 # 1.8432 MHz, latched
    assert linux.dev.baud_clock_hz == 1_843_200 and linux.dev.uart.dll == 1
    linux.transmit(b"hello\n")
    assert bytes(linux.sent) == b"hello\n"
    assert linux.readl(LSR) & (LSR_THRE | LSR_TEMT) == LSR_THRE | LSR_TEMT
    # Interrupt-driven transmit: THRE raises the line, reading IIR acknowledges it.
    linux.writel(IER, IER_RLSI | IER_RDI | IER_THRI)
    assert linux.intx.level and linux.readl(IIR) == 0xC0 | IIR_THRI
    assert not linux.intx.level


def test_a_byte_fed_in_raises_the_line_and_reads_back(linux):
    linux.open()
    linux.dev.feed(b"hi")
    assert linux.intx.level and linux.dev.pci.read_config(0x06, 2) & (1 << 3)
    assert linux.readl(0x7C) & (L.USR_RFNE | L.USR_BUSY) and linux.readl(0x84) == 2
    iir, received = linux.interrupt()
    assert iir == 0xC0 | IIR_RX_TIMEOUT and received == b"hi"    # below the 32-byte trigger
    assert not linux.intx.level
    linux.dev.feed(bytes(range(40)))
    iir, received = linux.interrupt()
    assert iir == 0xC0 | IIR_RDI and received == bytes(range(40))
    # More than the FIFO holds: 64 kept, an overrun reported.
    linux.dev.feed(bytes(70))
    assert linux.readl(0x84) == 64 and linux.readl(0x7C) & L.USR_RFF
    assert linux.readl(LSR) & LSR_OE
    assert len(linux.interrupt()[1]) == 64


def test_the_interrupt_is_the_blocks_own_not_gated_by_out2():
    kernel = Linux()
    kernel.probe()
    kernel.writel(FCR, 0x01)
    kernel.writel(MCR, 0)
    kernel.writel(IER, IER_RDI)
    kernel.dev.feed(b"a")
    assert kernel.intx.level                                     # a PC COM port would not
    kernel.set_cfg(COMMAND, 2, kernel.cfg(COMMAND, 2) | 1 << 10)  # INTx disable
    assert not kernel.intx.level
    kernel.set_cfg(COMMAND, 2, kernel.cfg(COMMAND, 2) & ~(1 << 10))
    kernel.writel(MCR, MCR_LOOP)                                 # loopback: THR comes back
    kernel.writel(THR, ord("b"))
    assert kernel.interrupt()[1] == b"ab" and kernel.sent == b""


def test_the_controller_held_in_reset_keeps_its_reset_values(linux):
    linux.writel(LCR, 0x83)
    linux.writel(DLL, 0x34)
    linux.writel(LCR, 0x03)
    linux.writel(SCR, 0x77)
    linux.writel(PRIV + 4, 0)                                    # into reset
    assert linux.readl(SCR) == 0
    linux.writel(SCR, 0x11)                                      # ignored while held
    linux.dev.feed(b"lost")
    assert linux.readl(SCR) == 0 and linux.readl(LSR) == LSR_THRE | LSR_TEMT
    linux.writel(PRIV + 4, 0x1)                                  # the APB still held
    linux.writel(SCR, 0x11)
    assert linux.readl(SCR) == 0
    linux.writel(PRIV + 4, 0x3)
    linux.writel(LCR, 0x80)
    assert linux.readl(DLL) == 0                                 # the divisor latch cleared
    linux.writel(LCR, 0)
    linux.writel(SCR, 0x11)
    assert linux.readl(SCR) == 0x11


def test_the_update_bit_latches_the_divider(linux):
    linux.writel(PRIV, 0x0C35 << 16 | 0x30 << 1 | 1)              # M/N without update
    assert linux.dev.clock_divider == (0, 0) and linux.dev.baud_clock_hz == 120_000_000
    linux.writel(PRIV, 1 << 31 | 0x0C35 << 16 | 0x30 << 1 | 1)
    assert linux.dev.clock_divider == (0x30, 0x0C35) and linux.dev.baud_clock_hz == 1_843_200
    linux.window.write(BARS[0] + PRIV + 2, 2, 0x0010)            # a narrow write merges
    assert linux.readl(PRIV) == 0x0010 << 16 | 0x30 << 1 | 1
    assert linux.dev.clock_divider == (0x30, 0x0C35)
    linux.window.write(BARS[0] + PRIV + 3, 1, 0x80)               # the update byte alone
    assert linux.dev.clock_divider == (0x30, 0x10)
    linux.rmw(PRIV, 1, 0)
    assert linux.dev.baud_clock_hz == 0                          # gated
    assert linux.readl(PRIV + 0xFC) == 0x110
    linux.writel(PRIV + 0xFC, 0)                                 # CAPS is read-only
    assert linux.readl(PRIV + 0xFC) == 0x110


def test_reset_returns_to_power_on(linux):
    linux.open()
    linux.dev.feed(b"pending")
    linux.runtime_suspend()
    linux.dev.reset()
    dev = linux.dev
    assert dev.pci.config == L.LpssUart(0, intx=IrqLine()).pci.config
    assert dev.power_state == L.D0 and not linux.intx.level
    assert (dev.clock_params, dev.resets, dev.clock_divider) == (0, 0, (0, 0))
    assert (dev.uart.dll, dev.uart.scr, dev.uart.ier, dev.uart.rx) == (0, 0, 0, [])
    linux.probe()                                                # probes again from scratch
    linux.open()
    linux.transmit(b"again")
    assert linux.sent.endswith(b"again")


def test_save_and_load_carry_the_port_on(linux):
    linux.open()
    linux.dev.feed(b"abc")
    linux.writel(SCR, 0x42)
    saved = linux.dev.save()
    other = Linux()
    other.dev.load(saved)                                        # BARs and decoding come too
    assert other.dev.save() == saved
    assert other.intx.level                                      # the pending data's interrupt
    assert other.interrupt()[1] == b"abc" and other.readl(SCR) == 0x42
    other.transmit(b"z")
    assert other.sent == b"z"
    # D3hot is carried too.
    linux.runtime_suspend()
    third = Linux()
    third.dev.load(linux.dev.save())
    assert third.dev.power_state == L.D3HOT and third.readl(SCR) == 0xFFFF_FFFF


def test_a_bad_state_is_refused_and_changes_nothing(linux):
    linux.open()
    linux.dev.feed(b"keep")
    good = linux.dev.save()
    before = linux.dev.save()
    config = bytearray(good["pci"]["config"])
    config[0x02] ^= 1                                            # another device ID
    d1 = bytearray(good["pci"]["config"])
    d1[L.PMCSR] |= 1
    bad = [
        {**good, "uart": {**good["uart"], "rx": bytes(65)}},
        {**good, "uart": {**good["uart"], "mcr": 0x80}},
        {**good, "uart": {**good["uart"], "thr_pending": 1}},
        {**good, "pci": {**good["pci"], "config": bytes(config)}},
        {**good, "pci": {**good["pci"], "config": bytes(d1)}},
        {**good, "resets": 8},
        {**good, "active_ltr": 1 << 30},
        {**good, "clock_divider": [0x8000, 1]},
        {**good, "clock_params": -1},
        {key: value for key, value in good.items() if key != "remap_low"},
        "not a mapping",
    ]
    for state in bad:
        with pytest.raises(StateError):
            linux.dev.load(state)
        assert linux.dev.save() == before
    assert linux.interrupt()[1] == b"keep"


def test_a_hostile_guest_cannot_break_it(linux):
    """Random configuration and BAR accesses of every size (the BARs may move, decoding and
    the power state change), random input: nothing raises, nothing grows without bound, the
    state still saves and loads, and after a reset Linux takes the port over again."""
    rng = random.Random(20)
    linux.open()
    for _ in range(5000):
        roll = rng.random()
        size = rng.choice((1, 2, 4, 8, 3, 0, 16))
        if roll < 0.2:
            offset = rng.choice((rng.randrange(0, 0x100), rng.randrange(0, 0x1000)))
            width = rng.choice((1, 2, 4))
            if rng.random() < 0.5:
                linux.set_cfg(offset & ~(width - 1), width, rng.getrandbits(32))
            else:
                linux.cfg(offset & ~(width - 1), width)
        elif roll < 0.6:
            offset = rng.choice((rng.randrange(0, 0x20), rng.randrange(0x7C, 0x100),
                                 rng.randrange(0x200, 0x300), rng.randrange(0, 0x1000)))
            if rng.random() < 0.5:                               # as a driver would
                offset, size = offset & ~3, 4
            linux.dev.write(offset, size, rng.getrandbits(64))
        elif roll < 0.85:
            linux.dev.read(rng.randrange(-4, 0x1004), size)
        elif roll < 0.9:
            linux.window.write(rng.choice((BARS[0], MIRRORS[0])) + rng.randrange(0, 0x1000, 4),
                               4, rng.getrandbits(32))
        else:
            linux.dev.feed(rng.randbytes(rng.randrange(0, 200)))
        assert len(linux.dev.uart.rx) <= L.FIFO_DEPTH
    assert linux.dev.guest_errors > 0
    state = linux.dev.save()
    fresh = L.LpssUart(0, intx=IrqLine())
    fresh.load(state)
    assert fresh.save() == state
    # Linux takes it over again: a function reset is what remove + probe amount to here.
    linux.dev.reset()
    linux.sent.clear()
    linux.probe()
    linux.open()
    linux.transmit(b"ok")
    linux.dev.feed(b"in")
    assert bytes(linux.sent) == b"ok" and linux.interrupt()[1] == b"in"
