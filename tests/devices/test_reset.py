"""Reset paths: port 0xCF9, the i8042 (as Linux probes it, with no devices), port 0x92."""

import random

from imacpro.clock import Clock
from imacpro.devices.reset import FastA20Port, KeyboardController, ResetControl
from imacpro.irq import IrqLine

DATA, STATUS = 0, 4


class Resets:
    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


def test_cf9_reset():
    resets = Resets()
    rcr = ResetControl(resets)
    rcr.write(0, 1, 0x02)
    assert resets.count == 0 and rcr.read(0, 1) == 0x02
    rcr.write(0, 1, 0x06)  # what Linux's reboot=pci writes after 0x02
    assert resets.count == 1 and rcr.read(0, 1) == 0x02
    rcr.write(0, 1, 0x0E)
    assert resets.count == 2 and rcr.read(0, 1) == 0x0A
    assert rcr.read(1, 1) == 0xFF and rcr.read(0, 2) == 0xFF0A
    rcr.reset()
    assert rcr.read(0, 1) == 0


def make_kbc():
    resets = Resets()
    kbd, aux = IrqLine("irq1"), IrqLine("irq12")
    return KeyboardController(resets, kbd_irq=kbd, aux_irq=aux), resets, kbd, aux


def command(kbc, cmd, *params):
    kbc.write(STATUS, 1, cmd)
    for param in params:
        assert not kbc.read(STATUS, 1) & 0x02  # IBF clear: ready for the next byte
        kbc.write(DATA, 1, param)


def response(kbc):
    assert kbc.read(STATUS, 1) & 0x01, "no output byte"
    return kbc.read(DATA, 1)


def flush(kbc):
    count = 0
    while kbc.read(STATUS, 1) & 0x01 and count < 16:
        kbc.read(DATA, 1)
        count += 1
    return count


def test_i8042_self_test_and_reset_pulse():
    kbc, resets, _, _ = make_kbc()
    assert kbc.read(STATUS, 1) == 0x10  # unlocked, no SYS before the self test
    command(kbc, 0xAA)
    assert response(kbc) == 0x55
    assert kbc.read(STATUS, 1) & 0x04  # SYS
    command(kbc, 0xFF)  # pulses nothing
    assert resets.count == 0
    command(kbc, 0xFE)
    assert resets.count == 1


def test_i8042_output_port_reset_and_a20():
    kbc, resets, _, _ = make_kbc()
    command(kbc, 0xD0)
    assert response(kbc) & 0x03 == 0x03
    command(kbc, 0xD1, 0xDD)  # A20 off, reset line high
    assert not kbc.a20 and resets.count == 0
    command(kbc, 0xDF)
    assert kbc.a20
    command(kbc, 0xD1, 0xDE)  # bit 0 low: reset
    assert resets.count == 1


