"""Block devices: the interface the disk code needs, a raw image file as a disk, byte views.

A block device has `SECTOR_SIZE` (4096), `sectors` and `read(lba, count) -> bytes-like` (exactly
count × 4096 bytes); installing onto it also needs `write(lba, data)`, `trim(lba, count)` (the
sectors read as zeros afterwards) and `flush()`. imacpro.t2.storage.EncryptedStore (the internal
SSD) is one; `RawDiskImage` is the other: a host file whose byte n is the disk's byte n, as a
disk image written by `dd` is (used for external disks, `--disk FILE`).

`ByteView` reads byte ranges of one partition, touching only the sectors that cover the
request, and refuses anything outside the partition: the file-system readers work on bytes and
never see the rest of the disk.

`copy_sparse` copies a host image file (made by mkfs.fat or mke2fs) onto a disk: only the
file's data extents (SEEK_DATA/SEEK_HOLE, lseek(2)), and within them only the non-zero parts,
since the disk it writes to has been trimmed and reads as zeros already. A 4 TB ext2 partition
thus costs the ~270 MB of its bitmaps and superblocks, not 4 TB.
"""

from __future__ import annotations

import ctypes
import errno
import operator
import os
from pathlib import Path
from typing import Protocol, Self

from imacpro.disk import DiskError
from imacpro.files import OwnedFd, pread_full, pwrite_all
from imacpro.t2.storage import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE

SECTOR_SIZE = 4096           # Apple's SSDs are 4K-native; so are imacpro's disks
COPY_CHUNK = 8 << 20         # bytes per read from a host image while copying
ZERO_GRAIN = 64 << 10        # zero runs shorter than this are written anyway

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class BlockDevice(Protocol):
    SECTOR_SIZE: int
    sectors: int

    def read(self, lba: int, count: int) -> bytes | bytearray: ...


class WritableBlockDevice(BlockDevice, Protocol):
    def write(self, lba: int, data: bytes) -> None: ...

    def trim(self, lba: int, count: int) -> None: ...

    def flush(self) -> None: ...


