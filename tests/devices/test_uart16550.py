"""16550A UART: the Linux 8250 probe, interrupts, loopback, FIFO and a fuzz run."""

import random

from imacpro.clock import Clock
from imacpro.devices.uart16550 import Uart16550
from imacpro.irq import IrqLine

THR = RBR = DLL = 0
IER = DLM = 1
IIR = FCR = EFR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7


def make():
    out = []
    irq = IrqLine("com1")
    return Uart16550(irq, out.append), irq, out


def rd(uart, reg):
    return uart.read(reg, 1)


def wr(uart, reg, value):
    uart.write(reg, 1, value)


def test_linux_8250_autoconfig_finds_a_16550a():
    uart, _, out = make()
    # Scratch test of IER (drivers/tty/serial/8250/8250_port.c: autoconfig()).
    saved = rd(uart, IER)
    wr(uart, IER, 0)
    assert rd(uart, IER) & 0x0F == 0
    wr(uart, IER, 0x0F)
    assert rd(uart, IER) & 0x0F == 0x0F
    wr(uart, IER, saved)
    # Loopback test: MCR = LOOP | OUT2 | RTS must show DCD | CTS.
    save_mcr = rd(uart, MCR)
    wr(uart, MCR, 0x10 | 0x0A)
    assert rd(uart, MSR) & 0xF0 == 0x90
    wr(uart, MCR, save_mcr)
    # EFR initialisation through LCR = 0xBF, then FIFO enable and the IIR type bits.
    wr(uart, LCR, 0xBF)
    wr(uart, EFR, 0)
    wr(uart, LCR, 0)
    wr(uart, FCR, 0x01)
    assert rd(uart, IIR) >> 6 == 3
    # autoconfig_16550a(): no EFR behind LCR = 0x80/0xBF, no Xscale UUE bit, no 64-byte FIFO.
    for lcr in (0x80, 0xBF):
        wr(uart, LCR, lcr)
        assert rd(uart, EFR) != 0
    wr(uart, LCR, 0)
    wr(uart, IER, 0x40)
    assert not rd(uart, IER) & 0x40
    wr(uart, LCR, 0x80)
    wr(uart, FCR, 0x21)
    status1 = rd(uart, IIR) >> 5
    wr(uart, LCR, 0)
    wr(uart, FCR, 0x21)
    assert (status1, rd(uart, IIR) >> 5) == (6, 6)
    # size_fifo(): 256 bytes in loopback leave exactly 16 to read.
    wr(uart, FCR, 0x07)
    wr(uart, MCR, 0x10)
    for i in range(256):
        wr(uart, THR, i)
    count = 0
    while rd(uart, LSR) & 0x01 and count < 256:
        rd(uart, RBR)
        count += 1
    assert count == 16
    assert out == []  # loopback bytes never reach the host


def test_thre_interrupt_raise_and_clear():
    uart, irq, out = make()
    wr(uart, MCR, 0x0B)  # DTR | RTS | OUT2
    assert not irq.level
    wr(uart, IER, 0x02)  # ETBEI newly enabled while THR is empty
    assert irq.level
    assert rd(uart, IIR) == 0x02
    assert not irq.level  # reading IIR acknowledged it
    assert rd(uart, IIR) == 0x01
    # Linux's UART_BUG_THRE test: re-enabling ETBEI raises it again.
    wr(uart, IER, 0)
    wr(uart, IER, 0x02)
    assert rd(uart, IIR) == 0x02
    # Each byte written clears it, leaves at once, and raises it again: one edge per byte.
    edges = []
    irq.connect(lambda level: edges.append(level))
    wr(uart, THR, ord("A"))
    wr(uart, THR, ord("B"))
    assert out == [b"A", b"B"]
    assert edges == [True, False, True]
    assert irq.level
    wr(uart, IER, 0)  # disabling ETBEI drops it
    assert not irq.level


def test_irq_needs_out2():
    uart, irq, _ = make()
    wr(uart, IER, 0x02)
    assert rd(uart, IIR) & 0x0F == 0x02 and not irq.level
    wr(uart, IER, 0)
    wr(uart, IER, 0x02)
    wr(uart, MCR, 0x08)
    assert irq.level
    wr(uart, MCR, 0x18)  # loopback: the OUT pins are forced inactive
    assert not irq.level


def test_loopback_and_modem_status_deltas():
    uart, _, out = make()
    wr(uart, MCR, 0x10)
    msr = rd(uart, MSR)
    assert msr & 0xF0 == 0x00
    assert msr & 0x0B == 0x0B  # CTS, DSR, DCD dropped on entering loopback
    assert rd(uart, MSR) & 0x0F == 0  # deltas clear on read
    wr(uart, MCR, 0x10 | 0x0F)  # DTR RTS OUT1 OUT2 -> DSR CTS RI DCD
    assert rd(uart, MSR) == 0xF0 | 0x0B
    wr(uart, MCR, 0x10 | 0x0B)  # OUT1 off: RI trailing edge
    assert rd(uart, MSR) == 0xB4
    wr(uart, THR, 0x5A)
    assert rd(uart, LSR) & 0x01 and rd(uart, RBR) == 0x5A
    uart.feed(b"x")  # external input is disconnected in loopback
    assert not rd(uart, LSR) & 0x01
    assert out == []