def test_linux_i8042_probe_with_no_devices():
    kbc, resets, kbd_irq, aux_irq = make_kbc()
    # i8042_controller_check / selftest.
    assert flush(kbc) == 0
    command(kbc, 0xAA)
    assert response(kbc) == 0x55
    # i8042_controller_init: a stable CTR read, then write it back without KBDINT.
    command(kbc, 0x20)
    ctr = response(kbc)
    command(kbc, 0x20)
    assert response(kbc) == ctr
    assert kbc.read(STATUS, 1) & 0x10  # no keylock warning
    ctr = (ctr | 0x10) & ~0x01
    command(kbc, 0x60, ctr)
    command(kbc, 0x20)
    assert response(kbc) == ctr
    # i8042_check_mux: the third loop byte comes back unchanged, so no multiplexer.
    for byte in (0xF0, 0x56, 0xA4):
        command(kbc, 0xD3, byte)
        assert kbc.read(STATUS, 1) & 0x21 == 0x21 and response(kbc) == byte
    # i8042_check_aux: loop test, AUXDIS toggling, and the IRQ 12 delivery test.
    command(kbc, 0xA7)
    command(kbc, 0x20)
    assert response(kbc) & 0x20
    command(kbc, 0xA8)
    command(kbc, 0x20)
    assert not response(kbc) & 0x20
    command(kbc, 0x20)
    command(kbc, 0x60, (response(kbc) & ~0x20) | 0x02)
    command(kbc, 0xD3, 0xA5)
    assert aux_irq.level and not kbd_irq.level
    assert kbc.read(STATUS, 1) & 0x20 and kbc.read(DATA, 1) == 0xA5
    assert not aux_irq.level
    # atkbd: with KBDINT on, a command to the keyboard times out at once (0xFE + TIMEOUT).
    command(kbc, 0x60, 0x03)
    kbc.write(DATA, 1, 0xF2)  # GETID
    assert kbd_irq.level
    assert kbc.read(STATUS, 1) & 0x61 == 0x41
    assert kbc.read(DATA, 1) == 0xFE and not kbd_irq.level
    kbc.write(DATA, 1, 0xFF)  # reset: no 0xFA 0xAA, nobody is there
    assert response(kbc) == 0xFE and flush(kbc) == 0
    # psmouse through 0xD4: the same from the aux port.
    command(kbc, 0xD4, 0xFF)
    assert kbc.read(STATUS, 1) & 0x61 == 0x61 and aux_irq.level
    assert kbc.read(DATA, 1) == 0xFE
    command(kbc, 0xAB)
    assert response(kbc) == 0x00
    command(kbc, 0xA9)
    assert response(kbc) == 0x00
    assert resets.count == 0


def test_i8042_queue_makes_an_edge_per_byte():
    kbc, _, kbd_irq, _ = make_kbc()
    edges = []
    kbd_irq.connect(lambda level: level and edges.append(level))
    command(kbc, 0x20)
    command(kbc, 0x20)
    kbc.read(DATA, 1)
    kbc.read(DATA, 1)
    assert len(edges) == 2 and not kbd_irq.level
    assert kbc.read(DATA, 1) == 0x03  # the last byte again
    assert kbc.read(1, 1) == 0xFF and kbc.read(0, 0) == 0


def test_port92_fast_reset_and_a20():
    resets = Resets()
    port = FastA20Port(resets)
    port.write(0, 1, 0x02)
    assert port.a20 and resets.count == 0 and port.read(0, 1) == 0x02
    port.write(0, 1, 0xFF)
    assert resets.count == 1 and port.read(0, 1) == 0x03
    port.write(0, 1, 0x03)  # no 0 -> 1 transition
    assert resets.count == 1
    port.write(0, 1, 0x02)
    port.write(0, 1, 0x03)
    assert resets.count == 2
    port.reset()
    assert port.read(0, 1) == 0 and port.read(1, 1) == 0xFF


def test_fuzz_never_raises():
    rng = random.Random(8042)
    clock = Clock(realtime=False)
    resets = Resets()
    devices = [ResetControl(resets), FastA20Port(resets),
               KeyboardController(resets, kbd_irq=IrqLine(), aux_irq=IrqLine()),
               KeyboardController(resets)]
    sizes = (1, 1, 1, 2, 4, 8, 0, 5, -1)
    for _ in range(20_000):
        device = rng.choice(devices)
        offset = rng.choice((0, 4, rng.randrange(-4, 10)))
        size = rng.choice(sizes)
        op = rng.random()
        if op < 0.4:
            assert device.read(offset, size) >= 0
        elif op < 0.95:
            value = rng.choice((rng.getrandbits(8), rng.choice((0x20, 0x60, 0xD1, 0xD3, 0xD4)),
                                rng.getrandbits(64), -rng.getrandbits(9)))
            device.write(offset, size, value)
        elif op < 0.98:
            clock.advance(rng.randrange(0, 10**8))
            clock.run_due()
        else:
            device.reset()
    assert resets.count > 0
