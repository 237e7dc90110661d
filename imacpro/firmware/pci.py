"""The firmware's PCI setup, as a Mac's EFI does before it starts an OS.

- Bus numbers: each bridge's secondary bus is the board's number for the bus behind it (the
  real machine's numbers), its subordinate the highest number below it.
- Resources come from each root bus's share of the windows (board.RootBus). On a bus, what
  needs memory is the functions' BARs and ROMs and the windows of the bridges on it (each a
  bridge's whole subtree, rounded to 1 MiB; I/O windows to 4 KiB); they are placed largest
  alignment first from the share's start, so each is naturally aligned without gaps. Behind a
  bridge, prefetchable BARs go to its prefetchable window and the others to its memory window;
  on a root bus both come from the one share.
- ROM BARs get an address but stay disabled (a ROM the firmware has finished with).
- Decoding: the command register's memory bit (I/O bit) is set on functions with memory (I/O)
  BARs and on bridges with such a window; bus mastering is left to the OS's drivers.
- The interrupt line register holds the I/O APIC pin of the function's INTA# (the DSDT's _PRT
  gives Linux the same answer; both come from the board's rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from imacpro.board import IMAC_PRO, Board
from imacpro.bus.pci import (BAR0, CMD_IO, CMD_MEMORY, COMMAND, INTERRUPT_LINE, INTERRUPT_PIN,
                             ROM_BAR, PciBus, PciFunction)
from imacpro.bus.pci_bridge import PRIMARY_BUS, PciBridge

MiB = 1 << 20
WINDOW_GRANULE = {"memory": MiB, "prefetchable": MiB, "io": 0x1000}


@dataclass
class _Item:
    """Something that needs `size` bytes aligned to `align`; `place(address)` puts it there."""
    size: int
    align: int
    place: Callable[[int], None]


@dataclass
class _Needs:
    memory: list[_Item] = field(default_factory=list)
    prefetchable: list[_Item] = field(default_factory=list)
    io: list[_Item] = field(default_factory=list)


def _layout(items: list[_Item]) -> list[tuple[int, _Item]]:
    """Offsets from a start aligned to the largest alignment: largest alignment first."""
    out, cursor = [], 0
    for item in sorted(items, key=lambda i: (-i.align, -i.size)):
        cursor = (cursor + item.align - 1) // item.align * item.align
        out.append((cursor, item))
        cursor += item.size
    return out


def _span(items: list[_Item], granule: int) -> tuple[int, int]:
    """(size, alignment) of a window holding `items`: the layout's end rounded up to the
    granule, aligned to the largest item's alignment (so the layout holds inside it)."""
    if not items:
        return 0, granule
    offset, last = _layout(items)[-1]
    size = (offset + last.size + granule - 1) // granule * granule
    return size, max([granule] + [i.align for i in items])


def _place(items: list[_Item], start: int, end: int, what: str) -> None:
    align = max([1] + [i.align for i in items])
    base = (start + align - 1) // align * align
    for offset, item in _layout(items):
        if base + offset + item.size > end:
            raise RuntimeError(f"PCI {what} outgrew its window [{start:#x}, {end:#x})")
        item.place(base + offset)


class _Assigner:
    def __init__(self, pci: PciBus):
        self.pci = pci
        self.windows: dict[PciBridge, dict[str, tuple[int, int]]] = {}

    def on_bus(self, board_bus: int) -> list[tuple[int, int, PciFunction]]:
        return [(d, f, fn) for (b, d, f), fn in sorted(self.pci.functions.items(),
                                                         key=lambda kv: kv[0])
                if b == board_bus]

    def number(self, board_bus: int) -> int:
        """Program the bridges below `board_bus`; returns the highest bus number there."""
        highest = board_bus
        for _, _, fn in self.on_bus(board_bus):
            if isinstance(fn, PciBridge):
                fn.config[PRIMARY_BUS] = board_bus
                fn.config[PRIMARY_BUS + 1] = fn.child_bus
                fn.config[PRIMARY_BUS + 2] = 0xFF     # while numbering below, as firmware does
                below = self.number(fn.child_bus)
                fn.config[PRIMARY_BUS + 2] = below
                highest = max(highest, below)
        return highest

    def needs(self, board_bus: int) -> _Needs:
        needs = _Needs()
        for _, _, fn in self.on_bus(board_bus):
            for bar in fn.bars:
                kind = needs.prefetchable if bar.prefetchable else needs.memory
                kind.append(_Item(bar.size, bar.size, lambda a, fn=fn, bar=bar:
                                  _set_bar(fn, BAR0 + 4 * bar.index, a, bar.is64)))
            if fn.rom is not None:
                needs.memory.append(_Item(fn.rom.size, fn.rom.size, lambda a, fn=fn:
                                          _set_bar(fn, ROM_BAR, a, False)))
            for io in fn.io_bars:
                needs.io.append(_Item(io.size, io.size, lambda a, fn=fn, io=io:
                                      _set_bar(fn, BAR0 + 4 * io.index, a, False)))
            if isinstance(fn, PciBridge):
                below = self.needs(fn.child_bus)
                for kind in ("memory", "prefetchable", "io"):
                    items = getattr(below, kind)
                    size, align = _span(items, WINDOW_GRANULE[kind])
                    if size:
                        getattr(needs, kind).append(_Item(size, align, self._window(
                            fn, kind, size, items)))
        return needs

    def _window(self, bridge: PciBridge, kind: str, size: int, items: list[_Item]):
        def place(address: int) -> None:
            self.windows.setdefault(bridge, {})[kind] = (address, address + size)
            _place(items, address, address + size, f"{kind} behind a bridge")
        return place

    def program_bridges(self) -> None:
        for bridge in self.pci.functions.values():
            if isinstance(bridge, PciBridge):
                windows = self.windows.get(bridge, {})
                bridge.set_memory_windows(windows.get("memory"), windows.get("prefetchable"))
                bridge.set_io_window(windows.get("io"))
                _enable(bridge, memory=bool(windows.keys() & {"memory", "prefetchable"}),
                        io="io" in windows)


def _set_bar(fn: PciFunction, offset: int, address: int, is64: bool) -> None:
    """A BAR's address (its type bits are read-only; a ROM BAR's enable bit stays clear)."""
    fn.write_config(offset, 4, address & 0xFFFF_FFFF)
    if is64:
        fn.write_config(offset + 4, 4, address >> 32)


def _enable(fn: PciFunction, memory: bool, io: bool) -> None:
    command = fn.read_config(COMMAND, 2)
    command |= (CMD_MEMORY if memory else 0) | (CMD_IO if io else 0)
    fn.write_config(COMMAND, 2, command)


def assign_resources(bus: PciBus, board: Board = IMAC_PRO) -> None:
    assigner = _Assigner(bus)
    for root in board.root_buses:
        assigner.number(root.bus)
        needs = assigner.needs(root.bus)
        _place(needs.memory + needs.prefetchable, *root.memory, f"memory of bus {root.bus:02x}")
        _place(needs.io, *root.io, f"I/O of bus {root.bus:02x}")
    assigner.program_bridges()
    routes = board.pci_interrupt_routes()
    for (b, device, _), fn in bus.functions.items():
        if not isinstance(fn, PciBridge):
            _enable(fn, memory=bool(fn.bars), io=bool(fn.io_bars))
        pin = fn.read_config(INTERRUPT_PIN, 1)
        if (b, device, pin) in routes:
            fn.write_config(INTERRUPT_LINE, 1, routes[b, device, pin])

