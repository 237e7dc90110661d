"""The memory map and sparse RAM: every configured byte usable, host memory only where touched."""

import resource

import pytest

from imacpro.catalog import configure
from imacpro.memory import layout
from imacpro.memory.ram import Ram

GiB = 1 << 30


@pytest.mark.parametrize("memory", [32, 64, 128, 256, 512])
def test_ram_ranges_hold_all_the_configured_memory(memory):
    size = memory * GiB
    ranges = layout.ram_ranges(size)
    assert sum(r.size for r in ranges) == size
    low, high = ranges
    assert (low.guest_start, low.size) == (0, layout.RAM_BELOW_4G_END)
    assert high.guest_start == layout.HIGH_RAM_START
    for device in (layout.ECAM_BASE, layout.IOAPIC_BASE, layout.HPET_BASE, layout.LAPIC_BASE):
        assert not any(r.guest_start <= device < r.guest_start + r.size for r in ranges)


def test_a_256_gb_machine_is_sparse_on_the_host():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ram = Ram(configure(memory=256, cpu=18).memory_option.size_bytes)
    top = layout.HIGH_RAM_START + 254 * GiB - 4096          # the last page of RAM
    for address in (0, 0x10_0000, layout.RAM_BELOW_4G_END - 4096, layout.HIGH_RAM_START, top):
        ram.write(address, b"iMacPro1,1")
        assert ram.read(address, 10) == b"iMacPro1,1"
    assert ram.read(layout.HIGH_RAM_START + 100 * GiB, 4) == bytes(4)   # untouched: zeros
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024                             # a few pages, not 256 GiB
    with pytest.raises(ValueError):
        ram.read(layout.RAM_BELOW_4G_END, 4)                 # the PCI hole is not RAM


def test_resident_runs_are_what_the_guest_touched_and_clear_gives_them_back():
    from imacpro.memory.ram import PAGE, Ram
    ram = Ram(8 << 30)
    assert ram.resident() == []
    ram.write(0x1000, b"x" * 10)
    ram.write(5 << 30, b"y" * (3 * PAGE))            # host offset: RAM above 4 GiB is packed
    ram.write((5 << 30) + 3 * PAGE, b"z")             # adjacent: one run
    below = 2 << 30
    runs = ram.resident()
    assert runs == [(0x1000, PAGE), (below + (1 << 30), 4 * PAGE)]
    ram.clear()
    assert ram.resident() == [] and ram.read(0x1000, 10) == bytes(10)
