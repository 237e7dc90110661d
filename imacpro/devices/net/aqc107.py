"""The Aquantia AQC107 10 Gigabit Ethernet controller (PCI 1d6a:07b1 rev 02, class 020000,
subsystem 106b:0187), the iMac Pro's 10GbE port, as Linux's atlantic driver drives it: its B1
hardware ops (`hw_atl_b0.c`, `hw_atl_llh.c`) and the firmware 2.x/3.x host interface
(`hw_atl_utils_fw2x.c`).

No emulator had modelled this card: the model is what the driver reads and writes, answered as
the card's firmware and hardware would (Linux 6.1, the kernel Debian bookworm runs).

BARs: 0 the registers (64 KiB), 2 the MSI-X table (32 vectors) and PBA (4 KiB), 4 a 4 MiB
window the driver never touches (reads 0). All 64-bit, non-prefetchable.

Registers (32-bit; a write is stored and read back unless the table says otherwise):

    | off          | register                  | model                                          |
    |--------------|---------------------------|------------------------------------------------|
    | 0000         | global control            | bit15 soft reset: the datapath (2000-8FFF) to  |
    |              |                           | its defaults; reads back 0                     |
    | 0018         | firmware version (RO)     | 3.1.88 while the firmware runs, 0 while held   |
    | 001C         | MIF ID (RO)               | 0x0A: a B1 chip                                |
    | 0200/208/20C | MCP RAM window            | W 200 bit15: 20C := RAM[208], 208 += 4         |
    | 0284/288/28C/290 | MDIO                  | the PHY: an AQR107's ID, busy never set        |
    | 0328/032C    | B1 firmware write mailbox | on 0404 bit1: RAM[area + 32C] := 328, 32C's    |
    |              |                           | area nibble cleared, 0404 bit1 cleared         |
    | 0334/0360/0364 | RPC, mailbox, efuse     | the firmware's RAM addresses (RO)              |
    | 033C         | RPC state (RO)            | echoes 0338's transaction ID, length 0         |
    | 0368         | link request              | rate mask; the link comes up at the highest    |
    |              |                           | rate asked for that the cable has (10G)        |
    | 036C / 0374  | control 2 / state 2       | state 2 follows control 2 at once (the         |
    |              |                           | statistics, temperature and request handshakes)|
    | 0370         | link state (RO)           | 0x800 at 10 Gb/s, 0 when down                  |
    | 0388         | boot exit code            | 0xABBA once the firmware has booted            |
    | 03A0-03B0    | semaphores (RO)           | always granted (read 1)                        |
    | 0404         | MCP control               | bit0 1→0: the firmware reboots                 |
    | 2000         | interrupt status          | bit v: vector v has an event                   |
    | 2050/2060/2070 | status clear, mask set, mask clear | mask set fires what is pending        |
    | 2090         | auto-mask                 | a fired vector's mask bit clears itself        |
    | 2100+4(n/2)  | ring → vector map         | odd ring: RX [4:0] en 7, TX [20:16] en 23;     |
    |              |                           | even: RX [12:8] en 15, TX [28:24] en 31        |
    | 218C         | link cause → vector       | [4:0] vector, bit7 enable                      |
    | 3120         | MAC temperature (RO)      | ready bits 31:30, code [11:0]                  |
    | 54D0/54D4    | RSS key write             | bit5 self-clears                               |
    | 54E0/54E4    | RSS table write           | bit4 self-clears                               |
    | 5A10         | RX descriptor cache (RO)  | invalidation done: bit0 = 1                    |
    | 5700 / 7900  | RX / TX packet buffer     | bit0: the path is on                           |
    | 5B00+20n     | RX ring n                 | base lo/hi, +08 length [12:3] enable 31, +0C   |
    |              |                           | head (RO), +10 tail, +18 buffer KiB [4:0]      |
    | 6800-680C    | RX packets / octets (64)  | counted; 6818: frames dropped for no buffer    |
    | 7C00+40n     | TX ring n                 | base lo/hi, +08 length, enable 31, +0C head    |
    |              |                           | (RO), +10 tail                                 |
    | 7820/7824    | LSO TCP flag masks        | first and middle [11:0] / [27:16], last        |
    | 8800-880C    | TX packets / octets (64)  | counted                                        |

The firmware's RAM (read through 0200/0208/020C): the mailbox at MBOX_ADDR (statistics,
PHY temperature, capabilities: no PTP, no MACsec, and the settings area's address), the
efuse shadow at EFUSE_ADDR (the MAC address at +0xA0, each dword byte-swapped), and the RPC
and settings areas the driver writes (kept; nothing acts on them: wake-on-LAN and the sleep
proxy are not modelled).

Datapath. TX: a tail write runs the ring's descriptors from the head: a context descriptor
(type 2: VLAN tag, LSO header lengths, MSS) then data descriptors (type 1: address, length,
EOP, the offload commands: IPv4 and TCP/UDP checksums, LSO, VLAN insertion), frame by frame;
the head (the driver's only completion report) moves after each frame, and the ring's TX
vector fires. RX: a frame takes as many 2 KiB buffers as it needs from the head; each gets a
write-back with the frame's length, DD, EOP on the last, the packet type, and the checksums
checked (status bit 5 when the L4 checksum is good); the head moves and the ring's RX vector
fires. Frames go to ring 0 (RSS is stored, not applied: any ring is valid); every frame is
accepted (the filters are stored: the stack drops what is not its own). VLAN stripping is
applied when the ring asks for it.

Interrupts: MSI-X (one vector per ring, as the driver asks), MSI (every vector one message),
or INTA# while status & mask is non-zero. Moderation timers are stored, not applied.

What the model leaves out: PTP, MACsec, wake-on-LAN, LRO (never coalesces), RSS queue
selection, the L2/VLAN/ntuple filters' effect, flow control frames, interrupt moderation,
link speeds other than 10 Gb/s.

A hostile guest: descriptors and buffers are read and written by DMA only inside RAM and
while bus mastering is on; a ring or buffer outside RAM stops that ring where it is (the
frame is not sent, the head does not move), as a master abort would; a frame of more than
MAX_FRAME bytes or MAX_TX_DESCRIPTORS buffers is dropped and its descriptors completed;
lengths, ring sizes and register values are masked to their fields. A ring's work per tail
write is bounded by its size. A guest that transmits faster than the backend takes frames
stops at the backend's limit: the ring is not run until the backend has room again, so
nothing is buffered without bound and nothing is dropped.
"""

