"""Apple's ANS2 NVMe controller (PCI 106b:2005), the iMac Pro's SSD behind the T2.

An NVMe 1.1 controller as Linux's nvme driver uses it (NVM Express Base 1.4 for the register
and queue formats), over the T2's encrypted store (t2/storage.py): what the guest writes is
encrypted there, by this machine's media key.

Its PCI function is the T2's function 0 (02:00.0 behind the PCH's root port 00:1c.0), as on the
real machine: subsystem 106b:1800, BAR0 4 MiB 64-bit prefetchable (the NVMe registers in its
first 16 KiB; the rest reads 0), BAR2 512 KiB and BAR4 64 KiB (Apple's other ANS2 register
spaces, which no OS driver of ours uses: not modelled, they read 0), MSI offering 8 vectors,
no MSI-X; a PCI Express endpoint on a 8 GT/s x4 link.

BAR0:

    | off   | register                                                                    |
    |-------|-----------------------------------------------------------------------------|
    | 00    | CAP (RO, 8): MQES 127, CQR 1, TO 20 (10 s), DSTRD 0, CSS NVM, MPSMIN/MAX 4 KiB|
    | 08    | VS (RO): 1.1.0                                                              |
    | 0C/10 | INTMS / INTMC: mask / unmask pin and MSI vectors (write 1s; read the mask)  |
    | 14    | CC: EN 0, CSS 6:4, MPS 10:7 (only 0), AMS 13:11, SHN 15:14, IOSQES, IOCQES  |
    | 1C    | CSTS (RO): RDY 0, CFS 1, SHST 3:2                                           |
    | 20    | NSSR: subsystem reset not supported (reads 0, writes ignored)               |
    | 24    | AQA: ASQS 11:0, ACQS 27:16 (entries - 1)                                    |
    | 28/30 | ASQ / ACQ (8, 4 KiB aligned)                                                |
    | 1000  | doorbells: SQ y tail at 1000 + 8y, CQ y head at 1004 + 8y (y = 0..16)       |
Registers take 4- and 8-byte accesses (8-byte ones on CAP, ASQ, ACQ); other widths and
offsets read 0 and ignore writes.

Apple's quirks, and Linux's answers to them (drivers/nvme/host/pci.c, entry for 106b:2005):
  - 128_BYTES_SQES: I/O submission queue entries are 128 bytes (the command in the first 64),
    whatever CC.IOSQES says; the admin queue's are 64. Modelled: the driver sizes its I/O
    queues for 128-byte entries and this controller reads them so.
  - SINGLE_VECTOR: the real controller delivers only interrupt vector 0 correctly; Linux uses
    one vector for every queue. This model delivers any vector MSI grants; Linux asks for one.
  - SHARED_TAGS / SKIP_CID_GEN: command IDs must be unique across the admin and I/O queues
    and below the queue depth. The controller only echoes them (a command waiting for its
    fsync keeps its ID until it completes); nothing to model. For this quirk Linux gives the
    controller one I/O queue (nvme_max_io_queues), to which every CPU submits.
  - Identify: CNS 0 (namespace), 1 (controller) and 2 (active namespace list); others are
    Invalid Field. One namespace (NSID 1), 4096-byte LBAs, capacity = the store's.

Commands. Admin: Delete/Create I/O SQ and CQ, Get Log Page (error, SMART/health, firmware
slot), Identify, Abort, Set/Get Features, Asynchronous Event Request (error events for invalid
doorbell writes). NVM: Flush, Write (FUA), Read, Write Zeroes, Dataset Management (deallocate).
Data moves by PRPs (no SGLs); queues must be physically contiguous (CAP.CQR). A read's or
write's PRPs become one memory.ram.GuestPages (the page list as an array), which the store
reads into or writes from in one native call (native/ssd_dma.c; t2/storage.py). With the
store's native path, an I/O queue's plain reads and writes do not come to Python at all: the
doorbell hands the queue to native/nvme_io.c (nvme_io.py), which runs them and posts their
completions, and stops at the first command that is not plain; that one runs here. In a
machine the I/O queues' doorbells themselves are C (`serve_doorbells_in_c`, nvme_doorbell.py):
the vCPU that writes one runs nvme_io.c and sends the completion's MSI without Python, the
GIL or the machine's lock, and hands this class what it does not serve; every entry here
takes the queues' state from the C side first and gives it back after (`_held`).

Timing: commands run when their doorbell is written, completions are posted and the interrupt
sent before the write returns: the guest sees a very fast device (no modelled latency). The
exception is a command that must reach stable storage (Flush, a write with FUA, any write
with the volatile write cache off): its data is written at once, the host's fsync runs on a
worker thread, and its completion is posted from the run loop once the fsync is done (a clock
timer looks every 200 µs). A host disk busy with other work can take half a second to fsync;
the vCPUs run on meanwhile instead of all waiting, as QEMU's thread pool does it. The
completion's CQ slot is reserved when the command is taken, so later commands cannot fill
its queue first. Shutdown notification, a controller reset and `save()` wait for the fsyncs
in flight (`settle()`).

A hostile guest: every field of every entry is checked; a bad queue entry, PRP, LBA or
doorbell gets an NVMe status (or an asynchronous error event), never an exception out of
the device. DMA goes only to RAM, only while bus mastering is on. A full completion queue
stops the submission queues that feed it until the host frees a slot.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import hashlib
import logging
import struct
import threading
from array import array
from dataclasses import dataclass, field

from imacpro.bus.msi import Msi
from imacpro.bus.pci import MemoryBar, PciFunction, Unmodelled
from imacpro.bus.pcie import ENDPOINT, pcie_capability
from imacpro.clock import Clock
from imacpro.devices import _state
from imacpro.devices.apic_bus import fixed_message
from imacpro.devices.contract import StateError
from imacpro.devices.nvme_doorbell import IRQ_FIXED, IRQ_NONE, IRQ_PYTHON, NativeDoorbells
from imacpro.devices.nvme_io import FastIo
from imacpro.irq import IrqLine
from imacpro.memory.ram import DmaError, GuestPages
from imacpro.t2 import xts

log = logging.getLogger(__name__)

# --- identity -----------------------------------------------------------------------------
VENDOR_APPLE, DEVICE_ANS2 = 0x106B, 0x2005
# Apple's controllers report class 018002h, not NVMe's 010802h (Linux matches them by ID for
# that reason; kernel bugzilla 105621 shows "[106b:2001] ... class 0x018002"), and NVMe 1.1
# (macOS's I/O Registry: "NVMe Revision Supported" = "1.10").
CLASS_MASS_STORAGE_OTHER = 0x018002
REVISION = 0x01
SUBSYSTEM_T2_SSD = 0x1800              # the T2's functions are 106b:1800-1803 (lspci -nnv)
FIRMWARE_REVISION = "1711.80."         # bridgeOS-era ANS2 firmware numbering; our value
IEEE_OUI = 0x000393                    # Apple's first OUI
MAX_POWER_CENTIWATTS = 800

# --- geometry -----------------------------------------------------------------------------
BAR0_SIZE, BAR2_SIZE, BAR4_SIZE = 4 << 20, 512 << 10, 64 << 10
DOORBELLS, DOORBELLS_END = 0x1000, 0x2000
MSI_VECTORS = 8
LINK = (8.0, 4)                        # GT/s, lanes
PAGE = 4096
LBA_SIZE = 4096
LBA_SHIFT = 12
MQES = 127                 # 128 entries per queue, as Apple's (Linux: "tags ... 128")
MAX_IO_QUEUES = 16
MDTS = 8                   # 2^8 pages: 1 MiB per command
MAX_TRANSFER = PAGE << MDTS
ADMIN_SQE, IO_SQE, CQE = 64, 128, 16
AERL = 3                   # four outstanding Asynchronous Event Requests
NSID = 1
VERSION = 0x0001_0100      # 1.1.0
TIMEOUT_500MS = 20

# --- registers ----------------------------------------------------------------------------
CAP, VS, INTMS, INTMC, CC, CSTS, NSSR, AQA, ASQ, ACQ = (0x00, 0x08, 0x0C, 0x10, 0x14, 0x1C,
                                                          0x20, 0x24, 0x28, 0x30)
CC_EN, CSTS_RDY, CSTS_CFS = 1, 1, 2
SHST_COMPLETE = 2 << 2
CC_WRITABLE = 0x00FF_FFF1

# --- status codes (type << 8 | code) ------------------------------------------------------
SUCCESS = 0x000
INVALID_OPCODE, INVALID_FIELD, DATA_TRANSFER_ERROR, INTERNAL_ERROR = 0x001, 0x002, 0x004, 0x006
INVALID_NAMESPACE, SEQUENCE_ERROR, PRP_OFFSET_INVALID = 0x00B, 0x00C, 0x013
LBA_OUT_OF_RANGE = 0x080
CQ_INVALID, INVALID_QID, INVALID_QSIZE, AER_LIMIT = 0x100, 0x101, 0x102, 0x105
INVALID_VECTOR, INVALID_LOG_PAGE, INVALID_QUEUE_DELETION = 0x108, 0x109, 0x10C
NOT_SAVEABLE = 0x10D
WRITE_FAULT, UNRECOVERED_READ = 0x280, 0x281
DNR = 0x4000
# A PRP that names memory the controller may not reach (memory.ram.DmaError's kind).
_DMA_STATUS = {"outside": DATA_TRANSFER_ERROR, "misaligned": PRP_OFFSET_INVALID}

# --- opcodes ------------------------------------------------------------------------------
(ADM_DELETE_SQ, ADM_CREATE_SQ, ADM_GET_LOG, ADM_DELETE_CQ, ADM_CREATE_CQ, ADM_IDENTIFY,
 ADM_ABORT, ADM_SET_FEATURES, ADM_GET_FEATURES, ADM_ASYNC_EVENT) = (0x00, 0x01, 0x02, 0x04,
                                                                   0x05, 0x06, 0x08, 0x09,
                                                                   0x0A, 0x0C)
IO_FLUSH, IO_WRITE, IO_READ, IO_WRITE_ZEROES, IO_DSM = 0x00, 0x01, 0x02, 0x08, 0x09

# Features: ID → default value. Number of queues (7) is handled apart.
FEATURE_DEFAULTS = {0x01: 0, 0x02: 0, 0x04: 0x0157, 0x05: 0, 0x06: 1, 0x08: 0, 0x09: 0,
                    0x0A: 0, 0x0B: 0}
FEATURE_NUM_QUEUES, FEATURE_WRITE_CACHE, FEATURE_VECTOR_CONFIG = 0x07, 0x06, 0x09
# Async events: type error (0), info: 0 = invalid doorbell register, 1 = invalid value.
EVENT_INVALID_DOORBELL, EVENT_INVALID_DOORBELL_VALUE = 0x00, 0x01
LOG_ERROR, LOG_SMART, LOG_FIRMWARE = 0x01, 0x02, 0x03
TEMPERATURE_K = 308        # no thermal model: a steady 35 °C
FLUSH_PENDING = -1          # _io: the data is written, the completion waits for an fsync
FLUSH_POLL_NS = 200_000     # how often the run loop looks for an fsync that finished

# The async event results the controller raises (_async_error): what pending_events may hold.
_EVENTS = {info << 8 | LOG_ERROR << 16
           for info in (EVENT_INVALID_DOORBELL, EVENT_INVALID_DOORBELL_VALUE)}

_COMMAND = struct.Struct("<BBHI8x8xQQIIIIII")


def _holding(method):
    """`method` of the controller runs with the doorbells' state taken from their C side
    (NvmeController._held)."""
    @functools.wraps(method)
    def holding(self, *args, **kwargs):
        with self._held():
            return method(self, *args, **kwargs)
    return holding


class CommandError(Exception):
    """Ends a command with an NVMe status."""

    def __init__(self, status: int):
        super().__init__(f"status {status:#x}")
        self.status = status


@dataclass
class Command:
    opcode: int
    flags: int
    cid: int
    nsid: int
    prp1: int
    prp2: int
    cdw: tuple[int, ...]          # dwords 10-15

    @classmethod
    def parse(cls, entry: bytes) -> Command:
        opcode, flags, cid, nsid, prp1, prp2, *cdw = _COMMAND.unpack_from(entry)
        return cls(opcode, flags, cid, nsid, prp1, prp2, tuple(cdw))


@dataclass
class CompletionQueue:
    qid: int
    base: int
    size: int
    vector: int = 0
    interrupts: bool = True
    head: int = 0
    tail: int = 0
    phase: int = 1
    submission_queues: set = field(default_factory=set)   # SQ IDs posting here
    reserved: int = 0          # slots held for completions waiting for a host fsync

    def full(self) -> bool:
        return (self.tail - self.head) % self.size + self.reserved >= self.size - 1


@dataclass
class PendingFlush:
    """A command whose completion waits for the host's fsync, running on the worker."""
    cqid: int
    sqid: int
    cid: int
    done: concurrent.futures.Future


