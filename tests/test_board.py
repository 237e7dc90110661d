"""The board is the one description of the platform: the machine and the firmware follow it."""

import pytest

from imacpro.board import IMAC_PRO, Acpi, Board, IsaIrq, Mmio, PciSlot, Ports, Row
from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.firmware import acpi
from imacpro.machine import Machine
from imacpro.memory import layout


def test_two_rows_cannot_claim_one_port_mmio_range_or_function():
    with pytest.raises(ValueError, match="port 0x61"):
        Board("b", (Row("a", "", ports=(Ports(0x60, 4),)), Row("b", "", ports=(Ports(0x61, 1),))),
              PciSlot(0x1F))
    with pytest.raises(ValueError, match="MMIO"):
        Board("b", (Row("a", "", mmio=Mmio(0x1000, 0x2000)),
                    Row("b", "", mmio=Mmio(0x2000, 0x1000))), PciSlot(0x1F))
    with pytest.raises(ValueError, match="PCI"):
        Board("b", (Row("a", "", pci=PciSlot(4)), Row("b", "", pci=PciSlot(4))), PciSlot(0x1F))


def test_the_machine_answers_where_the_board_says():
    machine = Machine(configure(cpu=8), clock=Clock(), cpus=1, ssd=None)
    for row in IMAC_PRO.rows:
        device = machine.devices.get(row.name)
        if row.mmio is not None and row.mmio.per_cpu or row.optional:
            continue
        assert device is getattr(machine, row.name)
        for ports in row.ports:
            for port in range(ports.base, ports.base + ports.count):
                owner, base = machine.pio._owner[port]
                assert base == ports.base
                target = getattr(owner, "device", owner)
                assert target is (getattr(device, ports.view) if ports.view else device)
        if row.mmio is not None:
            assert any(r.base == row.mmio.base and r.device is device
                       for r in machine.mmio.regions)
    assert machine.nvme is None and "nvme" not in machine.devices
    # Nothing answers that the board does not list (the PCI windows, memory and I/O, are the
    # host bridges').
    listed = {p for row in IMAC_PRO.rows for ports in row.ports
              for p in range(ports.base, ports.base + ports.count)}
    listed |= set(range(layout.PCI_IO_START, 0x10000))
    assert {p for p, owner in enumerate(machine.pio._owner) if owner} == listed


def test_isa_interrupts_reach_the_pins_the_board_names():
    machine = Machine(configure(cpu=8), clock=Clock(), cpus=1)
    pci_pins = set(IMAC_PRO.pci_interrupt_routes().values())   # idle high: active low
    for irq, pin in ((0, 2), (4, 4), (8, 8), (9, 9)):
        assert IMAC_PRO.isa_pin(irq) == pin
        machine.irq[irq].set(True)
        assert [n for n, level in enumerate(machine.ioapic.levels)
                if level and n not in pci_pins] == [pin]
        machine.irq[irq].set(False)
    assert [(line.irq, line.pin) for line in IMAC_PRO.interrupt_overrides()] == [(0, 2), (9, 9)]


def _madt_overrides(board):
    table = acpi.madt([0], 1, board)
    entries, at = [], 44
    while at < len(table):
        kind, length = table[at], table[at + 1]
        if kind == acpi.MADT_INTERRUPT_OVERRIDE:
            entries.append((table[at + 3], int.from_bytes(table[at + 4:at + 8], "little")))
        at += length
    return entries


def test_firmware_tables_follow_a_changed_board():
    """Move COM1 and rewire its IRQ on a board of our own: the DSDT and MADT follow."""
    rows = tuple(Row("uart", "COM1 elsewhere", ports=(Ports(0x2F8, 8),),
                     irqs=(IsaIrq(3, gsi=20),), acpi=Acpi("LPCB", "COM1", "PNP0501", uid=1))
                 if row.name == "uart" else row for row in IMAC_PRO.rows)
    board = Board("test", rows, IMAC_PRO.lpc_bridge, IMAC_PRO.root_buses)
    assert (3, 20) in _madt_overrides(board) and (3, 20) not in _madt_overrides(IMAC_PRO)
    moved = acpi.dsdt_aml(32 << 30, 1, board)
    stock = acpi.dsdt_aml(32 << 30, 1, IMAC_PRO)
    assert acpi.res_io(0x2F8, 8) in moved and acpi.res_io(0x2F8, 8) not in stock
    assert acpi.res_irq(3) in moved and acpi.res_irq(4) in stock


