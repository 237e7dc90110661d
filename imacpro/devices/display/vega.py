"""The Radeon Pro Vega 56, 64 or 64X: the GPU function (f3:00.0) and its HDMI/DP audio (f3:00.1).

What Linux reads of the real card (linux-hardware.org probes of iMacPro1,1; catalog "linux-hardware"):

    | function | IDs                   | subsystem        | class  | BARs                            |
    |----------|-----------------------|------------------|--------|---------------------------------|
    | f3:00.0  | 1002:6867 (Vega 56),  | 106b:017b,       | 030000 | 0: VRAM aperture, 256 MiB,      |
    |          | 1002:6860 (Vega 64,   | 106b:017c        |        |    64-bit prefetchable          |
    |          |   and the 64X: no     |                  |        | 2: doorbells, 2 MiB, 64-bit     |
    |          |   probe of one found) |                  |        |    prefetchable                 |
    |          |                       |                  |        | 4: I/O, 256 bytes               |
    |          |                       |                  |        | 5: registers, 512 KiB           |
    |          |                       |                  |        | ROM: 128 KiB                    |
    | f3:00.1  | 1002:aaf8             | the GPU's        | 040300 | 0: HD audio registers, 16 KiB   |

The VRAM aperture is host memory (memory/ram.HostMemory) that every vCPU's engine maps at the
BAR's address, following it when the BAR moves; the boot framebuffer (framebuffer.py) is its
first bytes. The aperture is the real card's default 256 MiB window onto 8 or 16 GB of HBM2;
the rest of VRAM, which only the GPU's own engines reach, is not modelled.

What is not modelled, and what it means for Linux: the GPU's engines behind its register,
doorbell and I/O BARs (they read as zero and ignore writes) and the HD audio controller (the
same). The ROM is a well-formed PCI expansion ROM (a header and a PCI data structure naming
this device, with one x86 image whose entry returns at once) without AMD's video BIOS or
GOP driver: Linux's amdgpu finds no ATOM BIOS in it and gives up ("Unable to locate a BIOS
ROM"), but only after it has removed the boot framebuffer's driver, so the console goes dark;
a distribution's command line here blacklists amdgpu (docs/DISPLAY.md).
"""

from __future__ import annotations

import struct

from imacpro.bus.msi import Msi
from imacpro.bus.pci import IoBar, MemoryBar, PciFunction, Unmodelled
from imacpro.bus.pcie import CAP_PCI_EXPRESS, ENDPOINT, pcie_capability
from imacpro.catalog.data import GraphicsOption
from imacpro.memory.ram import HostMemory

VENDOR_AMD = 0x1002
VENDOR_APPLE = 0x106B
DEVICE_HDMI_AUDIO = 0xAAF8
CLASS_VGA = 0x030000
CLASS_HD_AUDIO = 0x040300
MiB, KiB = 1 << 20, 1 << 10
APERTURE_SIZE = 256 * MiB
DOORBELL_SIZE = 2 * MiB
REGISTERS_SIZE = 512 * KiB
IO_SIZE = 256
ROM_SIZE = 128 * KiB
AUDIO_REGISTERS_SIZE = 16 * KiB
LINK = (8.0, 16)             # GT/s, lanes: PCIe 3.0 x16, as the real GPU's link


class ApertureMemory:
    """The VRAM aperture through the PCI window (Python accesses, before the engines' direct
    mapping follows a moved BAR): the same bytes as the direct mapping."""

    def __init__(self, memory: HostMemory):
        self.view = memory.view

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.view[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.view[offset:offset + size] = value.to_bytes(size, "little")


def expansion_rom(device: int) -> bytes:
    """A PCI expansion ROM (PCI Firmware 3.0 §5.1) with one image: 55 AA, its length in
    512-byte units, an entry that returns (retf), and the PCI data structure."""
    pcir_offset = 0x20
    image = bytearray(512)
    image[0:3] = b"\x55\xAA\x01"
    image[3] = 0xCB                                           # entry: retf
    struct.pack_into("<H", image, 0x18, pcir_offset)
    struct.pack_into("<4sHHHHB3sHHBBH", image, pcir_offset, b"PCIR", VENDOR_AMD, device, 0,
                     0x18, 0, CLASS_VGA.to_bytes(3, "little"), 1, 0, 0, 0x80, 0)
    image[-1] = -sum(image) & 0xFF                            # the image's bytes sum to 0
    return bytes(image)


class Vega:
    """The GPU function; `aperture` is its VRAM aperture's host memory."""

    def __init__(self, graphics: GraphicsOption):
        self.graphics = graphics
        self.aperture = HostMemory(APERTURE_SIZE)
        # Header type bit 7: a multi-function device (the audio function answers beside it).
        self.pci = PciFunction(VENDOR_AMD, graphics.pci_device, CLASS_VGA,
                               subsystem_vendor=VENDOR_APPLE, subsystem=graphics.pci_subsystem,
                               header_type=0x80)
        self.pci.add_memory_bar(MemoryBar(0, APERTURE_SIZE, ApertureMemory(self.aperture),
                                          prefetchable=True, memory=self.aperture))
        self.pci.add_memory_bar(MemoryBar(2, DOORBELL_SIZE, Unmodelled(), prefetchable=True))
        self.pci.add_io_bar(IoBar(4, IO_SIZE, Unmodelled()))
        self.pci.add_memory_bar(MemoryBar(5, REGISTERS_SIZE, Unmodelled(), is64=False))
        self.pci.add_rom(expansion_rom(graphics.pci_device), ROM_SIZE)
        body, writable = pcie_capability(ENDPOINT, *LINK)
        self.pci.add_capability(CAP_PCI_EXPRESS, body, writable)

    def framebuffer_address(self) -> int:
        """Where the boot framebuffer is now: the start of BAR0."""
        return self.pci.bar_address(self.pci.bars[0])

    # The contract: the state is the function's configuration space; the aperture's bytes
    # are memory, saved with the machine's memory (suspend.py), not here.
    def reset(self) -> None:
        self.pci.reset()
        self.aperture.clear()

    def save(self) -> dict:
        return self.pci.save()

    def load(self, state: dict) -> None:
        self.pci.load(state)


class VegaAudio:
    """The GPU's HDMI/DP audio function (its HD audio controller is not modelled). It offers
    MSI as the real function does (one 64-bit vector): Linux's snd_hda_intel takes it rather
    than an INTx line this function does not have; no message is ever sent."""

    def __init__(self, graphics: GraphicsOption):
        self.pci = PciFunction(VENDOR_AMD, DEVICE_HDMI_AUDIO, CLASS_HD_AUDIO,
                               subsystem_vendor=VENDOR_APPLE, subsystem=graphics.pci_subsystem)
        self.pci.add_memory_bar(MemoryBar(0, AUDIO_REGISTERS_SIZE, Unmodelled(), is64=False))
        body, writable = pcie_capability(ENDPOINT, *LINK)
        self.pci.add_capability(CAP_PCI_EXPRESS, body, writable)
        Msi(self.pci)

    def reset(self) -> None:
        self.pci.reset()

    def save(self) -> dict:
        return self.pci.save()

    def load(self, state: dict) -> None:
        self.pci.load(state)
