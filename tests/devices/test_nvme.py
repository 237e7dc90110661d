"""The ANS2 NVMe controller driven the way Linux's nvme driver drives it, and by a hostile one."""

import ctypes
import logging
import os
import random
import struct
import threading
import time

import pytest

from imacpro.big_lock import BigLock
from imacpro.clock import Clock
from imacpro.bus.pci import BAR0, CMD_BUS_MASTER, CMD_MEMORY, COMMAND, PciBus, PciMemoryWindow
from imacpro.devices import nvme, nvme_io
from imacpro.irq import IrqLine
from imacpro.memory.ram import Ram
from imacpro.t2.sep import SecureEnclave
from imacpro.t2 import xts
from imacpro.t2.storage import IMAGE_FILE, EncryptedStore

MiB = 1 << 20
CAPACITY = 64 * MiB
SECTORS = CAPACITY // 4096
RAM_SIZE = 64 * MiB
BAR = 0x8000_0000
ASQ, ACQ = 0x10_0000, 0x10_1000
IOSQ, IOCQ = 0x11_0000, 0x12_0000        # 128 entries of 128 / 16 bytes
DATA = 0x20_0000                         # data buffers from here
PRP_LISTS = 0x1F_0000
ADMIN_DEPTH, IO_DEPTH = 32, 128
MSI_ADDRESS = 0xFEE0_0000


# How an engine calls a page served in C (bus/mmio.py's NativeAccess).
MMIO_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint,
                              ctypes.c_uint64, ctypes.c_void_p)