class _Broken:
    def read(self, offset, size):
        raise ZeroDivisionError("a bug in a device model")

    def write(self, offset, size, value):
        raise KeyError(offset)


def test_a_device_that_raises_costs_the_guest_one_access_not_the_machine(tmp_path):
    """The guard at the buses: reads give all ones, writes are dropped, each distinct error
    is logged once, and every one is counted."""
    lines = []
    machine = Machine(configure(cpu=8), clock=Clock(), cpus=1, guest_error_log=lines.append)
    machine.pio._owner[0x3F8] = (_Broken(), 0x3F8)
    assert machine.pio.read(0x3F8, 1) == 0xFF and machine.pio.read(0x3F8, 2) == 0xFFFF
    machine.pio.write(0x3F8, 1, 0x41)
    machine.pio.write(0x3F8, 1, 0x42)
    assert machine.guest_errors.count == 4
    assert len(lines) == 2                          # one "in" at the port, one "out"
    assert "ZeroDivisionError" in lines[0] and "_Broken in at 0x3f8" in lines[0]
    # A timer whose callback raises: counted, and the clock goes on with the others.
    fired = []
    machine.clock.add_timer(5, lambda: 1 / 0)
    machine.clock.add_timer(6, lambda: fired.append(True))
    machine.clock.warp_to(10)
    assert machine.clock.run_due() == 2 and fired == [True] and machine.guest_errors.count == 5


def test_pci_functions_routed_to_one_gsi_share_its_wire():
    """PCI INTx# wires are wired-OR: the I/O APIC pin stays asserted (low) while any function
    routed to it asserts, and goes high only when the last lets go."""
    machine = Machine(configure(cpu=8), clock=Clock(), cpus=1, ssd=None)
    smbus, dma = machine.smbus.pci, machine.cbdma3.pci       # both on GSI 16
    assert IMAC_PRO["smbus"].pci.gsi == IMAC_PRO["cbdma3"].pci.gsi == 16
    for fn in (smbus, dma):
        fn.write_config(0x04, 2, 0)                          # INTx not disabled
    assert machine.ioapic.levels[16]                         # idle: high
    smbus.set_intx(True)
    dma.set_intx(True)
    smbus.set_intx(False)
    assert not machine.ioapic.levels[16]                     # still held by the DMA channel
    dma.set_intx(False)
    assert machine.ioapic.levels[16]


def test_a_functions_pin_is_routed_by_its_own_prt_row():
    """00:1e.1 signals on INTB#: its function says so, the _PRT routes device 0x1e's pin 1
    (INTB#) to the GSI the board names, and the firmware writes that GSI as its line."""
    from imacpro.firmware.pci import assign_resources
    machine = Machine(configure(cpu=8), clock=Clock(), cpus=1, ssd=None)
    assign_resources(machine.pci, IMAC_PRO)
    assert [machine.pci.read(0, 0x1E, f, 0x3C, 2) for f in (0, 1)] == [0x0100 | 18, 0x0200 | 19]
    aml = acpi.dsdt_aml(32 << 30, 1, IMAC_PRO)
    for pin, gsi in ((0, 18), (1, 19)):
        row = acpi.aml_package(acpi.aml_integer(0x1E << 16 | 0xFFFF), acpi.aml_integer(pin),
                               acpi.aml_integer(0), acpi.aml_integer(gsi))
        assert row in aml, (pin, gsi)
    with pytest.raises(ValueError, match="routed to GSIs"):
        Board("b", (Row("a", "", pci=PciSlot(4, 0, pin=1, gsi=16)),
                    Row("b", "", pci=PciSlot(4, 1, pin=1, gsi=17))), PciSlot(0x1F))
