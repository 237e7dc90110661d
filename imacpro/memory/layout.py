"""The machine's physical memory map, as documented constants.

    0x0000_0000 ─ 0x0009_FFFF   low RAM (conventional memory; e820 usable up to EBDA)
    0x000A_0000 ─ 0x000F_FFFF   legacy hole: VGA window, option ROMs, BIOS area (e820 reserved;
                                backed by RAM so firmware can place the SMBIOS/ACPI entry
                                points in the 0xE0000-0xFFFFF window where Linux scans)
    0x0010_0000 ─ 0x7FFF_FFFF   RAM below 4 GiB (2 GiB minus the first MiB)
    0x8000_0000 ─ 0xDFFF_FFFF   PCI memory window (BARs; the firmware assigns them from the
                                bottom up): root bus 00 below 0xC000_0000, root bus f0 (the
                                GPU, its framebuffer included) from there
    0xE000_0000 ─ 0xEFFF_FFFF   PCI Express ECAM (buses 0-255)
    0xFEC0_0000 ─ 0xFEC0_0FFF   I/O APIC
    0xFED0_0000 ─ 0xFED0_03FF   HPET
    0xFEE0_0000 ─ 0xFEE0_0FFF   local APIC (each CPU sees its own)
    0xFEF0_0000 ─ 0xFEF0_FFFF   the SMC's key window (ACPI APP0001)
    0x1_0000_0000 ─             RAM above 4 GiB: the rest of the configured memory, so that
                                all of it (32-256 GB, or 512 GB) is usable
    next GiB above RAM          the 64-bit PCI memory window, 64 GiB (pci64_window)

Which device sits where, in ports, MMIO and PCI functions, is the board's (board.py).

The same sparse host mapping backs both RAM ranges; host memory grows only with pages the guest
touches.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

LOW_RAM_END = 0x000A_0000          # end of conventional memory
EBDA_START = 0x0009_FC00           # extended BIOS data area (last KiB of low RAM)
LEGACY_HOLE_START = 0x000A_0000
LEGACY_HOLE_END = 0x0010_0000
BIOS_AREA_START = 0x000E_0000      # Linux scans 0xE0000-0xFFFFF for SMBIOS/ACPI anchors
RAM_BELOW_4G_END = 0x8000_0000     # where the PCI hole begins
PCI_MMIO_START = 0x8000_0000
PCI_MMIO_END = 0xE000_0000
PCI_NET_MMIO_START = 0xB000_0000   # root bus 03's share of the window (the 10GbE port)
PCI_TB_MMIO_START = 0xB800_0000    # root bus 05's share of it (the Thunderbolt 3 ports)
PCI_GPU_MMIO_START = 0xC000_0000   # root bus f0's share of the window
PCI_IO_START = 0x1000              # I/O ports for PCI BARs (the platform's are below)
PCI_NET_IO_START = 0xD000          # root bus 03's share of them
PCI_TB_IO_START = 0xD800           # root bus 05's share of them
PCI_GPU_IO_START = 0xE000          # root bus f0's share of them (bus 00 has those below)
ECAM_BASE = 0xE000_0000            # PCIe MMCONFIG (MCFG table)
ECAM_SIZE = 256 * MiB
IOAPIC_BASE = 0xFEC0_0000
IOAPIC_SIZE = 0x1000
HPET_BASE = 0xFED0_0000
HPET_SIZE = 0x400
LAPIC_BASE = 0xFEE0_0000
LAPIC_SIZE = 0x1000
SMC_BASE = 0xFEF0_0000             # the T2's SMC (devices/smc.py); the OS finds it in APP0001
SMC_SIZE = 0x1_0000
HIGH_RAM_START = 0x1_0000_0000
PCI64_ALIGN = 1 << 30             # the 64-bit window starts at the first GiB above RAM
PCI64_SIZE = 64 << 30             # 64 GiB of 64-bit BAR space (well inside 46 physical bits)


@dataclass(frozen=True)
class RamRange:
    guest_start: int   # guest-physical address
    size: int
    host_offset: int   # offset in the host mapping


def ram_ranges(ram_bytes: int) -> list[RamRange]:
    """Where `ram_bytes` of RAM appear in the guest-physical space."""
    below = min(ram_bytes, RAM_BELOW_4G_END)
    ranges = [RamRange(0, below, 0)]
    if ram_bytes > below:
        ranges.append(RamRange(HIGH_RAM_START, ram_bytes - below, below))
    return ranges


def pci64_window(ram_bytes: int) -> tuple[int, int]:
    """The 64-bit PCI memory window (first, last address): from the first GiB boundary above
    RAM, PCI64_SIZE long."""
    top = max(HIGH_RAM_START, max(r.guest_start + r.size for r in ram_ranges(ram_bytes)))
    start = (top + PCI64_ALIGN - 1) // PCI64_ALIGN * PCI64_ALIGN
    return start, start + PCI64_SIZE - 1