class Host:
    """A small NVMe driver: PCI setup, admin queue, one I/O queue pair on MSI vector 0. With
    a store the fixture marked `doorbells_in_c`, the controller serves its doorbells in C
    and the driver writes them there, as a vCPU's engine does."""

    def __init__(self, store, ram=None, msi=True, clock=None, cores=None):
        self.ram = ram or Ram(RAM_SIZE)
        self.messages = []
        self.intx = IrqLine("inta")
        self.ctrl = nvme.NvmeController(store, "C0TESTSERIAL0001", intx=self.intx, clock=clock)
        self.doorbell = None
        self.lock = BigLock()                # the machine's, which what C hands over takes
        if getattr(store, "doorbells_in_c", False):
            assert self.ctrl.serve_doorbells_in_c(self.lock, cores)
            (_, _, access), = self.ctrl._native_pages()
            self.doorbell = (MMIO_WRITE(access.write), access.opaque)
        self.bus = PciBus(send_msi=lambda address, data: self.messages.append((address, data)),
                          memory=self.ram)
        self.bus.attach(4, 0, self.ctrl.pci)
        self.window = PciMemoryWindow(self.bus, BAR)
        fn = self.ctrl.pci
        fn.write_config(BAR0, 4, BAR)
        fn.write_config(BAR0 + 4, 4, 0)
        fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
        if msi:
            self.enable_msi()
        self.sq_tail = {0: 0}
        self.cq_head = {0: 0}
        self.phase = {0: 1}
        self.next_cid = 1

    # registers
    def reg(self, offset, size=4):
        return self.window.read(offset, size)

    def set_reg(self, offset, value, size=4):
        if self.doorbell is not None and 0x1000 <= offset < 0x2000:
            write, opaque = self.doorbell
            write(None, offset - 0x1000, size, value, opaque)
        else:
            self.window.write(offset, size, value)

    def enable_msi(self, vectors_log2=0):
        cap = self.ctrl.msi.offset
        self.ctrl.pci.write_config(cap + 4, 4, MSI_ADDRESS)
        self.ctrl.pci.write_config(cap + 12, 2, 0x40)
        self.ctrl.pci.write_config(cap + 2, 2, 1 | vectors_log2 << 4)

    def enable(self, iosqes=6):
        self.set_reg(nvme.AQA, (ADMIN_DEPTH - 1) << 16 | (ADMIN_DEPTH - 1))
        self.set_reg(nvme.ASQ, ASQ, 8)
        self.set_reg(nvme.ACQ, ACQ, 8)
        self.set_reg(nvme.CC, 1 | iosqes << 16 | 4 << 20)
        assert self.reg(nvme.CSTS) & 1
        self.queues = {0: (ASQ, ADMIN_DEPTH, 64, ACQ, ADMIN_DEPTH)}

    def create_io_queues(self, vector=0, interrupts=True):
        assert self.admin(0x09, cdw=(7, 0)).status == 0          # one queue pair
        assert self.admin(0x05, prp1=IOCQ,
                          cdw=((IO_DEPTH - 1) << 16 | 1, vector << 16 | 2 * interrupts | 1)
                          ).status == 0
        assert self.admin(0x01, prp1=IOSQ, cdw=((IO_DEPTH - 1) << 16 | 1, 1 << 16 | 1)
                          ).status == 0
        self.queues[1] = (IOSQ, IO_DEPTH, 128, IOCQ, IO_DEPTH)
        self.sq_tail[1], self.cq_head[1], self.phase[1] = 0, 0, 1

    # commands
    def entry(self, opcode, cid, nsid=0, prp1=0, prp2=0, cdw=(), flags=0):
        cdw = tuple(cdw) + (0,) * (6 - len(cdw))
        return struct.pack("<BBHI8x8xQQ6I", opcode, flags, cid, nsid, prp1, prp2, *cdw)

    def place(self, qid, entry):
        sq, depth, size, _, _ = self.queues[qid]
        tail = self.sq_tail[qid]
        self.ram.write(sq + tail * size, entry.ljust(size, b"\0"))
        self.sq_tail[qid] = (tail + 1) % depth

    def ring(self, qid):
        self.set_reg(0x1000 + 8 * qid, self.sq_tail[qid])

    def submit(self, qid, opcode, settle=True, **fields):
        cid = self.next_cid
        self.next_cid = (self.next_cid + 1) % 0x10000
        self.place(qid, self.entry(opcode, cid, **fields))
        self.ring(qid)
        if settle:
            self.ctrl.settle()           # a flush completes when the host's fsync is done
        return cid

    def completions(self, qid):
        _, _, _, cq, depth = self.queues[qid]
        done = []
        while True:
            raw = self.ram.read(cq + self.cq_head[qid] * 16, 16)
            result, _, sqhd, sqid, cid, status = struct.unpack("<IIHHHH", raw)
            if status & 1 != self.phase[qid]:
                break
            done.append(Completion(result, sqhd, sqid, cid, status >> 1))
            self.cq_head[qid] = (self.cq_head[qid] + 1) % depth
            if self.cq_head[qid] == 0:
                self.phase[qid] ^= 1
        if done:
            self.set_reg(0x1000 + 8 * qid + 4, self.cq_head[qid])
        return done

    def run(self, qid, opcode, **fields):
        cid = self.submit(qid, opcode, **fields)
        done = self.completions(qid)
        assert [c.cid for c in done] == [cid], done
        return done[0]

    def admin(self, opcode, **fields):
        return self.run(0, opcode, **fields)

    def io(self, opcode, **fields):
        return self.run(1, opcode, **fields)

    # data
    def prps(self, buffer, length):
        """PRP1/PRP2 for a buffer of whole pages at `buffer` (a list when > 2 pages)."""
        pages = [buffer + 4096 * i for i in range(-(-length // 4096))]
        if len(pages) == 1:
            return pages[0], 0
        if len(pages) == 2:
            return pages[0], pages[1]
        self.ram.write(PRP_LISTS, struct.pack(f"<{len(pages) - 1}Q", *pages[1:]))
        return pages[0], PRP_LISTS

    def write(self, lba, data, buffer=DATA, **extra):
        self.ram.write(buffer, data)
        prp1, prp2 = self.prps(buffer, len(data))
        count = len(data) // 4096
        return self.io(0x01, nsid=1, prp1=prp1, prp2=prp2,
                       cdw=(lba & 0xFFFF_FFFF, lba >> 32, count - 1), **extra)

    def read(self, lba, count, buffer=DATA + 4 * MiB):
        prp1, prp2 = self.prps(buffer, count * 4096)
        done = self.io(0x02, nsid=1, prp1=prp1, prp2=prp2,
                       cdw=(lba & 0xFFFF_FFFF, lba >> 32, count - 1))
        return done, self.ram.read(buffer, count * 4096)


class Completion:
    def __init__(self, result, sqhd, sqid, cid, status):
        self.result, self.sqhd, self.sqid, self.cid, self.status = result, sqhd, sqid, cid, status

    @property
    def code(self):
        return self.status & 0x7FF           # type and code, without More/DNR

    def __repr__(self):
        return f"Completion(cid={self.cid}, status={self.status:#x}, result={self.result:#x})"


@pytest.fixture(params=["native", "portable", "doorbells-in-c"])
def store(tmp_path, request):
    """The store with its data path in C (native/ssd_dma.c, and the controller's I/O fast
    path, native/nvme_io.c) and in Python, and the controller's doorbells in C as well
    (native/nvme_doorbell.c): every test of the controller runs over the three, which must
    behave alike."""
    if request.param != "portable" and xts._native is None:
        pytest.skip("the SSD's native helper is not built (make builds it)")
    sep = SecureEnclave.create(tmp_path / "t2", 0x0012_3456_789A_BCDE)
    with EncryptedStore.create(tmp_path / "t2", CAPACITY, sep) as store:
        store._xts.native = request.param != "portable"
        store.doorbells_in_c = request.param == "doorbells-in-c"
        yield store


@pytest.fixture
def host(store):
    h = Host(store)
    h.enable()
    h.create_io_queues()
    return h


def pattern(n, seed=1):
    return random.Random(seed).randbytes(n)


# --- PCI function ---------------------------------------------------------------------------

def test_pci_identity_bar_sizing_and_capabilities(store):
    ctrl = nvme.NvmeController(store, "S")
    fn = ctrl.pci
    assert fn.read_config(0, 4) == 0x2005_106B
    assert fn.read_config(0x08, 4) >> 8 == nvme.CLASS_MASS_STORAGE_OTHER
    assert fn.read_config(0x2C, 4) == 0x1800_106B            # the T2's subsystem
    for index, size, low_bits in ((0, 4 << 20, 0b1100), (2, 512 << 10, 0b100),
                                  (4, 64 << 10, 0b100)):     # 64-bit; BAR0 prefetchable
        fn.write_config(BAR0 + 4 * index, 4, 0xFFFF_FFFF)
        fn.write_config(BAR0 + 4 * index + 4, 4, 0xFFFF_FFFF)
        assert fn.read_config(BAR0 + 4 * index, 4) == (0xFFFF_FFFF & ~(size - 1)) | low_bits
        assert fn.read_config(BAR0 + 4 * index + 4, 4) == 0xFFFF_FFFF
    caps, pointer = [], fn.read_config(0x34, 1)
    while pointer:
        caps.append(fn.read_config(pointer, 1))
        pointer = fn.read_config(pointer + 1, 1)
    assert caps == [0x05, 0x10]              # MSI, PCI Express: no MSI-X
    assert fn.read_config(0x06, 2) & 0x10     # capabilities list


def test_bar_decodes_only_with_memory_space_enabled_and_follows_moves(store):
    h = Host(store, msi=False)
    assert h.reg(nvme.VS) == 0x0001_0100
    h.ctrl.pci.write_config(COMMAND, 2, 0)
    assert h.reg(nvme.VS) == 0xFFFF_FFFF     # master abort: nothing decodes
    h.ctrl.pci.write_config(COMMAND, 2, CMD_MEMORY)
    h.ctrl.pci.write_config(BAR0, 4, BAR + 0x40_0000)
    assert h.reg(nvme.VS) == 0xFFFF_FFFF
    assert h.reg(0x40_0000 + nvme.VS) == 0x0001_0100


def test_apple_model_strings_by_capacity():
    assert nvme.apple_model(10**12) == "APPLE SSD AP1024M"
    assert nvme.apple_model(2 * 10**12) == "APPLE SSD AP2048M"
    assert nvme.apple_model(4 * 10**12) == "APPLE SSD AP4096M"
    serial = nvme.ssd_serial("C02VX0AAHX87")
    assert serial == nvme.ssd_serial("C02VX0AAHX87") != nvme.ssd_serial("C02VX0AAHX88")
    assert len(serial) == 16 and serial.isalnum()


# --- bring-up -------------------------------------------------------------------------------

def test_capabilities_register_and_enable(store):
    h = Host(store)
    cap = h.reg(nvme.CAP, 8)
    assert cap & 0xFFFF == 127 and cap >> 16 & 1          # MQES, contiguous queues required
    assert cap >> 32 & 0xF == 0 and cap >> 37 & 1          # doorbell stride 4, NVM command set
    assert cap >> 48 & 0xF == 0 and cap >> 52 & 0xF == 0   # 4 KiB pages only
    assert cap == h.reg(nvme.CAP) | h.reg(nvme.CAP + 4) << 32
    assert h.reg(nvme.CSTS) & 1 == 0
    h.enable()
    assert h.reg(nvme.ASQ, 8) == ASQ and h.reg(nvme.ACQ) == ACQ


def test_enable_with_the_admin_queue_outside_ram_fails_fatally(store):
    h = Host(store)
    h.set_reg(nvme.AQA, 31 << 16 | 31)
    h.set_reg(nvme.ASQ, 0xF000_0000, 8)
    h.set_reg(nvme.ACQ, ACQ, 8)
    h.set_reg(nvme.CC, 1 | 6 << 16 | 4 << 20)
    assert h.reg(nvme.CSTS) & 0b11 == 0b10                  # not ready, fatal status
    h.set_reg(nvme.CC, 0)
    assert h.reg(nvme.CSTS) == 0


def test_identify_controller_and_namespace(host):
    done = host.admin(0x06, prp1=DATA, cdw=(1,))
    assert done.status == 0
    ident = host.ram.read(DATA, 4096)
    vid, ssvid = struct.unpack_from("<HH", ident)
    assert (vid, ssvid) == (0x106B, 0x106B)
    assert ident[4:24].decode().strip() == "C0TESTSERIAL0001"
    assert ident[24:64].decode().strip() == "APPLE SSD AP1024M"
    assert ident[64:72].decode().strip() == nvme.FIRMWARE_REVISION.strip()
    assert ident[77] == nvme.MDTS and struct.unpack_from("<I", ident, 516)[0] == 1
    assert ident[512] == 0x66 and ident[513] == 0x44 and ident[525] & 1
    assert host.admin(0x06, nsid=1, prp1=DATA, cdw=(0,)).status == 0
    ns = host.ram.read(DATA, 4096)
    assert struct.unpack_from("<Q", ns)[0] == SECTORS
    assert ns[25] == 0 and ns[26] == 0 and ns[128 + 2] == 12    # one format: 4096-byte LBAs
    assert host.admin(0x06, nsid=0, prp1=DATA, cdw=(2,)).status == 0
    assert struct.unpack_from("<2I", host.ram.read(DATA, 8)) == (1, 0)
    assert host.admin(0x06, nsid=2, prp1=DATA, cdw=(0,)).code == nvme.INVALID_NAMESPACE
    assert host.admin(0x06, nsid=1, prp1=DATA, cdw=(3,)).code == nvme.INVALID_FIELD


def test_features_and_log_pages(host):
    assert host.admin(0x0A, cdw=(7,)).result == 0              # one queue pair granted
    assert host.admin(0x09, cdw=(7, 3 << 16 | 3)).code == nvme.SEQUENCE_ERROR
    assert host.admin(0x0A, cdw=(6,)).result == 1              # write cache on
    assert host.admin(0x09, cdw=(6, 0)).status == 0
    assert host.admin(0x0A, cdw=(6,)).result == 0
    assert host.admin(0x0A, cdw=(6 | 1 << 8,)).result == 1     # the default
    assert host.admin(0x09, cdw=(6 | 1 << 31, 1)).code == nvme.NOT_SAVEABLE
    assert host.admin(0x09, cdw=(0x7F, 1)).code == nvme.INVALID_FIELD
    assert host.admin(0x09, cdw=(2, 1)).code == nvme.INVALID_FIELD   # power state 1
    host.write(5, pattern(8192))
    assert host.admin(0x02, prp1=DATA, cdw=(2 | 127 << 16,)).status == 0
    smart = host.ram.read(DATA, 512)
    assert struct.unpack_from("<H", smart, 1)[0] == nvme.TEMPERATURE_K
    assert int.from_bytes(smart[48:64], "little") == 1            # data units written
    assert int.from_bytes(smart[80:96], "little") == 1            # host write commands
    assert host.admin(0x02, prp1=DATA, cdw=(3 | 127 << 16,)).status == 0
    assert host.ram.read(DATA + 8, 8).decode().strip() == nvme.FIRMWARE_REVISION.strip()
    assert host.admin(0x02, prp1=DATA, cdw=(0xC0 | 127 << 16,)).code == nvme.INVALID_LOG_PAGE


# --- data -----------------------------------------------------------------------------------

def test_write_read_round_trip_lands_encrypted(host, store):
    data = pattern(64 * 1024)
    assert host.write(100, data).status == 0
    done, back = host.read(100, 16)
    assert done.status == 0 and back == data
    assert host.io(0x00, nsid=1).status == 0                       # flush
    raw = (store.directory / "ssd.img").read_bytes()
    assert data[:4096] not in raw and raw[100 * 4096:116 * 4096] != data
    assert store.read(100, 16) == data


def test_one_megabyte_through_chained_prp_lists(host):
    data = pattern(MiB, seed=7)
    host.ram.write(DATA, data)
    pages = [DATA + 4096 * i for i in range(256)]
    # Three list pages, the first two starting inside their page: 1 entry + pointer,
    # 99 entries + pointer, then the last 155 entries.
    first, second, third = PRP_LISTS + 4096 - 16, PRP_LISTS + 3 * 4096 - 800, PRP_LISTS + 12288
    host.ram.write(first, struct.pack("<QQ", pages[1], second))
    host.ram.write(second, struct.pack("<100Q", *pages[2:101], third))
    host.ram.write(third, struct.pack("<155Q", *pages[101:]))
    done = host.io(0x01, nsid=1, prp1=pages[0], prp2=first, cdw=(1000, 0, 255))
    assert done.status == 0
    back = host.ram.read(DATA + 4 * MiB, MiB)
    assert back != data
    _, back = host.read(1000, 256)
    assert back == data


def test_unaligned_first_prp_and_small_transfers(host):
    data = pattern(4096, seed=3)
    host.ram.write(DATA + 0x200, data)
    done = host.io(0x01, nsid=1, prp1=DATA + 0x200, prp2=DATA + 0x1000, cdw=(7, 0, 0))
    assert done.status == 0
    assert host.read(7, 1)[1] == data


def test_scattered_pages_with_an_unaligned_first_read_and_write_like_contiguous_ones(host):
    """Pages in any order, the first starting inside its page: every sector then straddles
    two pages (the native path goes through its buffer), and each byte lands in its place."""
    data = pattern(16 * 4096, seed=5)
    pages = [DATA + 0x2000 * i for i in range(17)]
    random.Random(5).shuffle(pages)
    first = pages[0] + 0x200
    pieces = [(first, 4096 - 0x200)] + [(page, 4096) for page in pages[1:16]] + \
        [(pages[16], 0x200)]
    listing = struct.pack("<16Q", *pages[1:])

    def scatter(blob):
        at = 0
        for address, size in pieces:
            host.ram.write(address, blob[at:at + size])
            at += size

    def gather():
        return b"".join(host.ram.read(address, size) for address, size in pieces)

    scatter(data)
    host.ram.write(PRP_LISTS, listing)
    assert host.io(0x01, nsid=1, prp1=first, prp2=PRP_LISTS, cdw=(20, 0, 15)).status == 0
    assert host.read(20, 16)[1] == data                # (its own PRP list, at PRP_LISTS)
    scatter(bytes(len(data)))
    host.ram.write(PRP_LISTS, listing)
    assert host.io(0x02, nsid=1, prp1=first, prp2=PRP_LISTS, cdw=(20, 0, 15)).status == 0
    assert gather() == data
    assert host.io(0x02, nsid=1, prp1=first, prp2=PRP_LISTS, cdw=(40, 0, 15)).status == 0
    assert gather() == bytes(len(data))                # unwritten: zeros, in every piece


def test_trim_and_write_zeroes_read_back_zeros(host, store):
    host.write(0, pattern(8 * 4096))
    ranges = struct.pack("<IIQ", 0, 2, 1) + struct.pack("<IIQ", 0, 1, 6)
    host.ram.write(DATA + 8 * MiB, ranges)
    assert host.io(0x09, nsid=1, prp1=DATA + 8 * MiB, cdw=(1, 4)).status == 0
    assert host.io(0x08, nsid=1, cdw=(4, 0, 0)).status == 0     # write zeroes on LBA 4
    back = host.read(0, 8)[1]
    original = pattern(8 * 4096)
    for lba in range(8):
        expect = bytes(4096) if lba in (1, 2, 4, 6) else original[lba * 4096:(lba + 1) * 4096]
        assert back[lba * 4096:(lba + 1) * 4096] == expect, lba


def test_writes_without_write_cache_or_with_fua_are_flushed(host, store, monkeypatch):
    flushes = []
    monkeypatch.setattr(store, "flush", lambda: flushes.append(1))
    host.write(1, pattern(4096))
    assert flushes == []
    done = host.io(0x01, nsid=1, prp1=DATA, cdw=(1, 0, 1 << 30))     # FUA
    assert done.status == 0 and flushes == [1]
    host.admin(0x09, cdw=(6, 0))
    host.write(2, pattern(4096))
    assert flushes == [1, 1]


class SlowStore:
    """The store, with an fsync that waits until the test lets it finish (or fail)."""

    def __init__(self, store):
        self.store = store
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail = False

    def __getattr__(self, name):
        return getattr(self.store, name)

    def flush(self):
        self.started.set()
        assert self.release.wait(10)
        if self.fail:
            raise OSError(5, "Input/output error")
        self.store.flush()


@pytest.fixture
def slow(store):
    clock = Clock()
    slow_store = SlowStore(store)
    h = Host(slow_store, clock=clock)
    h.enable()
    h.create_io_queues()
    h.messages.clear()
    yield h, slow_store, clock
    slow_store.release.set()


def tick(clock, host):
    """Let the run loop look: time passes to the controller's poll and its timer runs."""
    clock.advance(nvme.FLUSH_POLL_NS)
    clock.run_due()


def test_a_flush_completes_when_the_hosts_fsync_is_done_and_nothing_waits_for_it(slow):
    host, store, clock = slow
    flush = host.submit(1, nvme.IO_FLUSH, settle=False, nsid=1)
    assert store.started.wait(10)
    read = host.submit(1, nvme.IO_READ, settle=False, nsid=1, prp1=DATA, cdw=(0, 0, 0))
    assert [c.cid for c in host.completions(1)] == [read]   # the read did not wait
    tick(clock, host)
    assert host.completions(1) == [] and len(host.messages) == 1
    store.release.set()
    for _ in range(1000):                                   # the fsync ends on its thread
        time.sleep(0.005)
        tick(clock, host)
        done = host.completions(1)
        if done:
            break
    assert [(c.cid, c.status) for c in done] == [(flush, 0)] and len(host.messages) == 2
    assert not clock.pending()                              # no poll once nothing is left


def test_a_waiting_flush_holds_its_completion_slot(slow, store):
    """Three slots in a CQ of four: the flush holds one, so of three reads two complete and
    the third waits until the host consumes those two, not for the flush."""
    host, slow_store, clock = slow
    assert host.admin(0x00, cdw=(1,)).status == 0           # delete the I/O SQ and CQ...
    assert host.admin(0x04, cdw=(1,)).status == 0
    assert host.admin(0x05, prp1=IOCQ, cdw=(3 << 16 | 1, 0 << 16 | 2 | 1)).status == 0
    assert host.admin(0x01, prp1=IOSQ, cdw=(IO_DEPTH - 1 << 16 | 1, 1 << 16 | 1)).status == 0
    host.queues[1] = (IOSQ, IO_DEPTH, 128, IOCQ, 4)         # ...and make a CQ of four
    host.sq_tail[1], host.cq_head[1], host.phase[1] = 0, 0, 1
    flush = host.submit(1, nvme.IO_FLUSH, settle=False, nsid=1)
    reads = [host.submit(1, nvme.IO_READ, settle=False, nsid=1, prp1=DATA, cdw=(n, 0, 0))
             for n in range(3)]
    assert [c.cid for c in host.completions(1)] == reads[:2]   # (and frees their slots)
    assert [c.cid for c in host.completions(1)] == [reads[2]]
    slow_store.release.set()
    host.ctrl.settle()
    assert [c.cid for c in host.completions(1)] == [flush]


def test_a_failed_fsync_is_a_write_fault(slow):
    host, store, clock = slow
    store.fail = True
    store.release.set()
    done = host.io(nvme.IO_FLUSH, nsid=1)
    assert done.status == nvme.WRITE_FAULT


def test_a_reset_waits_for_the_fsync_and_drops_its_completion(slow):
    host, store, clock = slow
    host.submit(1, nvme.IO_FLUSH, settle=False, nsid=1)
    assert store.started.wait(10)
    threading.Timer(0.05, store.release.set).start()
    host.set_reg(nvme.CC, 0)                                # waits for the fsync
    assert store.release.is_set() and host.ctrl.flushing == []
    tick(clock, host)
    assert host.completions(1) == []


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, code", [
    (dict(opcode=0x7E, nsid=1), nvme.INVALID_OPCODE),
    (dict(opcode=0x02, nsid=2, prp1=DATA), nvme.INVALID_NAMESPACE),
    (dict(opcode=0x02, nsid=1, prp1=DATA, cdw=(SECTORS - 1, 0, 1)), nvme.LBA_OUT_OF_RANGE),
    (dict(opcode=0x02, nsid=1, prp1=DATA, cdw=(0xFFFF_FFFF, 0xFFFF_FFFF, 0)),
     nvme.LBA_OUT_OF_RANGE),
    (dict(opcode=0x02, nsid=1, prp1=DATA + 2), nvme.PRP_OFFSET_INVALID),
    (dict(opcode=0x02, nsid=1, prp1=DATA, prp2=DATA + 0x1010, cdw=(0, 0, 1)),
     nvme.PRP_OFFSET_INVALID),
    (dict(opcode=0x02, nsid=1, prp1=0xF000_0000), nvme.DATA_TRANSFER_ERROR),
    (dict(opcode=0x01, nsid=1, prp1=RAM_SIZE - 4096, prp2=RAM_SIZE, cdw=(0, 0, 1)),
     nvme.DATA_TRANSFER_ERROR),
    (dict(opcode=0x02, nsid=1, prp1=DATA, prp2=PRP_LISTS, cdw=(0, 0, 256)), nvme.INVALID_FIELD),
    (dict(opcode=0x02, nsid=1, prp1=DATA, flags=0x40), nvme.INVALID_FIELD),      # SGL
    (dict(opcode=0x02, nsid=1, prp1=DATA, flags=0x01), nvme.INVALID_FIELD),      # fused
    (dict(opcode=0x09, nsid=1, prp1=DATA, cdw=(0, 4)), nvme.LBA_OUT_OF_RANGE),
    (dict(opcode=0x00, nsid=5), nvme.INVALID_NAMESPACE),
])
def test_bad_io_commands_get_error_statuses(host, fields, code):
    fields = dict(fields)                  # the same one serves both stores' runs
    if fields["opcode"] == 0x09:
        host.ram.write(DATA, struct.pack("<IIQ", 0, 10, SECTORS - 5))
    opcode = fields.pop("opcode")
    done = host.io(opcode, **fields)
    assert done.code == code and done.status & nvme.DNR


def test_prp_list_that_points_at_itself_ends_in_an_error(host):
    loop = PRP_LISTS + 4096 - 8                      # one slot: always "the next list"
    host.ram.write(loop, struct.pack("<Q", loop))
    done = host.io(0x02, nsid=1, prp1=DATA, prp2=loop, cdw=(0, 0, 3))
    assert done.status != 0


@pytest.mark.parametrize("opcode, cdw, prp1, code", [
    (0x05, (5 << 16 | 1, 3), IOCQ + 0x10000, nvme.INVALID_QID),            # exists
    (0x05, (5 << 16 | 9, 3), IOCQ + 0x10000, nvme.INVALID_QID),            # not granted
    (0x05, (5 << 16 | 0, 3), IOCQ + 0x10000, nvme.INVALID_QID),            # admin
    (0x01, (5 << 16 | 1, 1 << 16 | 1), IOSQ, nvme.INVALID_QID),
    (0x04, (1,), 0, nvme.INVALID_QUEUE_DELETION),                           # SQ 1 uses it
    (0x00, (7,), 0, nvme.INVALID_QID),
    (0x04, (0,), 0, nvme.INVALID_QID),
    (0x7F, (), 0, nvme.INVALID_OPCODE),
])
def test_bad_admin_commands_get_error_statuses(host, opcode, cdw, prp1, code):
    assert host.admin(opcode, cdw=cdw, prp1=prp1).code == code


def test_queue_creation_checks(store):
    h = Host(store)
    h.enable()
    h.admin(0x09, cdw=(7, 1 << 16 | 1))                                    # two pairs
    assert h.admin(0x05, prp1=IOCQ, cdw=(128 << 16 | 1, 3)).code == nvme.INVALID_QSIZE
    assert h.admin(0x05, prp1=IOCQ, cdw=(0 << 16 | 1, 3)).code == nvme.INVALID_QSIZE
    assert h.admin(0x05, prp1=IOCQ + 8, cdw=(7 << 16 | 1, 3)).code == nvme.INVALID_FIELD
    assert h.admin(0x05, prp1=IOCQ, cdw=(7 << 16 | 1, 2)).code == nvme.INVALID_FIELD  # PC=0
    assert h.admin(0x05, prp1=0xF000_0000, cdw=(7 << 16 | 1, 3)).code == nvme.INVALID_FIELD
    assert h.admin(0x05, prp1=IOCQ, cdw=(7 << 16 | 1, 99 << 16 | 3)).code == \
        nvme.INVALID_VECTOR
    assert h.admin(0x01, prp1=IOSQ, cdw=(7 << 16 | 1, 1 << 16 | 1)).code == nvme.CQ_INVALID
    assert h.admin(0x05, prp1=IOCQ, cdw=(7 << 16 | 1, 3)).status == 0
    assert h.admin(0x01, prp1=IOSQ, cdw=(7 << 16 | 1, 1 << 16 | 1)).status == 0
    assert h.admin(0x00, cdw=(1,)).status == 0
    assert h.admin(0x04, cdw=(1,)).status == 0


def test_io_submission_entries_are_128_bytes_whatever_iosqes_says(store):
    h = Host(store)
    h.enable(iosqes=6)
    h.create_io_queues()
    for lba in range(3):                  # three entries: at 0, 128 and 256 bytes
        assert h.write(lba, pattern(4096, seed=lba)).status == 0
    assert h.read(2, 1)[1] == pattern(4096, seed=2)


# --- queues, doorbells, interrupts ----------------------------------------------------------

def test_full_completion_queue_holds_commands_until_the_host_frees_a_slot(host):
    # Two batches of 20 into the 32-entry admin queues, no completion consumed in between:
    # the CQ takes 31 (one slot stays empty), 9 commands wait in the SQ.
    cids = []
    for _ in range(2):
        for _ in range(20):
            cids.append(host.next_cid)
            host.place(0, host.entry(0x0A, host.next_cid, cdw=(6,)))
            host.next_cid += 1
        host.ring(0)
    sq = host.ctrl.sqs[0]
    assert (sq.tail - sq.head) % 32 == 9
    first = host.completions(0)             # reads 31, then frees them: the rest run
    assert [c.cid for c in first] == cids[:31]
    rest = host.completions(0)
    assert [c.cid for c in rest] == cids[31:]
    assert all(c.status == 0 for c in first + rest)


def test_plain_io_runs_in_c_and_the_commands_it_does_not_take_complete_in_python(
        host, store, monkeypatch):
    """With the native path, reads and writes are run by nvme_io.c; a command it does not
    take (a bad opcode, an out-of-range read, a write needing a flush) stops it there and
    completes in Python with its status, in queue order, and the queue goes on in C."""
    posted = []
    run = nvme_io.FastIo.run
    monkeypatch.setattr(nvme_io.FastIo, "run", lambda self, *args, **kwargs: posted.append(
        run(self, *args, **kwargs)) or posted[-1])
    data = pattern(3 * 4096, seed=5)
    host.ram.write(DATA, data)
    read_buffer = DATA + 4 * MiB
    batch = [
        dict(opcode=0x01, nsid=1, prp1=DATA, prp2=DATA + 4096, cdw=(10, 0, 1)),
        dict(opcode=0x7F, nsid=1),
        dict(opcode=0x02, nsid=1, prp1=read_buffer, cdw=(SECTORS - 1, 0, 1)),
        dict(opcode=0x01, nsid=1, prp1=DATA + 8192, cdw=(12, 0, 0)),
        dict(opcode=0x02, nsid=1, prp1=read_buffer, prp2=read_buffer + 4096,
             cdw=(11, 0, 1)),
        dict(opcode=0x01, nsid=1, prp1=DATA + 8192, cdw=(13, 0, 1 << 30)),      # FUA
    ]
    cids = []
    for fields in batch:
        fields = dict(fields)
        cids.append(host.next_cid)
        host.place(1, host.entry(fields.pop("opcode"), host.next_cid, **fields))
        host.next_cid += 1
    host.ring(1)
    host.ctrl.settle()
    done = host.completions(1)
    assert [c.cid for c in done] == cids
    assert [c.code for c in done] == [0, nvme.INVALID_OPCODE, nvme.LBA_OUT_OF_RANGE, 0, 0, 0]
    assert [c.sqhd for c in done] == [1, 2, 3, 4, 5, 6]
    assert host.ram.read(read_buffer, 2 * 4096) == data[4096:]
    native = sum(posted)
    if store.doorbells_in_c:                # the first write ran in the doorbell's C
        assert native == 2 and host.ctrl.doorbells_served_in_c == 2    # and the CQ's head
    else:
        assert native == (3 if store._xts.native else 0)   # the writes and the read between
    assert host.ctrl.stats["reads"] == 1 and host.ctrl.stats["writes"] == 3


def test_a_full_io_completion_queue_stops_the_fast_path_until_a_slot_is_freed(host):
    """127 reads fill the 128-entry CQ (one slot stays empty); ten more wait in the SQ and
    run once the host has consumed the completions, the phase flipped where it wraps."""
    host.write(0, pattern(4096, seed=6))
    cids = []
    for batch in (127, 10):
        for _ in range(batch):
            cids.append(host.next_cid)
            host.place(1, host.entry(0x02, host.next_cid, nsid=1, prp1=DATA + 4 * MiB))
            host.next_cid += 1
        host.ring(1)
    host.ctrl.settle()                       # the queues' state back from C, if it is there
    sq = host.ctrl.sqs[1]
    assert (sq.tail - sq.head) % IO_DEPTH == 10
    first = host.completions(1)
    rest = host.completions(1)
    assert [c.cid for c in first + rest] == cids
    assert len(first) == 127 and all(c.status == 0 for c in first + rest)
    assert host.ram.read(DATA + 4 * MiB, 4096) == pattern(4096, seed=6)


def test_phase_tag_flips_when_the_completion_queue_wraps(host):
    for i in range(300):                     # more than twice around the 128-entry I/O CQ
        assert host.io(0x00, nsid=1).status == 0, i


def test_invalid_doorbell_writes_raise_asynchronous_error_events(host):
    aer = host.submit(0, 0x0C)
    assert host.completions(0) == []                       # outstanding
    host.set_reg(0x1000 + 8 * 9, 1)                        # SQ 9 does not exist
    done = host.completions(0)
    assert [c.cid for c in done] == [aer] and done[0].result == 0x01_00_00 | 0 << 8
    host.submit(0, 0x0C)
    host.set_reg(0x1000 + 8, 5000)                         # past the I/O SQ's end
    assert host.completions(0)[0].result == 0x01_01_00
    for _ in range(nvme.AERL + 2):                         # AERL + 1 may be outstanding
        host.submit(0, 0x0C)
    assert [c.code for c in host.completions(0)] == [nvme.AER_LIMIT]


def test_msi_offers_eight_vectors_and_no_msix(store):
    """As the real T2's function 0: MSI with 8 vectors (MMC 3), no MSI-X capability; a CQ on
    vector n sends the message data with n in its low bits once 8 are granted, and folds onto
    the vectors granted otherwise."""
    h = Host(store, msi=False)
    fn = h.ctrl.pci
    caps, at = [], fn.read_config(0x34, 1)
    while at:
        caps.append(fn.read_config(at, 1))
        at = fn.read_config(at + 1, 1)
    assert 0x05 in caps and 0x11 not in caps
    assert (fn.read_config(h.ctrl.msi.offset + 2, 2) >> 1) & 7 == 3
    h.enable_msi(vectors_log2=3)
    h.enable()
    h.create_io_queues(vector=5)
    h.submit(1, 0x00, nsid=1)
    assert h.messages[-1] == (MSI_ADDRESS, 0x45)
    h.completions(1)
    h.ctrl.pci.write_config(h.ctrl.msi.offset + 2, 2, 1 | 1 << 4)   # 2 vectors granted
    h.submit(1, 0x00, nsid=1)
    assert h.messages[-1] == (MSI_ADDRESS, 0x41)


def test_msi_and_intx_fallbacks(store):
    h = Host(store, msi=False)
    h.enable()
    cap = h.ctrl.msi.offset
    h.ctrl.pci.write_config(cap + 4, 4, 0xFEE0_1000)
    h.ctrl.pci.write_config(cap + 12, 2, 0x4041)
    h.ctrl.pci.write_config(cap + 2, 2, 1)
    h.admin(0x0A, cdw=(6,))
    assert h.messages == [(0xFEE0_1000, 0x4041)] and not h.intx.level
    h.set_reg(nvme.INTMS, 1)
    h.submit(0, 0x0A, cdw=(6,))
    assert len(h.messages) == 1
    h.set_reg(nvme.INTMC, 1)
    assert len(h.messages) == 2
    h.completions(0)
    h.ctrl.pci.write_config(cap + 2, 2, 0)                 # MSI off: INTA#
    h.submit(0, 0x0A, cdw=(6,))
    assert h.intx.level and h.ctrl.pci.read_config(0x06, 2) & 0x8
    h.completions(0)                                       # head doorbell: deasserted
    assert not h.intx.level
    h.submit(0, 0x0A, cdw=(6,))
    h.ctrl.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER | 1 << 10)
    assert not h.intx.level                                # INTx disable
    assert h.ctrl.pci.read_config(0x06, 2) & 0x8           # still pending in status


