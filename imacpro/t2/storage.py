"""The SSD: sectors encrypted by the T2 with AES-XTS, under a media key only this chip can unwrap.

Apple Platform Security ("Encryption and Data Protection", "FileVault on a Mac with the T2"): the
SSD is paired cryptographically with the T2, which encrypts every block with AES-XTS. Here:
- each 4096-byte sector is one XTS data unit: AES-256-XTS (a 512-bit key: two AES-256 keys),
  tweak = the LBA as 16 bytes little-endian (the IEEE 1619 data-unit sequence number);
- the media key is 64 random bytes, kept on disk only wrapped by the Secure Enclave
  (`sep.wrap("ssd-media", key)`, AES-KW under a key derived from the UID and the effaceable
  key), so another chip cannot unwrap it and `sep.erase()` makes it unrecoverable at once.

Files (in the bundle's t2/ directory):
    ssd.meta   TOML, replaced atomically (files.write_toml):
                 format = 1, owner_ecid = "0x…" (16 hex digits), capacity = bytes,
                 sector_size = 4096, media_key = hex(wrapped key),
                 mac = hex(sep.mac("ssd-meta", the fields above as "name=value" lines))
    ssd.img    exactly `capacity` bytes, sparse: sector n is at offset n * 4096 and holds its
               ciphertext, or 4096 zero bytes (a hole) if never written or trimmed.

Design reasons:
- Unwritten reads as zeros. XTS decrypts zeros to noise, so a stored all-zero sector means
  "unwritten" and reads as plaintext zeros without decryption. This is safe: for one key and
  LBA exactly one plaintext encrypts to 4096 zero bytes; a guest would have to know the media
  key to find it (for random data the chance is 2**-32768). Holes keep the image sparse: host
  disk use follows data written, and trim punches holes (FALLOC_FL_PUNCH_HOLE).
- Crash safety: ssd.meta is replaced atomically; `flush` is fsync, so whatever was written before
  a flush survives a kill or power loss. `create` replaces the image first (an empty sparse file,
  renamed into place), then the metadata: a crash in between leaves the old key over an empty
  disk (reads as zeros), never an image read with the wrong key. A torn image (size ≠ capacity)
  or metadata that does not parse or authenticate is DamagedImage, never garbage data. XTS has
  no integrity check (nor has the real SSD): a sector torn by a crash before its flush reads as
  noise.
- Speed: each request is one system call into one buffer, en- or decrypted in place by
  xts.SectorCipher (one call into libgcrypt per request when the native helper is built); a
  request inside a hole (SEEK_DATA) is answered without reading. A device's DMA
  (`read_into`, `write_from`) goes to and from the guest's pages in one call of the native
  helper (native/ssd_dma.c): read straight into them and decrypted there. An instance may be
  used from several threads.
"""

from __future__ import annotations

import ctypes
import errno
import operator
import os
import tempfile
from pathlib import Path
from typing import Self

from imacpro.errors import UserError
from imacpro.files import OwnedFd, fsync_dir, read_toml, write_toml
from imacpro.memory.ram import DmaError, GuestPages
from imacpro.t2.sep import KeyUnwrapError
from imacpro.t2 import xts
from imacpro.t2.xts import SectorCipher

META_FILE = "ssd.meta"
IMAGE_FILE = "ssd.img"
FORMAT = 1
MEDIA_KEY_BYTES = 64            # AES-256-XTS: two 256-bit keys
KEY_PURPOSE = "ssd-media"
MAC_PURPOSE = "ssd-meta"
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02   # <linux/falloc.h>

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class PairingError(UserError):
    """The SSD belongs to another T2 (or its key cannot be unwrapped by this one)."""


class DamagedImage(UserError):
    """ssd.img or ssd.meta is torn, truncated, altered or unreadable."""


