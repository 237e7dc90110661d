"""I/O APIC: registers, edge and level pins, Remote IRR and EOI, polarity, masking, fuzz."""

import random

from imacpro.clock import Clock
from imacpro.devices.apic_bus import ApicBus
from imacpro.devices.ioapic import IoApic
from imacpro.devices.lapic import LocalApic
from imacpro.irq import IrqLine

MASKED, LEVEL, REMOTE_IRR, ACTIVE_LOW, LOGICAL = 1 << 16, 1 << 15, 1 << 14, 1 << 13, 1 << 11


def make(cpus=4):
    clock = Clock(realtime=False)
    bus = ApicBus()
    lapics = [LocalApic(i, clock, bus, bsp=(i == 0)) for i in range(cpus)]
    for lapic in lapics:
        bus.attach(lapic)
        lapic.write(0xF0, 4, 0x1FF)
    return IoApic(bus, apic_id=0x24), lapics, clock


def reg(ioapic, index):
    ioapic.write(0x00, 4, index)
    return ioapic.read(0x10, 4)


def set_reg(ioapic, index, value):
    ioapic.write(0x00, 4, index)
    ioapic.write(0x10, 4, value)


def route(ioapic, pin, low, dest=0):
    set_reg(ioapic, 0x11 + 2 * pin, dest << 24)
    set_reg(ioapic, 0x10 + 2 * pin, low)


def entry(ioapic, pin):
    return reg(ioapic, 0x10 + 2 * pin) | reg(ioapic, 0x11 + 2 * pin) << 32


def finish(lapic):
    vector = lapic.acknowledge()
    lapic.write(0xB0, 4, 0)
    return vector


def test_power_on_registers():
    ioapic, _, _ = make()
    assert reg(ioapic, 0x00) == 0x24000000
    assert reg(ioapic, 0x01) == 0x00170020
    assert reg(ioapic, 0x02) == 0x24000000
    assert all(entry(ioapic, pin) == MASKED for pin in range(24))
    assert reg(ioapic, 0x40) == 0 and reg(ioapic, 0xFF) == 0


def test_registers_keep_only_writable_bits():
    ioapic, _, _ = make()
    set_reg(ioapic, 0x00, 0x0F000000)
    assert reg(ioapic, 0x00) == 0x0F000000
    set_reg(ioapic, 0x01, 0)
    assert reg(ioapic, 0x01) == 0x00170020
    route(ioapic, 5, 0xFFFFFFFF, dest=0xFF)
    set_reg(ioapic, 0x11 + 10, 0xFFFFFFFF)
    assert entry(ioapic, 5) == 0xFF00_0000_0001_AFFF  # delivery status, remote IRR: RO
    ioapic.write(0x00, 1, 0x1234)
    assert ioapic.read(0x00, 1) == 0x34


def test_edge_pin_delivers_on_rising_edge_only():
    ioapic, lapics, _ = make()
    route(ioapic, 4, 0x34, dest=2)
    ioapic.set_irq(4, True)
    assert lapics[2].highest_pending() == 0x34 and lapics[0].irr == 0
    assert finish(lapics[2]) == 0x34
    ioapic.set_irq(4, True)  # no new edge
    ioapic.set_irq(4, False)
    assert lapics[2].irr == 0
    line = IrqLine("irq4", ioapic.input(4))
    line.pulse()
    assert lapics[2].highest_pending() == 0x34


def test_logical_and_lowest_priority_routes():
    ioapic, lapics, _ = make()
    for n, lapic in enumerate(lapics):
        lapic.write(0xD0, 4, (1 << n) << 24)
    route(ioapic, 9, LOGICAL | 0x39, dest=0b1100)
    ioapic.set_irq(9, True)
    assert [l.highest_pending() for l in lapics] == [None, None, 0x39, 0x39]
    lapics[0].write(0x80, 4, 0x20)
    route(ioapic, 10, LOGICAL | 1 << 8 | 0x3A, dest=0b0011)
    ioapic.set_irq(10, True)
    assert [l.highest_pending() for l in lapics] == [None, 0x3A, 0x39, 0x39]


def test_masked_pins_deliver_nothing():
    ioapic, lapics, _ = make()
    route(ioapic, 3, MASKED | 0x33)
    ioapic.set_irq(3, True)
    route(ioapic, 3, 0x33)  # an edge while masked is lost
    assert lapics[0].irr == 0
    route(ioapic, 7, MASKED | LEVEL | 0x37)
    ioapic.set_irq(7, True)
    assert lapics[0].irr == 0
    route(ioapic, 7, LEVEL | 0x37)  # asserted level pin unmasked: delivers now
    assert lapics[0].highest_pending() == 0x37


def test_level_pin_remote_irr_eoi_and_redelivery():
    ioapic, lapics, _ = make()
    cpu = lapics[1]
    route(ioapic, 16, LEVEL | 0x50, dest=1)
    ioapic.set_irq(16, True)
    assert entry(ioapic, 16) & REMOTE_IRR and cpu.highest_pending() == 0x50
    assert cpu.acknowledge() == 0x50
    ioapic.set_irq(16, False)
    ioapic.set_irq(16, True)  # waiting for the EOI: nothing new
    assert cpu.irr == 0
    cpu.write(0xB0, 4, 0)  # EOI: level vector, broadcast to the I/O APIC
    assert cpu.highest_pending() == 0x50  # still asserted: delivered again
    assert entry(ioapic, 16) & REMOTE_IRR
    ioapic.set_irq(16, False)  # the handler quiets the device
    finish(cpu)
    assert entry(ioapic, 16) & REMOTE_IRR == 0 and cpu.irr == 0


