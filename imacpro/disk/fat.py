"""Read-only FAT32, as the firmware reads the EFI System Partition (UEFI 2.10 §13.3).

References: Microsoft, "FAT: General Overview of On-Disk Format" (fatgen103, 2000): §3 the boot
sector and BPB, §4 the FAT, §6 directory entries, §7 long file names. The parts used:

    boot sector   0 jmpBoot (EB ?? 90 or E9 ?? ??)   11 BytsPerSec (512..4096, a power of two)
                  13 SecPerClus (1..128, a power of two)   14 RsvdSecCnt   16 NumFATs
                  17 RootEntCnt (0 on FAT32)   19 TotSec16 (0)   22 FATSz16 (0 on FAT32)
                  32 TotSec32   36 FATSz32   40 ExtFlags (bit 7: only FAT number bits 0..3 is
                  active)   44 RootClus   510 55 AA
    FAT           a 32-bit entry per cluster, low 28 bits used: 0 free, 2..max data (the next
                  cluster of the chain), 0x0FFFFFF7 bad, ≥ 0x0FFFFFF8 end of chain
    data          cluster n (n ≥ 2) at FirstDataSector + (n - 2) × SecPerClus, FirstDataSector
                  = RsvdSecCnt + NumFATs × FATSz32
    directory     32-byte entries: 0 name (8 + 3, space-padded; first byte 0 = end, E5 = free,
                  05 = a name starting with E5)   11 attributes (10 directory, 08 volume label,
                  0F long-name part)   20 first cluster, high 16 bits   26 low 16 bits
                  28 file size; 12 (NTRes): 08 / 10 = the name / extension is all lowercase
                  (Windows NT's extension, fatgen103 says "reserved"; mtools and Linux write it)
    long names    entries with attribute 0F before the short entry, in reverse order:
                  0 ordinal (40 on the last part), 1/14/28 5 + 6 + 2 UTF-16 units, 13 the
                  checksum of the short name; a set that is out of order or whose checksum
                  does not match is ignored (the short name stands), as §7 says
Names are compared case-insensitively (Python's casefold) against the long and the short name.

Hostile input (a guest can write anything to its disk) ends in FatError, never in a hang, a
crash or unbounded memory: every value from the disk that places or counts something is
checked against the file system's size before use, each cluster chain is followed at most as
far as its size requires (a directory at most 2 MiB, fatgen103 §6's 65536 entries) and a
cluster seen twice in a chain is a loop. A file's chain longer than its size is tolerated
(only the clusters the size needs are read), as readers do. Only the sectors a lookup needs are
read: the boot sector, the FAT sectors of the chains followed, the directories and the file.

Why hand-written: of the maintained libraries that read FAT from a file-like object,
dissect.fat follows cluster chains with no loop check (a two-cluster loop hangs it, building an
endless run list), and pyfatfs also lacks loop checks, loads the whole FAT into memory and
depends on PyFilesystem2 (last release 2022). What the firmware needs is ~200 lines. FAT12/16
and exFAT are left out: the ESP of a fixed disk is FAT32 (UEFI 2.10 §13.3.1.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from imacpro.disk import DiskError
from imacpro.disk.block import ByteView

BOOT_SECTOR = struct.Struct("<3s8sHBHBHHBHHHIIIHHI")    # through RootClus (offset 44)
BOOT_SIGNATURE_AT, BOOT_SIGNATURE = 510, b"\x55\xAA"
MIRRORING_OFF, ACTIVE_FAT_MASK = 0x80, 0x0F             # ExtFlags
ENTRY_MASK = 0x0FFF_FFFF
BAD_CLUSTER, END_OF_CHAIN = 0x0FFF_FFF7, 0x0FFF_FFF8
FIRST_CLUSTER = 2
DIRENT = struct.Struct("<11sBBBHHHHHHHI")                # 32 bytes (§6)
DIRENT_SIZE = DIRENT.size
ATTR_VOLUME_ID, ATTR_DIRECTORY, ATTR_LONG_NAME = 0x08, 0x10, 0x0F
LONG_NAME_ATTR_MASK = 0x3F
LAST_LONG_ENTRY, LONG_ORDINAL_MASK = 0x40, 0x3F
LONG_NAME_CHARS = ((1, 11), (14, 26), (28, 32))          # byte ranges of UTF-16 units (§7)
FREE_ENTRY, END_OF_DIRECTORY, KANJI_E5 = 0xE5, 0x00, 0x05
LOWER_BASE, LOWER_EXTENSION = 0x08, 0x10      # DIR_NTRes: Windows NT's all-lowercase flags
MAX_DIRECTORY_BYTES = 65536 * DIRENT_SIZE                # §6: at most 65536 entries
MAX_RUN_BYTES = 8 << 20                                  # bytes per read of contiguous clusters
FAT_CACHE_SECTORS = 64


class FatError(DiskError):
    """The FAT file system is damaged (or not FAT32)."""


@dataclass(frozen=True)
class Entry:
    name: str                 # the long name, or the short one as "NAME.EXT"
    short_name: str
    is_directory: bool
    cluster: int
    size: int

    def matches(self, name: str) -> bool:
        wanted = name.casefold()
        return wanted in (self.name.casefold(), self.short_name.casefold())


class Fat32:
    """A FAT32 file system on a partition; every read goes through `view`."""

    def __init__(self, view: ByteView):
        self.view = view
        boot = view.read(0, 512) if view.size >= 512 else b""
        if len(boot) < 512 or boot[BOOT_SIGNATURE_AT:BOOT_SIGNATURE_AT + 2] != BOOT_SIGNATURE:
            raise self._error("no FAT boot sector (no 55 AA signature)")
        (jump, _oem, sector_size, per_cluster, reserved, fats, root_entries, total16, _media,
         fat_size16, _per_track, _heads, _hidden, total32, fat_size, ext_flags, _version,
         root_cluster) = BOOT_SECTOR.unpack_from(boot)
        if not (jump[0] == 0xEB and jump[2] == 0x90 or jump[0] == 0xE9):
            raise self._error("no FAT boot sector (no jump instruction)")
        if sector_size not in (512, 1024, 2048, 4096) or \
                per_cluster not in (1, 2, 4, 8, 16, 32, 64, 128):
            raise self._error(f"{sector_size}-byte sectors, {per_cluster} a cluster")
        if fat_size16 or root_entries or total16 or not fat_size:
            raise self._error("not FAT32 (FAT12/16 fields are set)")
        if not reserved or not fats or not total32 or total32 * sector_size > view.size:
            raise self._error(f"{total32} sectors ({reserved} reserved, {fats} FATs) do not "
                              f"fit the partition's {view.size} bytes")
        active = ext_flags & ACTIVE_FAT_MASK if ext_flags & MIRRORING_OFF else 0
        data_sector = reserved + fats * fat_size
        if active >= fats or data_sector >= total32:
            raise self._error(f"the FATs ({fats} × {fat_size} sectors) leave no data area")
        self.cluster_size = sector_size * per_cluster
        self.clusters = (total32 - data_sector) // per_cluster
        self.max_cluster = FIRST_CLUSTER + self.clusters - 1
        if not self.clusters or (self.max_cluster + 1) * 4 > fat_size * sector_size:
            raise self._error(f"the FAT ({fat_size} sectors) is too small for "
                              f"{self.clusters} clusters")
        self.sector_size = sector_size
        self.fat_offset = (reserved + active * fat_size) * sector_size
        self.data_offset = data_sector * sector_size
        self.root_cluster = root_cluster
        self._check_cluster(root_cluster, "the root directory")
        self._fat_cache: dict[int, bytes] = {}

    # --- public -------------------------------------------------------------------------

    def lookup(self, path: str) -> Entry | None:
        """The entry at `path` ("/EFI/imacpro/vmlinuz", any case), or None if there is none."""
        names = [part for part in path.split("/") if part]
        cluster, where = self.root_cluster, "/"
        entry = None
        for depth, name in enumerate(names):
            entry = next((e for e in self.listdir(cluster, where) if e.matches(name)), None)
            if entry is None or (depth < len(names) - 1 and not entry.is_directory):
                return None
            cluster, where = entry.cluster, "/" + "/".join(names[:depth + 1])
        return entry

    def read(self, entry: Entry, where: str) -> bytes:
        """The contents of a file entry; `where` (its path) is for messages."""
        if entry.is_directory:
            raise self._error(f"{where} is a directory")
        if entry.size > self.clusters * self.cluster_size:
            raise self._error(f"{where} claims {entry.size} bytes, more than the file system "
                              "holds")
        if not entry.size:
            return b""
        count = -(-entry.size // self.cluster_size)
        data = self._read_chain(entry.cluster, count, where, exact=True)
        return bytes(data[:entry.size])

    def listdir(self, cluster: int, where: str) -> list[Entry]:
        """The entries of the directory starting at `cluster` (without "." and "..")."""
        limit = -(-MAX_DIRECTORY_BYTES // self.cluster_size)
        raw = self._read_chain(cluster, limit, f"directory {where}", exact=False)
        return list(_parse_directory(raw))

    # --- inside -------------------------------------------------------------------------

    def _error(self, detail: str) -> FatError:
        return FatError(f"{self.view.name}: damaged FAT32 file system: {detail}")

    def _check_cluster(self, cluster: int, what: str) -> None:
        if not FIRST_CLUSTER <= cluster <= self.max_cluster:
            raise self._error(f"{what}: cluster {cluster:#x} is out of range "
                              f"({FIRST_CLUSTER}..{self.max_cluster})")

    def _next(self, cluster: int) -> int:
        offset = self.fat_offset + cluster * 4
        index, at = divmod(offset, self.sector_size)
        sector = self._fat_cache.get(index)
        if sector is None:
            if len(self._fat_cache) >= FAT_CACHE_SECTORS:
                self._fat_cache.clear()
            sector = self._fat_cache[index] = bytes(self.view.read(index * self.sector_size,
                                                                   self.sector_size))
        return int.from_bytes(sector[at:at + 4], "little") & ENTRY_MASK

    def _read_chain(self, first: int, limit: int, what: str, exact: bool) -> bytearray:
        """The clusters of the chain from `first`: exactly `limit` of them if `exact`, else up
        to the end of the chain, which must come within `limit` clusters."""
        runs: list[list[int]] = []          # [first cluster, count] of contiguous clusters
        seen: set[int] = set()
        cluster = first
        for index in range(limit):
            self._check_cluster(cluster, what)
            if cluster in seen:
                raise self._error(f"{what}: its cluster chain loops (cluster {cluster:#x} "
                                  "comes twice)")
            seen.add(cluster)
            if runs and runs[-1][0] + runs[-1][1] == cluster and \
                    (runs[-1][1] + 1) * self.cluster_size <= MAX_RUN_BYTES:
                runs[-1][1] += 1
            else:
                runs.append([cluster, 1])
            if exact and index == limit - 1:
                break
            following = self._next(cluster)
            if following >= END_OF_CHAIN:
                if exact:
                    raise self._error(f"{what}: its cluster chain ends after {index + 1} of "
                                      f"{limit} clusters")
                break
            if following == BAD_CLUSTER:
                raise self._error(f"{what}: its cluster chain reaches a bad cluster")
            cluster = following
        else:
            if not exact:
                raise self._error(f"{what}: longer than {MAX_DIRECTORY_BYTES} bytes (its "
                                  "cluster chain does not end)")
        data = bytearray()
        for start, count in runs:
            data += self.view.read(self.data_offset + (start - FIRST_CLUSTER)
                                   * self.cluster_size, count * self.cluster_size)
        return data


def _parse_directory(raw: bytes):
    long_parts: dict[int, str] = {}
    expected, checksum = 0, None      # the next ordinal wanted; the set's checksum
    for at in range(0, len(raw) - DIRENT_SIZE + 1, DIRENT_SIZE):
        first, attributes = raw[at], raw[at + 11]
        if first == END_OF_DIRECTORY:
            return
        if first == FREE_ENTRY:
            long_parts, expected = {}, 0
            continue
        if attributes & LONG_NAME_ATTR_MASK == ATTR_LONG_NAME:
            ordinal = first & LONG_ORDINAL_MASK
            if first & LAST_LONG_ENTRY:
                long_parts, expected, checksum = {}, ordinal, raw[at + 13]
            if not ordinal or ordinal != expected or raw[at + 13] != checksum:
                long_parts, expected = {}, 0
                continue
            long_parts[ordinal] = b"".join(raw[at + a:at + b] for a, b in LONG_NAME_CHARS) \
                .decode("utf-16-le", "replace")
            expected -= 1
            continue
        if attributes & ATTR_VOLUME_ID:
            long_parts, expected = {}, 0
            continue
        short = raw[at:at + 11]
        if first == KANJI_E5:
            short = b"\xE5" + short[1:]
        base, ext = (part.decode("cp437").rstrip() for part in (short[:8], short[8:]))
        case = raw[at + 12]
        base = base.lower() if case & LOWER_BASE else base
        ext = ext.lower() if case & LOWER_EXTENSION else ext
        short_name = f"{base}.{ext}" if ext else base
        long_name = None
        if long_parts and expected == 0 and checksum == _short_name_checksum(raw[at:at + 11]):
            joined = "".join(long_parts[i] for i in sorted(long_parts))
            long_name = joined.split("\0", 1)[0] or None
        long_parts, expected = {}, 0
        if short_name in (".", ".."):
            continue
        fields = DIRENT.unpack_from(raw, at)
        cluster = fields[7] << 16 | fields[10]        # DIR_FstClusHI, DIR_FstClusLO
        yield Entry(long_name or short_name, short_name,
                    bool(attributes & ATTR_DIRECTORY), cluster, fields[11])


def _short_name_checksum(name: bytes) -> int:
    """fatgen103 §7, ChkSum(): rotate right by one and add, over the 11 name bytes."""
    total = 0
    for byte in name:
        total = ((total & 1) << 7) + (total >> 1) + byte & 0xFF
    return total