from __future__ import annotations

import logging
import struct
from array import array
from collections import deque
from typing import Callable

from imacpro.bus.msi import Msi, MsiX
from imacpro.bus.pci import MemoryBar, PciFunction, Unmodelled
from imacpro.bus.pcie import ENDPOINT, pcie_capability
from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.net import offload
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

# --- identity -----------------------------------------------------------------------------
VENDOR_AQUANTIA, DEVICE_AQC107 = 0x1D6A, 0x07B1
SUBSYSTEM = (0x106B, 0x0187)
CLASS_ETHERNET = 0x020000
REVISION = 0x02
FW_VERSION = 0x0301_0058          # 3.1.88: a FW 3.x the driver takes its 2.x interface for
MIF_ID_B1 = 0x0A
PHY_ID = (0x03A1, 0xB4E0)         # the AQR107 PHY on the AQC107
PHY_TEMPERATURE = 45 * 256        # 1/256 °C
MAC_TEMPERATURE_CODE = 0x850      # ≈ 45 °C by the driver's formula

# --- geometry -----------------------------------------------------------------------------
REGISTERS_SIZE = 64 * 1024
MSIX_BAR_SIZE, WINDOW_BAR_SIZE = 4096, 4 * 1024 * 1024
MSIX_VECTORS, MSIX_TABLE, MSIX_PBA = 32, 0x000, 0x800
RINGS = 32
DESCRIPTOR = 16
RX_BUFFER_DEFAULT = 2048
MAX_FRAME = 16 * 1024 + 18        # the driver's largest MTU, 16334, with its headers
MAX_TX_DESCRIPTORS = 64           # buffers in one frame (the driver uses at most 18)
MAX_LSO = (1 << 18) + 512         # an LSO payload's length field is 18 bits
RX_QUEUE = 256                    # frames waiting for RX buffers before the backend is paused
GUEST_ERRORS_LOGGED = 10

# --- the firmware's RAM -------------------------------------------------------------------
MBOX_ADDR, RPC_ADDR, SETTINGS_ADDR, EFUSE_ADDR = 0x1FB0_0000, 0x1FB0_0400, 0x1FB0_0800, 0x1FB0_1000
MBOX_SIZE, AREA_SIZE = 0x174, 0x400
AREA_CONFIG, AREA_SETTINGS = 0x8000_0000, 0x2000_0000
BOOT_OK, BOOT_PENDING = 0xABBA, 0xDEAD
RATE_10G = 0x800
RATES = 0xF20                     # 100M, 1G, 2.5G, 5G, 10G: what the card negotiates
# Mailbox statistics, in the order of `struct hw_atl_stats_s` from offset 0x0C.
MBOX_COUNTERS = ("uprc", "mprc", "bprc", "erpt", "uptc", "mptc", "bptc", "erpr", "mbtc",
                 "bbtc", "mbrc", "bbrc", "ubrc", "ubtc")

# --- registers ----------------------------------------------------------------------------
GLOBAL_CONTROL, SOFT_RESET = 0x0000, 1 << 15
FW_VERSION_REG, MIF_ID = 0x0018, 0x001C
MIF_CMD, MIF_ADDR, MIF_VAL, MIF_READ, MIF_WRITE = 0x0200, 0x0208, 0x020C, 0x8000, 0x4000
MDIO_CMD, MDIO_WDATA, MDIO_ADDR, MDIO_RDATA = 0x0284, 0x0288, 0x028C, 0x0290
MDIO_EXECUTE, MDIO_BUSY = 1 << 15, 1 << 31
FW_WRITE_DATA, FW_WRITE_ADDR = 0x0328, 0x032C
RPC_ADDR_REG, RPC_CONTROL, RPC_STATE = 0x0334, 0x0338, 0x033C
MBOX_ADDR_REG, EFUSE_ADDR_REG = 0x0360, 0x0364
LINK_REQUEST, CONTROL2, LINK_STATE, STATE2 = 0x0368, 0x036C, 0x0370, 0x0374
BOOT_CODE = 0x0388
SEMAPHORES = range(0x03A0, 0x03B4, 4)
MCP_CONTROL, MCP_HOLD, MCP_KICK = 0x0404, 1 << 0, 1 << 1
ISR, ISR_CLEAR, IMR_SET, IMR_CLEAR, AUTO_MASK = 0x2000, 0x2050, 0x2060, 0x2070, 0x2090
RING_MAP, LINK_CAUSE = 0x2100, 0x218C
MAC_TEMP_CONTROL, MAC_TEMP = 0x3100, 0x3120
RSS_KEY_CONTROL, RSS_KEY_WRITE = 0x54D0, 1 << 5
RSS_TABLE_CONTROL, RSS_TABLE_WRITE = 0x54E0, 1 << 4
RX_PATH, TX_PATH, PATH_ENABLE = 0x5700, 0x7900, 1 << 0
RX_CACHE_DONE = 0x5A10
RX_RING, RX_STRIDE, TX_RING, TX_STRIDE = 0x5B00, 0x20, 0x7C00, 0x40
RING_BASE_LO, RING_BASE_HI, RING_LENGTH, RING_HEAD, RING_TAIL, RX_BUFFER_SIZE = \
    0x00, 0x04, 0x08, 0x0C, 0x10, 0x18
