"""The Linux boot protocol loader: zero page, e820, placement; the stock kernel's header."""

import struct
import pytest

from imacpro.errors import UserError
from imacpro.firmware import linux
from imacpro.memory import layout
from imacpro.memory.ram import Ram

GiB = 1 << 30


def fake_bzimage(protocol=0x20F, xloadflags=0x7F, setup_sects=4, kernel=b"\x90" * 8192):
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x201] = 0x6A                     # header ends at 0x26C
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, protocol)
    setup[0x211] = 0x01                     # LOADED_HIGH
    struct.pack_into("<I", setup, 0x22C, 0x7FFFFFFF)
    setup[0x234] = 1
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, 2047)
    struct.pack_into("<Q", setup, 0x258, 0x1000000)
    struct.pack_into("<I", setup, 0x260, 0x2000000)
    return bytes(setup) + kernel


def test_parse_and_refuse():
    image = linux.BzImage.parse(fake_bzimage())
    assert (image.load_address, image.setup_size) == (0x1000000, 5 * 512)
    with pytest.raises(UserError, match="bzImage"):
        linux.BzImage.parse(b"\0" * 4096)
    with pytest.raises(UserError, match="too old"):
        linux.BzImage.parse(fake_bzimage(protocol=0x20B))
    with pytest.raises(UserError, match="64-bit"):
        linux.BzImage.parse(fake_bzimage(xloadflags=0))


@pytest.mark.parametrize("memory", [32, 256])
def test_e820_usable_ram_is_the_configured_ram_less_the_legacy_areas(memory):
    size = memory * GiB
    acpi = (0xE0000, 0x4000, linux.E820_ACPI)
    entries = linux.e820_map(size, [acpi])
    usable = sum(length for _, length, kind in entries if kind == linux.E820_RAM)
    legacy = (layout.LOW_RAM_END - layout.EBDA_START) + \
        (layout.LEGACY_HOLE_END - layout.LOW_RAM_END)
    assert usable == size - legacy
    spans = sorted((a, a + n) for a, n, _ in entries)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))  # no overlaps
    assert (layout.ECAM_BASE, layout.ECAM_SIZE, linux.E820_RESERVED) in entries


def test_load_fills_the_zero_page():
    ram = Ram(32 * GiB)
    image = linux.BzImage.parse(fake_bzimage())
    entries = linux.e820_map(ram.size)
    rip, rsi = linux.load(ram, image, b"initrd" * 1000, "console=ttyS0", entries,
                          acpi_rsdp=0xE0000)
    assert (rip, rsi) == (0x1000200, linux.ZERO_PAGE)
    zp = ram.read(linux.ZERO_PAGE, 4096)
    assert zp[0x202:0x206] == b"HdrS" and zp[0x210] == 0xFF
    cmd = struct.unpack_from("<I", zp, 0x228)[0]
    assert ram.read(cmd, 14) == b"console=ttyS0\0"
    initrd, size = struct.unpack_from("<II", zp, 0x218)
    assert size == 6000 and initrd % 4096 == 0 and initrd + size <= layout.RAM_BELOW_4G_END
    assert ram.read(initrd, 6) == b"initrd"
    assert struct.unpack_from("<Q", zp, 0x70)[0] == 0xE0000
    assert zp[0x1E8] == len(entries)
    assert ram.read(0x1000000, 4) == b"\x90" * 4