def test_modem_status_interrupt_has_lowest_priority():
    uart, irq, _ = make()
    wr(uart, MCR, 0x18)
    wr(uart, MCR, 0x1A)  # RTS -> CTS change
    wr(uart, IER, 0x08)
    assert rd(uart, IIR) == 0x00
    rd(uart, MSR)
    assert rd(uart, IIR) == 0x01


def test_fifo_overrun_and_line_status_priority():
    uart, irq, _ = make()
    wr(uart, FCR, 0x07)
    wr(uart, MCR, 0x08)
    wr(uart, IER, 0x07)  # RLS, RDA, THRE
    assert uart.rx_free() == 16
    uart.feed(bytes(range(20)))
    assert irq.level
    assert rd(uart, IIR) == 0xC6  # overrun outranks data and THRE
    lsr = rd(uart, LSR)
    assert lsr & 0x03 == 0x03
    assert rd(uart, LSR) & 0x02 == 0  # OE cleared by the read
    assert rd(uart, IIR) == 0xC4  # 16 bytes >= trigger 1
    assert [rd(uart, RBR) for _ in range(16)] == list(range(16))
    assert rd(uart, IIR) == 0xC2
    assert rd(uart, IIR) == 0xC1


def test_non_fifo_overrun_overwrites():
    uart, _, _ = make()
    uart.feed(b"ab")
    assert rd(uart, LSR) & 0x03 == 0x03
    assert rd(uart, RBR) == ord("b")
    assert rd(uart, IIR) == 0x01


def test_trigger_level_and_character_timeout():
    uart, irq, _ = make()
    wr(uart, FCR, 0x81)  # FIFO on, trigger 8
    wr(uart, MCR, 0x08)
    wr(uart, IER, 0x01)
    uart.feed(b"abc")
    assert rd(uart, IIR) == 0xCC and irq.level  # timeout: fewer than 8 waiting
    uart.feed(b"defgh")
    assert rd(uart, IIR) == 0xC4
    data = bytes(rd(uart, RBR) for _ in range(8))
    assert data == b"abcdefgh" and not irq.level
    wr(uart, FCR, 0x83)  # clear the receive FIFO
    uart.feed(b"z")
    wr(uart, FCR, 0x83)
    assert not rd(uart, LSR) & 0x01
    wr(uart, FCR, 0x00)  # FIFOs off: IIR bits 7:6 clear
    assert rd(uart, IIR) == 0x01


def test_divisor_latch_and_scratch_survive_reset():
    uart, _, out = make()
    wr(uart, LCR, 0x83)
    wr(uart, DLL, 0x01)
    wr(uart, DLM, 0x00)
    assert (rd(uart, DLL), rd(uart, DLM)) == (1, 0)
    wr(uart, LCR, 0x03)
    wr(uart, THR, ord("!"))
    assert out == [b"!"]
    wr(uart, SCR, 0xA5)
    uart.reset()
    assert rd(uart, SCR) == 0xA5
    assert rd(uart, LCR) == 0 and rd(uart, IER) == 0 and rd(uart, LSR) == 0x60
    wr(uart, LCR, 0x80)
    assert rd(uart, DLL) == 1


def test_wide_and_odd_accesses():
    uart, _, _ = make()
    wr(uart, SCR, 0x12)
    assert uart.read(6, 2) >> 8 == 0x12
    assert uart.read(8, 1) == 0xFF
    assert uart.read(6, 4) >> 16 == 0xFFFF
    assert uart.read(0, 3) == 0
    uart.write(7, 1, 0x1FF)
    assert rd(uart, SCR) == 0xFF
    uart.write(7, 1, -1)
    assert rd(uart, SCR) == 0xFF


def test_fuzz_never_raises():
    rng = random.Random(16550)
    clock = Clock(realtime=False)
    uart = Uart16550(IrqLine("fuzz"), lambda data: None)
    sizes = (1, 1, 1, 2, 4, 8, 0, 3, -1, 16)
    for _ in range(20_000):
        op = rng.random()
        offset = rng.randrange(-4, 12)
        size = rng.choice(sizes)
        if op < 0.45:
            value = uart.read(offset, size)
            assert isinstance(value, int) and value >= 0
        elif op < 0.9:
            uart.write(offset, size, rng.choice((rng.getrandbits(64), -rng.getrandbits(8), 0)))
        elif op < 0.95:
            uart.feed(rng.randbytes(rng.randrange(0, 40)))
        else:
            clock.advance(rng.randrange(0, 10**7))
            clock.run_due()
        assert len(uart.rx) <= 16
