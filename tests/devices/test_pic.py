"""8259A pair and ELCR: Linux's init, priority, EOI, masking, cascade, edge/level, spurious."""

import random

from imacpro.devices.pic import Pic8259Pair
from imacpro.irq import IrqLine

MASTER_BASE, SLAVE_BASE = 0x30, 0x38  # Linux's ISA_IRQ_VECTOR(0) and (8)


def linux_init(auto_eoi=False):
    """probe_8259A() and init_8259A() of arch/x86/kernel/i8259.c, then every IRQ unmasked."""
    pic = Pic8259Pair()
    changes = []
    pic.on_intr_change = changes.append
    m, s = pic.master_ports, pic.slave_ports
    s.write(1, 1, 0xFF)
    m.write(1, 1, 0xFB)
    assert m.read(1, 1) == 0xFB  # the probe: a PIC is present
    m.write(1, 1, 0xFF)
    m.write(0, 1, 0x11)  # ICW1: edge, cascade, ICW4 needed
    m.write(1, 1, MASTER_BASE)  # ICW2
    m.write(1, 1, 1 << 2)  # ICW3: slave on IR2
    m.write(1, 1, 0x03 if auto_eoi else 0x01)  # ICW4: 8086 mode (+ AEOI)
    s.write(0, 1, 0x11)
    s.write(1, 1, SLAVE_BASE)
    s.write(1, 1, 2)  # ICW3: slave identity 2
    s.write(1, 1, 0x01)
    m.write(1, 1, 0x00)
    s.write(1, 1, 0x00)
    return pic, changes


def isr(ports):
    ports.write(0, 1, 0x0B)  # OCW3: read ISR
    value = ports.read(0, 1)
    ports.write(0, 1, 0x0A)  # OCW3: back to IRR
    return value


def eoi(pic, irq):
    """mask_and_ack_8259A's specific EOIs."""
    if irq >= 8:
        pic.slave_ports.write(0, 1, 0x60 + (irq & 7))
        pic.master_ports.write(0, 1, 0x62)
    else:
        pic.master_ports.write(0, 1, 0x60 + irq)


def pulse(pic, irq):
    pic.set_irq(irq, True)
    pic.set_irq(irq, False)


def test_power_on_state():
    pic = Pic8259Pair()
    for ports in (pic.master_ports, pic.slave_ports):
        assert [ports.read(0, 1), ports.read(1, 1), isr(ports)] == [0, 0, 0]
    assert pic.elcr_ports.read(0, 2) == 0
    assert not pic.interrupt_pending()
    assert pic.master_ports.read(2, 1) == 0xFF and pic.elcr_ports.read(5, 1) == 0xFF


def test_edge_irq_vector_isr_and_specific_eoi():
    pic, changes = linux_init()
    pulse(pic, 0)
    assert pic.interrupt_pending() and changes == [True]
    assert pic.master_ports.read(0, 1) == 0x01  # IRR
    assert pic.acknowledge() == MASTER_BASE
    assert changes == [True, False]
    assert isr(pic.master_ports) == 0x01 and pic.master_ports.read(0, 1) == 0
    eoi(pic, 0)
    assert isr(pic.master_ports) == 0 and not pic.interrupt_pending()


def test_fixed_priority_nesting_and_non_specific_eoi():
    pic, _ = linux_init()
    pulse(pic, 3)
    pulse(pic, 1)
    assert pic.acknowledge() == MASTER_BASE + 1
    assert not pic.interrupt_pending()  # IRQ 3 waits: IRQ 1 is in service
    pulse(pic, 0)
    assert pic.acknowledge() == MASTER_BASE + 0  # a higher priority nests
    assert isr(pic.master_ports) == 0x03
    pic.master_ports.write(0, 1, 0x20)  # non-specific EOI ends the highest: IRQ 0
    assert isr(pic.master_ports) == 0x02 and not pic.interrupt_pending()
    pic.master_ports.write(0, 1, 0x20)
    assert pic.acknowledge() == MASTER_BASE + 3


