"""The AQC107 driven the way Linux's atlantic driver drives it (its B1 ops, the FW 2.x
interface: the sequences of drivers/net/ethernet/aquantia/atlantic), and by a hostile one."""

import random
import struct

import pytest

from imacpro.bus.pci import BAR0, CMD_BUS_MASTER, CMD_MEMORY, COMMAND, PciBus, PciMemoryWindow
from imacpro.devices.contract import StateError
from imacpro.devices.net import aqc107 as A
from imacpro.devices.net import offload
from imacpro.irq import IrqLine
from imacpro.memory.ram import Ram

from test_offload import ethernet, ipv4, tcp, udp

MAC = bytes.fromhex("a483e7123456")
BAR, MSIX_BAR = 0x8000_0000, 0x8001_0000
MSIX_ADDRESS = 0xFEE0_0000
TX_RING, RX_RING, TX_BUFFERS, RX_BUFFERS = 0x10_0000, 0x11_0000, 0x20_0000, 0x40_0000
RING_SIZE = 64


class Driver:
    """The atlantic driver's steps, as register accesses."""

    def __init__(self, msix=True):
        self.ram = Ram(16 << 20)
        self.messages = []
        self.sent = []
        self.room = True
        self.intx = IrqLine("inta")
        self.nic = A.Aqc107(MAC, intx=self.intx)
        self.bus = PciBus(send_msi=lambda address, data: self.messages.append(data),
                          memory=self.ram)
        self.bus.attach(0, 0, self.nic.pci)
        fn = self.nic.pci
        fn.write_config(BAR0, 4, BAR)
        fn.write_config(BAR0 + 4, 4, 0)
        fn.write_config(BAR0 + 8, 4, MSIX_BAR)
        fn.write_config(BAR0 + 12, 4, 0)
        fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
        self.window = PciMemoryWindow(self.bus, BAR)
        self.msix_window = PciMemoryWindow(self.bus, MSIX_BAR)
        if msix:
            fn.write_config(self.nic.msix.offset + 2, 2, 0x8000)
            for vector in range(A.MSIX_VECTORS):
                self.msix_window.write(16 * vector, 4, MSIX_ADDRESS)
                self.msix_window.write(16 * vector + 8, 4, 0x40 + vector)
                self.msix_window.write(16 * vector + 12, 4, 0)
        self.tx_tail = 0
        self.rx_next = 0

    def reg(self, offset):
        return self.window.read(offset, 4)

    def set(self, offset, value):
        self.window.write(offset, 4, value)

    def rmw(self, offset, mask, value):
        old = self.reg(offset)
        new = (old & ~mask) | (value & mask)
        if new != old:                       # aq_hw_write_reg_bit skips unchanged writes
            self.set(offset, new)

    # hw_atl_utils.c
    def soft_reset(self):
        self.reg(0x18)
        assert self.reg(0x704) != 0x0600_0000 or self.reg(0x388) != 0
        assert self.reg(0x388) != 0                    # the RBL path
        self.set(0x404, 0x40E1)
        self.set(0x3A0, 1)
        self.set(0x32A8, 0)
        self.set(0x388, 0xDEAD)
        self.set(0x53C, self.reg(0x53C) | 0x10)
        for reg in (0x5000, 0x7000, 0x4000):
            self.rmw(reg, 1 << 29, 0)
        self.set(0, (self.reg(0) & ~0x4000) | 0x8000)
        self.set(0x404, 0x40E0)
        code = self.reg(0x388) & 0xFFFF
        assert code not in (0, 0xDEAD, 0xF1A7), "RBL Restart failed"
        assert self.reg(0x18) != 0, "FW kickstart failed"

    def mif_read(self, address, count):
        assert self.reg(0x3A8) == 1
        self.set(0x208, address)
        values = []
        for _ in range(count):
            self.set(0x200, 0x8000)
            assert self.reg(0x208) != address          # the B1 auto-increment: done
            address += 4
            values.append(self.reg(0x20C))
        self.set(0x3A8, 1)
        return values

    def probe(self):
        self.soft_reset()
        assert self.reg(0x1C) & 0xF == 0xA              # B1
        assert self.reg(0x18) >> 24 == 3               # FW 3.x: aq_fw_2x_ops
        mbox = self.reg(0x360)
        assert mbox and self.reg(0x334)
        settings = self.mif_read(mbox + 0x10C, 1)[0]
        assert settings
        caps_lo = self.mif_read(mbox + 0x84, 1)[0]
        assert not caps_lo & (1 << 15)                 # no MACsec
        words = self.mif_read(self.reg(0x364) + 0xA0, 2)
        return b"".join(struct.pack(">I", w) for w in words)[:6]

    def open(self, rings=1):
        self.soft_reset()
        self.set(0x368, 0xF20)                         # the link request
        self.rmw(0x36C, 1 << 22, 0)
        self.set(0x2300, 0x20000026)
        self.set(0x2090, 0xFFFF_FFFF)
        self.set(0x7820, 0x0FF6_0FF6)
        self.set(0x7824, 0x0F7F)
        for n in range(rings):
            tx, rx = 0x7C00 + 0x40 * n, 0x5B00 + 0x20 * n
            self.set(tx, TX_RING + n * 0x1000)
            self.set(tx + 4, 0)
            self.rmw(tx + 8, 0x1FF8, RING_SIZE)
            self.set(tx + 0x10, 0)
            self.set(rx, RX_RING + n * 0x1000)
            self.set(rx + 4, 0)
            self.rmw(rx + 8, 0x1FF8, RING_SIZE)
            self.rmw(rx + 0x18, 0x1F, 2)
            shift = 0 if n % 2 else 8
            self.rmw(0x2100 + 4 * (n // 2), 0x9F << shift | 0x9F << (shift + 16),
                     (0x80 | n) << shift | (0x80 | n) << (shift + 16))
        for i in range(RING_SIZE - 1):                 # the RX buffers, tail = size - 1
            self.ram.write(RX_RING + 16 * i, struct.pack("<QQ", RX_BUFFERS + 2048 * i, 0))
        self.set(0x5B10, RING_SIZE - 1)
        for n in range(rings):
            self.rmw(0x7C08 + 0x40 * n, 1 << 31, 1 << 31)
            self.rmw(0x5B08 + 0x20 * n, 1 << 31, 1 << 31)
        self.rmw(0x7900, 1, 1)
        self.rmw(0x5700, 1, 1)
        self.set(0x2060, 0x3FF)
        self.nic.connect(self.sent.append, lambda: self.room, lambda: None)

    def transmit(self, pieces, commands=0, context=None):
        """Put a frame's descriptors on TX ring 0 (a context first if given) and ring the
        tail, as hw_atl_b0_hw_ring_tx_xmit does."""
        if context is not None:
            self.ram.write(TX_RING + 16 * self.tx_tail, struct.pack("<QII", 0, *context))
            self.tx_tail = (self.tx_tail + 1) % RING_SIZE
        total = sum(len(p) for p in pieces)
        for i, piece in enumerate(pieces):
            address = TX_BUFFERS + 0x1_0000 * self.tx_tail
            self.ram.write(address, piece)
            control = 1 | len(piece) << 4 | commands
            if i == len(pieces) - 1:
                control |= A.TXD_EOP | 1 << 27
            self.ram.write(TX_RING + 16 * self.tx_tail,
                           struct.pack("<QII", address, control, total << 14))
            self.tx_tail = (self.tx_tail + 1) % RING_SIZE
        self.set(0x7C10, self.tx_tail)

    def received(self):
        """The frames the RX ring has written back since the last call, as the driver
        reads them (hw_atl_b0_hw_ring_rx_receive): (frame, type, status, vlan)."""
        frames, parts = [], []
        while True:
            kind, _, status, length, _, vlan = struct.unpack(
                "<IIHHHH", self.ram.read(RX_RING + 16 * self.rx_next, 16))
            if not status & A.RXD_DD:
                return frames
            address = RX_BUFFERS + 2048 * self.rx_next
            if status & A.RXD_EOP:
                size = length % 2048 or 2048
            else:
                size = min(length, 2048)
            parts.append(self.ram.read(address, size))
            self.ram.write(RX_RING + 16 * self.rx_next, struct.pack("<QQ", address, 0))
            self.rx_next = (self.rx_next + 1) % RING_SIZE
            if status & A.RXD_EOP:
                frames.append((b"".join(parts), kind, status, vlan))
                parts = []


@pytest.fixture
def driver():
    d = Driver()
    assert d.probe() == MAC
    d.open()
    return d


def test_probe_reads_the_firmware_and_the_mac_from_efuse():
    d = Driver()
    assert d.probe() == MAC
    assert d.nic.pci.read_config(0, 4) == 0x07B1_1D6A
    assert d.nic.pci.read_config(0x2C, 4) == 0x0187_106B
    assert d.nic.pci.read_config(0x08, 4) == 0x0200_0002


def test_the_link_comes_up_at_10g_when_asked_and_a_cable_is_in():
    d = Driver()
    d.probe()
    d.set(0x368, 0xF20)
    assert d.reg(0x370) == 0                          # no backend: no cable
    d.nic.connect(d.sent.append, lambda: True, lambda: None)
    assert d.reg(0x370) == 0x800
    d.set(0x368, 0)                                   # ndo_stop
    assert d.reg(0x370) == 0


def test_state2_follows_control2_for_the_handshakes(driver):
    old = driver.reg(0x36C)
    driver.set(0x36C, old ^ (1 << 30))                # statistics request
    assert driver.reg(0x374) >> 30 & 1 != old >> 30 & 1


def test_rss_and_cache_bits_clear_themselves(driver):
    driver.set(0x54D4, 0x6A8B820C)
    driver.rmw(0x54D0, 0x1F, 0)
    driver.rmw(0x54D0, 1 << 5, 1 << 5)
    assert not driver.reg(0x54D0) & (1 << 5)
    driver.rmw(0x54E0, 1 << 4, 1 << 4)
    assert not driver.reg(0x54E0) & (1 << 4)
    assert driver.reg(0x5A10) & 1
    assert driver.reg(0x3120) >> 30 == 3


def test_a_transmitted_frame_gets_its_checksums_and_the_head_moves(driver):
    frame = ethernet(0x0800, ipv4(6, tcp(b"hello" * 100)))
    driver.transmit([frame[:54], frame[54:]], A.TXD_IPCSO | A.TXD_TUCSO)
    assert len(driver.sent) == 1
    sent = driver.sent[0]
    h = offload.parse(sent)
    assert offload.ipv4_header_good(sent, h) and offload.l4_checksum_good(sent, h)
    assert driver.reg(0x7C0C) == 2                    # the driver's completion report
    assert driver.messages == [0x40]                  # ring 0's vector
    assert driver.reg(0x8800) == 1 and driver.reg(0x8808) == len(sent)


def test_segmentation_offload(driver):
    payload = bytes(range(256)) * 40
    frame = ethernet(0x0800, ipv4(6, tcp(payload)))
    context = (A.TXC | A.TXC_TCP | 14 << 24, 10 | 20 << 8 | 1448 << 16)
    driver.transmit([frame], A.TXD_LSO | A.TXD_IPCSO | A.TXD_TUCSO, context)
    assert len(driver.sent) == 8
    assert b"".join(s[54:] for s in driver.sent) == payload
    assert all(offload.l4_checksum_good(s, offload.parse(s)) for s in driver.sent)


def test_vlan_insertion(driver):
    frame = ethernet(0x0800, ipv4(17, udp(b"x")))
    driver.transmit([frame], A.TXD_VLAN, (A.TXC | 0x2005 << 4, 0))
    assert offload.strip_vlan(driver.sent[0]) == (frame, 0x2005)


def test_a_received_frame_is_written_back_with_its_checksums_checked(driver):
    packet = bytearray(ethernet(0x0800, ipv4(17, udp(b"reply" * 10))))
    offload.fill_checksums(packet, ip=True, l4=True)
    driver.nic.receive(bytes(packet))
    [(frame, kind, status, _)] = driver.received()
    assert frame == bytes(packet)
    assert kind & A.RXT_IP_CHECKED and kind & A.RXT_L4_CHECKED and kind >> 6 & 7 == A.L4_UDP
    assert status & A.RXD_L4_GOOD and not status & (A.RXD_IP_BAD | A.RXD_L4_BAD)
    assert driver.messages == [0x40]
    assert driver.reg(0x6800) == 1


def test_a_jumbo_frame_spans_buffers_each_with_the_total_length(driver):
    packet = ethernet(0x86DD, b"\x60" + bytes(9000))
    driver.nic.receive(packet)
    [(frame, _, _, _)] = driver.received()
    assert frame == packet and driver.reg(0x5B0C) == 5


def test_frames_wait_for_buffers_and_a_full_queue_drops(driver):
    rooms = []
    driver.nic.connect(driver.sent.append, lambda: True, lambda: rooms.append(1))
    driver.set(0x5B10, 0)                              # the driver gave no buffers back yet
    driver.nic.rx_head[0] = 0
    frames = [ethernet(0x0800, n.to_bytes(2, "big") * 50) for n in range(A.RX_QUEUE + 3)]
    for f in frames:
        driver.nic.receive(f)
    assert not driver.nic.wants_frames() and driver.reg(0x6818) == 3
    driver.set(0x5B10, RING_SIZE - 1)                 # buffers: the waiting frames go in
    assert [f for f, *_ in driver.received()] == frames[:RING_SIZE - 1]
    assert driver.nic.wants_frames() and rooms == [1]


def test_an_auto_masked_vector_fires_when_unmasked(driver):
    driver.nic.receive(ethernet(0x0800, bytes(50)))
    driver.nic.receive(ethernet(0x0800, bytes(50)))   # masked since the first: pending
    assert driver.messages == [0x40]
    driver.set(0x2060, 1)                             # NAPI done: the pending one fires
    assert driver.messages == [0x40, 0x40]


def test_intx_when_msix_and_msi_are_off():
    d = Driver(msix=False)
    d.probe()
    d.open()
    d.nic.receive(ethernet(0x0800, bytes(50)))
    assert d.intx.level and d.reg(0x2000) == 1
    d.set(0x2070, 1)
    d.set(0x2050, 1)                                  # aq_vec_isr_legacy
    assert not d.intx.level


def test_the_backend_full_holds_the_ring_then_it_runs(driver):
    driver.room = False
    driver.transmit([ethernet(0x0800, bytes(60))])
    assert driver.sent == [] and driver.reg(0x7C0C) == 0
    driver.room = True
    driver.nic.tx_ready()
    assert len(driver.sent) == 1 and driver.reg(0x7C0C) == 1


def test_statistics_reach_the_mailbox(driver):
    driver.transmit([ethernet(0x0800, bytes(60))])
    driver.nic.receive(b"\xff" * 6 + MAC + b"\x08\x06" + bytes(28))
    mbox = driver.reg(0x360)
    counters = dict(zip(A.MBOX_COUNTERS, driver.mif_read(mbox + 0x0C, len(A.MBOX_COUNTERS))))
    assert counters["uptc"] == 1 and counters["bprc"] == 1
    temperature = driver.mif_read(mbox + 0x50, 1)[0] & 0xFFFF
    assert temperature * 1000 // 256 == 45000


def test_save_and_load_carry_the_rings_on(driver):
    driver.transmit([ethernet(0x0800, bytes(60))])
    saved = driver.nic.save()
    other = Driver()
    other.ram = driver.ram
    other.bus = driver.bus
    other.nic.load(saved)
    assert other.nic.tx_head == driver.nic.tx_head and other.nic.regs == driver.nic.regs
    with pytest.raises(StateError):
        other.nic.load({**saved, "tx_head": [0]})
    assert other.nic.tx_head == driver.nic.tx_head       # a refused load changes nothing


def test_a_hostile_guest_cannot_break_it(driver):
    """Random register writes, descriptors pointing anywhere, garbage frames: no exception,
    every ring's work bounded, the device answers after."""
    rng = random.Random(7)
    offsets = [0x0, 0x200, 0x208, 0x284, 0x32C, 0x368, 0x36C, 0x404, 0x2060, 0x2100, 0x2300,
               0x54D0, 0x54E0, 0x5700, 0x5B00, 0x5B08, 0x5B10, 0x5B18, 0x7900, 0x7C00,
               0x7C04, 0x7C08, 0x7C10, 0x7820]
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.5:
            driver.set(rng.choice(offsets) + rng.choice((0, 0x20, 0x40)),
                       rng.getrandbits(32))
        elif roll < 0.8:
            driver.ram.write(TX_RING + 16 * rng.randrange(RING_SIZE), rng.randbytes(16))
            driver.ram.write(RX_RING + 16 * rng.randrange(RING_SIZE), rng.randbytes(16))
            driver.set(0x7C10, rng.randrange(RING_SIZE))
        else:
            driver.nic.receive(rng.randbytes(rng.randrange(0, 20000)))
        driver.read_anything = driver.reg(rng.randrange(0, A.REGISTERS_SIZE, 4))
    driver.window.write(0x7C10, 2, 1)                # odd widths are ignored
    assert driver.nic.save()                          # still whole
    assert all(len(frame) <= A.MAX_FRAME for frame in driver.sent)
    # The driver's recovery: a soft reset and bring-up as at probe, and frames flow again.
    driver.sent.clear()
    driver.tx_tail = driver.rx_next = 0
    assert driver.probe() == MAC
    driver.open()
    driver.transmit([ethernet(0x0800, ipv4(17, udp(b"after")))])
    assert len(driver.sent) == 1 and driver.sent[0].endswith(b"after")
    driver.nic.receive(ethernet(0x0800, ipv4(17, udp(b"back"))))
    assert [f for f, *_ in driver.received()][0].endswith(b"back")
