"""PCI: the host bridge's configuration access mechanisms and the functions behind them.

Configuration space is reached two ways (PCI Local Bus 3.0 §3.2.2.3.2; PCIe Base 4.0 §7.2.2):
  - ports 0xCF8 (CONFIG_ADDRESS, dword: enable bit 31, bus 23:16, device 15:11, function 10:8,
    register 7:2) and 0xCFC-0xCFF (CONFIG_DATA);
  - ECAM, memory-mapped at layout.ECAM_BASE: offset = bus << 20 | device << 15 | function << 12
    | register (4 KiB per function).
Port 0xCF9 shares the CF8 dword; byte accesses to it go to the chipset's reset control.
Absent functions read as all ones (vendor ID 0xFFFF), the way software detects them.

A function's header (type 0) as modelled here:

    | off | register                                                                        |
    |-----|---------------------------------------------------------------------------------|
    | 00  | vendor ID, device ID (RO)                                                       |
    | 04  | command: I/O 0, memory 1, bus master 2, SERR 8, INTx disable 10 (RW)             |
    | 06  | status: interrupt 3 (RO, the INTx state), capabilities list 4 (RO)              |
    | 08  | revision, class code (RO)                                                       |
    | 0C  | cache line size, latency timer (RW, no effect), header type (RO)                |
    | 10  | BARs: 64-bit memory BARs take two slots; the low bits (I/O, type,               |
    |     | prefetchable) are RO, address bits below the BAR's size read 0 (how software    |
    |     | sizes them)                                                                     |
    | 2C  | subsystem vendor, subsystem (RO)                                                |
    | 30  | expansion ROM: address 31:11 (RW above the ROM's size), enable 0 (RW)           |
    | 34  | capabilities pointer (RO)                                                       |
    | 3C  | interrupt line (RW, for software), interrupt pin (RO: 1 = INTA#)                |

PCI-to-PCI bridges (type 1 header) are `pci_bridge.PciBridge`. The hierarchy is one segment:
root buses (each a host bridge of the board) and the buses behind bridges. Configuration
cycles reach a bus by the bus numbers software programmed into the bridges, as on hardware
(a bridge claims its secondary..subordinate range); functions are attached under the bus
number the board gives them, which the firmware programs the bridges to match.

Memory BARs decode while the command register's memory bit is set and every bridge above
forwards the range (its memory bit set, the range inside one of its windows): `PciMemoryWindow`
(one per PCI memory window of memory/layout.py) looks up the BAR holding each access, so the
guest may move BARs at will. I/O BARs decode the same way through `PciIoWindow`. A function masters DMA (its device reads and writes guest memory) only while
the bus master bit is set: every DMA goes through `dma_window` (or dma_read/dma_write), which
gives nothing while bus mastering is off or when any byte of the range is not RAM (the
platform's master abort), so no device model reaches memory any other way. Its message interrupts (bus/msi.py) leave through `send_msi`, which
the bus connects to the platform's (the machine's `message_interrupt`).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Callable

from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

CONFIG_SPACE = 4096
COMMAND, STATUS, BAR0, CAP_POINTER, INTERRUPT_LINE, INTERRUPT_PIN = 0x04, 0x06, 0x10, 0x34, \
    0x3C, 0x3D
ROM_BAR = 0x30                           # type 0 header (a bridge's is at 0x38)
DECODE_REGISTERS = range(BAR0, CAP_POINTER)   # BARs, a bridge's windows, the ROM BAR
CMD_IO, CMD_MEMORY, CMD_BUS_MASTER, CMD_INTX_DISABLE = 1 << 0, 1 << 1, 1 << 2, 1 << 10
COMMAND_WRITABLE = CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | 1 << 6 | 1 << 8 | CMD_INTX_DISABLE
STATUS_INTERRUPT, STATUS_CAP_LIST = 1 << 3, 1 << 4
BAR_IO, BAR_MEM64, BAR_PREFETCHABLE = 0b1, 0b100, 0b1000
ROM_ENABLE = 1
MULTIFUNCTION = 0x80                     # header type bit 7
FIRST_CAPABILITY = 0x40
CONFIG_ADDRESS_WRITABLE = 0x80FF_FFFC    # enable, bus, device, function, register
MAX_IO_BAR = 256                         # PCI 3.0 §6.2.5.1: I/O BARs are at most 256 bytes


@dataclass
class MemoryBar:
    index: int       # BAR slot (a 64-bit BAR also takes index + 1); ROM_INDEX: the ROM
    size: int        # a power of two, at least 4 KiB (so it maps whole pages)
    device: object   # read(offset, size) / write(offset, size, value)
    is64: bool = True
    prefetchable: bool = False
    memory: object = None  # memory/ram.HostMemory when the BAR is plain memory (the engines
                           # map it directly); `device` then reads and writes the same bytes
    # () -> [(offset, size, bus.mmio.NativeAccess)]: pages of the BAR the device serves in
    # C (the engines map them with its accessors); None: none
    native_pages: Callable[[], list] | None = None


ROM_INDEX = -1


class Unmodelled:
    """What a BAR of a function answers when the registers behind it are not modelled (the
    docs name each such BAR): reads 0, writes ignored. It keeps the BAR's size and address as
    the real function's, so the OS lays out the bus as on the real machine."""

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        pass


