"""AES-256-XTS over runs of sectors: each sector one data unit, its LBA (little-endian) the tweak.

Two implementations, byte for byte the same (tests/t2/test_xts.py checks one against the other):
  native    `native/xts_sectors.c`, built by make into `_lib/libssd.so`: one call per request
            into libgcrypt's AES-256-XTS, which only sets each sector's tweak. ~10 GB/s on
            one core of the development host (VAES; OpenSSL 3.0's, without it, ~6 GB/s).
            A device's DMA (`dma`) splits a large request over the host's cores
            (native/ssd_pool.c), each part with a context of its own.
  portable  the `cryptography` library: a cipher context per sector. Its ~6 µs setup per
            4 KiB sector (more than the AES itself) caps it near 600 MB/s on one core.
The store uses native when it is built and portable otherwise. Decryption leaves all-zero
sectors alone: the store keeps unwritten sectors as zeros (see storage.py).
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

LIBRARY = Path(__file__).with_name("_lib") / "libssd.so"
# native/ssd_dma.c's statuses (its enum), which storage.py turns into exceptions.
(DMA_OK, DMA_OUTSIDE_RAM, DMA_MISALIGNED, DMA_IO_ERROR, DMA_SHORT_IMAGE, DMA_CRYPTO,
 DMA_NO_MEMORY) = (0, -1, -2, -3, -4, -5, -6)


def _load_native():
    try:
        lib = ctypes.CDLL(str(LIBRARY), use_errno=True)
    except OSError:
        return None
    lib.xts_new.restype = ctypes.c_void_p
    lib.xts_new.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.xts_free.argtypes = [ctypes.c_void_p]
    lib.xts_sectors.restype = ctypes.c_int
    lib.xts_sectors.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                                ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    for dma in (lib.ssd_dma_read, lib.ssd_dma_write):      # storage.py's read_into/write_from
        dma.restype = ctypes.c_int
        dma.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p,
                        ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                        ctypes.c_size_t, ctypes.c_size_t]
    for count in (lib.ssd_pool_parts, lib.ssd_pool_helpers, lib.ssd_pool_help):
        count.restype = ctypes.c_int
        count.argtypes = []
    return lib


def pool_help_address() -> int | None:
    """native/ssd_pool.c's `ssd_pool_help`, for threads that help the SSD's pool while they
    wait for work of their own (the run loop's idle workers); None when not built."""
    if _native is None:
        return None
    return ctypes.cast(_native.ssd_pool_help, ctypes.c_void_p).value


_native = _load_native()


class SectorCipher:
    def __init__(self, key: bytes, sector_size: int, native: bool | None = None):
        self.sector_size = sector_size
        self.native = (_native is not None) if native is None else native
        if self.native and _native is None:
            raise RuntimeError(f"{LIBRARY} is not built (make builds it)")
        self._key = key
        self._aes = algorithms.AES(key)
        self._local = threading.local()   # cipher contexts are per thread

    def encrypt(self, buf: bytearray, lba: int) -> None:
        self._run(buf, lba, encrypt=True)

    def decrypt(self, buf: bytearray, lba: int) -> None:
        self._run(buf, lba, encrypt=False)

    def _run(self, buf: bytearray, lba: int, encrypt: bool) -> None:
        count = len(buf) // self.sector_size
        if self.native:
            address = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
            if _native.xts_sectors(self._context(encrypt), address, lba, count,
                                   self.sector_size, 0 if encrypt else 1):
                raise RuntimeError("AES-XTS failed in libgcrypt")
            return
        sector, zero = self.sector_size, bytes(self.sector_size)
        cipher = self._portable_cipher()
        with memoryview(buf) as view:
            for index, start in enumerate(range(0, count * sector, sector)):
                if not encrypt and buf.startswith(zero, start):
                    continue
                # One Cipher per thread, given a new mode (the tweak) per sector: the key and
                # algorithm never change, so the library's re-validation is not needed.
                cipher.mode = modes.XTS((lba + index).to_bytes(16, "little"))
                context = cipher.encryptor() if encrypt else cipher.decryptor()
                chunk = bytes(view[start:start + sector])
                view[start:start + sector] = context.update(chunk)

    def dma(self, fd: int, lba: int, pages, write: bool) -> int:
        """Native only: the sectors from `lba` of the image `fd` read into `pages` (a
        memory.ram.GuestPages) and decrypted there, or gathered from them, encrypted and
        written; native/ssd_dma.c's status (DMA_OK or another of the DMA_ statuses above)."""
        address, count = pages.pages.buffer_info()
        ranges = ram_ranges(pages.ram)
        call = _native.ssd_dma_write if write else _native.ssd_dma_read
        contexts = self.part_contexts(write)
        return call(fd, lba, self.sector_size, contexts, len(contexts), ranges, len(ranges),
                    address, count, pages.length)

    def _context(self, encrypt: bool) -> int:
        name = "encryptor" if encrypt else "decryptor"
        context = getattr(self._local, name, None)
        if context is None:
            context = _NativeContext(self._key, encrypt)
            setattr(self._local, name, context)
        return context.handle

    def part_contexts(self, encrypt: bool) -> ctypes.Array:
        """This thread's contexts for the parts a request may be split into (the helpers of
        native/ssd_pool.c run one part each, and a context is never shared by threads):
        this thread's own first."""
        name = "encryptors" if encrypt else "decryptors"
        contexts = getattr(self._local, name, None)
        if contexts is None:
            contexts = self.new_part_contexts(encrypt, first=self._context(encrypt))
            setattr(self._local, name, contexts)
        return contexts

    def new_part_contexts(self, encrypt: bool, first: int | None = None) -> ctypes.Array:
        """Contexts for the parts of requests made by one thread at a time, whichever it is
        (the SSD's doorbells in C, nvme_doorbell.py), the caller's own: after `first`, if
        given, a new context for each other part."""
        handles = [] if first is None else [first]
        owners = [_NativeContext(self._key, encrypt)
                  for _ in range(_native.ssd_pool_parts() - len(handles))]
        handles += [owner.handle for owner in owners]
        contexts = (ctypes.c_void_p * len(handles))(*handles)
        contexts.owners = owners                # freed with the array
        return contexts

    def _portable_cipher(self) -> Cipher:
        cipher = getattr(self._local, "cipher", None)
        if cipher is None:
            cipher = self._local.cipher = Cipher(self._aes, modes.XTS(bytes(16)))
        return cipher


class _RamRange(ctypes.Structure):
    _fields_ = [("guest_start", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("host", ctypes.c_void_p)]


_ranges_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ram_ranges(ram) -> ctypes.Array:
    """The RAM's guest ranges and host addresses, as native/ssd_dma.c reads them (made once
    per RAM: its ranges are fixed when it is made)."""
    ranges = _ranges_of.get(ram)
    if ranges is None:
        ranges = _ranges_of[ram] = (_RamRange * len(ram.ranges))(*[
            _RamRange(r.guest_start, r.size, ram.host_address + r.host_offset)
            for r in ram.ranges])
    return ranges


def native_library():
    """libssd.so (ctypes), or None when it is not built (devices/nvme_io.py binds its own
    functions)."""
    return _native


class _NativeContext:
    def __init__(self, key: bytes, encrypt: bool):
        self.handle = _native.xts_new(key, 1 if encrypt else 0)
        if not self.handle:
            raise RuntimeError("libgcrypt could not set up AES-256-XTS")

    def __del__(self):
        if getattr(self, "handle", None):
            _native.xts_free(self.handle)
            self.handle = None
