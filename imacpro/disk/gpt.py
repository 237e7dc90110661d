"""The GUID Partition Table on a disk of 4096-byte sectors (UEFI 2.10 §5.2.3, §5.3).

On disk (integers little-endian; each GUID in EFI_GUID's mixed-endian layout, Python's
`uuid.UUID.bytes_le`):

    LBA 0   protective MBR (§5.2.3): 446 bytes of boot code (zeros); partition record 1 =
            boot indicator 0, starting CHS 00 02 00, OS type 0xEE, ending CHS of the last LBA
            (FF FF FF when it does not fit), StartingLBA 1, SizeInLBA min(sectors - 1,
            0xFFFFFFFF); records 2..4 zero; 55 AA at byte 510. The rest of the sector is zero.
    LBA 1   GPT header (§5.3.2, table 5-5), 92 bytes, the rest of the sector zero:
              0 "EFI PART"   8 revision 0x00010000   12 HeaderSize 92
             16 HeaderCRC32 (CRC32 of HeaderSize bytes with this field zero)   20 reserved 0
             24 MyLBA   32 AlternateLBA   40 FirstUsableLBA   48 LastUsableLBA
             56 DiskGUID   72 PartitionEntryLBA   80 NumberOfPartitionEntries
             84 SizeOfPartitionEntry (128 × 2^n)   88 PartitionEntryArrayCRC32
    LBA 2   partition entries (§5.3.3, table 5-6), 128 entries × 128 bytes = 4 sectors:
              0 PartitionTypeGUID (all zero: unused)   16 UniquePartitionGUID
             32 StartingLBA   40 EndingLBA (inclusive)   48 Attributes   56 name, 36 UTF-16LE
    LBA 6 .. sectors - 6   the usable sectors
    sectors - 5 .. - 2     backup partition entries;  sectors - 1  backup header
CRC32 is the ISO-HDLC one (zlib.crc32). The disk GUID and partition GUIDs are random (uuid4).

Reading follows §5.3.2's validity rules (signature, header CRC, MyLBA, entry array CRC) and
falls back to the backup header at the disk's last LBA when the primary is invalid; it checks
more than the spec asks, because a hostile guest may have written anything: every field that
places or sizes something must lie inside the disk, the entry array is at most 1 MiB, and each
used partition must lie in the usable sectors. Left out: repairing one copy from the other
(the firmware only reads).

Why hand-written: the PyPI libraries that read GPT (dissect.volume) skip the CRCs and the
backup header, and those that write it (pyparted, gpt-image) work on a host path through
libparted or sfdisk, not on a block device object like the encrypted SSD. The format is two
structs and two CRCs.
"""

from __future__ import annotations

import itertools
import struct
import uuid
import zlib
from dataclasses import dataclass
from uuid import UUID

from imacpro.disk import DiskError
from imacpro.disk.block import SECTOR_SIZE, BlockDevice, WritableBlockDevice

EFI_SYSTEM = UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")    # UEFI 2.10 table 5-7
LINUX_ROOT_X86_64 = UUID("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")  # Discoverable Partitions Spec

SIGNATURE = b"EFI PART"
REVISION = 0x0001_0000
HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")      # 92 bytes (table 5-5)
ENTRY = struct.Struct("<16s16sQQQ72s")            # 128 bytes (table 5-6)
ENTRY_COUNT = 128             # the minimum the spec asks room for (16 KiB of entries)
ENTRY_SECTORS = ENTRY_COUNT * ENTRY.size // SECTOR_SIZE
MAX_ENTRY_BYTES = 1 << 20     # a bound for hostile headers; real tables are 16 KiB
NAME_UNITS = 36               # UTF-16 code units in a partition name
PROTECTIVE_TYPE = 0xEE
MBR_RECORD = struct.Struct("<B3sB3sII")           # one of the MBR's four partition records
MBR_RECORDS_AT, MBR_SIGNATURE_AT = 446, 510
MBR_SIGNATURE = b"\x55\xAA"
CHS_HEADS, CHS_SECTORS, CHS_MAX_CYLINDER = 255, 63, 1023
MIN_SECTORS = 2 * (1 + ENTRY_SECTORS) + 2          # MBR, both copies, one usable sector


class GptError(DiskError):
    """No valid GPT on the disk (both copies missing or damaged)."""