class RawDiskImage(OwnedFd):
    """A host file as a disk of 4096-byte sectors (a trailing partial sector is not used)."""

    SECTOR_SIZE = SECTOR_SIZE

    def __init__(self, path: Path, writable: bool = False):
        self.path = Path(path)
        self.directory = self.path.parent      # where the installer puts its temporary images
        self.name = f"the disk image {self.path}"
        try:
            self._fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        except OSError as exc:
            raise DiskError(f"cannot open {self.path}: {exc.strerror}") from None
        self.capacity = os.fstat(self._fd).st_size // SECTOR_SIZE * SECTOR_SIZE
        self.sectors = self.capacity // SECTOR_SIZE

    @classmethod
    def create(cls, path: Path, capacity: int) -> RawDiskImage:
        """A new sparse image of `capacity` bytes (a multiple of 4096), replacing any file."""
        if capacity <= 0 or capacity % SECTOR_SIZE:
            raise ValueError(f"disk capacity {capacity} is not a positive multiple of "
                             f"{SECTOR_SIZE}")
        with open(path, "wb") as f:
            f.truncate(capacity)
        return cls(path, writable=True)

    def __repr__(self) -> str:
        return f"RawDiskImage({str(self.path)!r}, {self.capacity} bytes)"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, lba: int, count: int) -> bytes:
        offset, size = self._range(lba, count)
        return pread_full(self._fd, size, offset)

    def write(self, lba: int, data: bytes) -> None:
        with memoryview(data) as source, source.cast("B") as view:
            if view.nbytes % SECTOR_SIZE:
                raise ValueError(f"write of {view.nbytes} bytes: not a multiple of "
                                 f"{SECTOR_SIZE}")
            offset, _ = self._range(lba, view.nbytes // SECTOR_SIZE)
            pwrite_all(self._fd, view, offset, str(self.path))

    def trim(self, lba: int, count: int) -> None:
        offset, size = self._range(lba, count)
        if size and _libc.fallocate(self._fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                    offset, size):
            err = ctypes.get_errno()
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(err, os.strerror(err), str(self.path))
            for start in range(0, size, COPY_CHUNK):   # no holes on this file system
                os.pwrite(self._fd, bytes(min(COPY_CHUNK, size - start)), offset + start)

    def flush(self) -> None:
        os.fsync(self._fd)

    def _range(self, lba: int, count: int) -> tuple[int, int]:
        lba, count = operator.index(lba), operator.index(count)
        if self._fd < 0:
            raise ValueError(f"{self.name} is closed")
        if not (0 <= lba and 0 <= count and lba + count <= self.sectors):
            raise ValueError(f"sectors {lba}..{lba + count - 1} are outside {self.name}'s "
                             f"{self.sectors} sectors")
        return lba * SECTOR_SIZE, count * SECTOR_SIZE


class ByteView:
    """Bytes of sectors [first_lba, first_lba + sectors) of a device, read on demand."""

    def __init__(self, device: BlockDevice, first_lba: int, sectors: int, name: str):
        if device.SECTOR_SIZE != SECTOR_SIZE:
            raise ValueError(f"{name}: {device.SECTOR_SIZE}-byte sectors, not {SECTOR_SIZE}")
        self.device, self.first_lba, self.name = device, first_lba, name
        self.size = sectors * SECTOR_SIZE

    def read(self, offset: int, length: int) -> bytes | bytearray:
        """Exactly `length` bytes at `offset`; a range outside the view is a DiskError."""
        end = offset + length
        if offset < 0 or length < 0 or end > self.size:
            raise DiskError(f"{self.name}: a read of bytes {offset}..{end - 1} is beyond its "
                            f"{self.size} bytes (damaged file system)")
        if not length:
            return b""
        first, last = offset // SECTOR_SIZE, (end - 1) // SECTOR_SIZE
        data = self.device.read(self.first_lba + first, last - first + 1)
        skip = offset - first * SECTOR_SIZE
        return data if skip == 0 and len(data) == length else data[skip:skip + length]


def copy_sparse(path: Path, device: WritableBlockDevice, first_lba: int, sectors: int) -> int:
    """Copy the non-zero data of image file `path` to the device from `first_lba`; the
    device's sectors there must read as zeros already (trimmed). Returns the bytes written."""
    written = 0
    zeros = bytes(ZERO_GRAIN)
    with open(path, "rb") as f:
        fd, size = f.fileno(), os.fstat(f.fileno()).st_size
        if size % SECTOR_SIZE or size > sectors * SECTOR_SIZE:
            raise ValueError(f"{path} ({size} bytes) does not fit {sectors} sectors exactly")
        for start, end in _data_extents(fd, size):
            start -= start % SECTOR_SIZE
            end = min(size, -(-end // SECTOR_SIZE) * SECTOR_SIZE)
            for chunk_at in range(start, end, COPY_CHUNK):
                chunk = os.pread(fd, min(COPY_CHUNK, end - chunk_at), chunk_at)
                with memoryview(chunk) as view:
                    for run_start, run_end in _nonzero_runs(chunk, zeros):
                        device.write(first_lba + (chunk_at + run_start) // SECTOR_SIZE,
                                     view[run_start:run_end])
                        written += run_end - run_start
    return written


def _data_extents(fd: int, size: int):
    """(start, end) byte ranges of a file that may hold data; the whole file if the host file
    system cannot say."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = min(size, os.lseek(fd, start, os.SEEK_HOLE))
        except OSError as exc:
            if exc.errno == errno.ENXIO:      # no data after offset
                return
            yield offset, size                # SEEK_DATA not supported: copy everything
            return
        yield start, end
        offset = end


def _nonzero_runs(chunk: bytes, zeros: bytes):
    """(start, end) offsets of the parts of `chunk` (a multiple of 4096 bytes long) that are not
    all zeros, at ZERO_GRAIN granularity."""
    run = None
    for at in range(0, len(chunk), ZERO_GRAIN):
        piece_end = min(len(chunk), at + ZERO_GRAIN)
        if chunk[at:piece_end] == zeros[:piece_end - at]:
            if run is not None:
                yield run, at
                run = None
        elif run is None:
            run = at
    if run is not None:
        yield run, len(chunk)
