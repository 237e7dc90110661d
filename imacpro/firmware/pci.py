"""The firmware's PCI setup: every function's memory BARs placed, decoding on, INTx routed.

As a Mac's EFI does before it starts an OS: BARs are assigned from the bottom of the 32-bit
PCI memory window (memory/layout.py), largest first so each is naturally aligned with no
gaps; the command register's memory-space bit is set (bus mastering is left to the OS's
driver); the interrupt line register holds the I/O APIC pin of the function's INTA# (the
DSDT's _PRT gives Linux the same answer; both come from the board's rows).
"""

from __future__ import annotations

from imacpro.board import IMAC_PRO, Board
from imacpro.bus.pci import BAR0, CMD_MEMORY, COMMAND, INTERRUPT_LINE, INTERRUPT_PIN, PciBus
from imacpro.memory import layout


def assign_resources(bus: PciBus, board: Board = IMAC_PRO) -> None:
    bars = [(bar.size, device, function, fn, bar)
            for (device, function), fn in sorted(bus.functions.items())
            for bar in fn.bars]
    address = layout.PCI_MMIO_START
    for size, _, _, fn, bar in sorted(bars, key=lambda item: -item[0]):
        address = (address + size - 1) // size * size
        if address + size > layout.PCI_MMIO_END:
            raise RuntimeError("PCI BARs outgrew the 32-bit PCI memory window")
        offset = BAR0 + 4 * bar.index
        fn.write_config(offset, 4, address | (fn.read_config(offset, 4) & 0xF))
        if bar.is64:
            fn.write_config(offset + 4, 4, 0)
        address += size
    routes = board.pci_interrupt_routes()
    for (device, _), fn in bus.functions.items():
        if fn.bars:
            fn.write_config(COMMAND, 2, fn.read_config(COMMAND, 2) | CMD_MEMORY)
        if fn.read_config(INTERRUPT_PIN, 1) and (0, device) in routes:
            fn.write_config(INTERRUPT_LINE, 1, routes[0, device])
