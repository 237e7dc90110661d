"""The Linux x86 boot protocol, 64-bit entry (Documentation/arch/x86/boot.rst, protocol 2.12+).

A bzImage is a real-mode setup part ((setup_sects + 1) × 512 bytes, with the setup header at
0x1F1) followed by the protected-mode kernel. Firmware that enters at the 64-bit entry point:
  - loads the protected-mode kernel at its preferred address (relocatable kernels) or 1 MiB;
  - fills a zero page (`struct boot_params`): the setup header copied from the image,
    type_of_loader, heap end, command line pointer, initrd address/size (ext_ fields above
    4 GiB), the e820 map, the ACPI RSDP address, and `screen_info` describing the boot
    framebuffer as an EFI GOP framebuffer (what Linux's EFI stub writes there from the GOP
    mode; Linux's efifb takes it from there);
  - enters at load address + 0x200 in 64-bit mode with RSI = zero page, an identity map
    covering kernel, zero page, command line and initrd, __BOOT_CS/__BOOT_DS, interrupts off.

Low-memory layout used here (below the 1 MiB boot area, above the firmware's page tables):
    0x0000_7000  zero page (boot_params, 4 KiB)
    0x0002_0000  command line (up to cmdline_size)
The initrd goes at the top of RAM below 4 GiB, page aligned, below initrd_addr_max.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from imacpro.errors import UserError
from imacpro.memory import layout

ZERO_PAGE = 0x7000
CMDLINE = 0x20000
HEADER_MAGIC = b"HdrS"
MIN_PROTOCOL = 0x20C            # 2.12: xloadflags (64-bit entry, initrd above 4 GiB)
XLF_KERNEL_64 = 1 << 0
LOADER_TYPE_UNDEFINED = 0xFF
CAN_USE_HEAP = 0x80
ENTRY_64_OFFSET = 0x200
E820_MAX = 128

# struct boot_params / setup_header offsets (arch/x86/include/uapi/asm/bootparam.h)
BP_ACPI_RSDP = 0x070
BP_EXT_RAMDISK_IMAGE = 0x0C0
BP_EXT_RAMDISK_SIZE = 0x0C4
BP_EXT_CMD_LINE_PTR = 0x0C8
BP_E820_ENTRIES = 0x1E8
BP_SETUP_HEADER = 0x1F1
BP_E820_TABLE = 0x2D0
HDR_SETUP_SECTS = 0x1F1
HDR_JUMP_END = 0x201            # byte at 0x201 + 0x202 = end of the header
HDR_MAGIC = 0x202
HDR_VERSION = 0x206
HDR_TYPE_OF_LOADER = 0x210
HDR_LOADFLAGS = 0x211
HDR_RAMDISK_IMAGE = 0x218
HDR_RAMDISK_SIZE = 0x21C
HDR_HEAP_END_PTR = 0x224
HDR_CMD_LINE_PTR = 0x228
HDR_INITRD_ADDR_MAX = 0x22C
HDR_RELOCATABLE = 0x234
HDR_XLOADFLAGS = 0x236
HDR_CMDLINE_SIZE = 0x238
HDR_PREF_ADDRESS = 0x258
HDR_INIT_SIZE = 0x260

E820_RAM, E820_RESERVED, E820_ACPI = 1, 2, 3

# struct screen_info (include/uapi/linux/screen_info.h), at offset 0 of boot_params.
SI_ISVGA, SI_LFB_WIDTH, SI_LFB_BASE, SI_LINELENGTH, SI_RED, SI_PAGES = 0x0F, 0x12, 0x18, 0x24, \
    0x26, 0x32
SI_CAPABILITIES, SI_EXT_LFB_BASE = 0x36, 0x3A
VIDEO_TYPE_EFI = 0x70
VIDEO_CAPABILITY_SKIP_QUIRKS, VIDEO_CAPABILITY_64BIT_BASE = 1 << 0, 1 << 1


@dataclass(frozen=True)
class Framebuffer:
    """A linear framebuffer as the firmware hands it over."""
    address: int
    width: int
    height: int
    stride: int
    channels: tuple[tuple[int, int], ...]   # (size, position) of red, green, blue, reserved


def screen_info(fb: Framebuffer) -> bytes:
    """The 64-byte screen_info for an EFI GOP framebuffer."""
    si = bytearray(0x40)
    si[SI_ISVGA] = VIDEO_TYPE_EFI
    struct.pack_into("<HHH", si, SI_LFB_WIDTH, fb.width, fb.height, 32)
    struct.pack_into("<II", si, SI_LFB_BASE, fb.address & 0xFFFF_FFFF, fb.stride * fb.height)
    struct.pack_into("<H", si, SI_LINELENGTH, fb.stride)
    si[SI_RED:SI_RED + 8] = bytes(v for channel in fb.channels for v in channel)
    struct.pack_into("<H", si, SI_PAGES, 1)
    capabilities = VIDEO_CAPABILITY_SKIP_QUIRKS
    if fb.address >> 32:
        capabilities |= VIDEO_CAPABILITY_64BIT_BASE
    struct.pack_into("<II", si, SI_CAPABILITIES, capabilities, fb.address >> 32)
    return bytes(si)


@dataclass(frozen=True)
class BzImage:
    image: bytes
    protocol: int
    setup_size: int
    header_end: int
    relocatable: bool
    pref_address: int
    init_size: int
    initrd_addr_max: int
    cmdline_size: int

    @classmethod
    def parse(cls, image: bytes) -> BzImage:
        if len(image) < 0x300 or image[HDR_MAGIC:HDR_MAGIC + 4] != HEADER_MAGIC:
            raise UserError("not a Linux bzImage (no 'HdrS' setup header)")
        (protocol,) = struct.unpack_from("<H", image, HDR_VERSION)
        if protocol < MIN_PROTOCOL:
            raise UserError(f"boot protocol {protocol >> 8}.{protocol & 0xFF} is too old "
                            "(2.12 or newer is needed for the 64-bit entry)")
        (xloadflags,) = struct.unpack_from("<H", image, HDR_XLOADFLAGS)
        if not xloadflags & XLF_KERNEL_64:
            raise UserError("this kernel has no 64-bit entry point")
        setup_sects = image[HDR_SETUP_SECTS] or 4
        setup_size = (setup_sects + 1) * 512
        if setup_size >= len(image):
            raise UserError("bzImage is truncated")
        return cls(
            image=image, protocol=protocol, setup_size=setup_size,
            header_end=HDR_MAGIC + image[HDR_JUMP_END],
            relocatable=bool(image[HDR_RELOCATABLE]),
            pref_address=struct.unpack_from("<Q", image, HDR_PREF_ADDRESS)[0],
            init_size=struct.unpack_from("<I", image, HDR_INIT_SIZE)[0],
            initrd_addr_max=struct.unpack_from("<I", image, HDR_INITRD_ADDR_MAX)[0],
            cmdline_size=struct.unpack_from("<I", image, HDR_CMDLINE_SIZE)[0],
        )

    @property
    def kernel(self) -> bytes:
        return self.image[self.setup_size:]

    @property
    def load_address(self) -> int:
        return self.pref_address if self.relocatable and self.pref_address else 0x100000


def e820_map(ram_bytes: int, reserved: list[tuple[int, int, int]] = ()) -> list[tuple]:
    """The machine's memory map as (address, length, type), usable RAM exactly as configured.

    `reserved` adds (address, length, type) ranges carved out of RAM above 1 MiB (e.g. ACPI
    tables there); ranges in the BIOS area below 1 MiB are already reserved as a whole."""
    entries = [
        (0, layout.EBDA_START, E820_RAM),
        (layout.EBDA_START, layout.LOW_RAM_END - layout.EBDA_START, E820_RESERVED),
        (layout.BIOS_AREA_START, layout.LEGACY_HOLE_END - layout.BIOS_AREA_START,
         E820_RESERVED),
    ]
    low_end = min(ram_bytes, layout.RAM_BELOW_4G_END)
    cursor = layout.LEGACY_HOLE_END
    for start, length, kind in sorted(r for r in reserved
                                      if layout.LEGACY_HOLE_END <= r[0] < low_end):
        if start > cursor:
            entries.append((cursor, start - cursor, E820_RAM))
        entries.append((start, length, kind))
        cursor = start + length
    entries.append((cursor, low_end - cursor, E820_RAM))
    entries.append((layout.ECAM_BASE, layout.ECAM_SIZE, E820_RESERVED))   # MMCONFIG
    entries.append((layout.IOAPIC_BASE, 0x1_0000_0000 - layout.IOAPIC_BASE, E820_RESERVED))
    for r in layout.ram_ranges(ram_bytes)[1:]:
        entries.append((r.guest_start, r.size, E820_RAM))
    return entries


def load(ram, image: BzImage, initrd: bytes, cmdline: str, e820: list[tuple],
         acpi_rsdp: int = 0, framebuffer: Framebuffer | None = None) -> tuple[int, int]:
    """Place kernel, initrd, command line and zero page in RAM. Returns (entry RIP, RSI)."""
    encoded = cmdline.encode() + b"\0"
    if image.cmdline_size and len(encoded) > image.cmdline_size + 1:
        raise UserError(f"the kernel command line is longer than {image.cmdline_size} bytes")
    if len(e820) > E820_MAX:
        raise UserError("too many e820 entries")
    ram.write(image.load_address, image.kernel)
    ram.write(CMDLINE, encoded)

    initrd_address = 0
    if initrd:
        top = min(layout.RAM_BELOW_4G_END, image.initrd_addr_max + 1, ram.size)
        initrd_address = (top - len(initrd)) & ~0xFFF
        if initrd_address < image.load_address + max(image.init_size, len(image.kernel)):
            raise UserError("the initrd does not fit in RAM below 4 GiB beside the kernel")
        ram.write(initrd_address, initrd)

    zero_page = bytearray(4096)
    if framebuffer is not None:
        zero_page[:0x40] = screen_info(framebuffer)
    zero_page[BP_SETUP_HEADER:image.header_end] = image.image[BP_SETUP_HEADER:image.header_end]
    zero_page[HDR_TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED
    zero_page[HDR_LOADFLAGS] |= CAN_USE_HEAP
    struct.pack_into("<H", zero_page, HDR_HEAP_END_PTR, 0xFE00)
    struct.pack_into("<I", zero_page, HDR_CMD_LINE_PTR, CMDLINE)
    struct.pack_into("<I", zero_page, HDR_RAMDISK_IMAGE, initrd_address & 0xFFFFFFFF)
    struct.pack_into("<I", zero_page, HDR_RAMDISK_SIZE, len(initrd) & 0xFFFFFFFF)
    struct.pack_into("<I", zero_page, BP_EXT_RAMDISK_IMAGE, initrd_address >> 32)
    struct.pack_into("<I", zero_page, BP_EXT_RAMDISK_SIZE, len(initrd) >> 32)
    struct.pack_into("<Q", zero_page, BP_ACPI_RSDP, acpi_rsdp)
    zero_page[BP_E820_ENTRIES] = len(e820)
    for i, (address, length, kind) in enumerate(e820):
        struct.pack_into("<QQI", zero_page, BP_E820_TABLE + 20 * i, address, length, kind)
    ram.write(ZERO_PAGE, bytes(zero_page))
    return image.load_address + ENTRY_64_OFFSET, ZERO_PAGE
