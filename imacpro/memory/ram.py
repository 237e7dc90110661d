"""Guest RAM: one sparse anonymous host mapping, shared by every vCPU.

MAP_NORESERVE lets a 256 GB machine run on a smaller host: the kernel commits host pages only
when the guest first touches them. Unicorn maps the same host memory into each vCPU
(`mem_map_ptr`), so all CPUs see one coherent RAM.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from array import array

from imacpro.memory.layout import RamRange, ram_ranges

MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux value; Python < 3.13 lacks it
PAGE = mmap.PAGESIZE
SCAN_CHUNK = 1 << 30      # mincore() is asked a GiB at a time (a byte per page of answer)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.mincore.restype = ctypes.c_int


class HostMemory:
    """`size` bytes of sparse host memory (zero until touched) that engines can map: RAM, or
    a device's memory such as the GPU's video memory."""

    def __init__(self, size: int):
        self.size = size
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                              | MAP_NORESERVE)
        self.host_address = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self.view = memoryview(self._map)

    def clear(self) -> None:
        """Every byte zero again, and the host's pages given back (MADV_DONTNEED on a private
        anonymous mapping): a reset machine holds no memory for what its last boot touched."""
        self._map.madvise(mmap.MADV_DONTNEED)

    def resident(self) -> list[tuple[int, int]]:
        """(host offset, length) runs of pages the host holds for the guest: what it touched
        (mincore(2); a page only read may count, and is zero). A 256 GB machine that touched
        2 GB answers with about 2 GB of runs, without reading the rest."""
        runs: list[tuple[int, int]] = []
        vector = (ctypes.c_ubyte * (SCAN_CHUNK // PAGE))()
        for chunk in range(0, self.size, SCAN_CHUNK):
            length = min(SCAN_CHUNK, self.size - chunk)
            if _libc.mincore(self.host_address + chunk, length, vector) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"mincore: {os.strerror(error)}")
            pages = bytes(vector[:length // PAGE])
            start = pages.find(1)
            while start >= 0:
                end = pages.find(0, start)
                end = len(pages) if end < 0 else end
                offset, size = chunk + start * PAGE, (end - start) * PAGE
                if runs and runs[-1][0] + runs[-1][1] == offset:
                    runs[-1] = (runs[-1][0], runs[-1][1] + size)
                else:
                    runs.append((offset, size))
                start = pages.find(1, end)
        return runs


class Ram(HostMemory):
    """The machine's RAM: host memory at the guest-physical ranges of memory/layout.py."""

    def __init__(self, size: int):
        super().__init__(size)
        self.ranges: list[RamRange] = ram_ranges(size)

    def _host_offset(self, guest: int, length: int) -> int | None:
        for r in self.ranges:
            if r.guest_start <= guest and guest + length <= r.guest_start + r.size:
                return r.host_offset + guest - r.guest_start
        return None

    def contains(self, guest: int, length: int = 1) -> bool:
        return self._host_offset(guest, length) is not None

    def window(self, guest: int, length: int) -> memoryview | None:
        """A writable view of [guest, guest + length), or None if any of it is not RAM (how
        devices reach memory by DMA: no copy, and nothing outside RAM)."""
        offset = self._host_offset(guest, length)
        return None if offset is None else self.view[offset:offset + length]

    def read(self, guest: int, length: int) -> bytes:
        offset = self._host_offset(guest, length)
        if offset is None:
            raise ValueError(f"RAM read outside RAM: {guest:#x}+{length:#x}")
        return bytes(self.view[offset:offset + length])

    def write(self, guest: int, data: bytes) -> None:
        offset = self._host_offset(guest, len(data))
        if offset is None:
            raise ValueError(f"RAM write outside RAM: {guest:#x}+{len(data):#x}")
        self.view[offset:offset + len(data)] = data

    def map_into(self, uc, perms: int) -> None:
        """Back this RAM's guest ranges in a Unicorn instance with the shared host pages."""
        for r in self.ranges:
            uc.mem_map_ptr(r.guest_start, r.size, perms, self.host_address + r.host_offset)


class DmaError(Exception):
    """A device's DMA names memory it may not reach: `kind` is "outside" (not all RAM) or
    "misaligned" (a page after the first that does not start a page)."""

    def __init__(self, kind: str, address: int):
        super().__init__(f"DMA {kind}: {address:#x}")
        self.kind, self.address = kind, address


class GuestPages:
    """The guest pages one DMA transfer covers, as a scatter list names them (an NVMe
    command's PRPs): `pages[0]` may start inside its page, every later one starts a page,
    `length` bytes in all. `pages` is an array('Q'): native code reads it where it is
    (t2/storage.py's `read_into` and `write_from`). Pages are of 4 KiB whatever the host's
    page size (NVMe's memory page size, as CC.MPS sets it)."""

    PAGE = 4096

    def __init__(self, ram: Ram, pages: array, length: int):
        self.ram, self.pages, self.length = ram, pages, length

    def views(self) -> list[memoryview]:
        """Writable views of the pages, adjacent ones merged, checked page by page in order
        as native/ssd_dma.c checks them."""
        segments: list[list[int]] = []
        left = self.length
        for index, address in enumerate(self.pages):
            if not left:
                break
            if index and address % self.PAGE:
                raise DmaError("misaligned", address)
            chunk = min(self.PAGE - address % self.PAGE, left)
            if not self.ram.contains(address, chunk):
                raise DmaError("outside", address)
            if segments and sum(segments[-1]) == address:
                segments[-1][1] += chunk
            else:
                segments.append([address, chunk])
            left -= chunk
        if left:
            raise DmaError("misaligned", self.pages[-1] if self.pages else 0)
        return [self.ram.window(address, size) for address, size in segments]
