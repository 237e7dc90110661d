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