def test_no_bus_mastering_no_commands(store):
    h = Host(store)
    h.enable()
    h.ctrl.pci.write_config(COMMAND, 2, CMD_MEMORY)
    cid = h.submit(0, 0x0A, cdw=(6,))
    assert h.completions(0) == []
    h.ctrl.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)   # they run now
    assert [c.cid for c in h.completions(0)] == [cid]


def test_controller_reset_and_shutdown(host, store, monkeypatch):
    flushes = []
    monkeypatch.setattr(store, "flush", lambda: flushes.append(1))
    host.set_reg(nvme.CC, host.reg(nvme.CC) | 1 << 14)     # normal shutdown
    assert host.reg(nvme.CSTS) & 0xC == 0x8 and flushes == [1]
    host.set_reg(nvme.CC, 0)
    assert host.reg(nvme.CSTS) == 0 and host.ctrl.sqs == {} and host.ctrl.cqs == {}
    host.sq_tail, host.cq_head, host.phase = {0: 0}, {0: 0}, {0: 1}
    host.ram.write(ACQ, bytes(4096))
    host.enable()
    host.create_io_queues()
    assert host.write(3, pattern(4096)).status == 0


def test_store_failure_is_a_media_error_not_a_crash(host, store):
    """The host refuses the image's I/O (here: its file open for reading only, so every
    write fails with EBADF): a write fault, and a read of it an unrecovered read error."""
    assert host.write(0, pattern(4096)).status == 0
    # The doorbells' C side has its own descriptor of the image: it is swapped as well.
    native = host.ctrl._native
    kept = os.dup(native.fd) if native else None

    def swap_image(fd):
        store._fd = fd
        if native:
            os.dup2(fd, native.fd)

    image, read_only = store._fd, os.open(store.directory / IMAGE_FILE, os.O_RDONLY)
    swap_image(read_only)
    try:
        done = host.write(0, pattern(4096, seed=2))
        assert done.code == nvme.WRITE_FAULT and not done.status & nvme.DNR
        assert host.read(0, 1)[1] == pattern(4096)        # reads still work
        os.close(read_only)
        swap_image(os.open("/dev/null", os.O_WRONLY))      # and now they fail: EBADF
        done, _ = host.read(0, 1)
        assert done.code == nvme.UNRECOVERED_READ and not done.status & nvme.DNR
    finally:
        os.close(store._fd)
        store._fd = image
        if native:
            os.dup2(kept, native.fd)
            os.close(kept)