def test_masking_holds_an_edge_until_unmasked():
    pic, _ = linux_init()
    pic.master_ports.write(1, 1, 0x10)
    pulse(pic, 4)
    assert not pic.interrupt_pending() and pic.master_ports.read(0, 1) == 0x10
    pic.master_ports.write(1, 1, 0x00)
    assert pic.interrupt_pending() and pic.acknowledge() == MASTER_BASE + 4


def test_cascade_through_master_ir2():
    pic, changes = linux_init()
    line = IrqLine("irq12", pic.input(12))
    line.pulse()
    assert pic.interrupt_pending()
    assert pic.master_ports.read(0, 1) == 0x04 and pic.slave_ports.read(0, 1) == 0x10
    assert pic.acknowledge() == SLAVE_BASE + 4
    assert isr(pic.master_ports) == 0x04 and isr(pic.slave_ports) == 0x10
    pulse(pic, 9)  # waits: IR2 is in service on the master
    assert not pic.interrupt_pending()
    eoi(pic, 12)
    assert pic.acknowledge() == SLAVE_BASE + 1
    eoi(pic, 9)
    assert isr(pic.master_ports) == isr(pic.slave_ports) == 0
    pic.slave_ports.write(1, 1, 0x02)  # slave masks: nothing reaches the master
    pulse(pic, 9)
    assert not pic.interrupt_pending()
    pic.set_irq(2, True)  # IR2 is the cascade, not an input
    assert not pic.interrupt_pending()


def test_level_triggered_inputs_through_the_elcr():
    pic, _ = linux_init()
    pic.elcr_ports.write(0, 2, 0xFFFF)
    assert pic.elcr_ports.read(0, 1) == 0xF8 and pic.elcr_ports.read(1, 1) == 0xDE
    pic.elcr_ports.write(0, 2, 0x0400)  # IRQ 10 level
    pic.set_irq(10, True)
    assert pic.acknowledge() == SLAVE_BASE + 2
    assert pic.slave_ports.read(0, 1) == 0x04  # IRR still follows the line
    eoi(pic, 10)
    assert pic.interrupt_pending()  # still asserted: it interrupts again
    assert pic.acknowledge() == SLAVE_BASE + 2
    pic.set_irq(10, False)
    eoi(pic, 10)
    assert not pic.interrupt_pending() and pic.slave_ports.read(0, 1) == 0


def test_edge_input_held_high_does_not_retrigger():
    pic, _ = linux_init()
    pic.set_irq(5, True)
    assert pic.acknowledge() == MASTER_BASE + 5
    eoi(pic, 5)
    assert not pic.interrupt_pending()
    pic.set_irq(5, False)
    pic.set_irq(5, True)
    assert pic.acknowledge() == MASTER_BASE + 5


def test_spurious_irq_7_and_15():
    pic, _ = linux_init()
    pic.elcr_ports.write(0, 2, 0x0820)  # IRQ 5 and 11 level
    pic.set_irq(5, True)
    assert pic.interrupt_pending()
    pic.set_irq(5, False)  # gone before the INTA cycle
    assert pic.acknowledge() == MASTER_BASE + 7
    assert isr(pic.master_ports) == 0  # a spurious IRQ 7 sets no ISR bit
    pic.set_irq(11, True)
    pic.set_irq(11, False)  # the master's IR2 edge stays latched
    assert pic.interrupt_pending()
    assert pic.acknowledge() == SLAVE_BASE + 7
    assert isr(pic.master_ports) == 0x04 and isr(pic.slave_ports) == 0
    pic.master_ports.write(0, 1, 0x62)  # Linux EOIs the master only
    assert not pic.interrupt_pending()


def test_auto_eoi():
    pic, _ = linux_init(auto_eoi=True)
    pulse(pic, 1)
    assert pic.acknowledge() == MASTER_BASE + 1
    assert isr(pic.master_ports) == 0
    pulse(pic, 6)
    assert pic.acknowledge() == MASTER_BASE + 6