class EncryptedStore(OwnedFd):
    SECTOR_SIZE = 4096

    def __init__(self, directory: Path, fd: int, capacity: int, media_key: bytes):
        self.directory = directory
        self.capacity = capacity
        self.sectors = capacity // self.SECTOR_SIZE
        self._fd = fd
        self._xts = SectorCipher(media_key, self.SECTOR_SIZE)

    def __repr__(self) -> str:
        return f"EncryptedStore({str(self.directory)!r}, {self.capacity} bytes)"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- create / open --------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, capacity: int, sep) -> EncryptedStore:
        """A new, empty SSD with a new media key; any old image and key are replaced."""
        if capacity <= 0 or capacity % cls.SECTOR_SIZE:
            raise ValueError(f"SSD capacity {capacity} is not a positive multiple of "
                             f"{cls.SECTOR_SIZE}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{IMAGE_FILE}.", suffix=".new", dir=directory)
        try:
            os.ftruncate(fd, capacity)    # sparse: no blocks allocated
            os.fsync(fd)
            os.replace(tmp, directory / IMAGE_FILE)
        except BaseException:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        try:
            fsync_dir(directory)
            media_key = os.urandom(MEDIA_KEY_BYTES)
            fields = {"format": FORMAT, "owner_ecid": f"0x{sep.ecid:016X}",
                      "capacity": capacity, "sector_size": cls.SECTOR_SIZE,
                      "media_key": sep.wrap(KEY_PURPOSE, media_key).hex()}
            mac = sep.mac(MAC_PURPOSE, _mac_input(fields)).hex()
            write_toml(directory / META_FILE, {**fields, "mac": mac})
        except BaseException:
            os.close(fd)
            raise
        return cls(directory, fd, capacity, media_key)

    @classmethod
    def open(cls, directory: Path, sep) -> EncryptedStore:
        directory = Path(directory)
        meta = directory / META_FILE
        try:
            raw = read_toml(meta)
        except UserError as exc:
            raise DamagedImage(str(exc)) from None
        try:
            fields = {"format": raw["format"], "owner_ecid": raw["owner_ecid"],
                      "capacity": raw["capacity"], "sector_size": raw["sector_size"],
                      "media_key": raw["media_key"]}
            owner, tag = int(fields["owner_ecid"], 16), bytes.fromhex(raw["mac"])
            wrapped, capacity = bytes.fromhex(fields["media_key"]), fields["capacity"]
            if fields["format"] != FORMAT:
                raise ValueError(f"unknown format {fields['format']!r}")
            if fields["sector_size"] != cls.SECTOR_SIZE or type(capacity) is not int \
                    or capacity <= 0 or capacity % cls.SECTOR_SIZE:
                raise ValueError("bad capacity or sector size")
        except (KeyError, ValueError, TypeError) as exc:
            raise DamagedImage(f"damaged machine bundle: {meta}: a field is missing or invalid "
                               f"({exc})") from None
        if owner != sep.ecid:
            raise PairingError(f"the SSD in {directory} is paired with the T2 of ECID "
                               f"0x{owner:016X}, not with this T2 (ECID 0x{sep.ecid:016X})")
        if not sep.verify_mac(MAC_PURPOSE, _mac_input(fields), tag):
            raise DamagedImage(f"damaged machine bundle: {meta} does not authenticate with this "
                               f"T2 (ECID 0x{sep.ecid:016X}): altered, or written before the "
                               "T2 was erased")
        try:
            media_key = sep.unwrap(KEY_PURPOSE, wrapped)
        except KeyUnwrapError:
            raise PairingError(f"the SSD's media key in {meta} (owner ECID 0x{owner:016X}) "
                               f"cannot be unwrapped by this T2 (ECID 0x{sep.ecid:016X})") \
                from None
        image = directory / IMAGE_FILE
        try:
            fd = os.open(image, os.O_RDWR)
        except OSError as exc:
            raise DamagedImage(f"damaged machine bundle: cannot open {image}: "
                               f"{exc.strerror}") from None
        size = os.fstat(fd).st_size
        if size != capacity:
            os.close(fd)
            raise DamagedImage(f"damaged machine bundle: {image} is {size} bytes, not the "
                               f"SSD's capacity of {capacity} (torn or truncated)")
        return cls(directory, fd, capacity, media_key)

    # --- I/O ------------------------------------------------------------------------------

    def read(self, lba: int, count: int) -> bytearray:
        """The plaintext of `count` sectors, in a new bytearray the caller owns (copying it into
        a bytes object would cost as much as decrypting it: a second fresh 1 MiB buffer)."""
        fd, sector = self._request(lba, count), self.SECTOR_SIZE
        size, offset = count * sector, lba * sector
        if self._hole(fd, offset, size):
            return bytearray(size)     # never written or trimmed: no I/O, no decryption
        buf = bytearray(size)
        with memoryview(buf) as view:
            done = 0
            while done < size:
                got = os.preadv(fd, [view[done:]], offset + done)
                if not got:
                    raise DamagedImage(f"damaged machine bundle: {self.directory / IMAGE_FILE} "
                                       "ended early (truncated while open)")
                done += got
        self._xts.decrypt(buf, lba)     # all-zero sectors (unwritten) stay zeros
        return buf

    def write(self, lba: int, data: bytes | list) -> None:
        """`data`: one buffer, or a list of buffers written one after another (a device's
        scattered DMA pages: gathered in the one copy encryption needs anyway)."""
        sector = self.SECTOR_SIZE
        if isinstance(data, list):
            buf = bytearray().join(data)
        else:
            with memoryview(data) as source, source.cast("B") as plain:
                buf = bytearray(plain)
        size = len(buf)
        if size % sector:
            raise ValueError(f"write of {size} bytes: not a multiple of {sector}")
        fd, offset = self._request(lba, size // sector), lba * sector
        self._xts.encrypt(buf, lba)
        with memoryview(buf) as out:
            done = 0
            while done < size:
                written = os.pwrite(fd, out[done:], offset + done)
                if not written:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                                  str(self.directory / IMAGE_FILE))
                done += written

    def read_into(self, lba: int, pages: GuestPages) -> None:
        """The plaintext of the sectors from `lba` into a device's DMA pages (`pages.length`
        bytes, whole sectors): read straight into them and decrypted there when the native
        helper is built (native/ssd_dma.c), else through `read`. DmaError, before any I/O, if
        the pages are not all RAM."""
        count = self._sectors_in(pages.length)
        fd = self._request(lba, count)
        if self._xts.native:
            self._dma_status(self._xts.dma(fd, lba, pages, write=False), pages)
            return
        views = pages.views()
        at = 0
        with memoryview(self.read(lba, count)) as data:
            for view in views:
                view[:] = data[at:at + len(view)]
                at += len(view)

    def write_from(self, lba: int, pages: GuestPages) -> None:
        """The sectors from `lba` written with a device's DMA pages (whole sectors),
        gathered and encrypted in one buffer; the pages are not changed. DmaError, before
        any I/O, if they are not all RAM."""
        fd = self._request(lba, self._sectors_in(pages.length))
        if self._xts.native:
            self._dma_status(self._xts.dma(fd, lba, pages, write=True), pages)
            return
        self.write(lba, pages.views())

    def _sectors_in(self, length: int) -> int:
        if length % self.SECTOR_SIZE:
            raise ValueError(f"{length} bytes: not a multiple of {self.SECTOR_SIZE}")
        return length // self.SECTOR_SIZE

    def _dma_status(self, status: int, pages: GuestPages) -> None:
        """native/ssd_dma.c's status as what the Python path raises."""
        if status == xts.DMA_OK:
            return
        if status in (xts.DMA_OUTSIDE_RAM, xts.DMA_MISALIGNED):
            kind = "outside" if status == xts.DMA_OUTSIDE_RAM else "misaligned"
            raise DmaError(kind, pages.pages[0] if len(pages.pages) else 0)
        if status == xts.DMA_IO_ERROR:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(self.directory / IMAGE_FILE))
        if status == xts.DMA_SHORT_IMAGE:
            raise DamagedImage(f"damaged machine bundle: {self.directory / IMAGE_FILE} "
                               "ended early (truncated while open)")
        if status == xts.DMA_NO_MEMORY:
            raise MemoryError("no host memory for the SSD's transfer")
        raise RuntimeError("AES-XTS failed in libgcrypt")

    def trim(self, lba: int, count: int) -> None:
        """Deallocate: the sectors read as zeros and their host blocks are freed."""
        fd = self._request(lba, count)
        if not count:
            return
        offset, length = lba * self.SECTOR_SIZE, count * self.SECTOR_SIZE
        if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length):
            err = ctypes.get_errno()
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(err, os.strerror(err))
            for start in range(0, length, 1 << 20):   # no holes here: zeros read as unwritten
                os.pwrite(fd, bytes(min(1 << 20, length - start)), offset + start)

    def flush(self) -> None:
        """Everything written before this call survives a crash."""
        os.fsync(self._checked_fd())

    def native_io(self) -> tuple[int, ctypes.Array, ctypes.Array] | None:
        """What native code that moves this store's sectors itself (devices/nvme_io.py)
        needs: the image's file descriptor and this thread's decryption and encryption
        contexts (native/ssd_dma.c's); None when the native helper is not in use or the
        store is closed."""
        if not self.native_open:
            return None
        return self._fd, self._xts.part_contexts(False), self._xts.part_contexts(True)

    @property
    def native_open(self) -> bool:
        """Whether native code may move this store's sectors now: the native helper is in
        use and the store is open."""
        return self._xts.native and self._fd >= 0

    def native_contexts(self) -> tuple[ctypes.Array, ctypes.Array] | None:
        """Decryption and encryption contexts for native code that moves this store's
        sectors on whichever thread calls it, one thread at a time (the SSD's doorbells in
        C, devices/nvme_doorbell.py); None when the native helper is not in use."""
        if not self._xts.native:
            return None
        return self._xts.new_part_contexts(False), self._xts.new_part_contexts(True)

    # --- inside ---------------------------------------------------------------------------

    def _checked_fd(self) -> int:
        if self._fd < 0:
            raise ValueError("the SSD store is closed")
        return self._fd

    @staticmethod
    def _hole(fd: int, offset: int, size: int) -> bool:
        """Whether the file holds no data in [offset, offset + size) (SEEK_DATA, lseek(2))."""
        try:
            return os.lseek(fd, offset, os.SEEK_DATA) >= offset + size
        except OSError as exc:
            return exc.errno == errno.ENXIO   # no data after offset; else (EINVAL): just read

    def _request(self, lba: int, count: int) -> int:
        lba, count = operator.index(lba), operator.index(count)
        if not (0 <= lba and 0 <= count and lba + count <= self.sectors):
            raise ValueError(f"sectors {lba}..{lba + count - 1} are outside the SSD's "
                             f"{self.sectors} sectors")
        return self._checked_fd()


def _mac_input(fields: dict) -> bytes:
    return "".join(f"{name}={fields[name]}\n" for name in
                   ("format", "owner_ecid", "capacity", "sector_size", "media_key")).encode()