@dataclass
class IoBar:
    index: int       # BAR slot
    size: int        # a power of two, 4 to 256 bytes
    device: object   # read(offset, size) / write(offset, size, value)


class PciFunction:
    """A function's configuration space; devices add BARs, capabilities and an INTx pin.

    Saved state: the 4 KiB of configuration space and whether the device asserts INTx. What
    the builder set up (IDs, BARs' sizes, capabilities: every bit software cannot write) must
    match the function loaded into. `load()` drives INTx and tells the bus that decoding may
    have changed.
    """

    def __init__(self, vendor: int, device: int, class_code: int, revision: int = 0,
                 subsystem_vendor: int = 0, subsystem: int = 0, header_type: int = 0):
        self.config = bytearray(CONFIG_SPACE)
        struct.pack_into("<HH", self.config, 0x00, vendor, device)
        struct.pack_into("<I", self.config, 0x08, (class_code << 8) | revision)
        self.config[0x0E] = header_type
        struct.pack_into("<HH", self.config, 0x2C, subsystem_vendor, subsystem)
        # Writable bits: command register, cache line size, latency timer, interrupt line.
        self.writable = bytearray(CONFIG_SPACE)
        struct.pack_into("<H", self.writable, COMMAND, COMMAND_WRITABLE)
        self.writable[0x0C] = self.writable[0x0D] = self.writable[INTERRUPT_LINE] = 0xFF
        self.bars: list[MemoryBar] = []
        self.io_bars: list[IoBar] = []
        self.rom: MemoryBar | None = None
        self.upstream = None                  # the bridge above (pci_bridge.PciBridge), if any
        self._next_capability = FIRST_CAPABILITY
        self._last_capability_link = CAP_POINTER
        self.intx: IrqLine | None = None      # INTA#, as the platform routes it
        self.memory = None                    # what its DMA reaches: the bus's (the RAM)
        self.send_msi: Callable[[int, int], None] = lambda address, data: None
        self._intx_asserted = False
        self.on_decode_change: Callable[[], None] = lambda: None
        self._initial = bytes(self.config)

    # --- building -------------------------------------------------------------------------

    def add_memory_bar(self, bar: MemoryBar) -> None:
        if bar.size < 4096 or bar.size & (bar.size - 1):
            raise ValueError(f"BAR size {bar.size:#x} is not a power of two >= 4 KiB")
        slots = 2 if bar.is64 else 1
        if not 0 <= bar.index <= 6 - slots:
            raise ValueError(f"no room for BAR {bar.index}")
        offset = BAR0 + 4 * bar.index
        low_bits = (BAR_MEM64 if bar.is64 else 0) | (BAR_PREFETCHABLE if bar.prefetchable else 0)
        struct.pack_into("<I", self.config, offset, low_bits)
        struct.pack_into("<I", self.writable, offset, ~(bar.size - 1) & 0xFFFF_FFF0)
        if bar.is64:
            struct.pack_into("<I", self.writable, offset + 4, 0xFFFF_FFFF)
        self.bars.append(bar)
        self._initial = bytes(self.config)

    def add_io_bar(self, bar: IoBar) -> None:
        if not 4 <= bar.size <= MAX_IO_BAR or bar.size & (bar.size - 1):
            raise ValueError(f"I/O BAR size {bar.size:#x} is not a power of two, 4 to 256")
        offset = BAR0 + 4 * bar.index
        struct.pack_into("<I", self.config, offset, BAR_IO)
        struct.pack_into("<I", self.writable, offset, ~(bar.size - 1) & 0xFFFC)
        self.io_bars.append(bar)
        self._initial = bytes(self.config)

    def add_rom(self, image: bytes, size: int) -> None:
        """An expansion ROM of `size` bytes (a power of two) holding `image`, read-only."""
        if size < 2048 or size & (size - 1) or len(image) > size:
            raise ValueError(f"ROM size {size:#x} is not a power of two holding the image")
        self.rom = MemoryBar(ROM_INDEX, max(size, 4096), ReadOnlyMemory(image, size),
                             is64=False)
        struct.pack_into("<I", self.writable, ROM_BAR, (~(size - 1) & 0xFFFF_F800) | ROM_ENABLE)
        self._initial = bytes(self.config)

    def place_next_capability(self, offset: int) -> None:
        """The next capability goes at `offset` (where a real part has it); the list stays
        linked in the order the capabilities are added."""
        if offset < self._next_capability or offset % 4:
            raise ValueError(f"capability offset {offset:#x} overlaps or is unaligned")
        self._next_capability = offset

    def add_capability(self, cap_id: int, body: bytes, writable: bytes = b"") -> int:
        """Append a capability (ID, next pointer, then `body`); returns its offset.
        `writable` masks the body's bytes that software may write."""
        offset = self._next_capability
        end = offset + 2 + len(body)
        if end > 0x100:
            raise ValueError("capabilities outgrew the 256-byte header space")
        self.config[offset] = cap_id
        self.config[offset + 2:end] = body
        self.writable[offset + 2:offset + 2 + len(writable)] = writable
        self.config[self._last_capability_link] = offset
        self._last_capability_link = offset + 1
        struct.pack_into("<H", self.config, STATUS,
                         struct.unpack_from("<H", self.config, STATUS)[0] | STATUS_CAP_LIST)
        self._next_capability = (end + 3) & ~3
        self._initial = bytes(self.config)
        return offset

    def mark_multifunction(self) -> None:
        self.config[0x0E] |= MULTIFUNCTION
        self.mark_reset_state()

    def mark_reset_state(self) -> None:
        """What the builder set in the configuration space is what a reset goes back to."""
        self._initial = bytes(self.config)

    def set_interrupt_pin(self, line: IrqLine, pin: int = 1) -> None:
        """INTx# (`pin` 1-4: INTA# to INTD#): the device asserts it with `set_intx`; the
        command register can mask it."""
        if not 1 <= pin <= 4:
            raise ValueError(f"interrupt pin {pin}: INTA# to INTD# are 1 to 4")
        self.config[INTERRUPT_PIN] = pin
        self.intx = line
        self._initial = bytes(self.config)

    # --- state ----------------------------------------------------------------------------

    def reset(self) -> None:
        self.config[:] = self._initial
        self._intx_asserted = False
        self._drive_intx()
        self.on_decode_change()

    @property
    def command(self) -> int:
        return struct.unpack_from("<H", self.config, COMMAND)[0]

    @property
    def bus_master(self) -> bool:
        return bool(self.command & CMD_BUS_MASTER)

    def bar_address(self, bar: MemoryBar | IoBar) -> int:
        if bar.index == ROM_INDEX:
            return struct.unpack_from("<I", self.config, ROM_BAR)[0] & 0xFFFF_F800
        low, high = struct.unpack_from("<II", self.config, BAR0 + 4 * bar.index)
        if isinstance(bar, IoBar):
            return low & 0xFFFC
        return (low & ~0xF) | ((high << 32) if bar.is64 else 0)

    def decoded_bars(self) -> list[tuple[int, MemoryBar]]:
        """(address, BAR) for the memory BARs (and the ROM, when enabled) the function
        decodes now, bridges above included."""
        if not self.command & CMD_MEMORY:
            return []
        bars = list(self.bars)
        if self.rom is not None and self.config[ROM_BAR] & ROM_ENABLE:
            bars.append(self.rom)
        return [(address, bar) for bar in bars
                if self._forwarded("memory", address := self.bar_address(bar), bar.size)]

    def decoded_io_bars(self) -> list[tuple[int, IoBar]]:
        if not self.command & CMD_IO:
            return []
        return [(address, bar) for bar in self.io_bars
                if self._forwarded("io", address := self.bar_address(bar), bar.size)]

    def _forwarded(self, space: str, address: int, size: int) -> bool:
        """Whether every bridge above passes [address, address + size) down to us."""
        bridge = self.upstream
        while bridge is not None:
            if not bridge.forwards(space, address, size):
                return False
            bridge = bridge.upstream
        return True

    def save(self) -> dict:
        return {"config": bytes(self.config), "intx_asserted": self._intx_asserted}

    def load(self, state: dict) -> None:
        self.apply_state(self.check_state(state))

    def check_state(self, state: dict) -> tuple[bytes, bool]:
        """The saved state, checked (StateError); for a device that loads it with others."""
        where = type(self).__name__
        config = _state.bytes_field(state, "config", where, CONFIG_SPACE)
        asserted = _state.bool_field(state, "intx_asserted", where)
        fixed = bytearray(~mask & 0xFF for mask in self.writable)
        fixed[STATUS] &= ~STATUS_INTERRUPT      # follows `intx_asserted`
        for offset, (saved, built, mask) in enumerate(zip(config, self._initial, fixed)):
            if (saved ^ built) & mask:
                raise StateError(f"{where}: configuration byte {offset:#x} is {saved:#04x}, "
                                 f"this function has {built:#04x} in its read-only bits")
        return config, asserted

    def apply_state(self, checked: tuple[bytes, bool]) -> None:
        self.config[:], self._intx_asserted = checked
        self._drive_intx()
        self.on_decode_change()

    # --- DMA ------------------------------------------------------------------------------

    @property
    def dma_memory(self):
        """The memory this function's DMA reaches now (the RAM), or None: bus mastering is
        off, or the function is on no memory. Devices whose data moves by other means than
        `dma_window` (the SSD's native path) ask this first."""
        return self.memory if self.bus_master else None

    def dma_window(self, address: int, length: int) -> memoryview | None:
        """A writable view of guest memory [address, address + length) for this function's
        DMA, or None: bus mastering off, no memory, or not all of it RAM."""
        memory = self.dma_memory
        if memory is None or length < 0:
            return None
        return memory.window(address, length)

    def dma_read(self, address: int, length: int) -> bytes | None:
        view = self.dma_window(address, length)
        return None if view is None else bytes(view)

    def dma_write(self, address: int, data: bytes) -> bool:
        view = self.dma_window(address, len(data))
        if view is None:
            return False
        view[:] = data
        return True

    def memory_holds(self, address: int, length: int) -> bool:
        """Whether [address, address + length) is memory the function could reach (a
        device checking where the driver placed its rings, before it masters)."""
        return self.memory is not None and self.memory.contains(address, max(length, 1))

    def set_intx(self, asserted: bool) -> None:
        self._intx_asserted = bool(asserted)
        self._drive_intx()

    def _drive_intx(self) -> None:
        status = struct.unpack_from("<H", self.config, STATUS)[0] & ~STATUS_INTERRUPT
        if self._intx_asserted:
            status |= STATUS_INTERRUPT
        struct.pack_into("<H", self.config, STATUS, status)
        if self.intx is not None:
            self.intx.set(self._intx_asserted and not self.command & CMD_INTX_DISABLE)

    # --- configuration access -------------------------------------------------------------

    def read_config(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def write_config(self, offset: int, size: int, value: int) -> None:
        command = offset < COMMAND + 2 and offset + size > COMMAND
        decode = command or (offset < DECODE_REGISTERS.stop
                             and offset + size > DECODE_REGISTERS.start)
        before = self.decoding() if decode else None
        for i in range(size):
            mask = self.writable[offset + i]
            byte = (value >> (8 * i)) & 0xFF
            self.config[offset + i] = (self.config[offset + i] & ~mask) | (byte & mask)
        if command:
            self._drive_intx()
        if decode and (before is None or self.decoding() != before):
            self.on_decode_change()
        self.config_written(offset, size)

    def decoding(self) -> tuple | None:
        """What the function decodes now, to tell whether a write changed it: an OS sizes
        its BARs with decoding off (thousands of writes in a boot), which moves nothing.
        None: whatever it decodes, a write may change more (a bridge's windows)."""
        return tuple(self.decoded_bars()), tuple(self.decoded_io_bars())

    def config_written(self, offset: int, size: int) -> None:
        """For devices whose capabilities act on writes (MSI-X masks)."""


class ReadOnlyMemory:
    """An expansion ROM behind its BAR: the image, zeros after it; writes are ignored."""

    def __init__(self, image: bytes, size: int):
        self.data = bytes(image).ljust(size, b"\0")

    def read(self, offset: int, size: int) -> int:
        if offset + size > len(self.data):
            return (1 << (8 * size)) - 1
        return int.from_bytes(self.data[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        pass


class PciBus:
    """The PCI hierarchy: root buses, the bridges below them and every function, attached
    under the (bus, device, function) the board gives it."""

    def __init__(self, send_msi: Callable[[int, int], None] = lambda address, data: None,
                 memory=None, root_buses: tuple[int, ...] = (0,)):
        """`send_msi(address, data)`: where the functions' message interrupts go; `memory`:
        what their DMA reaches (memory/ram.py); `root_buses`: the host bridges' bus numbers."""
        self.functions: dict[tuple[int, int, int], PciFunction] = {}
        self.root_buses = frozenset(root_buses)
        self.send_msi = send_msi
        self.memory = memory
        self._decoders: list[tuple[int, int, MemoryBar]] | None = None
        self._io_decoders: list[tuple[int, int, IoBar]] | None = None
        # The bridges, by the board bus they sit on: a configuration cycle to a bus below a
        # root follows them (board_bus), and a boot's enumeration makes tens of thousands.
        self._bridges: list[tuple[int, PciFunction]] = []

    def attach(self, device: int, function: int, fn: PciFunction, bus: int = 0) -> None:
        self.functions[bus, device, function] = fn
        # Function 0 of a device with more than one says so (header type bit 7), or the OS
        # looks no further than function 0 (PCI 3.0 §6.2.1).
        first = self.functions.get((bus, device, 0))
        if first is not None and any((b, d) == (bus, device) and f
                                     for b, d, f in self.functions):
            first.mark_multifunction()
        fn.on_decode_change = self._decode_changed
        fn.send_msi = self.send_msi
        fn.memory = self.memory
        fn.upstream = self._bridge_to(bus)               # in any order of attaching:
        child = getattr(fn, "child_bus", None)           # a bridge adopts what is below it
        if child is not None:
            self._bridges.append((bus, fn))
            for (b, _, _), each in self.functions.items():
                if b == child:
                    each.upstream = fn
        self._decode_changed()

    def _bridge_to(self, bus: int):
        """The bridge whose secondary side is board bus `bus` (None for a root bus)."""
        return next((fn for _, fn in self._bridges if fn.child_bus == bus), None)

    def _decode_changed(self) -> None:
        self._decoders = self._io_decoders = None
        self.on_decode_change()

    def on_decode_change(self) -> None:
        """Set by the machine: BARs may have moved (the engines' direct mappings follow)."""

    def direct_ranges(self) -> list[tuple[int, int, object]]:
        """(address, size, host address) of each decoded BAR that is plain host memory, and
        (address, size, bus.mmio.NativeAccess) of each page a BAR's device serves in C."""
        ranges = []
        for start, end, bar in self.decoders():
            if bar.memory is not None:
                ranges.append((start, end - start, bar.memory.host_address))
            if bar.native_pages is not None:
                ranges += [(start + offset, size, access)
                           for offset, size, access in bar.native_pages()]
        return ranges

    def decoders(self) -> list[tuple[int, int, MemoryBar]]:
        """(start, end, BAR) of every decoded memory BAR: cached until a command, BAR or
        bridge window register changes."""
        if self._decoders is None:
            self._decoders = [(address, address + bar.size, bar)
                              for fn in self.functions.values()
                              for address, bar in fn.decoded_bars()]
        return self._decoders

    def io_decoders(self) -> list[tuple[int, int, IoBar]]:
        if self._io_decoders is None:
            self._io_decoders = [(address, address + bar.size, bar)
                                 for fn in self.functions.values()
                                 for address, bar in fn.decoded_io_bars()]
        return self._io_decoders

    def reset(self) -> None:
        for fn in self.functions.values():
            fn.reset()

    def board_bus(self, bus: int) -> int | None:
        """The board bus that configuration cycles for bus number `bus` reach: a root bus,
        or the secondary side of the bridge whose programmed secondary..subordinate range
        holds it (PCI-to-PCI Bridge 1.2 §3.1.2.1), following bridges down from the root."""
        if bus in self.root_buses:
            return bus
        for root in sorted(self.root_buses):
            found = self._below(root, bus, depth=0)
            if found is not None:
                return found
        return None

    def _below(self, board_bus: int, bus: int, depth: int) -> int | None:
        if depth > 32:          # a guest's bridges programmed into a loop
            return None
        for b, fn in self._bridges:
            if b != board_bus:
                continue
            secondary, subordinate = fn.secondary_bus, fn.subordinate_bus
            if secondary and secondary <= bus <= subordinate:
                child = fn.child_bus
                return child if bus == secondary else self._below(child, bus, depth + 1)
        return None

    def _function(self, bus: int, device: int, function: int) -> PciFunction | None:
        board_bus = self.board_bus(bus)
        if board_bus is None:
            return None
        return self.functions.get((board_bus, device, function))

    def read(self, bus: int, device: int, function: int, offset: int, size: int) -> int:
        fn = self._function(bus, device, function)
        if fn is None or size not in (1, 2, 4) or offset % size or offset + size > CONFIG_SPACE:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFFFFFFFF
        return fn.read_config(offset, size)

    def write(self, bus: int, device: int, function: int, offset: int, size: int,
              value: int) -> None:
        fn = self._function(bus, device, function)
        if fn is None or size not in (1, 2, 4) or offset % size or offset + size > CONFIG_SPACE:
            log.debug("config write to absent %02x:%02x.%x+%#x ignored", bus, device, function,
                      offset)
            return
        fn.write_config(offset, size, value)


class PciConfigPorts:
    """Ports 0xCF8-0xCFF (offsets 0-7): CONFIG_ADDRESS, the reset control at 0xCF9, CONFIG_DATA.

    Saved state: the CONFIG_ADDRESS latch (the reset control saves its own register)."""

    def __init__(self, bus: PciBus, reset_control):
        self.bus = bus
        self.reset_control = reset_control
        self.address = 0

    def reset(self) -> None:
        self.address = 0

    def save(self) -> dict:
        return {"address": self.address}

    def load(self, state: dict) -> None:
        address = _state.int_field(state, "address", "PciConfigPorts", 0, 0xFFFF_FFFF)
        if address & ~CONFIG_ADDRESS_WRITABLE:
            raise StateError(f"PciConfigPorts: address {address:#x} has bits that read 0")
        self.address = address

    def _target(self, data_offset: int):
        a = self.address
        return (a >> 16) & 0xFF, (a >> 11) & 0x1F, (a >> 8) & 0x7, (a & 0xFC) + data_offset

    def read(self, offset: int, size: int) -> int:
        if offset == 0 and size == 4:
            return self.address
        if offset == 1 and size == 1:
            return self.reset_control.read(0, 1)
        if 4 <= offset < 8 and self.address & 0x8000_0000:
            return self.bus.read(*self._target(offset - 4), size)
        return (1 << (8 * size)) - 1 if 0 < size <= 8 else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 4:
            self.address = value & CONFIG_ADDRESS_WRITABLE
        elif offset == 1 and size == 1:
            self.reset_control.write(0, 1, value)
        elif 4 <= offset < 8 and self.address & 0x8000_0000:
            self.bus.write(*self._target(offset - 4), size, value)


class Ecam:
    """Memory-mapped configuration space (MMIO, ECAM_SIZE bytes). No state of its own: what
    it reaches is the functions'."""

    def __init__(self, bus: PciBus):
        self.bus = bus

    def reset(self) -> None:
        pass

    def save(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        if state != {}:
            raise StateError("Ecam: has no state, but the saved state holds some")

    def read(self, offset: int, size: int) -> int:
        return self.bus.read(offset >> 20, (offset >> 15) & 0x1F, (offset >> 12) & 0x7,
                             offset & 0xFFF, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.bus.write(offset >> 20, (offset >> 15) & 0x1F, (offset >> 12) & 0x7,
                       offset & 0xFFF, size, value)


class _DecodingWindow:
    """A range of an address space at `base` whose accesses go to the BAR that decodes them;
    elsewhere reads are all ones (a master abort) and writes are dropped, as is an access
    straddling a BAR's end."""

    def __init__(self, bus: PciBus, base: int):
        self.bus = bus
        self.base = base

    def decoders(self) -> list:
        raise NotImplementedError

    def reset(self) -> None:
        pass

    def _find(self, offset: int, size: int):
        address = self.base + offset
        for start, end, bar in self.decoders():
            if start <= address and address + size <= end:
                return bar, address - start
        return None

    def read(self, offset: int, size: int) -> int:
        found = self._find(offset, size)
        if found is None:
            return (1 << (8 * size)) - 1
        bar, inside = found
        return bar.device.read(inside, size)

    def write(self, offset: int, size: int, value: int) -> None:
        found = self._find(offset, size)
        if found is not None:
            bar, inside = found
            bar.device.write(inside, size, value)


class PciMemoryWindow(_DecodingWindow):
    """A PCI memory window (MMIO at `base`): the memory BARs and ROMs decode in it."""

    def decoders(self) -> list:
        return self.bus.decoders()


class PciIoWindow(_DecodingWindow):
    """The PCI I/O ports (ports from `base`): the I/O BARs decode in it."""

    def decoders(self) -> list:
        return self.bus.io_decoders()


def host_bridge() -> PciFunction:
    """00:00.0, the Xeon W's DMI host bridge (Sky Lake-E, 8086:2020)."""
    return PciFunction(vendor=0x8086, device=0x2020, class_code=0x060000, revision=0x04,
                       subsystem_vendor=0x8086)
