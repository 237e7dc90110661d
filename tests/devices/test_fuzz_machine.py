"""Every device of the board survives random guest accesses (the guest is hostile), and saving
and loading every device in the middle of it changes nothing the guest can observe."""

import copy
import random
import shutil

import pytest

from imacpro.board import IMAC_PRO
from imacpro.bus.pci import CMD_BUS_MASTER, CMD_MEMORY, COMMAND
from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.firmware.pci import assign_resources
from imacpro.machine import Machine
from imacpro.memory import layout
from imacpro.t2.sep import SecureEnclave
from imacpro.t2.storage import EncryptedStore

ACCESSES = 120_000


def device_targets(machine):
    """(name, read, write, span) for every register block of the board's rows, through the
    buses the guest uses (so the bus guard is in the path), the NVMe BAR through its window."""
    targets = []
    for row in machine.board.rows:
        for ports in row.ports:
            targets.append((f"{row.name} port {ports.base:#x}",
                            lambda o, s, b=ports.base: machine.pio.read(b + o, s),
                            lambda o, s, v, b=ports.base: machine.pio.write(b + o, s, v),
                            max(ports.count, 8)))
        if row.mmio is not None and not row.mmio.per_cpu:
            region = next(r for r in machine.mmio.regions if r.base == row.mmio.base)
            targets.append((f"{row.name} mmio", region.device.read, region.device.write,
                            min(region.size, 0x10000)))
    for cpu in machine.vcpus:
        targets.append((f"lapic {cpu.apic_id}", cpu.lapic.read, cpu.lapic.write,
                        layout.LAPIC_SIZE))
    if machine.nvme is not None:
        window = next(r.device for r in machine.mmio.regions if r.base == layout.PCI_MMIO_START)
        targets.append(("nvme bar", window.read, window.write, 0x4000))
    xhci = machine.devices.get("xhci")
    if xhci is not None:          # its registers, and doorbells that read rings from RAM
        xhci.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
        xhci.pci.memory = machine.ram
        targets.append(("xhci bar", xhci.read, xhci.write, 0x10000))
    return targets


def fuzz(machine, accesses: int, seed: int, observed: list | None = None) -> int:
    """Random accesses; `observed` collects what the guest sees (reads, interrupt lines)."""
    rng = random.Random(seed)
    targets = device_targets(machine)
    for n in range(accesses):
        name, read, write, span = rng.choice(targets)
        offset = rng.randrange(span) if rng.random() < 0.9 else rng.randrange(-8, 1 << 20)
        size = rng.choice((1, 2, 4, 8, 1, 4, 3, 0))
        if rng.random() < 0.5:
            value = read(offset, size)
            if observed is not None:
                observed.append((n, name, offset, size, value))
        else:
            write(offset, size, rng.choice((0, 0xFF, 0xFFFFFFFF, rng.getrandbits(64),
                                            rng.getrandbits(8))))
        if n % 64 == 0:
            machine.clock.advance(rng.randrange(0, 5_000_000))
            machine.clock.run_due()
            if observed is not None:
                observed.append((n, "lines", [line.level for line in machine.irq],
                                 [line.level for line in machine.gsi.values()],
                                 [cpu.interrupt_pending() for cpu in machine.vcpus]))
    return len(targets)


def test_random_register_accesses_never_raise():
    machine = Machine(configure(cpu=8), clock=Clock(realtime=False), cpus=4)
    count = fuzz(machine, ACCESSES, seed=1)
    rows = [row for row in IMAC_PRO.rows if not row.optional and not
            (row.mmio is not None and row.mmio.per_cpu) and (row.ports or row.mmio)]
    assert count == sum(len(row.ports) + (row.mmio is not None) for row in rows) + 4 + 1
    assert machine.guest_errors.count == 0      # nothing escaped a device (the guard is quiet)


def _ssd_machine(directory, sep):
    store = EncryptedStore.open(directory, sep)
    machine = Machine(configure(cpu=8), clock=Clock(realtime=False), cpus=2, ssd=store,
                      ssd_serial="C0FUZZ")
    assign_resources(machine.pci)
    return machine, store


def _enable_ssd(machine):
    """Up, with admin queues in RAM full of random bytes: every doorbell runs garbage."""
    machine.nvme.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    bar = machine.nvme
    rng = random.Random(3)
    machine.ram.write(0x10_0000, rng.randbytes(0x2000))
    for offset, value in ((0x24, 0x003F_003F), (0x28, 0x10_0000), (0x2C, 0),
                          (0x30, 0x10_1000), (0x34, 0), (0x14, 0x0046_0001)):
        bar.write(offset, 4, value)
    assert bar.read(0x1C, 4) & 1
    for _ in range(5000):
        bar.write(0x1000 + 4 * rng.randrange(8), 4, rng.randrange(70))
        if rng.random() < 0.1:
            machine.ram.write(0x10_0000 + 64 * rng.randrange(64), rng.randbytes(64))


def test_random_accesses_to_a_machine_with_its_ssd_never_raise(tmp_path):
    """The NVMe controller's BAR (registers, doorbells, MSI-X table) is in the PCI window the
    fuzz reaches; bus mastering on, so a random enable fetches random commands from RAM."""
    sep = SecureEnclave.create(tmp_path, 0x1234)
    EncryptedStore.create(tmp_path, 64 << 20, sep).close()
    machine, store = _ssd_machine(tmp_path, sep)
    with store:
        assert machine.pci.decoders()[0][2].device is machine.nvme
        _enable_ssd(machine)
        fuzz(machine, ACCESSES // 2, seed=2)
    assert machine.guest_errors.count == 0


@pytest.mark.parametrize("with_ssd", [False, True])
def test_save_and_load_in_the_middle_of_the_fuzz_changes_nothing_the_guest_sees(tmp_path,
                                                                                 with_ssd):
    """Machine A is fuzzed, saved; machine B is built the same way and loads A's state (and
    a copy of A's RAM and SSD). The same accesses then see the same registers, lines and
    pending interrupts on both."""
    sep = store_a = store_b = None
    if with_ssd:
        sep = SecureEnclave.create(tmp_path / "a", 0x1234)
        EncryptedStore.create(tmp_path / "a", 64 << 20, sep).close()
        a, store_a = _ssd_machine(tmp_path / "a", sep)
        _enable_ssd(a)
    else:
        a = Machine(configure(cpu=8), clock=Clock(realtime=False), cpus=4)
    fuzz(a, ACCESSES // 4, seed=5)
    state = copy.deepcopy(a.save_devices())
    if with_ssd:
        store_a.flush()
        shutil.copytree(tmp_path / "a", tmp_path / "b")
        b, store_b = _ssd_machine(tmp_path / "b", sep)
    else:
        b = Machine(configure(cpu=8), clock=Clock(realtime=False), cpus=4)
    for offset, size in a.ram.resident():          # what A's guest (the fuzz) touched
        b.ram.view[offset:offset + size] = a.ram.view[offset:offset + size]
    b.clock.set_now(a.clock.now_ns())
    b.load_devices(state)
    assert b.save_devices() == state
    seen_a, seen_b = [], []
    fuzz(a, ACCESSES // 4, seed=6, observed=seen_a)
    fuzz(b, ACCESSES // 4, seed=6, observed=seen_b)
    assert len(seen_a) > 10_000
    first_difference = next((x for x, y in zip(seen_a, seen_b) if x != y), None)
    assert first_difference is None and len(seen_a) == len(seen_b)
    assert a.guest_errors.count == b.guest_errors.count == 0
    for store in (store_a, store_b):
        if store is not None:
            store.close()
