"""The firmware's part of a boot: PCI set up, tables in memory, Linux loaded, the boot CPU at
its entry.

    0x000E_0000  ACPI tables (RSDP first), in the BIOS area Linux may also scan
    0x000F_0000  SMBIOS 3.0 entry point, found by Linux's scan of 0xF0000-0xFFFFF
    0x000F_1000  SMBIOS structure table
The BIOS area is reserved in the e820 map; the RSDP address is also in boot_params.
Application processors wait for the kernel's INIT/SIPI.
"""

from __future__ import annotations

from imacpro.firmware import acpi, linux, long_mode, pci, smbios
from imacpro.machine import Machine, apic_id_of

ACPI_BASE = 0xE0000
ACPI_LIMIT = 0xF0000
SMBIOS_ENTRY = 0xF0000
SMBIOS_TABLE = 0xF1000
SMBIOS_LIMIT = 0x100000


def install(machine: Machine, identity, kernel: bytes, initrd: bytes, cmdline: str) -> None:
    config = machine.config
    cpus = len(machine.vcpus)
    rsdp, tables = acpi.build(config, cpus, ACPI_BASE, [apic_id_of(i) for i in range(cpus)],
                              machine.ioapic_id, machine.board)
    entry, structures = smbios.build(config, identity, SMBIOS_TABLE)
    if ACPI_BASE + len(tables) > ACPI_LIMIT or SMBIOS_TABLE + len(structures) > SMBIOS_LIMIT:
        raise RuntimeError("firmware tables outgrew the BIOS area")
    pci.assign_resources(machine.pci, machine.board)
    machine.ram.write(ACPI_BASE, tables)
    machine.ram.write(SMBIOS_ENTRY, entry)
    machine.ram.write(SMBIOS_TABLE, structures)
    image = linux.BzImage.parse(kernel)
    rip, rsi = linux.load(machine.ram, image, initrd, cmdline,
                          linux.e820_map(machine.ram.size), acpi_rsdp=rsdp,
                          framebuffer=_framebuffer(machine))
    long_mode.enter(machine.bsp.uc, machine.ram, rip=rip, rsi=rsi)


def _framebuffer(machine: Machine) -> linux.Framebuffer | None:
    """The GOP mode the firmware hands over: the machine's display mode, at the start of the
    GPU's VRAM aperture (framebuffer.py)."""
    gpu = machine.devices.get("gpu")
    if gpu is None:
        return None
    mode = machine.display_mode
    return linux.Framebuffer(gpu.framebuffer_address(), mode.width, mode.height, mode.stride,
                             mode.channels)
