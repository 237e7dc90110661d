"""Every device of a built machine survives random guest accesses (the guest is hostile)."""

import random

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.machine import Machine
from imacpro.memory import layout

ACCESSES = 120_000


def device_targets(machine):
    """(name, read, write, span) for every guest-visible register block of the machine."""
    targets = []
    owners = {}
    for port, owner in enumerate(machine.pio._owner):
        if owner is not None:
            owners.setdefault(id(owner[0]), (owner[0], port))
    for device, base in owners.values():
        targets.append((f"port {base:#x} {type(device).__name__}",
                        lambda o, s, b=base: machine.pio.read(b + o, s),
                        lambda o, s, v, b=base: machine.pio.write(b + o, s, v), 16))
    for region in machine.mmio.regions:
        span = min(region.size, 0x10000)
        targets.append((f"mmio {region.base:#x} {type(region.device).__name__}",
                        region.device.read, region.device.write, span))
    for cpu in machine.vcpus:
        page = cpu.lapic
        targets.append((f"lapic {cpu.apic_id}", page.read, page.write, layout.LAPIC_SIZE))
    return targets


def fuzz(machine, accesses: int, seed: int) -> int:
    rng = random.Random(seed)
    targets = device_targets(machine)
    for n in range(accesses):
        name, read, write, span = rng.choice(targets)
        offset = rng.randrange(span) if rng.random() < 0.9 else rng.randrange(-8, 1 << 20)
        size = rng.choice((1, 2, 4, 8, 1, 4, 3, 0))
        if rng.random() < 0.5:
            read(offset, size)
        else:
            write(offset, size, rng.choice((0, 0xFF, 0xFFFFFFFF, rng.getrandbits(64),
                                            rng.getrandbits(8))))
        if n % 64 == 0:
            machine.clock.advance(rng.randrange(0, 5_000_000))
            machine.clock.run_due()
    return len(targets)


def test_random_register_accesses_never_raise():
    machine = Machine(configure(cpu=8), clock=Clock(realtime=False), cpus=4)
    count = fuzz(machine, ACCESSES, seed=1)
    assert count >= 15  # PIC ×3, PIT, port B, i8042, RTC, A20, UART, PCI, IOAPIC, HPET, ECAM, LAPICs


def test_random_accesses_to_a_machine_with_its_ssd_never_raise(tmp_path, caplog):
    """The NVMe controller's BAR (registers, doorbells, MSI-X table) is in the PCI window the
    fuzz reaches; bus mastering on, so a random enable fetches random commands from RAM."""
    from imacpro.bus.pci import CMD_BUS_MASTER, CMD_MEMORY, COMMAND
    from imacpro.firmware.pci import assign_resources
    from imacpro.t2.sep import SecureEnclave
    from imacpro.t2.storage import EncryptedStore

    sep = SecureEnclave.create(tmp_path, 0x1234)
    with EncryptedStore.create(tmp_path, 64 << 20, sep) as store:
        machine = Machine(configure(cpu=8), clock=Clock(realtime=False), cpus=2, ssd=store,
                          ssd_serial="C0FUZZ")
        assign_resources(machine.pci)
        machine.nvme.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
        bar = machine.pci.decoders()[0][2].device
        assert bar is machine.nvme and machine.pci.decoders()[0][0] == layout.PCI_MMIO_START
        # Up, with admin queues in RAM full of random bytes: every doorbell runs garbage.
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
        fuzz(machine, ACCESSES // 2, seed=2)
    assert not [r for r in caplog.records if "NVMe" in r.getMessage() and r.levelname == "ERROR"
                and "store failed" not in r.getMessage()]