@dataclass
class SubmissionQueue:
    qid: int
    base: int
    size: int
    cqid: int
    entry_size: int
    head: int = 0
    tail: int = 0


class NvmeController:
    """Registers, queues and commands of the controller; `pci` is its PCI function.

    Saved state: the PCI function (config space, INTx), its MSI-X table and PBA, the
    registers (CC, CSTS, AQA, ASQ, ACQ, the interrupt mask), the MSI held back by the mask,
    the granted queue count, the features, the events waiting for an Asynchronous Event
    Request and the CIDs of those outstanding, the SMART counters, and each queue: base,
    size, head, tail (and phase, vector, interrupts for a CQ; its CQ and entry size for an
    SQ). Commands between an SQ's head and tail are still in guest RAM: they run after the
    load as they would have (when the doorbell, a CQ head or bus mastering lets them). RAM
    and the store are wiring: a loaded queue must lie in the RAM given to this controller.
    """

    def __init__(self, store, serial: str, intx: IrqLine | None = None,
                 clock: Clock | None = None):
        """`clock`: where the timer that posts finished flushes runs (the machine's); without
        one, they are posted by `settle()` only."""
        self.store = store
        self._flush_timer = clock.timer(self._finish_flushes) if clock is not None else None
        self._clock = clock
        self._flusher: concurrent.futures.ThreadPoolExecutor | None = None
        self.flushing: list[PendingFlush] = []
        self.serial = serial
        self.model = apple_model(store.capacity)
        self.sectors = store.capacity // LBA_SIZE
        self._fast = FastIo.for_store(store, nsid=NSID, sectors=self.sectors,
                                      sector_size=LBA_SIZE, max_transfer=MAX_TRANSFER)
        self._native: NativeDoorbells | None = None

        self.pci = _AnsFunction(self)
        self.msi = Msi(self.pci, MSI_VECTORS)
        self.pci.add_capability(0x10, *pcie_capability(ENDPOINT, *LINK, max_payload=128))
        self.pci.add_memory_bar(MemoryBar(0, BAR0_SIZE, self, prefetchable=True,
                                          native_pages=self._native_pages))
        for index, size in ((2, BAR2_SIZE), (4, BAR4_SIZE)):
            self.pci.add_memory_bar(MemoryBar(index, size, Unmodelled()))
        if intx is not None:
            self.pci.set_interrupt_pin(intx)
        self.stats = {"read_units": 0, "write_units": 0, "reads": 0, "writes": 0}
        self.aqa = self.asq = self.acq = 0
        self.cc = self.csts = 0
        self._reset_controller()

    # --- controller reset -----------------------------------------------------------------

    @_holding
    def reset(self) -> None:
        """Platform reset (PCIe conventional reset, NVMe 1.4 §7.3.1): every register to its
        default, AQA/ASQ/ACQ included, the PCI function and MSI-X with it. SMART counters
        are the drive's life, not register state: they stay."""
        self.pci.reset()
        self.aqa = self.asq = self.acq = 0
        self.cc = self.csts = 0
        self._reset_controller()

    def _reset_controller(self) -> None:
        """CC.EN 1→0 (and power-on): queues, features and masks go; AQA/ASQ/ACQ stay. Flushes
        in flight finish first (their data is the disk's); their completions go with the
        queues."""
        self._wait_for_flushes()
        self.flushing = []
        self.sqs: dict[int, SubmissionQueue] = {}
        self.cqs: dict[int, CompletionQueue] = {}
        self.features = dict(FEATURE_DEFAULTS)
        self.io_queues = 0            # granted by Set Features (Number of Queues)
        self.pending_events: list[int] = []       # async event results waiting for an AER
        self.aer_cids: list[int] = []
        self.intms = 0
        self.msi_pending = 0          # MSI vectors that fired while INTMS masked them
        self.csts &= ~CSTS_RDY
        self._update_intx()

    # --- saved state ------------------------------------------------------------------------

    @_holding
    def save(self) -> dict:
        self.settle()                       # completions in flight are posted first
        return {
            "pci": self.pci.save(), "msi": self.msi.save(),
            "cc": self.cc, "csts": self.csts, "aqa": self.aqa, "asq": self.asq,
            "acq": self.acq, "intms": self.intms, "msi_pending": self.msi_pending,
            "io_queues": self.io_queues,
            "features": {str(fid): value for fid, value in self.features.items()},
            "pending_events": list(self.pending_events), "aer_cids": list(self.aer_cids),
            "stats": dict(self.stats),
            "sqs": [{"qid": q.qid, "base": q.base, "size": q.size, "cqid": q.cqid,
                     "entry_size": q.entry_size, "head": q.head, "tail": q.tail}
                    for q in sorted(self.sqs.values(), key=lambda q: q.qid)],
            # A CQ's submission_queues are derived: the SQs whose cqid names it.
            "cqs": [{"qid": q.qid, "base": q.base, "size": q.size, "vector": q.vector,
                     "interrupts": q.interrupts, "head": q.head, "tail": q.tail,
                     "phase": q.phase}
                    for q in sorted(self.cqs.values(), key=lambda q: q.qid)],
        }

    @_holding
    def load(self, state: dict) -> None:
        where = "NvmeController"
        parts = (self.pci.check_state(_state.field(state, "pci", where)),
                 self.msi.check_state(_state.field(state, "msi", where)))
        _state.ranges(state, where, {"cc": (0, CC_WRITABLE), "csts": (0, 0xF),
                                     "aqa": (0, 0x0FFF_0FFF), "asq": (0, _state.U64),
                                     "acq": (0, _state.U64), "intms": (0, _state.U32),
                                     "io_queues": (0, MAX_IO_QUEUES)})
        if state["cc"] & ~CC_WRITABLE or state["aqa"] & ~0x0FFF_0FFF \
                or (state["asq"] | state["acq"]) & (PAGE - 1):
            raise StateError(f"{where}: register bits no host can set")
        msi_pending = _state.int_field(state, "msi_pending", where, 0, (1 << MSI_VECTORS) - 1)
        features = self._checked_features(_state.field(state, "features", where))
        stats = _state.mapping(_state.field(state, "stats", where), f"{where}.stats")
        if stats.keys() != self.stats.keys():
            raise StateError(f"{where}.stats: fields {sorted(stats)}")
        for name in stats:
            _state.int_field(stats, name, f"{where}.stats", 0)
        events = _state.int_list(state, "pending_events", where, 0, _state.U32, max_length=2)
        if len(set(events)) != len(events) or not set(events) <= _EVENTS:
            raise StateError(f"{where}.pending_events: {events}")
        aer_cids = _state.int_list(state, "aer_cids", where, 0, 0xFFFF, max_length=AERL + 1)
        cqs = self._checked_cqs(_state.list_field(state, "cqs", where))
        sqs = self._checked_sqs(_state.list_field(state, "sqs", where), cqs,
                                state["io_queues"])
        ready = bool(state["csts"] & CSTS_RDY)
        if (0 in sqs) != ready or (0 in cqs) != ready or (not ready and (sqs or cqs)):
            raise StateError(f"{where}: queues and CSTS.RDY disagree")

        self.pci.apply_state(parts[0])
        self.msi.apply_state(parts[1])
        self.cc, self.csts, self.aqa = state["cc"], state["csts"], state["aqa"]
        self.asq, self.acq, self.intms = state["asq"], state["acq"], state["intms"]
        self.io_queues, self.msi_pending = state["io_queues"], msi_pending
        self.features = features
        self.stats = {name: stats[name] for name in self.stats}
        self.pending_events, self.aer_cids = list(events), list(aer_cids)
        self.sqs, self.cqs = sqs, cqs

    def _checked_features(self, saved) -> dict[int, int]:
        where = "NvmeController.features"
        if _state.mapping(saved, where).keys() != {str(fid) for fid in FEATURE_DEFAULTS}:
            raise StateError(f"{where}: features {sorted(saved)}")
        return {fid: _state.int_field(saved, str(fid), where, 0, _state.U32)
                for fid in FEATURE_DEFAULTS}

    def _checked_queue(self, saved, where: str, names: tuple[str, ...]) -> dict:
        saved = _state.mapping(saved, where)
        if saved.keys() != set(names):
            raise StateError(f"{where}: fields {sorted(saved)}")
        qid = _state.int_field(saved, "qid", where, 0, MAX_IO_QUEUES)
        size = _state.int_field(saved, "size", where, 2, (0xFFF if qid == 0 else MQES) + 1)
        _state.int_field(saved, "base", where, 0, _state.U64)
        _state.int_field(saved, "head", where, 0, size - 1)
        _state.int_field(saved, "tail", where, 0, size - 1)
        return saved

    def _checked_cqs(self, saved: list) -> dict[int, CompletionQueue]:
        cqs: dict[int, CompletionQueue] = {}
        for n, item in enumerate(saved):
            where = f"NvmeController.cqs[{n}]"
            q = self._checked_queue(item, where, ("qid", "base", "size", "vector",
                                                  "interrupts", "head", "tail", "phase"))
            _state.int_field(q, "vector", where, 0, MSI_VECTORS - 1)
            _state.int_field(q, "phase", where, 0, 1)
            _state.bool_field(q, "interrupts", where)
            if q["qid"] in cqs or not self._queue_in_ram(q["base"], q["size"] * CQE):
                raise StateError(f"{where}: a second CQ {q['qid']}, or not in RAM")
            cqs[q["qid"]] = CompletionQueue(q["qid"], q["base"], q["size"], q["vector"],
                                            q["interrupts"], q["head"], q["tail"], q["phase"])
        return cqs

    def _checked_sqs(self, saved: list, cqs: dict[int, CompletionQueue],
                     io_queues: int) -> dict[int, SubmissionQueue]:
        sqs: dict[int, SubmissionQueue] = {}
        for n, item in enumerate(saved):
            where = f"NvmeController.sqs[{n}]"
            q = self._checked_queue(item, where, ("qid", "base", "size", "cqid",
                                                  "entry_size", "head", "tail"))
            qid = q["qid"]
            cqid = _state.int_field(q, "cqid", where, 0, MAX_IO_QUEUES)
            entry_size = _state.int_field(q, "entry_size", where, ADMIN_SQE, IO_SQE)
            admin = qid == 0
            if qid in sqs or cqid not in cqs or (cqid == 0) != admin \
                    or entry_size != (ADMIN_SQE if admin else IO_SQE) \
                    or (not admin and qid > io_queues) \
                    or not self._queue_in_ram(q["base"], q["size"] * entry_size):
                raise StateError(f"{where}: SQ {qid} does not fit this controller")
            sqs[qid] = SubmissionQueue(qid, q["base"], q["size"], cqid, entry_size,
                                       q["head"], q["tail"])
            cqs[cqid].submission_queues.add(qid)
        for cq in cqs.values():
            if cq.qid and cq.qid > io_queues:
                raise StateError(f"NvmeController: CQ {cq.qid} beyond the queues granted")
        return sqs

    # --- registers (BAR0) ----------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size not in (4, 8) or offset % 4 or offset >= DOORBELLS:
            return 0
        if size == 8:
            return self.read(offset, 4) | self.read(offset + 4, 4) << 32
        regs = {CAP: self._cap() & 0xFFFF_FFFF, CAP + 4: self._cap() >> 32, VS: VERSION,
                INTMS: self.intms, INTMC: self.intms, CC: self.cc, CSTS: self.csts,
                AQA: self.aqa, ASQ: self.asq & 0xFFFF_FFFF, ASQ + 4: self.asq >> 32,
                ACQ: self.acq & 0xFFFF_FFFF, ACQ + 4: self.acq >> 32}
        return regs.get(offset, 0)

    @_holding
    def write(self, offset: int, size: int, value: int) -> None:
        try:
            self._write(offset, size, value)
        except Exception:                  # a device bug must not take the machine down
            log.exception("NVMe: register write %#x failed; controller fatal status", offset)
            self.csts |= CSTS_CFS

    def _write(self, offset: int, size: int, value: int) -> None:
        if size not in (4, 8) or offset % 4:
            return
        if size == 8:
            self._write(offset, 4, value & 0xFFFF_FFFF)
            self._write(offset + 4, 4, value >> 32)
            return
        if DOORBELLS <= offset < DOORBELLS_END:
            self._doorbell((offset - DOORBELLS) // 4, value & 0xFFFF_FFFF)
        elif offset == INTMS:
            self.intms |= value
            self._update_intx()
        elif offset == INTMC:
            self.intms &= ~value
            self._unmasked()
        elif offset == CC:
            self._write_cc(value & CC_WRITABLE)
        elif offset == AQA:
            self.aqa = value & 0x0FFF_0FFF
        elif offset in (ASQ, ASQ + 4, ACQ, ACQ + 4):
            reg = "asq" if offset < ACQ else "acq"
            old = getattr(self, reg)
            new = (old & 0xFFFF_FFFF | value << 32) if offset % 8 else \
                (old & ~0xFFFF_FFFF | value & 0xFFFF_F000)
            setattr(self, reg, new)

    def _cap(self) -> int:
        return MQES | 1 << 16 | TIMEOUT_500MS << 24 | 1 << 37     # MQES, CQR, TO, CSS NVM

    def _write_cc(self, value: int) -> None:
        was_enabled = self.cc & CC_EN
        self.cc = value
        if not value & CC_EN:
            if was_enabled:
                self._reset_controller()
            self.csts &= ~(CSTS_CFS | 0xC)
            return
        if (value >> 14) & 3:              # shutdown notification: make writes durable
            self.settle()
            self._flush_store()
            self.csts = (self.csts & ~0xC) | SHST_COMPLETE
        if not was_enabled:
            self._enable()

    def _enable(self) -> None:
        """CC.EN 0→1: the admin queues from AQA/ASQ/ACQ. A bad setup never reaches ready."""
        sq_size, cq_size = (self.aqa & 0xFFF) + 1, ((self.aqa >> 16) & 0xFFF) + 1
        mps, css = (self.cc >> 7) & 0xF, (self.cc >> 4) & 7
        if mps != 0 or css != 0 or sq_size < 2 or cq_size < 2 \
                or not self._queue_in_ram(self.asq, sq_size * ADMIN_SQE) \
                or not self._queue_in_ram(self.acq, cq_size * CQE):
            log.info("NVMe: enable refused (AQA %#x ASQ %#x ACQ %#x CC %#x)", self.aqa,
                     self.asq, self.acq, self.cc)
            self.csts |= CSTS_CFS
            return
        self.cqs[0] = CompletionQueue(0, self.acq, cq_size, submission_queues={0})
        self.sqs[0] = SubmissionQueue(0, self.asq, sq_size, 0, ADMIN_SQE)
        self.csts = (self.csts & ~CSTS_CFS) | CSTS_RDY

    def _queue_in_ram(self, base: int, length: int) -> bool:
        return base % PAGE == 0 and self.pci.memory_holds(base, length)

    # --- the I/O doorbells in C (nvme_doorbell.py) --------------------------------------------

    def serve_doorbells_in_c(self, lock, cores=None) -> bool:
        """From now on the I/O queues' doorbells are served in C on the vCPU's thread while
        the controller is in the plain state for it (ready, bus mastering, MSI); `lock` is
        the machine's, which what C hands to Python takes; `cores` the APICs' C fabric
        (devices/apic_core.ApicCoreBus) its interrupts go through (None: through Python).
        False when the native path is not built or the store cannot take it."""
        contexts = self.store.native_contexts() if self._fast is not None else None
        io = self.store.native_io() if contexts is not None else None
        if io is None or not NativeDoorbells.available():
            return False

        def slow_write(offset: int, size: int, value: int) -> None:
            with lock:
                self.write(DOORBELLS + offset, size, value)

        def slow_interrupt(cqid: int) -> None:
            with lock:
                self._interrupt_from_c(cqid)

        self._native = NativeDoorbells(slow_write, slow_interrupt, io[0], contexts, cores)
        with self._held():
            pass                               # armed, if the controller is ready already
        return True

    @property
    def doorbells_served_in_c(self) -> int:
        """Doorbell writes the C side served itself (0 without it)."""
        return self._native.served if self._native is not None else 0

    def _native_pages(self) -> list:
        """BAR0's page of doorbells, served in C (the PCI bus maps it so)."""
        return [] if self._native is None else [(DOORBELLS, PAGE, self._native.access)]

    @contextlib.contextmanager
    def _held(self):
        """The doorbells' state taken from C (they wait, as does any other thread that
        comes in) for what the caller does, and given back armed or not after it. Calls
        on the thread that holds it nest (the controller calls itself)."""
        native = self._native
        if native is None or native.holder == threading.get_ident():
            yield
            return
        state = native.take()
        native.holder = threading.get_ident()
        try:
            self._from_native(state)
            yield
        finally:
            try:
                self._to_native(native)
            except Exception:              # never keep the doorbells waiting
                log.exception("NVMe: the doorbells' state; they stay with Python")
                state.armed = 0
            native.holder = None
            native.give()

    def _from_native(self, state) -> None:
        self.stats["reads"] += state.reads
        self.stats["read_units"] += state.read_bytes
        self.stats["writes"] += state.writes
        self.stats["write_units"] += state.write_bytes
        if not state.armed:
            return                             # C served nothing since Python gave it
        for qid, sq in self.sqs.items():
            if qid:
                sq.head, sq.tail = state.sq[qid].head, state.sq[qid].tail
        for qid, cq in self.cqs.items():
            if qid:
                cq.head, cq.tail, cq.phase = (state.cq[qid].head, state.cq[qid].tail,
                                              state.cq[qid].phase)

    def _to_native(self, native: NativeDoorbells) -> None:
        state = native.state
        ctypes.memset(ctypes.addressof(state.sq), 0, ctypes.sizeof(state.sq))
        ctypes.memset(ctypes.addressof(state.cq), 0, ctypes.sizeof(state.cq))
        memory = self.pci.dma_memory
        state.armed = int(bool(self.csts & CSTS_RDY) and memory is not None
                          and self.msi.enabled and self.store.native_open)
        if not state.armed:
            return
        native.ranges = ranges = xts.ram_ranges(memory)
        state.ram, state.nram = ctypes.addressof(ranges), len(ranges)
        state.sectors, state.sector_size = self.sectors, LBA_SIZE
        state.nsid, state.max_transfer = NSID, MAX_TRANSFER
        state.write_cache = self.features[FEATURE_WRITE_CACHE] & 1
        for qid, sq in self.sqs.items():
            if qid:
                q = state.sq[qid]
                q.base, q.size, q.head, q.tail, q.cqid = sq.base, sq.size, sq.head, sq.tail, \
                    sq.cqid
        for qid, cq in self.cqs.items():
            if qid:
                q = state.cq[qid]
                q.base, q.size, q.head, q.tail = cq.base, cq.size, cq.head, cq.tail
                q.phase, q.reserved = cq.phase, cq.reserved
                q.irq, q.dest, q.vector = self._native_interrupt(cq, native)

    def _native_interrupt(self, cq: CompletionQueue, native) -> tuple[int, int, int]:
        """How C signals `cq`'s completions: not at all, by a fixed MSI it sends itself
        (APIC ID, vector), or through Python (masked, another kind of message, no APICs)."""
        if not cq.interrupts:
            return IRQ_NONE, 0, 0
        vector = self._message_vector(cq)
        fixed = fixed_message(*self.msi.message(vector))
        if self.intms >> vector & 1 or native.bus is None or fixed is None:
            return IRQ_PYTHON, 0, 0
        return IRQ_FIXED, *fixed

    @_holding
    def _interrupt_from_c(self, cqid: int) -> None:
        """A completion interrupt the C side could not send itself."""
        cq = self.cqs.get(cqid)
        if cq is not None:
            self._interrupt(cq)

    # --- doorbells --------------------------------------------------------------------------

    def _doorbell(self, index: int, value: int) -> None:
        if not self.csts & CSTS_RDY:
            return
        qid, is_cq = divmod(index, 2)
        queue = self.cqs.get(qid) if is_cq else self.sqs.get(qid)
        if queue is None:
            self._async_error(EVENT_INVALID_DOORBELL)
            return
        if value >= queue.size:
            self._async_error(EVENT_INVALID_DOORBELL_VALUE)
            return
        if is_cq:
            queue.head = value
            self._update_intx()
            for sqid in sorted(queue.submission_queues):
                if sqid in self.sqs:
                    self._process(self.sqs[sqid])
        else:
            queue.tail = value
            self._process(queue)

    def _process(self, sq: SubmissionQueue) -> None:
        """Run the commands between head and tail while their completion queue has room."""
        if not self.pci.bus_master:
            return                         # the device cannot fetch: they wait
        cq = self.cqs[sq.cqid]
        posted = False
        while sq.head != sq.tail and sq.qid in self.sqs and not cq.full():
            if sq.qid and self._fast is not None:
                posted |= self._run_fast(sq, cq)
                if sq.head == sq.tail or cq.full():
                    break                  # else the command at the head is Python's
            window = self.pci.dma_window(sq.base + sq.head * sq.entry_size, ADMIN_SQE)
            if window is None:
                return                     # the fetch was aborted: the command waits
            command = Command.parse(window)
            sq.head = (sq.head + 1) % sq.size
            outcome = self._run(sq.qid, command)
            if outcome is None:
                continue                   # an AER: completes when an event happens
            status, result = outcome
            if status == FLUSH_PENDING:
                self._flush_later(cq, sq, command.cid)
                continue
            self._post(cq, sq, command.cid, status, result)
            posted = True
        if posted:
            self._interrupt(cq)

    def _run_fast(self, sq: SubmissionQueue, cq: CompletionQueue) -> bool:
        """The I/O queue's plain reads and writes from its head, in C (nvme_io.py); whether
        any completion was posted."""
        memory = self.pci.dma_memory
        return memory is not None and self._fast.run(
            sq, cq, memory, bool(self.features[FEATURE_WRITE_CACHE] & 1), self.stats) > 0

    def _run(self, qid: int, command: Command) -> tuple[int, int] | None:
        try:
            if command.flags & 0xC3:       # fused operations, SGLs: not supported
                raise CommandError(INVALID_FIELD | DNR)
            if qid == 0:
                return self._admin(command)
            return self._io(command), 0
        except CommandError as exc:
            return exc.status, 0
        except Exception:
            log.exception("NVMe: command %#x failed inside the device", command.opcode)
            return INTERNAL_ERROR, 0

    def _post(self, cq: CompletionQueue, sq: SubmissionQueue | None, cid: int, status: int,
              result: int, sqid: int | None = None) -> None:
        entry = struct.pack("<IIHHHH", result & 0xFFFF_FFFF, 0, sq.head if sq else 0,
                            sq.qid if sq else (sqid or 0), cid, cq.phase | status << 1)
        if not self.pci.dma_write(cq.base + cq.tail * CQE, entry):
            log.info("NVMe: completion to %#x aborted", cq.base + cq.tail * CQE)
        cq.tail = (cq.tail + 1) % cq.size
        if cq.tail == 0:
            cq.phase ^= 1

    @_holding
    def config_changed(self) -> None:
        """A PCI configuration write: bus mastering turned back on (commands that waited
        for it run now), the interrupt mode changed."""
        try:
            if self.pci.bus_master and self.csts & CSTS_RDY:
                for sq in list(self.sqs.values()):
                    self._process(sq)
            self._update_intx()
        except Exception:                  # as for register writes: never out of the device
            log.exception("NVMe: configuration change failed; controller fatal status")
            self.csts |= CSTS_CFS

    # --- interrupts ------------------------------------------------------------------------

    def _interrupt(self, cq: CompletionQueue) -> None:
        if not cq.interrupts:
            return
        if self.msi.enabled:
            vector = self._message_vector(cq)
            if self.intms >> vector & 1:
                self.msi_pending |= 1 << vector         # INTMS masks MSI vectors (NVMe 3.1.3)
            else:
                self.msi.send(vector)
        else:
            self._update_intx()

    def _message_vector(self, cq: CompletionQueue) -> int:
        """The MSI vector `cq`'s interrupt becomes (its vector folded onto those granted)."""
        return cq.vector & (self.msi.granted - 1)

    def _unmasked(self) -> None:
        due = self.msi_pending & ~self.intms if self.msi.enabled else 0
        self.msi_pending &= ~due
        for vector in range(MSI_VECTORS):
            if due >> vector & 1:
                self.msi.send(vector)
        self._update_intx()

    def _update_intx(self) -> None:
        """INTA# is asserted while an interrupt-enabled CQ holds entries the host has not
        consumed (and its vector is not masked); only while MSI is off."""
        asserted = False
        if not self.msi.enabled:
            asserted = any(cq.interrupts and cq.head != cq.tail
                           and not self.intms >> cq.vector & 1
                           for cq in self.cqs.values())
        self.pci.set_intx(asserted)

    def _async_error(self, info: int) -> None:
        event = info << 8 | LOG_ERROR << 16         # type 0: error status
        if event not in self.pending_events:        # one of each: a guest cannot pile them up
            self.pending_events.append(event)
        self._deliver_events()

    def _deliver_events(self) -> None:
        cq = self.cqs.get(0)
        while self.pending_events and self.aer_cids and cq is not None and not cq.full():
            self._post(cq, self.sqs.get(0), self.aer_cids.pop(0), SUCCESS,
                       self.pending_events.pop(0))
            self._interrupt(cq)

    # --- admin commands --------------------------------------------------------------------

    def _admin(self, c: Command) -> tuple[int, int] | None:
        op = c.opcode
        if op == ADM_CREATE_CQ:
            return self._create_cq(c), 0
        if op == ADM_CREATE_SQ:
            return self._create_sq(c), 0
        if op == ADM_DELETE_SQ:
            return self._delete_sq(c.cdw[0] & 0xFFFF), 0
        if op == ADM_DELETE_CQ:
            return self._delete_cq(c.cdw[0] & 0xFFFF), 0
        if op == ADM_IDENTIFY:
            self._write_data(c, self._identify(c))
            return SUCCESS, 0
        if op == ADM_GET_LOG:
            return self._get_log(c), 0
        if op == ADM_SET_FEATURES:
            return self._set_features(c)
        if op == ADM_GET_FEATURES:
            return self._get_features(c)
        if op == ADM_ABORT:
            return SUCCESS, 1               # bit 0: not aborted (nothing is ever in flight)
        if op == ADM_ASYNC_EVENT:
            if len(self.aer_cids) > AERL:
                raise CommandError(AER_LIMIT | DNR)
            self.aer_cids.append(c.cid)
            self._deliver_events()
            return None
        raise CommandError(INVALID_OPCODE | DNR)

    def _create_cq(self, c: Command) -> int:
        qid, size = c.cdw[0] & 0xFFFF, (c.cdw[0] >> 16) + 1
        contiguous, interrupts, vector = c.cdw[1] & 1, bool(c.cdw[1] & 2), c.cdw[1] >> 16
        if not 1 <= qid <= self.io_queues or qid in self.cqs:
            return INVALID_QID | DNR
        if not 2 <= size <= MQES + 1:
            return INVALID_QSIZE | DNR
        if not contiguous or not self._queue_in_ram(c.prp1, size * CQE):
            return INVALID_FIELD | DNR
        if vector >= MSI_VECTORS:
            return INVALID_VECTOR | DNR
        if (self.cc >> 20) & 0xF != 4:      # CC.IOCQES must say 16-byte entries
            return INVALID_FIELD | DNR
        self.cqs[qid] = CompletionQueue(qid, c.prp1, size, vector, interrupts)
        return SUCCESS

    def _create_sq(self, c: Command) -> int:
        qid, size = c.cdw[0] & 0xFFFF, (c.cdw[0] >> 16) + 1
        contiguous, cqid = c.cdw[1] & 1, c.cdw[1] >> 16
        if not 1 <= qid <= self.io_queues or qid in self.sqs:
            return INVALID_QID | DNR
        if cqid == 0 or cqid not in self.cqs:
            return CQ_INVALID | DNR
        if not 2 <= size <= MQES + 1:
            return INVALID_QSIZE | DNR
        # Apple: 128-byte I/O submission entries whatever CC.IOSQES says.
        if not contiguous or not self._queue_in_ram(c.prp1, size * IO_SQE):
            return INVALID_FIELD | DNR
        self.sqs[qid] = SubmissionQueue(qid, c.prp1, size, cqid, IO_SQE)
        self.cqs[cqid].submission_queues.add(qid)
        return SUCCESS

    def _delete_sq(self, qid: int) -> int:
        sq = self.sqs.get(qid) if qid else None
        if sq is None:
            return INVALID_QID | DNR
        del self.sqs[qid]
        self.cqs[sq.cqid].submission_queues.discard(qid)
        return SUCCESS

    def _delete_cq(self, qid: int) -> int:
        cq = self.cqs.get(qid) if qid else None
        if cq is None:
            return INVALID_QID | DNR
        if cq.submission_queues:
            return INVALID_QUEUE_DELETION | DNR
        del self.cqs[qid]
        self._update_intx()
        return SUCCESS

    def _identify(self, c: Command) -> bytes:
        cns = c.cdw[0] & 0xFF
        if cns == 1:
            return identify_controller(self.serial, self.model)
        if cns == 0:
            if c.nsid != NSID:
                raise CommandError(INVALID_NAMESPACE | DNR)
            return identify_namespace(self.sectors)
        if cns == 2:
            if c.nsid >= 0xFFFF_FFFE:
                raise CommandError(INVALID_NAMESPACE | DNR)
            return struct.pack("<I", NSID).ljust(PAGE, b"\0") if c.nsid < NSID else bytes(PAGE)
        raise CommandError(INVALID_FIELD | DNR)

    def _get_log(self, c: Command) -> int:
        page = c.cdw[0] & 0xFF
        dwords = ((c.cdw[0] >> 16) | (c.cdw[1] & 0xFFFF) << 16) + 1
        offset = c.cdw[2] | c.cdw[3] << 32
        if page == LOG_ERROR:
            data = bytes(64)               # no errors are logged
        elif page == LOG_SMART:
            data = self._smart_log()
        elif page == LOG_FIRMWARE:
            data = bytes([1]).ljust(8, b"\0") + FIRMWARE_REVISION.encode().ljust(8)
            data = data.ljust(512, b"\0")
        else:
            return INVALID_LOG_PAGE | DNR
        if offset % 4 or offset >= len(data) or dwords * 4 > MAX_TRANSFER:
            return INVALID_FIELD | DNR
        self._write_data(c, data[offset:offset + dwords * 4].ljust(dwords * 4, b"\0"))
        return SUCCESS

    def _smart_log(self) -> bytes:
        log_page = bytearray(512)
        struct.pack_into("<BHBB", log_page, 0, 0, TEMPERATURE_K, 100, 10)
        units = 1000 * 512
        for offset, value in ((32, -(-self.stats["read_units"] // units)),
                              (48, -(-self.stats["write_units"] // units)),
                              (64, self.stats["reads"]), (80, self.stats["writes"])):
            log_page[offset:offset + 16] = value.to_bytes(16, "little")
        return bytes(log_page)

    def _set_features(self, c: Command) -> tuple[int, int]:
        fid, value = c.cdw[0] & 0xFF, c.cdw[1]
        if c.cdw[0] >> 31:
            raise CommandError(NOT_SAVEABLE | DNR)
        if fid == FEATURE_NUM_QUEUES:
            if len(self.sqs) > 1 or len(self.cqs) > 1:
                raise CommandError(SEQUENCE_ERROR | DNR)   # only before I/O queues exist
            if value & 0xFFFF == 0xFFFF or value >> 16 == 0xFFFF:
                raise CommandError(INVALID_FIELD | DNR)
            self.io_queues = min(MAX_IO_QUEUES, (value & 0xFFFF) + 1, (value >> 16) + 1)
            return SUCCESS, self._queues_result()
        if fid not in self.features:
            raise CommandError(INVALID_FIELD | DNR)
        if fid == 0x02 and value & 0x1F:    # power state: only PS0 exists
            raise CommandError(INVALID_FIELD | DNR)
        if fid == FEATURE_VECTOR_CONFIG and value & 0xFFFF >= MSI_VECTORS:
            raise CommandError(INVALID_FIELD | DNR)
        self.features[fid] = value
        return SUCCESS, 0

    def _get_features(self, c: Command) -> tuple[int, int]:
        fid, select = c.cdw[0] & 0xFF, (c.cdw[0] >> 8) & 7
        if select == 3:                     # capabilities: changeable, not saveable
            if fid != FEATURE_NUM_QUEUES and fid not in self.features:
                raise CommandError(INVALID_FIELD | DNR)
            return SUCCESS, 0b100
        if select > 3:
            raise CommandError(INVALID_FIELD | DNR)
        if fid == FEATURE_NUM_QUEUES:
            return SUCCESS, self._queues_result() if select == 0 else \
                (MAX_IO_QUEUES - 1) * 0x10001
        if fid not in self.features:
            raise CommandError(INVALID_FIELD | DNR)
        return SUCCESS, self.features[fid] if select == 0 else FEATURE_DEFAULTS[fid]

    def _queues_result(self) -> int:
        granted = max(self.io_queues, 1) - 1
        return granted << 16 | granted

    # --- NVM commands ----------------------------------------------------------------------

    def _io(self, c: Command) -> int:
        op = c.opcode
        if op == IO_FLUSH:
            if c.nsid not in (NSID, 0xFFFF_FFFF):
                raise CommandError(INVALID_NAMESPACE | DNR)
            return FLUSH_PENDING
        if op not in (IO_READ, IO_WRITE, IO_WRITE_ZEROES, IO_DSM):
            raise CommandError(INVALID_OPCODE | DNR)
        if c.nsid != NSID:
            raise CommandError(INVALID_NAMESPACE | DNR)
        if op == IO_DSM:
            return self._dataset_management(c)
        lba, count = c.cdw[0] | c.cdw[1] << 32, (c.cdw[2] & 0xFFFF) + 1
        self._check_range(lba, count)
        if op == IO_WRITE_ZEROES:
            self._store_call(WRITE_FAULT, self.store.trim, lba, count)
            return SUCCESS
        length = count * LBA_SIZE
        if length > MAX_TRANSFER:
            raise CommandError(INVALID_FIELD | DNR)
        pages = self._dma_pages(c.prp1, c.prp2, length)
        try:
            if op == IO_READ:
                self._store_call(UNRECOVERED_READ, self.store.read_into, lba, pages)
            else:
                self._store_call(WRITE_FAULT, self.store.write_from, lba, pages)
        except DmaError as exc:
            raise CommandError(_DMA_STATUS[exc.kind] | DNR) from None
        if op == IO_READ:
            self.stats["reads"] += 1
            self.stats["read_units"] += length
            return SUCCESS
        self.stats["writes"] += 1
        self.stats["write_units"] += length
        if c.cdw[2] >> 30 & 1 or not self.features[FEATURE_WRITE_CACHE] & 1:
            return FLUSH_PENDING            # FUA, or no volatile write cache
        return SUCCESS

    def _dataset_management(self, c: Command) -> int:
        ranges = (c.cdw[0] & 0xFF) + 1
        listing = b"".join(self._prp_windows(c.prp1, c.prp2, ranges * 16))
        if not c.cdw[1] & 4:                # only deallocate does anything
            return SUCCESS
        extents = [(lba, count) for _, count, lba in struct.iter_unpack("<IIQ", listing)]
        for lba, count in extents:
            self._check_range(lba, count)
        for lba, count in extents:
            if count:
                self._store_call(WRITE_FAULT, self.store.trim, lba, count)
        return SUCCESS

    def _check_range(self, lba: int, count: int) -> None:
        if lba + count > self.sectors:
            raise CommandError(LBA_OUT_OF_RANGE | DNR)

    def _store_call(self, failure: int, call, *args):
        try:
            return call(*args)
        except (OSError, ValueError) as exc:
            log.error("NVMe: the SSD store failed: %s", exc)
            raise CommandError(failure) from None

    def _flush_store(self) -> None:
        self._store_call(WRITE_FAULT, self.store.flush)

    # --- flushes on the worker thread ---------------------------------------------------------

    def _flush_later(self, cq: CompletionQueue, sq: SubmissionQueue, cid: int) -> None:
        """The command's data is written; its completion waits for an fsync on the worker."""
        if self._flusher is None:
            self._flusher = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="nvme-flush")
        cq.reserved += 1
        self.flushing.append(PendingFlush(cq.qid, sq.qid, cid,
                                          self._flusher.submit(self.store.flush)))
        if self._flush_timer is not None and not self._flush_timer.armed:
            self._flush_timer.arm(self._clock.now_ns() + FLUSH_POLL_NS)

    def _finish_flushes(self) -> None:
        """Post the completions of the flushes that are done, in the order they came; the
        timer looks again while others wait. The doorbells' state is taken only when there
        is something to post (the timer runs every 200 µs while a flush waits)."""
        if self.flushing and self.flushing[0].done.done():
            self._post_flushed()
        if self.flushing and self._flush_timer is not None:
            self._flush_timer.arm(self._clock.now_ns() + FLUSH_POLL_NS)

    @_holding
    def _post_flushed(self) -> None:
        done = []
        while self.flushing and self.flushing[0].done.done():
            done.append(self.flushing.pop(0))
        interrupted = set()
        for flush in done:
            cq = self.cqs.get(flush.cqid)
            if cq is None:
                continue                    # its queue was deleted meanwhile
            cq.reserved -= 1
            status = SUCCESS
            if flush.done.exception() is not None:
                log.error("NVMe: the SSD store failed to flush: %s", flush.done.exception())
                status = WRITE_FAULT
            self._post(cq, self.sqs.get(flush.sqid), flush.cid, status, 0, sqid=flush.sqid)
            interrupted.add(cq.qid)
        for qid in sorted(interrupted):
            self._interrupt(self.cqs[qid])

    def _wait_for_flushes(self) -> None:
        for flush in self.flushing:
            concurrent.futures.wait([flush.done])

    @_holding
    def settle(self) -> None:
        """Wait for every fsync in flight and post its completion (save, shutdown, tests)."""
        self._wait_for_flushes()
        self._finish_flushes()

    # --- PRPs ------------------------------------------------------------------------------

    def _write_data(self, c: Command, data: bytes) -> None:
        at = 0
        for piece in self._prp_windows(c.prp1, c.prp2, len(data)):
            piece[:] = data[at:at + len(piece)]
            at += len(piece)

    def _prp_windows(self, prp1: int, prp2: int, length: int) -> list[memoryview]:
        """The RAM views `length` bytes at PRP1/PRP2 cover, adjacent pages merged."""
        try:
            return self._dma_pages(prp1, prp2, length).views()
        except DmaError as exc:
            raise CommandError(_DMA_STATUS[exc.kind] | DNR) from None

    def _dma_pages(self, prp1: int, prp2: int, length: int) -> GuestPages:
        """The pages `length` bytes at PRP1/PRP2 name (NVMe 1.4 §4.3). PRP1 may start inside
        a page (dword aligned); every later entry is a page (GuestPages checks that as it
        reaches them); PRP2 is the second page, or a PRP list (the last entry of a full list
        page points to the next list page). Only while bus mastering is on."""
        if prp1 & 3:
            raise CommandError(PRP_OFFSET_INVALID | DNR)
        memory = self.pci.dma_memory
        if memory is None:
            raise CommandError(DATA_TRANSFER_ERROR | DNR)
        pages = array("Q", (prp1,))
        remaining = length - min(length, PAGE - prp1 % PAGE)
        if 0 < remaining <= PAGE:
            pages.append(prp2)
        elif remaining > PAGE:
            self._prp_list(prp2, -(-remaining // PAGE), pages)
        return GuestPages(memory, pages, length)

    def _prp_list(self, pointer: int, count: int, pages: array) -> None:
        """`count` page addresses from the PRP list at `pointer`, onto `pages` (host byte
        order is the guest's: both are x86)."""
        lists = 0
        while True:
            if pointer & 7:
                raise CommandError(PRP_OFFSET_INVALID | DNR)
            lists += 1
            if lists > MAX_TRANSFER // PAGE + 1:
                raise CommandError(INVALID_FIELD | DNR)        # a list that loops
            slots = (PAGE - pointer % PAGE) // 8
            window = self.pci.dma_window(pointer, slots * 8)
            if window is None:
                raise CommandError(DATA_TRANSFER_ERROR | DNR)
            if count <= slots:
                pages.frombytes(window[:count * 8])
                return
            pages.frombytes(window[:(slots - 1) * 8])
            count -= slots - 1
            pointer = window[-8:].cast("Q")[0]


class _AnsFunction(PciFunction):
    """The controller's PCI function: config writes may turn bus mastering or MSI on."""

    def __init__(self, controller: NvmeController):
        super().__init__(VENDOR_APPLE, DEVICE_ANS2, CLASS_MASS_STORAGE_OTHER, REVISION,
                         subsystem_vendor=VENDOR_APPLE, subsystem=SUBSYSTEM_T2_SSD)
        self.controller = controller

    def config_written(self, offset: int, size: int) -> None:
        self.controller.config_changed()


# --- data structures ------------------------------------------------------------------------

def apple_model(capacity: int) -> str:
    """Apple's model string by capacity: 1 TB → "APPLE SSD AP1024M" (decimal TB × 1024)."""
    terabytes = max(1, round(capacity / 10**12))
    return f"APPLE SSD AP{terabytes * 1024:04d}M"


def ssd_serial(machine_serial: str) -> str:
    """The SSD's own serial, fixed for a machine (derived from its serial number)."""
    digest = hashlib.sha256(f"ans2-serial:{machine_serial}".encode()).digest()
    alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    return "C0" + "".join(alphabet[b % len(alphabet)] for b in digest[:14])


def identify_controller(serial: str, model: str) -> bytes:
    data = bytearray(PAGE)
    struct.pack_into("<HH20s40s8sB", data, 0, VENDOR_APPLE, VENDOR_APPLE,
                     serial.encode().ljust(20), model.encode().ljust(40),
                     FIRMWARE_REVISION.encode().ljust(8), 6)
    data[73:76] = IEEE_OUI.to_bytes(3, "little")
    data[77] = MDTS
    struct.pack_into("<I", data, 80, VERSION)
    data[258], data[259], data[260], data[263] = 3, AERL, 0b011, 0   # ACL, AERL, FRMW, NPSS
    struct.pack_into("<HH", data, 266, 0x0157, 0x0175)              # WCTEMP, CCTEMP (K)
    data[512], data[513] = 0x66, 0x44                                # SQES, CQES
    struct.pack_into("<I", data, 516, 1)                             # NN
    struct.pack_into("<H", data, 520, 0b1100)                        # ONCS: DSM, Write Zeroes
    data[525] = 1                                                    # VWC
    struct.pack_into("<H", data, 2048, MAX_POWER_CENTIWATTS)         # PSD0: max power
    return bytes(data)


def identify_namespace(sectors: int) -> bytes:
    data = bytearray(PAGE)
    struct.pack_into("<QQQ", data, 0, sectors, sectors, sectors)    # NSZE, NCAP, NUSE
    data[33] = 0b001                                                  # DLFEAT: reads zeros
    struct.pack_into("<HBB", data, 128, 0, LBA_SHIFT, 0)             # LBAF0: 4096 bytes
    return bytes(data)

