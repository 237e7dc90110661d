"""The NVMe controller's I/O fast path: an I/O submission queue's plain reads and writes run
in C (native/nvme_io.c, built into the SSD's libssd.so), their data moved by the store's
native path and their completions posted there.

The controller (nvme.py) calls `run` from its doorbell before it looks at a command itself:
the C side runs commands from the queue's head while each is the plain case and stops at the
first that is not (an admin-like opcode, an error to report, a write that needs a flush, a
full completion queue). The controller runs that one in Python, with its status, and calls
`run` again. Queue state stays the controller's: it is copied in and out around the call.
Only for a store whose sectors native code may move (`EncryptedStore.native_io`).
"""

from __future__ import annotations

import ctypes

from imacpro.t2 import xts


class _NvmeIo(ctypes.Structure):
    """native/nvme_io.c's struct nvme_io."""
    _fields_ = [("fd", ctypes.c_int32), ("sector_size", ctypes.c_uint32),
                ("sectors", ctypes.c_uint64),
                ("decrypt", ctypes.c_void_p), ("ndecrypt", ctypes.c_uint64),
                ("encrypt", ctypes.c_void_p), ("nencrypt", ctypes.c_uint64),
                ("ram", ctypes.c_void_p), ("nram", ctypes.c_uint64),
                ("nsid", ctypes.c_uint32), ("max_transfer", ctypes.c_uint32),
                ("write_cache", ctypes.c_uint32), ("sqid", ctypes.c_uint32),
                ("sq_base", ctypes.c_uint64),
                ("sq_size", ctypes.c_uint32), ("sq_head", ctypes.c_uint32),
                ("sq_tail", ctypes.c_uint32), ("sq_entry_size", ctypes.c_uint32),
                ("cq_base", ctypes.c_uint64),
                ("cq_size", ctypes.c_uint32), ("cq_head", ctypes.c_uint32),
                ("cq_tail", ctypes.c_uint32), ("cq_phase", ctypes.c_uint32),
                ("cq_reserved", ctypes.c_uint32),
                ("reads", ctypes.c_uint64), ("read_bytes", ctypes.c_uint64),
                ("writes", ctypes.c_uint64), ("write_bytes", ctypes.c_uint64),
                ("posted", ctypes.c_uint64)]


def _bind():
    lib = xts.native_library()
    if lib is None or not hasattr(lib, "nvme_io_run"):
        return None
    lib.nvme_io_run.restype = ctypes.c_int
    lib.nvme_io_run.argtypes = [ctypes.POINTER(_NvmeIo)]
    return lib.nvme_io_run


_run = _bind()


class FastIo:
    """The fast path of one controller over `store`, for namespace `nsid` of `sectors`
    LBAs of `sector_size` bytes, commands of at most `max_transfer` bytes."""

    def __init__(self, store, nsid: int, sectors: int, sector_size: int, max_transfer: int):
        self.store = store
        self._io = _NvmeIo(nsid=nsid, sectors=sectors, sector_size=sector_size,
                           max_transfer=max_transfer)

    @classmethod
    def for_store(cls, store, **geometry) -> FastIo | None:
        """The fast path, or None: not built, or a store native code cannot move."""
        if _run is None or not hasattr(store, "native_io"):
            return None
        return cls(store, **geometry)

    def run(self, sq, cq, ram, write_cache: bool, stats: dict) -> int:
        """Run `sq`'s plain commands from its head into `cq` (nvme.py's queues, updated) and
        count their transfers in `stats` (the controller's); the completions posted (0 too
        when the store cannot take native I/O now: the caller runs the command in Python)."""
        native = self.store.native_io()
        if native is None:
            return 0
        io = self._io
        io.fd, decrypt, encrypt = native
        io.decrypt, io.ndecrypt = ctypes.addressof(decrypt), len(decrypt)
        io.encrypt, io.nencrypt = ctypes.addressof(encrypt), len(encrypt)
        ranges = xts.ram_ranges(ram)
        io.ram, io.nram = ctypes.addressof(ranges), len(ranges)
        io.write_cache = int(write_cache)
        io.sqid, io.sq_base, io.sq_size, io.sq_entry_size = sq.qid, sq.base, sq.size, \
            sq.entry_size
        io.sq_head, io.sq_tail = sq.head, sq.tail
        io.cq_base, io.cq_size, io.cq_head, io.cq_tail = cq.base, cq.size, cq.head, cq.tail
        io.cq_phase, io.cq_reserved = cq.phase, cq.reserved
        io.reads = io.read_bytes = io.writes = io.write_bytes = io.posted = 0
        _run(ctypes.byref(io))
        sq.head, cq.tail, cq.phase = io.sq_head, io.cq_tail, io.cq_phase
        if io.posted:
            stats["reads"] += io.reads
            stats["read_units"] += io.read_bytes
            stats["writes"] += io.writes
            stats["write_units"] += io.write_bytes
        return io.posted