@dataclass(frozen=True)
class Partition:
    type_guid: UUID
    guid: UUID
    first_lba: int
    last_lba: int            # inclusive, as on disk
    name: str
    attributes: int = 0
    number: int = 0          # 1-based index in the entry array (0 before it is written)

    @property
    def sectors(self) -> int:
        return self.last_lba - self.first_lba + 1


@dataclass(frozen=True)
class PartitionTable:
    disk_guid: UUID
    first_usable: int
    last_usable: int
    partitions: tuple[Partition, ...]
    from_backup: bool = False     # the primary header was damaged

    def find(self, type_guid: UUID) -> Partition | None:
        """The first partition of this type, by entry number."""
        return next((p for p in self.partitions if p.type_guid == type_guid), None)


def usable_sectors(sectors: int) -> tuple[int, int]:
    """(FirstUsableLBA, LastUsableLBA) of a disk of `sectors` with this module's layout."""
    return 2 + ENTRY_SECTORS, sectors - 2 - ENTRY_SECTORS


# --- writing --------------------------------------------------------------------------------

def write(device: WritableBlockDevice, partitions: list[Partition],
          disk_guid: UUID | None = None) -> PartitionTable:
    """Write the protective MBR and both GPT copies; partitions are numbered in list order."""
    sectors = device.sectors
    if device.SECTOR_SIZE != SECTOR_SIZE or sectors < MIN_SECTORS:
        raise ValueError(f"cannot write a GPT on {sectors} sectors of {device.SECTOR_SIZE}")
    first_usable, last_usable = usable_sectors(sectors)
    if len(partitions) > ENTRY_COUNT:
        raise ValueError(f"{len(partitions)} partitions: a GPT here holds {ENTRY_COUNT}")
    ordered = sorted(partitions, key=lambda p: p.first_lba)
    for before, after in itertools.pairwise(ordered):
        if after.first_lba <= before.last_lba:
            raise ValueError(f"partitions {before.name!r} and {after.name!r} overlap")
    entries = bytearray(ENTRY_COUNT * ENTRY.size)
    numbered = []
    for index, p in enumerate(partitions):
        if not first_usable <= p.first_lba <= p.last_lba <= last_usable:
            raise ValueError(f"partition {p.name!r} ({p.first_lba}..{p.last_lba}) is outside "
                             f"the usable sectors {first_usable}..{last_usable}")
        name = p.name.encode("utf-16-le")
        if len(name) > 2 * NAME_UNITS:
            raise ValueError(f"partition name {p.name!r} is longer than {NAME_UNITS} units")
        ENTRY.pack_into(entries, index * ENTRY.size, p.type_guid.bytes_le, p.guid.bytes_le,
                        p.first_lba, p.last_lba, p.attributes, name)
        numbered.append(Partition(p.type_guid, p.guid, p.first_lba, p.last_lba, p.name,
                                  p.attributes, index + 1))
    disk_guid = disk_guid or uuid.uuid4()
    entries_crc = zlib.crc32(entries)
    backup_lba, backup_entries = sectors - 1, sectors - 1 - ENTRY_SECTORS

    def header(my_lba: int, alternate_lba: int, entry_lba: int) -> bytes:
        fields = [SIGNATURE, REVISION, HEADER.size, 0, 0, my_lba, alternate_lba, first_usable,
                  last_usable, disk_guid.bytes_le, entry_lba, ENTRY_COUNT, ENTRY.size,
                  entries_crc]
        fields[3] = zlib.crc32(HEADER.pack(*fields))
        return HEADER.pack(*fields).ljust(SECTOR_SIZE, b"\0")

    device.write(0, protective_mbr(sectors))
    device.write(1, header(1, backup_lba, 2) + entries)
    device.write(backup_entries, entries + header(backup_lba, 1, backup_entries))
    return PartitionTable(disk_guid, first_usable, last_usable, tuple(numbered))


def protective_mbr(sectors: int) -> bytes:
    sector = bytearray(SECTOR_SIZE)
    size = min(sectors - 1, 0xFFFF_FFFF)
    MBR_RECORD.pack_into(sector, MBR_RECORDS_AT, 0, b"\x00\x02\x00", PROTECTIVE_TYPE,
                         _chs(sectors - 1), 1, size)
    sector[MBR_SIGNATURE_AT:MBR_SIGNATURE_AT + 2] = MBR_SIGNATURE
    return bytes(sector)