# --- the doorbells in C --------------------------------------------------------------------

@pytest.fixture
def in_c(store):
    if not store.doorbells_in_c:
        pytest.skip("the doorbells in C only")
    return store


def test_plain_reads_and_writes_ring_no_python(in_c, monkeypatch):
    """Once the I/O queues are up, a read or a write and its CQ head are served by
    nvme_doorbell.c: Python's register write is never called for them, the completions
    are posted and the statistics count them when Python takes the state back."""
    h = Host(in_c)
    h.enable()
    h.create_io_queues()
    python = []
    write = h.ctrl.write
    monkeypatch.setattr(h.ctrl, "write", lambda *args: python.append(args) or write(*args))
    served = h.ctrl.doorbells_served_in_c
    for lba in range(8):
        assert h.write(lba, pattern(8192, seed=lba)).status == 0
    for lba in range(8):
        done, data = h.read(lba, 2)
        assert done.status == 0 and data[:4096] == pattern(8192, seed=lba)[:4096]
    assert python == [] and h.ctrl.doorbells_served_in_c - served == 32
    assert len(h.messages) >= 16                # an MSI per completion, through Python here
    h.ctrl.settle()                             # Python takes the state: it sees all of it
    assert h.ctrl.stats["writes"] == 8 and h.ctrl.stats["reads"] == 8
    sq, cq = h.ctrl.sqs[1], h.ctrl.cqs[1]
    assert sq.head == sq.tail == 16 and cq.head == cq.tail == 16


