"""DMA through a PCI function: only while it masters the bus, only into RAM."""

from imacpro.bus.pci import CMD_BUS_MASTER, COMMAND, PciBus, PciFunction
from imacpro.memory.ram import Ram


def test_dma_needs_bus_mastering_and_stays_inside_ram():
    ram = Ram(64 << 20)
    bus = PciBus(memory=ram)
    fn = PciFunction(0x106B, 0x2005, 0x018002)
    bus.attach(4, 0, fn)
    assert fn.dma_write(0x1000, b"data") is False and ram.read(0x1000, 4) == bytes(4)
    assert fn.dma_read(0x1000, 4) is None and fn.dma_window(0x1000, 4) is None
    fn.write_config(COMMAND, 2, CMD_BUS_MASTER)
    assert fn.dma_write(0x1000, b"data") is True and ram.read(0x1000, 4) == b"data"
    assert fn.dma_read(0x1000, 4) == b"data"
    assert fn.dma_window(ram.size - 2, 4) is None            # runs off the end of RAM
    assert fn.dma_window(0xFEE0_0000, 4) is None             # not memory
    assert fn.dma_window(0x1000, -1) is None
    assert fn.memory_holds(0x1000, 4096) and not fn.memory_holds(ram.size, 1)
    fn.write_config(COMMAND, 2, 0)                           # the driver turns mastering off
    assert fn.dma_write(0x1000, b"more") is False and ram.read(0x1000, 4) == b"data"