RING_ENABLE, RX_VLAN_STRIP, RING_SIZE_MASK = 1 << 31, 1 << 29, 0x1FF8
RX_PACKETS, RX_OCTETS, RX_DROPS = 0x6800, 0x6808, 0x6818
TX_PACKETS, TX_OCTETS = 0x8800, 0x8808
LSO_FLAGS_FIRST_MIDDLE, LSO_FLAGS_LAST = 0x7820, 0x7824
DATAPATH = range(0x2000, 0x9000)
# The 64-bit DMA counters (low dword, then high) and the 32-bit drop counter, by register.
COUNTER_REGISTERS = {RX_PACKETS: "rx_packets", RX_OCTETS: "rx_octets", RX_DROPS: "rx_drops",
                     TX_PACKETS: "tx_packets", TX_OCTETS: "tx_octets"}

# --- descriptors --------------------------------------------------------------------------
TXD, TXC = 1, 2
TXD_EOP, TXD_VLAN, TXD_IPCSO, TXD_TUCSO, TXD_LSO = 1 << 21, 1 << 22, 1 << 24, 1 << 25, 1 << 26
TXD_DD, TXD_CTX_EN = 1 << 20, 1 << 13
TXC_IPV6, TXC_TCP = 1 << 21, 1 << 22
RXD_DD, RXD_EOP, RXD_IP_BAD, RXD_L4_BAD, RXD_L4_GOOD = 1 << 0, 1 << 1, 1 << 3, 1 << 4, 1 << 5
RXT_VLAN, RXT_IP_CHECKED, RXT_L4_CHECKED = 1 << 9, 1 << 19, 1 << 20
L3_IPV4, L3_IPV6, L3_OTHER, L3_ARP = 0, 1, 2, 3
L4_TCP, L4_UDP, L4_SCTP, L4_ICMP, L4_OTHER = 0, 1, 2, 3, 4

U32 = 0xFFFF_FFFF