def test_a_fixed_msi_goes_to_the_apic_core_in_c(in_c):
    """With the APICs' cores, the completion's message (fixed, physical, edge) is sent by C:
    the vector reaches the core's IRR and Python sends nothing."""
    from imacpro.clock import ClockView
    from imacpro.devices.apic_core import ApicCore, ApicCoreBus
    cores = ApicCoreBus()
    core = ApicCore(ClockView())
    core.c.hw_enabled = core.c.sw_enabled = 1
    cores.attach(core)                          # APIC ID 0: the message's destination
    h = Host(in_c, cores=cores)
    h.enable()
    h.create_io_queues()
    before = len(h.messages)
    assert h.write(3, pattern(4096)).status == 0
    assert len(h.messages) == before and core.irr == 1 << 0x40
    h.set_reg(nvme.INTMS, 1)                    # masked: the message waits in Python
    core.irr = 0
    assert h.write(4, pattern(4096)).status == 0
    assert core.irr == 0 and h.ctrl.msi_pending == 1
    h.set_reg(nvme.INTMC, 1)
    assert h.messages[before:] == [(MSI_ADDRESS, 0x40)]


def test_what_c_does_not_serve_goes_to_python(in_c, monkeypatch):
    """The admin queue, a queue that does not exist, a value past a queue's end, an 8-byte
    write and a controller that bus mastering left: Python's, which answers each as
    before (an asynchronous event for the bad doorbells)."""
    h = Host(in_c)
    h.enable()
    h.create_io_queues()
    served = h.ctrl.doorbells_served_in_c
    aer = h.submit(0, 0x0C)
    assert h.completions(0) == [] and h.ctrl.doorbells_served_in_c == served
    h.set_reg(0x1000 + 8 * 9, 1)                # SQ 9 does not exist
    h.set_reg(0x1000 + 8 * 1, IO_DEPTH)         # past SQ 1's end
    done = h.completions(0)
    assert [c.cid for c in done] == [aer] and h.ctrl.doorbells_served_in_c == served
    h.ctrl.pci.write_config(COMMAND, 2, CMD_MEMORY)        # no bus mastering: no fetch
    cid = h.submit(1, 0x00, nsid=1)
    assert h.completions(1) == []
    h.ctrl.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    h.ctrl.settle()                             # the flush's completion waits for its fsync
    assert [c.cid for c in h.completions(1)] == [cid]
    assert h.ctrl.doorbells_served_in_c == served + 1      # the CQ head only


