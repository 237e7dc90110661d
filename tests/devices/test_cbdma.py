"""A CBDMA function driven the way Linux 6.1's ioatdma drives it (drivers/dma/ioat: init.c's
probe and self test, dma.c's ring, doorbell, cleanup and error handling, prep.c's memcpy),
and by a hostile guest."""

import random
import struct
import time

import pytest

from imacpro.bus.pci import (BAR0, CMD_BUS_MASTER, CMD_INTX_DISABLE, CMD_MEMORY, COMMAND,
                             PciBus, PciMemoryWindow)
from imacpro.devices import cbdma as C
from imacpro.devices.contract import StateError
from imacpro.irq import IrqLine
from imacpro.memory.ram import Ram

BAR = 0x8000_0000
MSI_ADDRESS, MSI_DATA = 0xFEE0_0000, 0x41
RING, COMPLETION, BUFFERS = 0x10_0000, 0x0F_0000, 0x20_0000
RING_ENTRIES = 64
RUN = C.INT_REARM | C.ERR_COMPLETION_EN | C.ANY_ERR_ABORT_EN | C.ERR_INT_EN   # IOAT_CHANCTRL_RUN
SELF_TEST_SIZE = 2000
PENDING_LEVEL = 7                                      # ioat_pending_level


class Ioatdma:
    """ioatdma's steps, as register and memory accesses. The ring is RING_ENTRIES long (the
    driver's is 65536; the engine only follows the next pointers)."""

    def __init__(self, style="msix", msi=False, function=0):
        self.ram = Ram(16 << 20)
        self.messages = []
        self.intx = IrqLine("cbdma")
        self.dev = C.CbdmaChannel(function, intx=self.intx, msi=msi)
        self.fn = self.dev.pci
        self.bus = PciBus(send_msi=lambda address, data: self.messages.append((address, data)),
                          memory=self.ram)
        self.bus.attach(4, function, self.fn)
        self.fn.write_config(BAR0, 4, BAR)
        self.fn.write_config(BAR0 + 4, 4, 0)
        self.fn.write_config(COMMAND, 2, CMD_MEMORY)          # pcim_enable_device
        self.mmio = PciMemoryWindow(self.bus, BAR)
        self.style = style
        self.irq_mode = None
        self.head = self.tail = self.issued = self.dmacount = 0
        self.last_completion = 0
        self.running = False
        self.cookies = {}          # ring index -> cookie of the descriptor that ends a tx
        self.done = []             # cookies whose callbacks ran
        self.next_cookie = 1
        self.interrupts = 0

    # --- MMIO and configuration -------------------------------------------------------------

    def read(self, offset, size):
        return self.mmio.read(offset, size)

    def write(self, offset, size, value):
        self.mmio.write(offset, size, value)

    def chansts(self):
        return self.read(C.CHANSTS, 8)                        # readq

    def find_capability(self, wanted):
        pointer = self.fn.read_config(0x34, 1)
        while pointer:
            if self.fn.read_config(pointer, 1) == wanted:
                return pointer
            pointer = self.fn.read_config(pointer + 1, 1)
        return None

    # --- init.c: ioat_pci_probe ---------------------------------------------------------------

    def probe(self):
        version = self.read(C.CBVER, 1)
        assert version >= 0x30                                 # else -ENODEV
        self.fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)    # pci_set_master
        # ioat3_dma_probe: SKX is a Xeon CB3.2 part, its XOR/PQ/16-source bits are dropped.
        cap = self.read(C.DMACAPABILITY, 4) & ~(0x100 | 0x200 | 0x20000)
        self.enumerate_channels()
        self.setup_interrupts()
        self.self_test()
        self.write(C.DCACTRL, 4, 0xFFFF_FFFF)                 # IOAT_DMA_DCA_ANY_CPU
        # ioat_dca_init: the CPU has no DCA (CPUID.1:ECX.DCA clear), so nothing is read.
        pcie = self.find_capability(0x10)                     # clear relaxed ordering
        control = self.fn.read_config(pcie + 8, 2)
        self.fn.write_config(pcie + 8, 2, control & ~0x10)
        return version, cap

    def enumerate_channels(self):
        self.chancnt = self.read(C.CHANCNT, 1) & 0x1F
        assert 0 < self.chancnt <= 4                           # IOAT_MAX_CHANS, no warning
        self.xfercap_log = self.read(C.XFERCAP, 1) & 0x1F
        assert self.xfercap_log
        assert self.reset_hw() == 0

    def setup_interrupts(self):
        intrctrl = 0
        style = self.style
        if style == "msix":
            cap = self.find_capability(0x11)
            if cap is not None and (self.fn.read_config(cap + 2, 2) & 0x7FF) + 1 >= self.chancnt:
                table = self.fn.read_config(cap + 4, 4)
                assert table & 7 == 0                          # BIR 0
                entry = table & ~7
                self.fn.write_config(cap + 2, 2, 0xC000)       # enable, everything masked
                self.write(entry, 4, MSI_ADDRESS)
                self.write(entry + 4, 4, 0)
                self.write(entry + 8, 4, MSI_DATA)
                self.fn.write_config(cap + 2, 2, 0x8000)       # function mask off
                self.write(entry + 12, 4, 0)                   # request_irq unmasks it
                self.fn.write_config(COMMAND, 2, self.fn.read_config(COMMAND, 2)
                                     | CMD_INTX_DISABLE)
                self.irq_mode = "msix"
                intrctrl |= C.MSIX_VECTOR_CONTROL
            else:
                style = "msi"
        if style == "msi":
            cap = self.find_capability(0x05)
            if cap is not None:
                self.fn.write_config(cap + 4, 4, MSI_ADDRESS)
                self.fn.write_config(cap + 8, 4, 0)
                self.fn.write_config(cap + 12, 2, MSI_DATA)
                self.fn.write_config(cap + 2, 2, 1)
                self.irq_mode = "msi"
            else:
                style = "intx"                                 # pci_enable_msi failed
        if style == "intx":
            self.irq_mode = "intx"
        self.write(C.INTRCTRL, 1, intrctrl | C.MASTER_INT_EN)

    def self_test(self):
        """ioat_dma_self_test: 2000 bytes copied, with a completion interrupt."""
        assert self.alloc_chan_resources() == RING_ENTRIES
        src, dst = BUFFERS, BUFFERS + 0x10000
        self.ram.write(src, bytes(i & 0xFF for i in range(SELF_TEST_SIZE)))
        self.ram.write(dst, bytes(SELF_TEST_SIZE))
        cookie = self.memcpy(dst, src, SELF_TEST_SIZE)
        self.issue_pending()
        self.service()
        assert self.tx_status(cookie), "Self-test copy timed out, disabling"
        assert self.ram.read(dst, SELF_TEST_SIZE) == self.ram.read(src, SELF_TEST_SIZE)
        self.free_chan_resources()

    # --- dma.c ------------------------------------------------------------------------------

    def quiesce(self, limit=100):
        status = self.chansts()
        if status & 7 in (C.ACTIVE, C.DONE):
            self.write(C.CHANCMD, 1, C.CMD_SUSPEND)
        for _ in range(limit):
            if self.chansts() & 7 not in (C.ACTIVE, C.DONE):
                return 0
        return -110

    def reset_hw(self):
        self.quiesce()
        self.write(C.CHANERR, 4, self.read(C.CHANERR, 4))
        # version < 3.3 (the driver calls SKX 3.2): the mirror in configuration space
        self.fn.write_config(0x180, 4, self.fn.read_config(0x180, 4))
        self.write(C.CHANCMD, 1, C.CMD_RESET)
        for _ in range(200):
            if not self.read(C.CHANCMD, 1) & C.CMD_RESET:
                return 0
        return -110

    def descriptor(self, index):
        return RING + C.DESCRIPTOR_SIZE * (index % RING_ENTRIES)

    def alloc_chan_resources(self):
        self.write(C.CHANCTRL, 2, RUN)
        self.ram.write(COMPLETION, bytes(8))
        self.write(C.CHANCMP, 4, COMPLETION & 0xFFFF_FFFF)
        self.write(C.CHANCMP + 4, 4, COMPLETION >> 32)
        for i in range(RING_ENTRIES):                         # ioat_alloc_ring links them
            self.ram.write(self.descriptor(i), bytes(C.DESCRIPTOR_SIZE))
            self.ram.write(self.descriptor(i) + 0x18, struct.pack("<Q", self.descriptor(i + 1)))
        self.head = self.tail = self.issued = self.dmacount = 0
        self.last_completion = 0
        self.running = True
        self.start_null_desc()
        for _ in range(20):
            status = self.chansts()
            if status & 7 in (C.ACTIVE, C.DONE):
                return RING_ENTRIES
        return -14                                             # "failed to start channel"

    def write_descriptor(self, index, size, control, src=0, dst=0):
        """The driver's fields; the next pointer is the ring's."""
        self.ram.write(self.descriptor(index), struct.pack("<IIQQ", size, control, src, dst))

    def set_chainaddr(self, address):
        self.write(C.CHAINADDR, 4, address & 0xFFFF_FFFF)
        self.write(C.CHAINADDR + 4, 4, address >> 32)

    def start_null_desc(self):
        self.write_descriptor(self.head, 1, C.DESC_NULL | C.DESC_INT_EN | C.DESC_COMPL_WRITE)
        self.set_chainaddr(self.descriptor(self.head))
        self.head += 1
        self.issue_pending()

    def issue_pending(self):
        self.dmacount = (self.dmacount + self.head - self.issued) & 0xFFFF
        self.issued = self.head
        self.write(C.DMACOUNT, 2, self.dmacount)

    def memcpy(self, dst, src, length, interrupt=True):
        """ioat_dma_prep_memcpy_lock and tx_submit: descriptors of at most 2^xfercap bytes,
        the last one completing (and interrupting)."""
        count = -(-length // (1 << self.xfercap_log))
        assert RING_ENTRIES - (self.head - self.tail) > count, "ring full"
        for i in range(count):
            piece = min(length, 1 << self.xfercap_log)
            last = i == count - 1
            control = (C.DESC_COMPL_WRITE | (C.DESC_INT_EN if interrupt else 0)) if last else 0
            self.write_descriptor(self.head + i, piece, control, src, dst)
            src, dst, length = src + piece, dst + piece, length - piece
        cookie = self.next_cookie
        self.next_cookie += 1
        self.cookies[(self.head + count - 1) % RING_ENTRIES] = cookie
        self.head += count
        if self.head - self.issued > PENDING_LEVEL:           # ioat_update_pending
            self.issue_pending()
        return cookie

    def completion(self):
        return struct.unpack("<Q", self.ram.read(COMPLETION, 8))[0]

    def cleanup(self):
        """ioat_cleanup: reap up to the completed descriptor (BUG_ON if not in the ring)."""
        phys = self.completion() & ~0x3F
        if phys == self.last_completion or not phys:
            return
        active = self.head - self.tail
        for i in range(active):
            index = (self.tail + i) % RING_ENTRIES
            cookie = self.cookies.pop(index, None)
            if cookie is not None:
                self.done.append(cookie)
            if self.descriptor(index) == phys:
                break
        else:
            raise AssertionError("BUG: no active descriptor wrote a completion")
        self.tail += i + 1
        self.last_completion = phys

    def tasklet(self):
        self.cleanup()
        if self.running:
            self.write(C.CHANCTRL, 2, RUN)                    # re-arm

    def service(self, limit=10):
        """Interrupts as they arrive: the handler of the mode, then the cleanup tasklet."""
        for _ in range(limit):
            if self.irq_mode == "msix" and self.messages:
                assert self.messages.pop(0) == (MSI_ADDRESS, MSI_DATA)
            elif self.irq_mode == "msi" and self.messages:
                assert self.messages.pop(0) == (MSI_ADDRESS, MSI_DATA)
                assert self.single_vector_handler()
            elif self.irq_mode == "intx" and self.intx.level:
                assert self.single_vector_handler()
                assert not self.intx.level                     # level deasserted: no storm
            else:
                return
            self.interrupts += 1
            if self.running:
                self.tasklet()
        raise AssertionError("interrupt storm")

    def single_vector_handler(self):
        """ioat_dma_do_interrupt (MSI and INTx)."""
        intrctrl = self.read(C.INTRCTRL, 1)
        if not intrctrl & C.MASTER_INT_EN:
            return False
        if not intrctrl & C.INT_STATUS:
            self.write(C.INTRCTRL, 1, intrctrl)
            return False
        attention = self.read(C.ATTNSTATUS, 4)
        assert attention == 1                                  # channel 0
        self.write(C.INTRCTRL, 1, intrctrl)
        return True

    def tx_status(self, cookie):
        if cookie not in self.done:
            self.cleanup()
        return cookie in self.done

    def stop(self):
        self.running = False
        self.cleanup()

    def free_chan_resources(self):
        self.stop()
        assert self.reset_hw() == 0
        self.dmacount = 0

    def abort_descs(self):
        self.cookies.clear()
        self.tail = self.head
        self.last_completion = self.descriptor(self.tail)
        self.ram.write(COMPLETION, struct.pack("<Q", self.last_completion))

    def timer_event(self):
        """ioat_timer_event on a halted channel: ioat_reboot_chan."""
        status = self.chansts()
        assert status & 7 == C.HALTED
        chanerr = self.read(C.CHANERR, 4)
        self.abort_descs()
        assert self.reset_hw() == 0
        self.restart_channel()
        return chanerr

    def restart_channel(self):
        self.write(C.CHANCMP, 4, COMPLETION & 0xFFFF_FFFF)
        self.write(C.CHANCMP + 4, 4, COMPLETION >> 32)
        assert self.quiesce(limit=1000) == 0
        self.cleanup()
        self.issued = self.tail
        self.dmacount = 0
        if self.head != self.issued:
            self.set_chainaddr(self.descriptor(self.tail))
            self.issue_pending()
        else:
            self.start_null_desc()


@pytest.fixture
def linux():
    d = Ioatdma()
    d.probe()
    assert d.alloc_chan_resources() == RING_ENTRIES
    d.service()
    return d


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


# --- the function ---------------------------------------------------------------------------

def test_identity_bar_and_capabilities():
    d = Ioatdma()
    fn = d.fn
    assert fn.read_config(0, 4) == 0x2021_8086
    assert fn.read_config(0x08, 4) == 0x0880_0004               # class 088000, rev 04
    assert fn.read_config(0x2C, 4) == 0x0000_8086
    assert fn.read_config(0x3D, 1) == 1                         # INTA#
    fn.write_config(BAR0, 4, 0xFFFF_FFFF)
    fn.write_config(BAR0 + 4, 4, 0xFFFF_FFFF)
    assert fn.read_config(BAR0, 4) == 0xFFFF_C004               # 16 KiB, 64-bit, memory
    assert [o for o in range(BAR0 + 8, 0x28, 4) if fn.read_config(o, 4)] == []
    caps, pointer = [], fn.read_config(0x34, 1)
    while pointer:
        caps.append((pointer, fn.read_config(pointer, 1)))
        pointer = fn.read_config(pointer + 1, 1)
    assert caps == [(0x80, 0x11), (0x90, 0x10), (0xE0, 0x01)]
    assert fn.read_config(0x82, 2) & 0x7FF == 0                 # one vector
    assert fn.read_config(0x84, 4) == 0x2000 and fn.read_config(0x88, 4) == 0x3000
    assert fn.read_config(0x92, 2) == 0x0092                    # v2, integrated endpoint
    assert fn.read_config(0xE2, 2) & 7 == 3                     # PM version 3
    assert C.CbdmaChannel(7).pci.read_config(0, 4) == 0x2021_8086
    with pytest.raises(ValueError):
        C.CbdmaChannel(8)


def test_msi_capability_only_on_request():
    d = Ioatdma(msi=True)
    assert d.find_capability(0x05) == 0xE8
    assert Ioatdma().find_capability(0x05) is None


# --- probe --------------------------------------------------------------------------------

def test_probe_reads_the_version_capabilities_and_one_channel():
    d = Ioatdma()
    assert d.read(C.CBVER, 1) == 0x33
    assert d.read(C.DMACAPABILITY, 4) == 0          # memcpy and interrupt only: no XOR, PQ,
    assert d.read(C.DCAOFFSET, 2) == 0              # fill, DCA, DWBES, DPS
    d.enumerate_channels()
    assert (d.chancnt, d.xfercap_log) == (1, 20)
    assert d.chansts() & 7 == C.HALTED              # reset: nothing started
    assert d.read(C.CHANCMD, 1) == 0                # the reset is done at once
    assert d.read(C.DMACOMP, 2) == C.DMA_COMP_V2


def test_the_channel_starts_with_a_null_descriptor():
    d = Ioatdma()
    d.fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    d.enumerate_channels()
    d.setup_interrupts()
    assert d.alloc_chan_resources() == RING_ENTRIES
    status = d.chansts()
    assert status == d.descriptor(0) | C.DONE
    assert d.completion() == d.descriptor(0) | C.DONE           # written back
    assert d.messages == [(MSI_ADDRESS, MSI_DATA)]              # its interrupt
    assert not d.read(C.CHANCTRL, 2) & C.INT_REARM              # disarmed until cleanup
    d.service()
    assert d.tail == 1 and d.read(C.CHANCTRL, 2) & C.INT_REARM


def test_probe_and_self_test_with_msix():
    d = Ioatdma()
    version, cap = d.probe()
    assert (version, cap) == (0x33, 0)
    assert d.irq_mode == "msix"
    assert d.done == [1]                            # the self test's callback ran
    assert d.interrupts == 2                        # the null descriptor, the copy
    assert d.read(C.DCACTRL, 4) == C.DCACTRL_MASK
    assert d.chansts() & 7 == C.HALTED              # freed: reset
    assert not d.intx.level
    pcie = d.find_capability(0x10)
    assert not d.fn.read_config(pcie + 8, 2) & 0x10


def test_self_test_with_intx():
    d = Ioatdma(style="intx")
    d.probe()
    assert d.irq_mode == "intx" and d.done == [1] and d.interrupts == 2
    assert not d.intx.level


def test_msi_style_falls_back_to_intx_as_on_the_real_part():
    d = Ioatdma(style="msi")
    d.probe()
    assert d.irq_mode == "intx" and d.done == [1]


def test_msi_style_with_the_optional_capability():
    d = Ioatdma(style="msi", msi=True)
    d.probe()
    assert d.irq_mode == "msi" and d.done == [1] and d.interrupts == 2
    assert not d.intx.level


def test_intx_follows_attention_and_the_master_enable():
    d = Ioatdma(style="intx")
    d.fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    d.enumerate_channels()
    d.write(C.INTRCTRL, 1, 0)                        # interrupts off
    d.irq_mode = "intx"
    d.alloc_chan_resources()
    assert not d.intx.level
    assert d.read(C.INTRCTRL, 1) == C.INT_STATUS     # attention, master off
    d.write(C.INTRCTRL, 1, C.MASTER_INT_EN)
    assert d.intx.level and d.read(C.INTRCTRL, 1) == C.MASTER_INT_EN | C.INT_STATUS | C.INT
    d.fn.write_config(COMMAND, 2, d.fn.read_config(COMMAND, 2) | CMD_INTX_DISABLE)
    assert not d.intx.level and d.fn.read_config(0x06, 2) & 0x08
    d.fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    assert d.read(C.ATTNSTATUS, 4) == 1 and not d.intx.level
    assert d.read(C.ATTNSTATUS, 4) == 0


# --- the ring -------------------------------------------------------------------------------

def test_a_ring_of_copies_as_the_driver_appends_them(linux):
    d = linux
    copies = []
    for n in range(100):                             # wraps the ring of 64
        length = random.Random(n).randrange(1, 200_000)
        src, dst = BUFFERS + 0x40_0000 * (n % 2), BUFFERS + 0x20_0000 + 0x40_0000 * (n % 2)
        data = pattern(n, length)
        d.ram.write(src, data)
        cookie = d.memcpy(dst, src, length, interrupt=n % 3 == 0)
        d.issue_pending()
        d.service()
        assert d.ram.read(dst, length) == data
        assert d.tx_status(cookie)
        copies.append(cookie)
    assert d.done[-100:] == copies
    assert d.chansts() == d.descriptor(d.head - 1) | C.DONE
    assert d.head - d.tail == 0 and d.head > RING_ENTRIES


def test_big_copies_split_at_xfercap_and_batches_below_the_pending_level(linux):
    d = linux
    interrupts = d.interrupts
    length = 2 * C.MAX_TRANSFER + 12345              # three descriptors
    data = pattern(1, length)
    d.ram.write(BUFFERS, data)
    first = d.memcpy(BUFFERS + 0x60_0000, BUFFERS, length)
    before = d.read(C.DMACOUNT, 2)
    small = [d.memcpy(BUFFERS + 0x90_0000 + 0x100 * i, BUFFERS + 0x100 * i, 0x100,
                      interrupt=False) for i in range(3)]
    assert d.read(C.DMACOUNT, 2) == before           # 6 pending: not yet issued
    d.issue_pending()
    d.service()
    assert d.ram.read(BUFFERS + 0x60_0000, length) == data
    assert all(d.tx_status(c) for c in [first, *small])
    assert d.interrupts == interrupts + 1            # the big copy's only


def test_overlapping_copy_is_a_memmove(linux):
    d = linux
    d.ram.write(BUFFERS, bytes(range(256)))
    d.memcpy(BUFFERS + 16, BUFFERS, 128)
    d.issue_pending()
    assert d.ram.read(BUFFERS + 16, 128) == bytes(range(128))


def test_an_interrupt_while_disarmed_waits_for_the_re_arm(linux):
    d = linux
    d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    d.issue_pending()                                # armed: sent, and disarmed
    d.memcpy(BUFFERS + 0x2000, BUFFERS, 64)
    d.issue_pending()                                # disarmed: waits
    assert len(d.messages) == 1
    d.messages.clear()
    d.tasklet()                                      # cleanup re-arms: the waiting one goes
    assert len(d.messages) == 1
    d.service()
    assert d.head == d.tail


def test_a_masked_vector_is_pending_in_the_pba(linux):
    d = linux
    d.write(0x2000 + 12, 4, 1)                       # mask vector 0
    d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    d.issue_pending()
    assert d.messages == [] and d.read(0x3000, 8) == 1
    d.write(0x2000 + 12, 4, 0)
    assert d.messages == [(MSI_ADDRESS, MSI_DATA)] and d.read(0x3000, 8) == 0


def test_registers_take_any_width(linux):
    d = linux
    d.write(C.CHANCMP, 8, 0x1234_5678_9ABC_DEF7)         # one 64-bit write; bits 2:0 read 0
    assert d.read(C.CHANCMP, 8) == 0x1234_5678_9ABC_DEF0
    assert d.read(C.CHANCMP + 4, 4) == 0x1234_5678
    assert d.read(C.CHANCMP + 2, 2) == 0x9ABC
    dword = d.read(C.CHANCNT, 4)
    assert dword & 0xFFFF == (C.XFERCAP_LOG2 << 8 | 1)
    assert d.read(C.DCACTRL, 4) == 0x1_FFFF              # the probe's ~0, masked
    d.write(C.DCACTRL - 2, 4, 0x0000_ABCD)               # straddles CHANERRMSK and DCACTRL
    assert d.read(C.CHANERRMSK, 4) == 0xABCD_0000 and d.read(C.DCACTRL, 4) == 0x1_0000


def test_chanctrl_in_use_is_claimed_by_the_first_read():
    d = Ioatdma()
    assert not d.read(C.CHANCTRL, 2) & C.IN_USE
    assert d.read(C.CHANCTRL, 2) & C.IN_USE
    d.write(C.CHANCTRL, 2, 0)
    assert not d.read(C.CHANCTRL, 2) & C.IN_USE


# --- errors -------------------------------------------------------------------------------

OUTSIDE = 0x7_0000_0000


@pytest.mark.parametrize("what, size, control, src, dst, error", [
    ("source outside RAM", 64, 0, OUTSIDE, BUFFERS, C.READ_DATA_ERR),
    ("destination outside RAM", 64, 0, BUFFERS, OUTSIDE, C.WRITE_DATA_ERR),
    ("XOR asked of a copy engine", 64, 0x87 << 24, BUFFERS, BUFFERS + 64, C.CONTROL_ERR),
    ("a copy of nothing", 0, 0, BUFFERS, BUFFERS + 64, C.LENGTH_ERR),
    ("more than XFERCAP", C.MAX_TRANSFER + 1, 0, BUFFERS, BUFFERS + 64, C.LENGTH_ERR),
])
def test_a_bad_descriptor_halts_the_channel_and_the_driver_recovers(linux, what, size, control,
                                                                     src, dst, error):
    d = linux
    good = d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    index = d.head
    d.write_descriptor(index, size, control | C.DESC_COMPL_WRITE | C.DESC_INT_EN, src, dst)
    d.cookies[index % RING_ENTRIES] = bad = 99
    d.head += 1
    after = d.memcpy(BUFFERS + 0x3000, BUFFERS, 64)
    d.issue_pending()
    assert d.chansts() == d.descriptor(index - 1) | C.HALTED   # the last one done
    assert d.completion() == d.descriptor(index - 1) | C.HALTED
    assert d.read(C.CHANERR, 4) == error                         # one bit: ioat_eh can't BUG
    assert d.read(C.CDAR, 8) == d.descriptor(index)
    d.service()                                                  # the error interrupt
    assert d.tx_status(good) and not d.tx_status(after)
    d.write(C.DMACOUNT, 2, d.dmacount + 1)                       # halted: nothing runs
    assert d.chansts() & 7 == C.HALTED
    assert d.timer_event() == error                              # ioat_reboot_chan
    assert d.read(C.CHANERR, 4) == 0 and d.chansts() & 7 == C.DONE
    d.service()
    again = d.memcpy(BUFFERS + 0x5000, BUFFERS, 64)
    d.issue_pending()
    d.service()
    assert d.tx_status(again) and bad not in d.done


def test_a_next_pointer_outside_ram_or_unaligned(linux):
    d = linux
    for bad_next, error in ((OUTSIDE, C.NEXT_ADDR_ERR), (RING + 8, C.DESCRIPTOR_ALIGN_ERR)):
        first = d.head
        d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
        d.ram.write(d.descriptor(first) + 0x18, struct.pack("<Q", bad_next))
        d.memcpy(BUFFERS + 0x2000, BUFFERS, 64)
        d.issue_pending()
        assert d.read(C.CHANERR, 4) == error
        assert d.chansts() == d.descriptor(first) | C.HALTED
        d.service()
        d.ram.write(d.descriptor(first) + 0x18, struct.pack("<Q", d.descriptor(first + 1)))
        d.timer_event()
        d.service()


def test_a_chain_address_outside_ram():
    d = Ioatdma()
    d.fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    d.enumerate_channels()
    d.setup_interrupts()
    d.write(C.CHANCTRL, 2, RUN)
    d.set_chainaddr(OUTSIDE)
    assert d.chansts() == C.ARMED
    d.write(C.DMACOUNT, 2, 1)
    assert d.read(C.CHANERR, 4) == C.CHAIN_ADDR_ERR and d.chansts() == C.HALTED


def test_a_completion_address_outside_ram(linux):
    d = linux
    d.write(C.CHANCMP + 4, 4, OUTSIDE >> 32)
    d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    d.issue_pending()
    assert d.read(C.CHANERR, 4) == C.COMPLETION_ADDR_ERR
    assert d.chansts() == d.descriptor(d.head - 1) | C.HALTED   # the copy itself was done


def test_without_bus_mastering_nothing_is_reached(linux):
    d = linux
    d.fn.write_config(COMMAND, 2, CMD_MEMORY)
    d.ram.write(BUFFERS, b"x" * 64)
    d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    d.issue_pending()
    assert d.read(C.CHANERR, 4) == C.NEXT_ADDR_ERR
    assert d.ram.read(BUFFERS + 0x1000, 64) == bytes(64)


def test_a_chain_that_loops_on_itself_ends_at_the_count(linux):
    d = linux
    d.write(C.CHANCTRL, 2, 0)                                   # no interrupts
    loop = d.descriptor(5)
    d.ram.write(loop, struct.pack("<IIQQQ", 1, C.DESC_NULL | C.DESC_INT_EN, 0, 0, loop))
    d.set_chainaddr(loop)
    started = time.monotonic()
    d.write(C.DMACOUNT, 2, 0xFFFF)                              # the most one doorbell gives
    assert time.monotonic() - started < 10
    assert d.chansts() == loop | C.DONE and d.dev.done_count == 0xFFFF
    assert d.dev.interrupt_pending                              # kept for the re-arm
    d.write(C.DMACOUNT, 2, 0xFFFF)                              # nothing more to do
    assert d.dev.done_count == 0xFFFF
    d.write(C.DMACOUNT, 2, 1)                                   # wraps: 2 more
    assert d.dev.done_count == 1


# --- commands -------------------------------------------------------------------------------

def test_suspend_resume_abort_and_reset(linux):
    d = linux
    d.write(C.CHANCMD, 1, C.CMD_SUSPEND)
    assert d.chansts() & 7 == C.SUSPENDED
    d.ram.write(BUFFERS, b"y" * 64)
    d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    d.issue_pending()                                           # suspended: the count waits
    assert d.ram.read(BUFFERS + 0x1000, 64) == bytes(64)
    d.write(C.CHANCMD, 1, C.CMD_RESUME)
    assert d.ram.read(BUFFERS + 0x1000, 64) == b"y" * 64 and d.chansts() & 7 == C.DONE
    d.write(C.CHANCMD, 1, C.CMD_SUSPEND)
    d.memcpy(BUFFERS + 0x2000, BUFFERS, 64)
    d.issue_pending()
    d.write(C.CHANCMD, 1, C.CMD_ABORT)                          # dropped
    assert d.chansts() & 7 == C.HALTED
    assert d.ram.read(BUFFERS + 0x2000, 64) == bytes(64)
    d.write(C.CHANCMD, 1, C.CMD_RESET)
    assert d.read(C.CHANCMD, 1) == 0
    assert (d.chansts(), d.read(C.DMACOUNT, 2), d.read(C.CHANCMP, 8)) == (C.HALTED, 0, 0)
    kept = C.ERR_COMPLETION_EN | C.ANY_ERR_ABORT_EN | C.ERR_INT_EN
    assert d.read(C.CHANCTRL, 2) & kept == kept                 # CHANCTRL stays


def test_a_restart_after_suspend_starts_the_new_chain(linux):
    """ioat_restart_channel without a reset: quiesce (suspend), CHAINADDR, DMACOUNT from 0."""
    d = linux
    d.write(C.CHANCMD, 1, C.CMD_SUSPEND)
    d.ram.write(BUFFERS, b"z" * 64)
    d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    d.restart_channel()
    assert d.ram.read(BUFFERS + 0x1000, 64) == b"z" * 64
    d.service()
    assert d.head == d.tail


# --- a hostile guest ------------------------------------------------------------------------

def test_a_hostile_guest_cannot_break_it(linux):
    """Random configuration and BAR accesses of every width, descriptors pointing anywhere
    (into RAM too): no exception, every doorbell's work bounded, the state bounded, and the
    driver's own reset and start work after."""
    d = linux
    rng = random.Random(2021)
    registers = [start for start, _ in C.REGISTERS]
    started = time.monotonic()
    executed = []
    for step in range(6000):
        if step % 50 == 0:                  # the kernel's BAR and command, so DMA goes on
            d.fn.write_config(BAR0, 4, BAR)
            d.fn.write_config(BAR0 + 4, 4, 0)
            d.fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
            d.fn.write_config(0x82, 2, 0x8000)                   # MSI-X on
        roll = rng.random()
        if roll < 0.3:
            offset = rng.choice(registers) + rng.randrange(-2, 4)
            d.dev.write(max(offset, 0), rng.choice((1, 2, 4, 8)), rng.getrandbits(64))
        elif roll < 0.4:
            d.dev.write(rng.randrange(0, C.BAR_SIZE - 8), rng.choice((1, 2, 4, 8)),
                        rng.getrandbits(64))
        elif roll < 0.5:
            size = rng.choice((1, 2, 4))
            d.fn.write_config(rng.randrange(0, 0x1000 // size) * size, size,
                              rng.getrandbits(32))
        elif roll < 0.85:
            # Descriptors mostly well formed, pointing into the ring, into RAM or anywhere.
            def sometimes(good, bad):
                return good if rng.random() < 0.9 else bad
            for _ in range(rng.randrange(1, 8)):
                d.ram.write(d.descriptor(rng.randrange(RING_ENTRIES)), struct.pack(
                    "<IIQQQ",
                    sometimes(rng.choice((1, 64, 4096, C.MAX_TRANSFER)), rng.getrandbits(32)),
                    rng.getrandbits(6) & ~(C.DESC_NULL if rng.random() < 0.8 else 0)
                    | sometimes(0, rng.getrandbits(8) << 24),
                    sometimes(BUFFERS + rng.randrange(1 << 20), rng.getrandbits(64)),
                    sometimes(rng.choice((BUFFERS + 0x10_0000, RING - 4096)),
                              rng.getrandbits(64)),
                    sometimes(d.descriptor(rng.randrange(RING_ENTRIES)),
                              rng.choice((RING + 8, rng.getrandbits(64))))))
            if rng.random() < 0.5:
                address = d.descriptor(rng.randrange(RING_ENTRIES))
                d.dev.write(C.CHAINADDR, 8, address)
            d.dev.write(C.DMACOUNT, 2, sometimes(d.dev.done_count + rng.randrange(64),
                                                 rng.getrandbits(16)) & 0xFFFF)
            executed.append(d.dev.done_count)
        else:
            d.dev.read(rng.randrange(0, C.BAR_SIZE - 8), rng.choice((1, 2, 4, 8)))
            d.fn.read_config(rng.randrange(0, 0x1000, 4), 4)
        if step % 1000 == 0:
            assert len(repr(d.dev.save())) < 20_000          # nothing grows
    assert time.monotonic() - started < 60
    assert sum(1 for count in executed if count) > 200     # the engine did run
    assert 0 < len(d.messages) < 10_000
    # The driver's way back: BAR and command as the kernel set them, reset, start again.
    d.fn.write_config(BAR0, 4, BAR)
    d.fn.write_config(BAR0 + 4, 4, 0)
    d.fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    d.messages.clear()
    d.cookies.clear()
    d.enumerate_channels()
    d.setup_interrupts()
    assert d.alloc_chan_resources() == RING_ENTRIES
    d.service()
    d.ram.write(BUFFERS, b"after" * 100)
    cookie = d.memcpy(BUFFERS + 0x1000, BUFFERS, 500)
    d.issue_pending()
    d.service()
    assert d.tx_status(cookie) and d.ram.read(BUFFERS + 0x1000, 500) == b"after" * 100


# --- reset, save and load -------------------------------------------------------------------

def test_reset_is_power_on(linux):
    d = linux
    d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    d.issue_pending()
    fresh = C.CbdmaChannel(0, intx=IrqLine()).save()
    d.dev.reset()
    state = d.dev.save()
    assert state == fresh
    assert d.fn.read_config(COMMAND, 2) == 0 and d.fn.read_config(0x82, 2) == 0
    assert d.dev.msix.table[12] == 1                            # the vector masked again
    assert not d.intx.level


def test_save_and_load_carry_the_channel_on(linux):
    d = linux
    d.write(C.CHANCMD, 1, C.CMD_SUSPEND)
    d.ram.write(BUFFERS, b"s" * 64)
    cookie = d.memcpy(BUFFERS + 0x1000, BUFFERS, 64)
    d.issue_pending()                                           # waits, suspended
    saved = d.dev.save()
    other = Ioatdma()
    other.ram = d.ram
    other.bus = PciBus(send_msi=lambda a, v: other.messages.append((a, v)), memory=d.ram)
    other.bus.attach(4, 0, other.fn)
    other.mmio = PciMemoryWindow(other.bus, BAR)
    other.dev.load(saved)
    assert other.dev.save() == saved
    other.write(C.CHANCMD, 1, C.CMD_RESUME)                     # goes on where it was
    assert d.ram.read(BUFFERS + 0x1000, 64) == b"s" * 64
    assert other.messages == [(MSI_ADDRESS, MSI_DATA)]
    assert cookie


@pytest.mark.parametrize("change", [
    {"state": 5}, {"state": -1}, {"chancmp": 0x1001}, {"completed": 0x1010},
    {"dmacount": 0x1_0000}, {"chanctrl": 0x8000}, {"attention": 1}, {"intrctrl": 0x02},
    {"msi": {}}, {"msix": {"table": b"", "pending": 0}}, {"dcactrl": "x"},
])
def test_a_bad_state_is_refused_and_changes_nothing(linux, change):
    d = linux
    before = d.dev.save()
    with pytest.raises(StateError):
        d.dev.load({**before, **change})
    assert d.dev.save() == before
    missing = dict(before)
    del missing["next_descriptor"]
    with pytest.raises(StateError):
        d.dev.load(missing)
    assert d.dev.save() == before


def test_a_state_saved_with_msi_does_not_load_without():
    with pytest.raises(StateError):
        C.CbdmaChannel(0).load(C.CbdmaChannel(0, msi=True).save())
    other = C.CbdmaChannel(0, msi=True)
    other.load(C.CbdmaChannel(0, msi=True).save())


def test_eight_functions_on_device_4_are_independent():
    ram = Ram(16 << 20)
    bus = PciBus(memory=ram)
    channels = [C.CbdmaChannel(n, intx=IrqLine(f"cbdma{n}")) for n in range(C.FUNCTIONS)]
    for n, channel in enumerate(channels):
        bus.attach(4, n, channel.pci)
        channel.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    assert bus.read(0, 4, 0, 0x0E, 1) == 0x80                   # multifunction
    assert [bus.read(0, 4, n, 0, 4) for n in range(8)] == [0x2021_8086] * 8
    ram.write(BUFFERS, b"five" * 16)
    ram.write(RING, struct.pack("<IIQQQ", 64, C.DESC_COMPL_WRITE, BUFFERS, BUFFERS + 0x100,
                                RING + 64))
    five = channels[5]
    five.write(C.CHANCMP, 8, COMPLETION)
    five.write(C.CHAINADDR, 8, RING)
    five.write(C.DMACOUNT, 2, 1)
    assert ram.read(BUFFERS + 0x100, 64) == b"five" * 16
    assert [c.read(C.CHANSTS, 8) & 7 for c in channels] == [C.HALTED] * 5 + [C.DONE] + \
        [C.HALTED] * 2