def _chs(lba: int) -> bytes:
    """The MBR's cylinder-head-sector form of an LBA (255 heads, 63 sectors a track), or
    FF FF FF when the cylinder exceeds 1023 (§5.2.3, table 5-4)."""
    cylinder, rest = divmod(lba, CHS_HEADS * CHS_SECTORS)
    if cylinder > CHS_MAX_CYLINDER:
        return b"\xFF\xFF\xFF"
    head, sector = divmod(rest, CHS_SECTORS)
    return bytes([head, (sector + 1) | (cylinder >> 2 & 0xC0), cylinder & 0xFF])


# --- reading --------------------------------------------------------------------------------

def read(device: BlockDevice, name: str) -> PartitionTable:
    """The disk's partition table; `name` ("the internal SSD") is for messages."""
    sectors = device.sectors
    if device.SECTOR_SIZE != SECTOR_SIZE or sectors < MIN_SECTORS:
        raise GptError(f"{name} has no GPT (too small: {sectors} sectors)")
    problems, blank = [], 0
    for lba, which in ((1, "primary"), (sectors - 1, "backup")):
        try:
            return _read_copy(device, lba, which == "backup")
        except _Invalid as exc:
            problems.append(f"{which} header at LBA {lba}: {exc}")
            blank += isinstance(exc, _NoSignature)
    if blank == 2:
        if device.read(0, 1)[512:520] == SIGNATURE:
            raise GptError(f"{name} has a GPT for 512-byte sectors; imacpro's disks have "
                           f"{SECTOR_SIZE}-byte sectors")
        raise GptError(f"{name} has no GPT (no partition table)")
    raise GptError(f"{name}'s GPT is damaged: {'; '.join(problems)}")


class _Invalid(Exception):
    """This copy of the GPT is not valid (the message says why)."""


class _NoSignature(_Invalid):
    pass


def _read_copy(device: BlockDevice, lba: int, from_backup: bool) -> PartitionTable:
    sector = bytes(device.read(lba, 1))
    (signature, _revision, header_size, header_crc, _reserved, my_lba, _alternate,
     first_usable, last_usable, disk_guid, entry_lba, count, entry_size,
     entries_crc) = HEADER.unpack_from(sector)
    if signature != SIGNATURE:
        raise _NoSignature("no signature")
    if not HEADER.size <= header_size <= SECTOR_SIZE:
        raise _Invalid(f"header size {header_size}")
    if zlib.crc32(sector[:16] + b"\0\0\0\0" + sector[20:header_size]) != header_crc:
        raise _Invalid("header CRC mismatch")
    if my_lba != lba:
        raise _Invalid(f"MyLBA is {my_lba}")
    sectors = device.sectors
    if not 0 < first_usable <= last_usable < sectors:
        raise _Invalid(f"usable sectors {first_usable}..{last_usable} outside the disk")
    if entry_size < ENTRY.size or entry_size & (entry_size - 1) or \
            not 0 < count * entry_size <= MAX_ENTRY_BYTES:
        raise _Invalid(f"{count} partition entries of {entry_size} bytes")
    entry_sectors = -(-count * entry_size // SECTOR_SIZE)
    entry_end = entry_lba + entry_sectors - 1
    if not 0 < entry_lba <= entry_end < sectors or entry_lba <= lba <= entry_end or \
            not (entry_end < first_usable or entry_lba > last_usable):
        raise _Invalid(f"partition entries at LBA {entry_lba}..{entry_end} overlap the header,"
                       " the usable sectors or the disk's end")
    entries = bytes(device.read(entry_lba, entry_sectors))[:count * entry_size]
    if zlib.crc32(entries) != entries_crc:
        raise _Invalid("partition entry array CRC mismatch")
    partitions = []
    for index in range(count):
        type_guid, guid, first, last, attributes, raw_name = \
            ENTRY.unpack_from(entries, index * entry_size)
        if type_guid == bytes(16):
            continue
        if not first_usable <= first <= last <= last_usable:
            raise _Invalid(f"partition {index + 1} ({first}..{last}) is outside the usable "
                           f"sectors {first_usable}..{last_usable}")
        label = raw_name.decode("utf-16-le", "replace").split("\0", 1)[0]
        partitions.append(Partition(UUID(bytes_le=type_guid), UUID(bytes_le=guid), first,
                                    last, label, attributes, index + 1))
    return PartitionTable(UUID(bytes_le=disk_guid), first_usable, last_usable,
                          tuple(partitions), from_backup)