def test_rotation():
    pic, _ = linux_init()
    pulse(pic, 0)
    assert pic.acknowledge() == MASTER_BASE
    pic.master_ports.write(0, 1, 0xA0)  # rotate on non-specific EOI: IRQ 0 becomes lowest
    pulse(pic, 0)
    pulse(pic, 4)
    assert pic.acknowledge() == MASTER_BASE + 4
    pic.master_ports.write(0, 1, 0xE4)  # rotate on specific EOI 4: IRQ 5 highest
    pulse(pic, 3)
    pulse(pic, 6)
    assert pic.acknowledge() == MASTER_BASE + 6
    pic.master_ports.write(0, 1, 0xC7)  # set priority: IRQ 7 lowest, IRQ 0 highest again
    pic.master_ports.write(0, 1, 0x66)
    assert pic.acknowledge() == MASTER_BASE + 0
    pic.master_ports.write(0, 1, 0x20)
    pic.master_ports.write(0, 1, 0x80)  # rotate in automatic EOI mode (needs AEOI: stored)
    assert pic.acknowledge() == MASTER_BASE + 3


def test_poll_mode():
    pic, _ = linux_init()
    pic.master_ports.write(1, 1, 0xFF)
    pulse(pic, 6)
    pic.master_ports.write(0, 1, 0x0C)  # OCW3 poll
    assert pic.master_ports.read(0, 1) == 0x00  # masked: nothing to report
    pic.master_ports.write(1, 1, 0x00)
    pic.master_ports.write(0, 1, 0x0C)
    assert pic.master_ports.read(0, 1) == 0x86
    assert isr(pic.master_ports) == 0x40 and pic.master_ports.read(0, 1) == 0


def test_special_mask_mode_lets_lower_priorities_in():
    pic, _ = linux_init()
    pulse(pic, 1)
    assert pic.acknowledge() == MASTER_BASE + 1
    pulse(pic, 5)
    assert not pic.interrupt_pending()
    pic.master_ports.write(1, 1, 0x02)  # mask the level in service
    pic.master_ports.write(0, 1, 0x68)  # OCW3: set special mask mode
    assert pic.acknowledge() == MASTER_BASE + 5
    pic.master_ports.write(0, 1, 0x48)  # reset special mask mode
    assert isr(pic.master_ports) == 0x22


def test_reinit_and_single_mode_without_icw4():
    pic, _ = linux_init()
    pulse(pic, 3)
    pic.master_ports.write(0, 1, 0x12)  # ICW1: single, no ICW4: only ICW2 follows
    assert pic.master_ports.read(0, 1) == 0  # edge IRR cleared by ICW1
    pic.master_ports.write(1, 1, 0x87)
    pic.master_ports.write(1, 1, 0x5A)  # OCW1 now
    assert pic.master_ports.read(1, 1) == 0x5A
    pic.master_ports.write(1, 1, 0x00)
    pulse(pic, 3)
    assert pic.acknowledge() == 0x83  # base keeps bits 7:3 only


def test_reset():
    pic, changes = linux_init()
    pic.elcr_ports.write(0, 1, 0x20)
    pulse(pic, 1)
    pic.reset()
    assert not pic.interrupt_pending() and changes[-1] is False
    assert pic.elcr_ports.read(0, 1) == 0 and pic.master_ports.read(1, 1) == 0


def test_fuzz_never_raises():
    rng = random.Random(8259)
    pic, _ = linux_init()
    windows = (pic.master_ports, pic.slave_ports, pic.elcr_ports)
    sizes = (1, 1, 1, 1, 2, 4, 8, 0, 3, -1)
    for _ in range(30_000):
        op = rng.random()
        ports = rng.choice(windows)
        offset = rng.choice((0, 1, 0, 1, rng.randrange(-8, 8)))
        if op < 0.3:
            assert ports.read(offset, rng.choice(sizes)) >= 0
        elif op < 0.6:
            value = rng.choice((rng.getrandbits(8), rng.getrandbits(64), -rng.getrandbits(9),
                                rng.choice((0x11, 0x20, 0x0B, 0x0C, 0x60, 0xA0, 0x68))))
            ports.write(offset, rng.choice(sizes), value)
        elif op < 0.9:
            pic.set_irq(rng.randrange(-2, 18), rng.random() < 0.5)
        elif op < 0.999:
            assert 0 <= pic.acknowledge() <= 0xFF
            assert pic.intr == pic.interrupt_pending()
        else:
            pic.reset()