def test_doorbells_from_many_threads_lose_nothing(in_c):
    """Four threads ring one SQ's doorbell for reads they place under a lock (as Linux's
    sq_lock), while a fifth writes INTMS and INTMC through Python (under the machine's lock,
    as a vCPU's MMIO callback does): every command completes once, with its data."""
    h = Host(in_c)
    h.enable()
    h.create_io_queues()
    for lba in range(4):
        h.write(lba, pattern(4096, seed=lba))
    sq_lock, done, stop = threading.Lock(), [], threading.Event()

    def reader(n):
        for i in range(100):
            with sq_lock:
                cid = 1000 * (n + 1) + i
                h.place(1, h.entry(0x02, cid, nsid=1, prp1=DATA + 4 * MiB + 4096 * n,
                                   cdw=(n, 0, 0)))
                h.ring(1)
                done.extend(h.completions(1))

    def masker():
        while not stop.is_set():
            with h.lock:
                h.set_reg(nvme.INTMS, 1)
            with h.lock:
                h.set_reg(nvme.INTMC, 1)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    side = threading.Thread(target=masker)
    side.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    side.join()
    assert sorted(c.cid for c in done) == sorted(1000 * (n + 1) + i
                                                 for n in range(4) for i in range(100))
    assert all(c.status == 0 for c in done)
    for n in range(4):
        assert h.ram.read(DATA + 4 * MiB + 4096 * n, 4096) == pattern(4096, seed=n)