def test_eoi_register_and_edge_rewrite_clear_remote_irr():
    ioapic, lapics, _ = make()
    route(ioapic, 20, LEVEL | 0x60)
    ioapic.set_irq(20, True)
    lapics[0].acknowledge()
    ioapic.write(0x40, 4, 0x61)  # another vector: no effect
    assert entry(ioapic, 20) & REMOTE_IRR
    ioapic.write(0x40, 4, 0x60)
    assert entry(ioapic, 20) & REMOTE_IRR  # redelivered (still asserted)
    assert lapics[0].irr == 1 << 0x60
    route(ioapic, 20, MASKED | 0x60)  # Linux's fallback: edge and masked...
    assert entry(ioapic, 20) & REMOTE_IRR == 0
    route(ioapic, 20, MASKED | LEVEL | 0x60)  # ...then level again
    assert entry(ioapic, 20) & REMOTE_IRR == 0


def test_remote_irr_not_set_when_nobody_accepts():
    ioapic, lapics, _ = make()
    route(ioapic, 11, LEVEL | 0x3B, dest=9)
    ioapic.set_irq(11, True)
    assert entry(ioapic, 11) & REMOTE_IRR == 0
    route(ioapic, 11, LEVEL | 0x3B, dest=3)  # retargeted while asserted
    assert lapics[3].highest_pending() == 0x3B and entry(ioapic, 11) & REMOTE_IRR


def test_active_low_polarity():
    ioapic, lapics, _ = make()
    ioapic.set_irq(17, True)  # an idle active-low PCI line sits high
    route(ioapic, 17, ACTIVE_LOW | LEVEL | 0x71)
    assert lapics[0].irr == 0
    ioapic.set_irq(17, False)
    assert lapics[0].highest_pending() == 0x71
    ioapic.set_irq(17, True)
    finish(lapics[0])
    assert lapics[0].irr == 0 and entry(ioapic, 17) & REMOTE_IRR == 0
    route(ioapic, 6, ACTIVE_LOW | 0x36)  # edge, active low: the falling wire edge
    ioapic.set_irq(6, True)
    assert not lapics[0].irr
    ioapic.set_irq(6, False)
    assert lapics[0].highest_pending() == 0x36


def test_nmi_init_extint_modes_are_edge():
    ioapic, lapics, _ = make()
    route(ioapic, 1, LEVEL | 4 << 8, dest=2)  # NMI, trigger bit ignored
    ioapic.set_irq(1, True)
    assert lapics[2].take_nmi() and entry(ioapic, 1) & REMOTE_IRR == 0
    route(ioapic, 0, 7 << 8, dest=0)  # ExtINT: virtual wire through the I/O APIC
    ioapic.set_irq(0, True)
    assert lapics[0].extint_pending
    route(ioapic, 2, 5 << 8, dest=3)
    ioapic.set_irq(2, True)
    assert lapics[3].take_init()


def test_lapic_eoi_reaches_every_listener_and_reset():
    ioapic, lapics, _ = make()
    route(ioapic, 12, LEVEL | 0x3C)
    ioapic.set_irq(12, True)
    ioapic.reset()
    assert entry(ioapic, 12) == MASKED and reg(ioapic, 0x00) == 0x24000000
    route(ioapic, 12, LEVEL | 0x3C)  # the wire is still asserted
    assert entry(ioapic, 12) & REMOTE_IRR
    assert lapics[0].irr == 1 << 0x3C


def test_bad_pins_and_hostile_accesses():
    ioapic, lapics, _ = make()
    ioapic.set_irq(24, True)
    ioapic.set_irq(-1, True)
    assert ioapic.read(0x10, 1) == 0 and ioapic.read(0x14, 4) == 0 and ioapic.read(0x2000, 4) == 0
    ioapic.write(0x10, 2, 0xFFFF)
    ioapic.write(0x40, 1, 0x30)
    assert all(entry(ioapic, pin) == MASKED for pin in range(24))
    try:
        ioapic.input(24)
    except ValueError:
        pass
    else:
        raise AssertionError("input(24) should be refused at wiring time")


def test_fuzz_never_raises():
    rng = random.Random(4321)
    ioapic, lapics, clock = make()
    for lapic in lapics:
        lapic.write(0x320, 4, 1 << 17 | 0x40)
        lapic.write(0x380, 4, 1000)
    for _ in range(25_000):
        action = rng.random()
        if action < 0.35:
            offset = rng.choice((0x00, 0x10, 0x40, rng.randrange(-16, 0x1100)))
            size = rng.choice((1, 2, 4, 4, 8))
            value = rng.choice((rng.getrandbits(8), rng.randrange(0x10, 0x40),
                                rng.getrandbits(32), rng.getrandbits(64)))
            ioapic.write(offset, size, value)
        elif action < 0.55:
            ioapic.read(rng.choice((0x00, 0x10, 0x40, rng.randrange(-16, 0x1100))),
                        rng.choice((1, 2, 4, 8)))
        elif action < 0.8:
            ioapic.set_irq(rng.randrange(-2, 26), rng.random() < 0.5)
        elif action < 0.9:
            lapic = rng.choice(lapics)
            if lapic.highest_pending() is not None:
                lapic.acknowledge()
            lapic.write(0xB0, 4, 0)
            lapic.take_nmi()
            lapic.take_init()
        elif action < 0.95:
            ioapic.on_eoi(rng.getrandbits(8))
        else:
            clock.advance(rng.choice((1, 1000, 10**6)))
            clock.run_due()
        for pin in range(24):
            assert 0 <= ioapic.entries[pin] < 1 << 64
