"""The NVMe controller's I/O doorbells served in C, on the vCPU's thread, without Python's
GIL or the machine's lock (native/nvme_doorbell.c, built into the SSD's libssd.so; it says
what it serves and what it hands to Python).

The controller (nvme.py) keeps its queues as Python objects. While the doorbells are served
in C, the C side holds the truth of the I/O queues' heads, tails and phases: the controller
takes the state (`take`) before it does anything, which stops the doorbells until it gives
the state back (`give`), armed or not. Python's objects are brought up to date at each take.
"""

from __future__ import annotations

import ctypes
import os

from imacpro.bus.mmio import NativeAccess
from imacpro.devices.apic_core import SEND_FIXED
from imacpro.t2 import xts

QUEUES = 17                            # the admin queue and 16 I/O queues
IRQ_NONE, IRQ_FIXED, IRQ_PYTHON = 0, 1, 2


class _Queue(ctypes.Structure):
    """native/nvme_doorbell.c's struct nvme_db_queue."""
    _fields_ = [("base", ctypes.c_uint64), ("size", ctypes.c_uint32),
                ("head", ctypes.c_uint32), ("tail", ctypes.c_uint32),
                ("cqid", ctypes.c_uint32), ("phase", ctypes.c_uint32),
                ("reserved", ctypes.c_uint32), ("irq", ctypes.c_int32),
                ("dest", ctypes.c_int32), ("vector", ctypes.c_int32), ("pad", ctypes.c_uint32)]


class State(ctypes.Structure):
    """native/nvme_doorbell.c's struct nvme_db_state."""
    _fields_ = [("armed", ctypes.c_int32), ("fd", ctypes.c_int32),
                ("decrypt", ctypes.c_void_p), ("ndecrypt", ctypes.c_uint64),
                ("encrypt", ctypes.c_void_p), ("nencrypt", ctypes.c_uint64),
                ("ram", ctypes.c_void_p), ("nram", ctypes.c_uint64),
                ("sectors", ctypes.c_uint64), ("sector_size", ctypes.c_uint32),
                ("nsid", ctypes.c_uint32), ("max_transfer", ctypes.c_uint32),
                ("write_cache", ctypes.c_uint32),
                ("bus", ctypes.c_void_p), ("send_fixed", ctypes.c_void_p),
                ("sq", _Queue * QUEUES), ("cq", _Queue * QUEUES),
                ("reads", ctypes.c_uint64), ("read_bytes", ctypes.c_uint64),
                ("writes", ctypes.c_uint64), ("write_bytes", ctypes.c_uint64)]


# Unicorn's MMIO write callback, as the C side calls Python's write with it.
SLOW_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint,
                              ctypes.c_uint64, ctypes.c_void_p)
SLOW_INTERRUPT = ctypes.CFUNCTYPE(None, ctypes.c_int)


def _bind():
    lib = xts.native_library()
    if lib is None or not hasattr(lib, "nvme_doorbell_new"):
        return None
    lib.nvme_doorbell_new.restype = ctypes.c_void_p
    lib.nvme_doorbell_new.argtypes = [SLOW_WRITE, SLOW_INTERRUPT]
    lib.nvme_doorbell_free.argtypes = [ctypes.c_void_p]
    lib.nvme_doorbell_take.argtypes = [ctypes.c_void_p, ctypes.POINTER(State)]
    lib.nvme_doorbell_give.argtypes = [ctypes.c_void_p, ctypes.POINTER(State)]
    lib.nvme_doorbell_served.restype = ctypes.c_uint64
    lib.nvme_doorbell_served.argtypes = [ctypes.c_void_p]
    return lib


_lib = _bind()


class NativeDoorbells:
    """One controller's doorbells in C. `write(offset, size, value)` is the controller's
    doorbell write in Python (offset from the doorbells' start), `interrupt(cqid)` its
    completion interrupt: the C side calls them, without the machine's lock, for what it
    hands over. `fd` and `contexts` (decrypt, encrypt) are the store's, for the C side's
    use alone: the descriptor is duplicated, so it stays valid as long as this object."""

    def __init__(self, write, interrupt, fd: int, contexts, bus=None):
        self._slow_write = SLOW_WRITE(lambda _uc, offset, size, value, _opaque:
                                      write(offset, size, value))
        self._slow_interrupt = SLOW_INTERRUPT(interrupt)
        self.handle = _lib.nvme_doorbell_new(self._slow_write, self._slow_interrupt)
        if not self.handle:
            raise MemoryError("the NVMe doorbells' state")
        self.state = State()
        self.holder: int | None = None   # the thread that took the state (threading ident)
        self.fd = os.dup(fd)
        self.decrypt, self.encrypt = contexts
        self.bus = bus                 # devices/apic_core.py's ApicCoreBus, or None
        self.access = NativeAccess(
            ctypes.cast(_lib.nvme_doorbell_mmio_read, ctypes.c_void_p).value,
            ctypes.cast(_lib.nvme_doorbell_mmio_write, ctypes.c_void_p).value, self.handle)
        # The wiring, once: each take hands it back with the rest of the state.
        s = self.take()
        s.fd = self.fd
        s.decrypt, s.ndecrypt = ctypes.addressof(self.decrypt), len(self.decrypt)
        s.encrypt, s.nencrypt = ctypes.addressof(self.encrypt), len(self.encrypt)
        if bus is not None:
            s.bus, s.send_fixed = bus.address, SEND_FIXED
        self.give()

    @classmethod
    def available(cls) -> bool:
        return _lib is not None

    def take(self) -> State:
        """The state, the doorbells stopped until `give`."""
        _lib.nvme_doorbell_take(self.handle, ctypes.byref(self.state))
        return self.state

    def give(self) -> None:
        """`state` back to the C side (as it was filled in), the doorbells going again."""
        _lib.nvme_doorbell_give(self.handle, ctypes.byref(self.state))

    @property
    def served(self) -> int:
        """Doorbell writes the C side served itself."""
        return _lib.nvme_doorbell_served(self.handle)

    def __del__(self):
        if getattr(self, "handle", None):
            _lib.nvme_doorbell_free(self.handle)
            self.handle = None
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)
            self.fd = -1