# --- fuzz -----------------------------------------------------------------------------------

CORRUPTIONS = [
    ("opcode", lambda e: struct.pack_into("<B", e, 0, random.choice([0x03, 0x07, 0x7F, 0xFF]))),
    ("nsid", lambda e: struct.pack_into("<I", e, 4, random.choice([0, 2, 0xFFFF_FFFE]))),
    ("sgl", lambda e: struct.pack_into("<B", e, 1, random.choice([0x40, 0x80, 0x01, 0x02]))),
    ("prp1", lambda e: struct.pack_into("<Q", e, 24, random.choice(
        [DATA + 1, 0xF000_0000, 1 << 60, RAM_SIZE]))),
    ("lba", lambda e: struct.pack_into("<Q", e, 40, random.randrange(SECTORS, 1 << 64))),
]


def test_fuzz_malformed_commands_get_errors_and_the_controller_survives(host, caplog):
    rng = random.Random(1234)
    random.seed(1234)
    caplog.set_level(logging.ERROR)
    for i in range(600):
        valid = host.entry(rng.choice([0x01, 0x02]), 0, nsid=1, prp1=DATA,
                           cdw=(rng.randrange(SECTORS), 0, 0))
        entry = bytearray(valid)
        name, corrupt = rng.choice(CORRUPTIONS)
        corrupt(entry)
        struct.pack_into("<H", entry, 2, i)
        host.place(1, bytes(entry))
        host.ring(1)
        done = host.completions(1)
        assert len(done) == 1 and done[0].cid == i, (name, done)
        assert done[0].status != 0, (name, entry.hex())
    for i in range(2000):                     # random bytes on both queues
        qid = rng.choice([0, 1])
        host.place(qid, rng.randbytes(64 if qid == 0 else 128))
        host.ring(qid)
        host.completions(qid)
    for _ in range(2000):                     # random register and doorbell writes
        offset = rng.choice([rng.randrange(0, 0x40, 4), rng.randrange(0x1000, 0x1100, 4),
                             rng.randrange(0x2000, 0x2100, 4), rng.randrange(0x4000)])
        size = rng.choice([1, 2, 4, 8])
        if offset < nvme.ACQ + 8 and offset + size > nvme.CC:
            continue                          # the fuzz keeps the admin queue alive
        host.set_reg(offset, rng.getrandbits(8 * size), size)   # doorbells to C, if there
    assert not [r for r in caplog.records if "failed inside the device" in r.getMessage()]
    assert host.reg(nvme.CSTS) & 0b11 == 0b01
    host.ctrl.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    host.set_reg(nvme.INTMC, 0xFFFF_FFFF)
    host.completions(0)
    cid = host.submit(0, 0x06, prp1=DATA, cdw=(1,))
    assert any(c.cid == cid and c.status == 0 for c in host.completions(0))


def test_a_platform_reset_forgets_the_admin_queues_and_disables_the_controller(host):
    """A reboot: the controller comes back as at power-on (NVMe 1.4 §7.3.1)."""
    ctrl = host.ctrl
    assert ctrl.read(nvme.CSTS, 4) & 1 and ctrl.cqs
    ctrl.reset()
    for register in (nvme.CC, nvme.CSTS, nvme.AQA, nvme.ASQ, nvme.ACQ):
        assert ctrl.read(register, 4) == 0, register
    assert ctrl.sqs == {} and ctrl.cqs == {} and ctrl.pci.command == 0
