"""GPT on 4096-byte sectors: round trip, CRC damage falls back to the backup, hostile headers."""

import struct
import uuid
import zlib

import pytest

from imacpro.disk import gpt
from imacpro.disk.block import SECTOR_SIZE, RawDiskImage
from imacpro.disk.gpt import EFI_SYSTEM, LINUX_ROOT_X86_64, GptError, Partition

SECTORS = 2048           # an 8 MiB disk


@pytest.fixture
def disk(tmp_path):
    with RawDiskImage.create(tmp_path / "disk.img", SECTORS * SECTOR_SIZE) as disk:
        yield disk


def two_partitions():
    return [Partition(EFI_SYSTEM, uuid.uuid4(), 256, 511, "EFI System Partition"),
            Partition(LINUX_ROOT_X86_64, uuid.uuid4(), 512, 1791, "Linux root")]


def patch_header(disk, lba, **fields):
    """Change header fields at `lba` and make its CRC right again (a well-formed lie)."""
    names = ["signature", "revision", "header_size", "crc", "reserved", "my_lba", "alternate",
             "first_usable", "last_usable", "disk_guid", "entry_lba", "count", "entry_size",
             "entries_crc"]
    sector = bytearray(disk.read(lba, 1))
    values = dict(zip(names, gpt.HEADER.unpack_from(sector)))
    values.update(fields, crc=0)
    gpt.HEADER.pack_into(sector, 0, *values.values())
    struct.pack_into("<I", sector, 16, zlib.crc32(sector[:gpt.HEADER.size]))
    disk.write(lba, sector)


def flip(disk, lba, offset):
    sector = bytearray(disk.read(lba, 1))
    sector[offset] ^= 0x01
    disk.write(lba, sector)


def test_round_trip(disk):
    written = gpt.write(disk, two_partitions())
    table = gpt.read(disk, "the disk")
    assert table == written and not table.from_backup
    assert table.first_usable == 6 and table.last_usable == SECTORS - 6
    esp, root = table.partitions
    assert (esp.number, esp.name, esp.first_lba, esp.last_lba, esp.sectors) == \
        (1, "EFI System Partition", 256, 511, 256)
    assert (root.number, root.type_guid, root.name) == (2, LINUX_ROOT_X86_64, "Linux root")
    assert table.find(EFI_SYSTEM) == esp and table.find(uuid.uuid4()) is None
    assert len({table.disk_guid, esp.guid, root.guid}) == 3
    assert gpt.write(disk, two_partitions()).disk_guid != table.disk_guid   # random each time


def test_on_disk_bytes(disk):
    table = gpt.write(disk, two_partitions())
    mbr = disk.read(0, 1)
    boot, chs_start, kind, chs_end, start, size = gpt.MBR_RECORD.unpack_from(mbr, 446)
    assert (boot, chs_start, kind, start, size) == (0, b"\0\2\0", 0xEE, 1, SECTORS - 1)
    assert chs_end == gpt._chs(SECTORS - 1)
    assert mbr[510:512] == b"\x55\xAA" and mbr[:446] == bytes(446) and mbr[462:510] == bytes(48)
    header = disk.read(1, 1)
    assert header[:8] == b"EFI PART" and struct.unpack_from("<IIIIQQ", header, 8) == \
        (0x10000, 92, struct.unpack_from("<I", header, 16)[0], 0, 1, SECTORS - 1)
    assert header[56:72] == table.disk_guid.bytes_le and header[92:] == bytes(SECTOR_SIZE - 92)
    entry = disk.read(2, 1)[:128]
    assert entry[:16] == bytes.fromhex("28732ac11ff8d211ba4b00a0c93ec93b")  # mixed-endian GUID
    assert entry[56:56 + 40] == "EFI System Partition".encode("utf-16-le")
    backup = disk.read(SECTORS - 1, 1)
    assert struct.unpack_from("<QQ", backup, 24) == (SECTORS - 1, 1)
    assert struct.unpack_from("<Q", backup, 72)[0] == SECTORS - 5
    assert disk.read(SECTORS - 5, 4) == disk.read(2, 4)


def test_chs_of_the_last_sector():
    assert gpt._chs(0) == b"\x00\x01\x00"
    assert gpt._chs(16064) == bytes([254, 63, 0])            # last sector of cylinder 0
    assert gpt._chs(1024 * 255 * 63) == b"\xFF\xFF\xFF"


@pytest.mark.parametrize("lba, offset, why", [
    (1, 30, "header CRC"),             # MyLBA, under the header CRC
    (2, 200, "entry array CRC"),       # the second entry, under the entries CRC
    (1, 0, "no signature")])
def test_damaged_primary_falls_back_to_the_backup(disk, lba, offset, why):
    written = gpt.write(disk, two_partitions())
    flip(disk, lba, offset)
    table = gpt.read(disk, "the disk")
    assert table.from_backup and table.partitions == written.partitions
    assert table.disk_guid == written.disk_guid


def test_both_copies_damaged(disk):
    gpt.write(disk, two_partitions())
    flip(disk, 1, 20 + 4)
    flip(disk, SECTORS - 5, 0)          # the backup's entries
    with pytest.raises(GptError, match=r"^the disk's GPT is damaged: primary header at LBA 1: "
                       r"header CRC mismatch; backup header at LBA 2047: partition entry "
                       r"array CRC mismatch$"):
        gpt.read(disk, "the disk")


def test_blank_disk_and_a_512_byte_gpt(disk):
    with pytest.raises(GptError, match="^the disk has no GPT"):
        gpt.read(disk, "the disk")
    sector = bytearray(SECTOR_SIZE)
    sector[512:520] = b"EFI PART"
    disk.write(0, sector)
    with pytest.raises(GptError, match="GPT for 512-byte sectors"):
        gpt.read(disk, "the disk")


@pytest.mark.parametrize("fields, why", [
    ({"count": 1 << 20}, "partition entries"),
    ({"entry_size": 100}, "partition entries"),
    ({"entry_lba": SECTORS + 10}, "overlap"),
    ({"entry_lba": 1}, "overlap"),
    ({"entry_lba": 100}, "overlap"),                       # inside the usable sectors
    ({"last_usable": SECTORS}, "outside the disk"),
    ({"first_usable": 0}, "outside the disk"),
    ({"header_size": 8192}, "header size"),
    ({"my_lba": 7}, "MyLBA"),
    ({"last_usable": 1000}, "partition 2"),               # root now outside the usable area
])
def test_hostile_headers_are_refused(disk, fields, why):
    gpt.write(disk, two_partitions())
    patch_header(disk, 1, **fields)
    assert gpt.read(disk, "the disk").from_backup
    patch_header(disk, SECTORS - 1, **fields)
    with pytest.raises(GptError, match=why):
        gpt.read(disk, "the disk")


def test_write_refuses_bad_partitions(disk):
    esp, root = two_partitions()
    overlapping = Partition(root.type_guid, root.guid, 500, 600, "x")
    with pytest.raises(ValueError, match="overlap"):
        gpt.write(disk, [esp, overlapping])
    with pytest.raises(ValueError, match="outside"):
        gpt.write(disk, [Partition(EFI_SYSTEM, uuid.uuid4(), 5, 100, "x")])
    with pytest.raises(ValueError, match="longer"):
        gpt.write(disk, [Partition(EFI_SYSTEM, uuid.uuid4(), 256, 300, "x" * 37)])