class Aqc107:
    """The controller. `send(frame)` takes a frame the guest transmits; `can_send()` says
    whether the backend has room for one more (False: the TX rings wait for `tx_ready()`);
    `receive(frame)` gives the guest a frame; `on_rx_room()` is called when frames can be
    taken again after `wants_frames()` said no."""

    def __init__(self, mac: bytes, intx: IrqLine | None = None):
        if len(mac) != 6:
            raise ValueError("a MAC address is 6 bytes")
        self.mac = bytes(mac)
        self.send: Callable[[bytes], None] = lambda frame: None
        self.can_send: Callable[[], bool] = lambda: True
        self.on_rx_room: Callable[[], None] = lambda: None
        self.cable = False             # a backend is attached: the link can come up
        self.guest_errors = 0
        self.pci = _Function(self)
        self.msi = Msi(self.pci)
        self.msix = MsiX(self.pci, MSIX_VECTORS, bir=2, table_offset=MSIX_TABLE,
                         pba_offset=MSIX_PBA)
        self.pci.add_capability(0x10, *pcie_capability(ENDPOINT, 5.0, 4))   # 5 GT/s x4
        self.pci.add_memory_bar(MemoryBar(0, REGISTERS_SIZE, self))
        self.pci.add_memory_bar(MemoryBar(2, MSIX_BAR_SIZE, _MsixWindow(self.msix)))
        self.pci.add_memory_bar(MemoryBar(4, WINDOW_BAR_SIZE, Unmodelled()))
        if intx is not None:
            self.pci.set_interrupt_pin(intx)
        self.rx_queue: deque[bytes] = deque()
        self._power_on()

    # --- reset ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Platform reset (PERST#): the function, the firmware reboots, the datapath."""
        self.pci.reset()
        self._power_on()

    def _power_on(self) -> None:
        self.regs = array("I", bytes(REGISTERS_SIZE))
        self.fw_ram: dict[int, int] = {}
        self.mif_addr = self.mif_value = 0
        self.mdio_address = self.mdio_data = 0
        self._last_link = 0
        self.regs[MCP_CONTROL // 4] = 0x40E0
        self.regs[MAC_TEMP_CONTROL // 4] = 1
        self._reset_datapath()
        self._firmware_boot()

    def _firmware_boot(self) -> None:
        """The firmware (re)starts: it publishes its addresses and its boot code."""
        self.regs[BOOT_CODE // 4] = BOOT_OK
        self.regs[RPC_ADDR_REG // 4] = RPC_ADDR
        self.regs[MBOX_ADDR_REG // 4] = MBOX_ADDR
        self.regs[EFUSE_ADDR_REG // 4] = EFUSE_ADDR
        self.regs[STATE2 // 4] = self.regs[CONTROL2 // 4]
        self._update_link()

    def _reset_datapath(self) -> None:
        for index in range(DATAPATH.start // 4, DATAPATH.stop // 4):
            self.regs[index] = 0
        self.regs[RX_CACHE_DONE // 4] = 1
        self.regs[MAC_TEMP_CONTROL // 4] = 1
        self.isr = self.imr = self.iamr = 0
        self.tx_head = [0] * RINGS
        self.rx_head = [0] * RINGS
        self.counters = {name: 0 for name in ("rx_packets", "rx_octets", "rx_drops",
                                              "tx_packets", "tx_octets", *MBOX_COUNTERS)}
        self.tx_context = (0, 0)          # the last context descriptor's two dwords
        self.rss_key = [0] * 10
        self.rss_table = [0] * 16
        was_full = len(self.rx_queue) >= RX_QUEUE
        self.rx_queue.clear()
        if was_full:
            self.on_rx_room()
        self._update_intx()

    # --- the backend ------------------------------------------------------------------------

    def connect(self, send: Callable[[bytes], None], can_send: Callable[[], bool],
                on_rx_room: Callable[[], None]) -> None:
        """Plug the cable into a network backend."""
        self.send, self.can_send, self.on_rx_room = send, can_send, on_rx_room
        self.cable = True
        self._update_link()

    def unplug(self) -> None:
        """The backend has gone: the link goes down, as with the cable pulled; what the
        guest sends meanwhile is dropped as a port with no link drops it."""
        self.send, self.can_send = (lambda frame: None), (lambda: True)
        self.on_rx_room = lambda: None
        self.cable = False
        self._guarded(self._update_link)

    def tx_ready(self) -> None:
        """The backend has room again: run the TX rings that waited."""
        self._guarded(self._run_all_tx)

    def wants_frames(self) -> bool:
        return len(self.rx_queue) < RX_QUEUE

    def receive(self, frame: bytes) -> None:
        """A frame from the network. Taken into RX buffers now, or queued until the guest
        gives some; a full queue drops it (counted in 6818)."""
        if not self.link_up or len(frame) < offload.ETH_HLEN or len(frame) > MAX_FRAME:
            return
        if len(self.rx_queue) >= RX_QUEUE:
            self.counters["rx_drops"] += 1
            return
        self.rx_queue.append(bytes(frame))
        self._guarded(self._run_rx)

    # --- registers --------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size == 8:
            return self.read(offset, 4) | self.read(offset + 4, 4) << 32
        base = offset & ~3
        if not 0 <= base < REGISTERS_SIZE:
            return 0
        value = self._read_dword(base)
        return value >> 8 * (offset - base) & ((1 << 8 * size) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 8:
            self.write(offset, 4, value & U32)
            self.write(offset + 4, 4, value >> 32)
            return
        if size != 4 or offset & 3 or not 0 <= offset < REGISTERS_SIZE:
            return                  # the driver writes dwords
        self._guarded(lambda: self._write_dword(offset, value & U32))

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:           # a device bug must not take the machine down
            log.exception("AQC107: internal error; the port goes on")

    def _read_dword(self, offset: int) -> int:
        regs = self.regs
        if offset == FW_VERSION_REG:
            return 0 if regs[MCP_CONTROL // 4] & MCP_HOLD else FW_VERSION
        if offset == MIF_ID:
            return MIF_ID_B1
        if offset == MIF_ADDR:
            return self.mif_addr
        if offset == MIF_VAL:
            return self.mif_value
        if offset == MDIO_RDATA:
            return self.mdio_data
        if offset == RPC_STATE:
            return regs[RPC_CONTROL // 4] & 0xFFFF
        if offset == LINK_STATE:
            return self._link_state()
        if offset in SEMAPHORES:
            return 1
        if offset == ISR:
            return self.isr
        if offset == AUTO_MASK:
            return self.iamr
        if offset == MAC_TEMP:
            return 0xC000_0000 | MAC_TEMPERATURE_CODE
        counter = self._counter_register(offset)
        if counter is not None:
            return counter
        ring = self._ring_register(offset)
        if ring is not None:
            kind, n, field = ring
            if field == RING_HEAD:
                return (self.rx_head if kind == "rx" else self.tx_head)[n]
        return regs[offset // 4]

    def _counter_register(self, offset: int) -> int | None:
        if offset == RX_DROPS:
            return self.counters["rx_drops"] & U32
        name = COUNTER_REGISTERS.get(offset & ~7)
        if name is None or offset & 3 or name == "rx_drops":
            return None
        return self.counters[name] >> (32 if offset & 4 else 0) & U32

    @staticmethod
    def _ring_register(offset: int) -> tuple[str, int, int] | None:
        if RX_RING <= offset < RX_RING + RINGS * RX_STRIDE:
            return "rx", (offset - RX_RING) // RX_STRIDE, (offset - RX_RING) % RX_STRIDE
        if TX_RING <= offset < TX_RING + RINGS * TX_STRIDE:
            return "tx", (offset - TX_RING) // TX_STRIDE, (offset - TX_RING) % TX_STRIDE
        return None

    def _write_dword(self, offset: int, value: int) -> None:
        regs = self.regs
        old = regs[offset // 4]
        if offset == GLOBAL_CONTROL:
            regs[0] = value & ~SOFT_RESET
            if value & SOFT_RESET:
                self._reset_datapath()
        elif offset == MIF_CMD:
            regs[offset // 4] = value & ~0x100
            if value & MIF_READ:
                if value & MIF_WRITE:               # the B0 chips' write (not the driver's B1 path)
                    self._fw_write(self.mif_addr, self.mif_value)
                else:
                    self.mif_value = self._fw_read(self.mif_addr)
                self.mif_addr = (self.mif_addr + 4) & U32
        elif offset == MIF_ADDR:
            self.mif_addr = value
        elif offset == MIF_VAL:
            self.mif_value = value
        elif offset == MDIO_CMD:
            regs[offset // 4] = value & ~(MDIO_EXECUTE | MDIO_BUSY)
            if value & MDIO_EXECUTE:
                self._mdio(value)
        elif offset == LINK_REQUEST:
            regs[offset // 4] = value
            self._update_link()
        elif offset == CONTROL2:
            regs[offset // 4] = value
            regs[STATE2 // 4] = value          # the firmware acknowledges at once
        elif offset == MCP_CONTROL:
            regs[offset // 4] = value & ~MCP_KICK
            if value & MCP_KICK:
                self._fw_mailbox_write()
            if old & MCP_HOLD and not value & MCP_HOLD:
                self._firmware_boot()
        elif offset == ISR_CLEAR:
            self.isr &= ~value
            self._update_intx()
        elif offset == IMR_SET:
            self.imr |= value
            self._deliver()
        elif offset == IMR_CLEAR:
            self.imr &= ~value
            self._update_intx()
        elif offset == AUTO_MASK:
            self.iamr = value
        elif offset == RSS_KEY_CONTROL:
            regs[offset // 4] = value & ~RSS_KEY_WRITE
            if value & RSS_KEY_WRITE:
                self.rss_key[(value & 0x1F) % 10] = regs[(RSS_KEY_CONTROL + 4) // 4]
        elif offset == RSS_TABLE_CONTROL:
            regs[offset // 4] = value & ~RSS_TABLE_WRITE
            if value & RSS_TABLE_WRITE:
                self.rss_table[value & 0xF] = regs[(RSS_TABLE_CONTROL + 4) // 4] & 0xFFFF
        elif offset in (ISR, RX_CACHE_DONE, MAC_TEMP, FW_VERSION_REG, MIF_ID, LINK_STATE,
                        STATE2, RPC_STATE, RPC_ADDR_REG, MBOX_ADDR_REG, EFUSE_ADDR_REG) \
                or offset in SEMAPHORES or self._counter_register(offset) is not None:
            pass                                   # read-only
        else:
            ring = self._ring_register(offset)
            if ring is not None and ring[2] == RING_HEAD:
                return                             # heads are the hardware's
            regs[offset // 4] = value
            if ring is not None:
                kind, n, field = ring
                if kind == "tx" and field in (RING_TAIL, RING_LENGTH):
                    self._run_tx(n)
                elif kind == "rx" and field in (RING_TAIL, RING_LENGTH):
                    self._run_rx()
            elif offset == TX_PATH:
                self._run_all_tx()
            elif offset == RX_PATH:
                self._run_rx()

    # --- the firmware --------------------------------------------------------------------

    def _fw_read(self, address: int) -> int:
        if MBOX_ADDR <= address < MBOX_ADDR + MBOX_SIZE:
            return self._mailbox(address - MBOX_ADDR)
        if address == EFUSE_ADDR + 0xA0:
            return struct.unpack(">I", self.mac[:4])[0]
        if address == EFUSE_ADDR + 0xA4:
            return struct.unpack(">H", self.mac[4:])[0] << 16
        return self.fw_ram.get(address, 0)

    def _fw_write(self, address: int, value: int) -> None:
        for base in (RPC_ADDR, SETTINGS_ADDR):       # the areas the host may write
            if base <= address < base + AREA_SIZE:
                self.fw_ram[address & ~3] = value & U32

    def _fw_mailbox_write(self) -> None:
        """The B1 write mailbox: 032C names the area and the offset, 0328 the dword."""
        target = self.regs[FW_WRITE_ADDR // 4]
        area = target & 0xF000_0000
        base = {AREA_CONFIG: RPC_ADDR, AREA_SETTINGS: SETTINGS_ADDR}.get(area)
        if base is not None:
            self._fw_write(base + (target & 0xFFFF), self.regs[FW_WRITE_DATA // 4])
        self.regs[FW_WRITE_ADDR // 4] = target & 0x0FFF_FFFF

    def _mailbox(self, offset: int) -> int:
        """A dword of the firmware's mailbox (`struct hw_atl_utils_mbox`)."""
        if 0x0C <= offset < 0x0C + 4 * len(MBOX_COUNTERS):
            return self.counters[MBOX_COUNTERS[(offset - 0x0C) // 4]] & U32
        if offset == 0x44:
            return self.counters["rx_drops"] & U32
        if offset == 0x50:
            return PHY_TEMPERATURE
        if offset == 0x84:
            return RATES                      # caps_lo: the rates; no MACsec (bit 15)
        if offset == 0x10C:
            return SETTINGS_ADDR
        if offset == 0x110:
            return 0x9C                       # the settings area's length
        return 0                              # caps_ex 0x114: no PTP; the rest unused

    def _mdio(self, command: int) -> None:
        operation = command >> 12 & 3
        if operation == 3:
            self.mdio_address = self.regs[MDIO_ADDR // 4] & 0xFFFF
        elif operation == 1:
            mmd = command & 0x1F
            registers = {(1, 2): PHY_ID[0], (1, 3): PHY_ID[1]}
            self.mdio_data = registers.get((mmd, self.mdio_address), 0)

    # --- the link ------------------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        return self._link_state() != 0

    def _link_state(self) -> int:
        if not self.cable or self.regs[MCP_CONTROL // 4] & MCP_HOLD:
            return 0
        return RATE_10G if self.regs[LINK_REQUEST // 4] & RATE_10G else \
            _highest_rate(self.regs[LINK_REQUEST // 4] & RATES)

    def _update_link(self) -> None:
        state = self._link_state()
        if state != self._last_link:
            self._last_link = state
            cause = self.regs[LINK_CAUSE // 4]
            if cause & 0x80:
                self._raise(cause & 0x1F)
            if state:
                self._run_rx()

    # --- interrupts -----------------------------------------------------------------------

    def _vector(self, ring: int, tx: bool) -> int | None:
        entry = self.regs[(RING_MAP + 4 * (ring // 2)) // 4]
        shift = (8 if ring % 2 == 0 else 0) + (16 if tx else 0)
        field = entry >> shift & 0xFF
        return field & 0x1F if field & 0x80 else None

    def _raise(self, vector: int | None) -> None:
        if vector is None:
            return
        self.isr |= 1 << vector
        self._deliver()

    def _deliver(self) -> None:
        """Send what is pending and enabled: MSI-X per vector, MSI as one message (each
        vector auto-masked if it is in the auto-mask, and its status cleared: the driver
        never clears it in these modes); INTA# otherwise."""
        pending = self.isr & self.imr
        if pending and (self.msix.enabled or self.msi.enabled):
            for vector in range(32):
                if pending >> vector & 1:
                    if self.msix.enabled:
                        self.msix.signal(vector)
                    if self.iamr >> vector & 1:
                        self.imr &= ~(1 << vector)
                    self.isr &= ~(1 << vector)
            if self.msi.enabled and not self.msix.enabled:
                self.msi.send()
        self._update_intx()

    def _update_intx(self) -> None:
        asserted = not self.msix.enabled and not self.msi.enabled and bool(self.isr & self.imr)
        self.pci.set_intx(asserted)

    def config_changed(self) -> None:
        self._guarded(lambda: (self.msix.unmasked(), self._deliver(), self._run_all_tx(),
                               self._run_rx()))

    # --- TX -----------------------------------------------------------------------------

    def _ring(self, base: int) -> tuple[int, int, int] | None:
        """(descriptor address, size, tail) of an enabled ring with a sane size, else None."""
        length = self.regs[(base + RING_LENGTH) // 4]
        size = length & RING_SIZE_MASK
        tail = self.regs[(base + RING_TAIL) // 4] & 0x1FFF
        if not length & RING_ENABLE or not size or tail >= size:
            return None
        address = self.regs[(base + RING_BASE_HI) // 4] << 32 | self.regs[(base + RING_BASE_LO) // 4]
        return address & ~0x7F, size, tail

    def _run_all_tx(self) -> None:
        for n in range(RINGS):
            self._run_tx(n)

    def _run_tx(self, n: int) -> None:
        if not self.regs[TX_PATH // 4] & PATH_ENABLE:
            return
        ring = self._ring(TX_RING + n * TX_STRIDE)
        if ring is None:
            return
        address, size, tail = ring
        head = self.tx_head[n] % size
        sent = False
        while head != tail and self.can_send():
            frame_end = self._tx_frame(n, address, size, head, tail)
            if frame_end is None:
                break
            head = frame_end
            self.tx_head[n] = head
            sent = True
        if sent:
            self._raise(self._vector(n, tx=True))

    def _tx_frame(self, n: int, address: int, size: int, head: int, tail: int) -> int | None:
        """Send the frame whose descriptors start at `head`; the index after its last
        descriptor, or None if it is not all there yet or a descriptor is out of reach."""
        buffers, commands, index, count = [], 0, head, 0
        length, oversize = 0, False
        while True:
            if index == tail:
                return None                          # the rest is not written yet
            raw = self.pci.dma_read(address + index * DESCRIPTOR, DESCRIPTOR)
            if raw is None:
                self._guest_error(f"TX ring {n}: descriptor {index} is outside memory")
                return None
            buffer, control, control2 = struct.unpack("<QII", raw)
            index = (index + 1) % size
            count += 1
            kind = control & 7
            if kind == TXC:
                self.tx_context = (control, control2)
                continue
            if kind != TXD:
                continue                             # not a descriptor: skipped
            blen = control >> 4 & 0xFFFF
            commands |= control & (TXD_VLAN | TXD_IPCSO | TXD_TUCSO | TXD_LSO)
            length += blen
            if length > MAX_LSO or count > MAX_TX_DESCRIPTORS:
                oversize = True
            elif blen:
                data = self.pci.dma_read(buffer, blen)
                if data is None:
                    self._guest_error(f"TX ring {n}: a buffer is outside memory")
                    return None
                buffers.append(data)
            if control & TXD_EOP:
                break
            if count >= size:
                oversize = True
                break
        if oversize:
            self._guest_error(f"TX ring {n}: a frame of {length} bytes in {count} "
                              "descriptors is dropped")
        else:
            self._transmit(b"".join(buffers), commands)
        return index

    def _transmit(self, frame: bytes, commands: int) -> None:
        context, context2 = self.tx_context
        if commands & TXD_LSO:
            l2, l3 = context >> 24 & 0x7F, (context2 & 0xFF) << 1 | context >> 31
            l4, mss = context2 >> 8 & 0xFF, context2 >> 16
            masks = self.regs[LSO_FLAGS_FIRST_MIDDLE // 4], self.regs[LSO_FLAGS_LAST // 4]
            frames = offload.segment(frame, l2, l3, l4, mss, bool(context & TXC_TCP),
                                     (masks[0] & 0xFFF, masks[0] >> 16 & 0xFFF,
                                      masks[1] & 0xFFF))
        else:
            frames = [bytearray(frame)]
            if commands & (TXD_IPCSO | TXD_TUCSO):
                offload.fill_checksums(frames[0], bool(commands & TXD_IPCSO),
                                       bool(commands & TXD_TUCSO))
        for out in frames:
            if commands & TXD_VLAN:
                out = offload.insert_vlan(out, context >> 4 & 0xFFFF)
            if len(out) < offload.ETH_HLEN or len(out) > MAX_FRAME:
                continue
            self._count(out, "t")
            self.send(bytes(out))

    def _count(self, frame, direction: str) -> None:
        """The DMA counters and the firmware's unicast/multicast/broadcast ones."""
        prefix = "rx" if direction == "r" else "tx"
        self.counters[f"{prefix}_packets"] += 1
        self.counters[f"{prefix}_octets"] += len(frame)
        kind = "b" if frame[:6] == b"\xff" * 6 else "m" if frame[0] & 1 else "u"
        self.counters[f"{kind}p{direction}c"] += 1
        self.counters[f"{kind}b{direction}c"] += len(frame)

    # --- RX -----------------------------------------------------------------------------

    def _run_rx(self) -> None:
        """Put waiting frames into ring 0's buffers while there are buffers."""
        was_full = len(self.rx_queue) >= RX_QUEUE
        delivered = False
        while self.rx_queue and self.link_up and self.regs[RX_PATH // 4] & PATH_ENABLE:
            if not self._rx_frame(0, self.rx_queue[0]):
                break
            self.rx_queue.popleft()
            delivered = True
        if delivered:
            self._raise(self._vector(0, tx=False))
        if was_full and len(self.rx_queue) < RX_QUEUE:
            self.on_rx_room()

    def _rx_frame(self, n: int, frame: bytes) -> bool:
        """Write `frame` into ring `n`; False if the ring has too few buffers (or is off)."""
        base = RX_RING + n * RX_STRIDE
        ring = self._ring(base)
        if ring is None:
            return False
        address, size, tail = ring
        settings = self.regs[(base + RING_LENGTH) // 4]
        vlan = None
        if settings & RX_VLAN_STRIP:
            frame, vlan = offload.strip_vlan(frame)
        buffer_size = (self.regs[(base + RX_BUFFER_SIZE) // 4] & 0x1F) * 1024 or RX_BUFFER_DEFAULT
        needed = -(-len(frame) // buffer_size)
        head = self.rx_head[n] % size
        if (tail - head) % size < needed:
            return False
        kind, status = self._rx_report(frame, vlan)
        for i in range(needed):
            slot = address + ((head + i) % size) * DESCRIPTOR
            raw = self.pci.dma_read(slot, DESCRIPTOR)
            if raw is None:
                self._guest_error(f"RX ring {n}: descriptor outside memory; frame dropped")
                self.counters["rx_drops"] += 1
                return True
            data_address = struct.unpack_from("<Q", raw)[0]
            piece = frame[i * buffer_size:(i + 1) * buffer_size]
            if not self.pci.dma_write(data_address, piece):
                self._guest_error(f"RX ring {n}: buffer outside memory; frame dropped")
                self.counters["rx_drops"] += 1
                return True
            last = i == needed - 1
            self.pci.dma_write(slot, struct.pack(
                "<IIHHHH", kind, 0, status | RXD_DD | (RXD_EOP if last else 0), len(frame),
                0, vlan or 0))
        self.rx_head[n] = (head + needed) % size
        self._count(frame, "r")
        return True

    @staticmethod
    def _rx_report(frame: bytes, vlan: int | None) -> tuple[int, int]:
        """The write-back's packet type word and status bits (without DD/EOP)."""
        h = offload.parse(frame)
        kind = status = 0
        if h is None or not h.version:
            l3 = L3_ARP if h is not None and h.ethertype == offload.ETH_P_ARP else L3_OTHER
            l4 = L4_OTHER
        else:
            l3 = L3_IPV4 if h.version == 4 else L3_IPV6
            l4 = {offload.IPPROTO_TCP: L4_TCP, offload.IPPROTO_UDP: L4_UDP,
                  offload.IPPROTO_SCTP: L4_SCTP, offload.IPPROTO_ICMP: L4_ICMP,
                  offload.IPPROTO_ICMPV6: L4_ICMP}.get(h.protocol, L4_OTHER)
            if h.version == 4:
                kind |= RXT_IP_CHECKED
                if not offload.ipv4_header_good(frame, h):
                    status |= RXD_IP_BAD
            good = offload.l4_checksum_good(frame, h) if l4 in (L4_TCP, L4_UDP) else None
            if good is not None:
                kind |= RXT_L4_CHECKED
                status |= RXD_L4_GOOD if good else RXD_L4_BAD
        kind |= l3 << 4 | l4 << 6 | (RXT_VLAN if vlan is not None else 0)
        return kind, status

    def _guest_error(self, what: str) -> None:
        """A ring the guest set up wrong: logged the first GUEST_ERRORS_LOGGED times, then
        only counted (a hostile guest must not fill the host's log)."""
        self.guest_errors += 1
        if self.guest_errors <= GUEST_ERRORS_LOGGED:
            log.warning("AQC107: %s%s", what, " (further ones are counted, not logged)"
                        if self.guest_errors == GUEST_ERRORS_LOGGED else "")

    # --- saved state --------------------------------------------------------------------

    SAVED = ("mif_addr", "mif_value", "mdio_address", "mdio_data", "isr", "imr", "iamr")

    def save(self) -> dict:
        """Frames waiting for RX buffers are not saved: a network loses frames, and the
        guest's TCP resends them."""
        return {"pci": self.pci.save(), "msix": self.msix.save(), "msi": self.msi.save(),
                "regs": self.regs.tobytes(),
                "fw_ram": [[address, value] for address, value in sorted(self.fw_ram.items())],
                "tx_head": list(self.tx_head), "rx_head": list(self.rx_head),
                "counters": dict(self.counters),
                "tx_context": list(self.tx_context), "rss_key": list(self.rss_key),
                "rss_table": list(self.rss_table),
                **{name: getattr(self, name) for name in self.SAVED}}

    def load(self, state: dict) -> None:
        where = "Aqc107"
        parts = (self.pci.check_state(_state.field(state, "pci", where)),
                 self.msix.check_state(_state.field(state, "msix", where)),
                 self.msi.check_state(_state.field(state, "msi", where)))
        regs = _state.bytes_field(state, "regs", where, REGISTERS_SIZE)
        fw_ram = {}
        for entry in _state.list_field(state, "fw_ram", where, max_length=2 * AREA_SIZE // 4):
            if (not isinstance(entry, list) or len(entry) != 2
                    or not all(isinstance(v, int) and 0 <= v <= U32 for v in entry)):
                raise StateError(f"{where}.fw_ram: not [address, value] pairs")
            fw_ram[entry[0]] = entry[1]
        heads = [_state.int_list(state, name, where, 0, RING_SIZE_MASK, length=RINGS)
                 for name in ("tx_head", "rx_head")]
        counters = _state.mapping(_state.field(state, "counters", where), f"{where}.counters")
        if set(counters) != set(self.counters):
            raise StateError(f"{where}.counters: unknown or missing counters")
        for name in counters:
            _state.int_field(counters, name, f"{where}.counters", 0)
        context = _state.int_list(state, "tx_context", where, 0, U32, length=2)
        key = _state.int_list(state, "rss_key", where, 0, U32, length=10)
        table = _state.int_list(state, "rss_table", where, 0, 0xFFFF, length=16)
        _state.ranges(state, where, {name: (0, U32) for name in self.SAVED})
        self.pci.apply_state(parts[0])
        self.msix.apply_state(parts[1])
        self.msi.apply_state(parts[2])
        self.regs = array("I", regs)
        self.fw_ram = fw_ram
        self.tx_head, self.rx_head = heads
        self.counters = dict(counters)
        self.tx_context = tuple(context)
        self.rss_key, self.rss_table = key, table
        for name in self.SAVED:
            setattr(self, name, state[name])
        self.rx_queue.clear()
        self._last_link = self._link_state()
        self._update_intx()


def _highest_rate(mask: int) -> int:
    return 1 << (mask.bit_length() - 1) if mask else 0


class _Function(PciFunction):
    """The NIC's PCI function: config writes may enable MSI-X, unmask, or turn on mastering."""

    def __init__(self, nic: Aqc107):
        super().__init__(VENDOR_AQUANTIA, DEVICE_AQC107, CLASS_ETHERNET, REVISION,
                         subsystem_vendor=SUBSYSTEM[0], subsystem=SUBSYSTEM[1])
        self.nic = nic

    def config_written(self, offset: int, size: int) -> None:
        self.nic.config_changed()

    def reset(self) -> None:
        super().reset()
        self.nic.msix.reset()


class _MsixWindow:
    """BAR 2: the MSI-X table and PBA."""

    def __init__(self, msix: MsiX):
        self.msix = msix

    def read(self, offset: int, size: int) -> int:
        return self.msix.read(offset, size) if self.msix.holds(offset) else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if self.msix.holds(offset):
            self.msix.write(offset, size, value)
