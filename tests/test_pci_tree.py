"""The PCI tree: bridges route configuration cycles by the bus numbers software programs,
forward memory and I/O only inside their windows, and the firmware numbers and places it all
as the board says."""

import struct
from pathlib import Path

import pytest
import real_imac_pro

from imacpro.board import IMAC_PRO
from imacpro.bus.pci import (CMD_IO, CMD_MEMORY, COMMAND, ROM_BAR, IoBar, MemoryBar, PciBus,
                             PciFunction, PciIoWindow, PciMemoryWindow)
from imacpro.bus.pci_bridge import PciBridge
from imacpro.bus.pcie import ENDPOINT, ROOT_PORT, SWITCH_DOWNSTREAM, SWITCH_UPSTREAM
from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.firmware.pci import assign_resources
from imacpro.machine import Machine
from imacpro.memory import layout
from imacpro.t2.sep import SecureEnclave
from imacpro.t2.storage import EncryptedStore


class Register:
    def __init__(self):
        self.writes = []

    def read(self, offset, size):
        return 0x1234

    def write(self, offset, size, value):
        self.writes.append((offset, value))


def _tree():
    """Root bus f0 → root port → switch up → switch down → an endpoint on board bus f3."""
    bus = PciBus(root_buses=(0, 0xF0))
    port = PciBridge(0x8086, 0x2030, 0xF1, ROOT_PORT, 8.0, 16)
    up = PciBridge(0x1002, 0x1470, 0xF2, SWITCH_UPSTREAM, 8.0, 16)
    down = PciBridge(0x1002, 0x1471, 0xF3, SWITCH_DOWNSTREAM, 8.0, 16)
    end = PciFunction(0x1002, 0x6867, 0x030000)
    registers = Register()
    end.add_memory_bar(MemoryBar(0, 1 << 20, registers, prefetchable=True))
    end.add_memory_bar(MemoryBar(2, 0x4000, registers, is64=False))
    end.add_io_bar(IoBar(4, 256, registers))
    end.add_rom(b"\x55\xAA", 0x8000)
    for fn, b in ((end, 0xF3), (down, 0xF2), (up, 0xF1), (port, 0xF0)):   # any order
        bus.attach(0, 0, fn, bus=b)
    return bus, port, up, down, end, registers


def test_configuration_cycles_follow_the_programmed_bus_numbers():
    bus, port, up, down, end, _ = _tree()
    assert bus.read(0xF0, 0, 0, 0, 4) == 0x2030_8086
    assert bus.read(0xF3, 0, 0, 0, 4) == 0xFFFF_FFFF           # bridges not numbered yet
    assert port.read_config(0x0E, 1) == 1 and port.read_config(0x0A, 2) == 0x0604
    bus.write(0xF0, 0, 0, 0x18, 4, 0x00_F3_F1_F0)              # primary, secondary, subordinate
    assert bus.read(0xF1, 0, 0, 0, 4) == 0x1470_1002
    assert bus.read(0xF2, 0, 0, 0, 4) == 0xFFFF_FFFF
    bus.write(0xF1, 0, 0, 0x18, 4, 0x00_F3_F2_F1)
    bus.write(0xF2, 0, 0, 0x18, 4, 0x00_F3_F3_F2)
    assert bus.read(0xF3, 0, 0, 0, 4) == 0x6867_1002
    # Software may number the buses otherwise: the cycles follow the new numbers.
    bus.write(0xF0, 0, 0, 0x18, 4, 0x00_22_20_F0)
    bus.write(0x20, 0, 0, 0x18, 4, 0x00_22_21_20)
    bus.write(0x21, 0, 0, 0x18, 4, 0x00_22_22_21)
    assert bus.read(0x22, 0, 0, 0, 4) == 0x6867_1002 and bus.read(0xF3, 0, 0, 0, 4) == 0xFFFF_FFFF
    # A loop of bridges programmed by a hostile guest ends in "absent", not a hang.
    bus.write(0x20, 0, 0, 0x18, 4, 0x00_FF_20_20)
    assert bus.read(0x30, 0, 0, 0, 4) == 0xFFFF_FFFF


def test_memory_and_io_reach_a_function_only_through_open_bridge_windows():
    bus, port, up, down, end, registers = _tree()
    window = PciMemoryWindow(bus, layout.PCI_GPU_MMIO_START)
    io = PciIoWindow(bus, 0xE000)
    struct.pack_into("<Q", end.config, 0x10, 0xC000_000C)      # BAR0 at 0xC0000000
    end.write_config(0x18, 4, 0xC010_0000)                     # BAR2
    end.write_config(0x20, 4, 0xE000)                          # BAR4 (I/O)
    end.write_config(COMMAND, 2, CMD_MEMORY | CMD_IO)
    assert window.read(0, 4) == 0xFFFF_FFFF                    # the bridges forward nothing
    for bridge in (port, up, down):
        bridge.set_memory_windows((0xC010_0000, 0xC020_0000), (0xC000_0000, 0xC010_0000))
        bridge.set_io_window((0xE000, 0xF000))
        bridge.write_config(COMMAND, 2, CMD_MEMORY | CMD_IO)
    assert window.read(0, 4) == 0x1234 and window.read(0x10_0000, 4) == 0x1234
    assert io.read(0, 2) == 0x1234
    down.set_memory_windows((0xC010_0000, 0xC020_0000), None)  # prefetchable window closed
    assert window.read(0, 4) == 0xFFFF_FFFF and window.read(0x10_0000, 4) == 0x1234
    down.write_config(COMMAND, 2, CMD_MEMORY)                   # I/O forwarding off
    assert io.read(0, 2) == 0xFFFF
    # The ROM answers only while enabled.
    end.write_config(ROM_BAR, 4, 0xC018_0000)
    assert window.read(0x18_0000, 2) == 0xFFFF
    end.write_config(ROM_BAR, 4, 0xC018_0001)
    assert window.read(0x18_0000, 2) == 0xAA55


def test_only_a_write_that_changes_what_is_decoded_makes_the_bus_remap():
    """An OS sizes a function's BARs with its decoding off (thousands of writes in a boot):
    they move nothing, and the engines' PCI windows are not rebuilt for them."""
    bus, port, up, down, end, _ = _tree()
    for bridge in (port, up, down):
        bridge.set_memory_windows((0xC010_0000, 0xC020_0000), (0xC000_0000, 0xC010_0000))
        bridge.write_config(COMMAND, 2, CMD_MEMORY)
    remaps = []
    bus.on_decode_change = lambda: remaps.append(1)
    for value in (0xFFFF_FFFF, 0xC000_000C):                   # BAR0 sized, decoding off
        end.write_config(0x10, 4, value)
    assert remaps == []
    end.write_config(COMMAND, 2, CMD_MEMORY)                   # BAR0 decoded from now
    assert len(remaps) == 1
    end.write_config(0x10, 4, 0xC000_000C)                     # the same address again
    end.write_config(0x18, 4, 0x9000_0000)                     # BAR2 outside every window
    assert len(remaps) == 1
    end.write_config(0x18, 4, 0xC010_0000)                     # BAR2 into its bridge window
    assert len(remaps) == 2
    end.write_config(0x10, 4, 0xFFFF_FFFF)                     # sized with decoding on
    assert len(remaps) == 3
    down.write_config(COMMAND, 2, CMD_MEMORY)                  # a bridge: always
    assert len(remaps) == 4


def test_the_firmware_numbers_the_buses_and_places_every_bar_inside_the_windows():
    machine = Machine(configure(cpu=8), clock=Clock(), cpus=1)
    assign_resources(machine.pci, IMAC_PRO)
    pci = machine.pci
    assert [pci.read(b, 0, 0, 0, 4) for b in (0xF0, 0xF1, 0xF2, 0xF3)] == [
        0x2030_8086, 0x1470_1002, 0x1471_1002, 0x6867_1002]
    assert pci.read(0xF3, 0, 1, 0, 4) == 0xAAF8_1002
    assert pci.read(0xF0, 0, 0, 0x18, 4) & 0xFF_FFFF == 0xF3_F1_F0
    gpu = machine.devices["gpu"]
    decoded = {bar.index: address for address, bar in gpu.pci.decoded_bars()}
    assert decoded[0] == layout.PCI_GPU_MMIO_START               # the framebuffer, aligned
    assert sorted(decoded) == [0, 2, 5]                          # the ROM is left disabled
    bus_of = {id(bar): board_bus for (board_bus, _, _), fn in pci.functions.items()
              for bar in fn.bars}
    for start, end, bar in pci.decoders():
        assert start % bar.size == 0                             # naturally aligned
        inside = IMAC_PRO.root_bus_of(bus_of[id(bar)]).memory     # its root bus's window
        assert inside[0] <= start and end <= inside[1]
    nic = machine.devices["nic"]
    assert pci.read(0x04, 0, 0, 0, 4) == 0x07B1_1D6A               # behind root port 03:00.0
    assert pci.read(0x03, 0, 0, 0x18, 4) & 0xFF_FFFF == 0x04_04_03
    assert sorted(bar.index for _, bar in nic.pci.decoded_bars()) == [0, 2, 4]
    # I/O BARs: the SMBus controller's on root bus 00 (0x2000 on the real machine, the first
    # free ports here) and the GPU's.
    assert [(a, bar.size) for a, _, bar in pci.io_decoders()] == [
        (layout.PCI_IO_START, 32), (layout.PCI_GPU_IO_START, 256)]
    assert pci.direct_ranges() == [(layout.PCI_GPU_MMIO_START, 256 << 20,
                                    gpu.aperture.host_address)]

def test_an_endpoint_says_what_its_link_runs_at():
    bus, port, up, down, end, _ = _tree()
    from imacpro.bus.pcie import CAP_PCI_EXPRESS, pcie_capability
    body, writable = pcie_capability(ENDPOINT, 8.0, 16)
    at = end.add_capability(CAP_PCI_EXPRESS, body, writable)
    assert end.read_config(at + 2, 2) >> 4 & 0xF == ENDPOINT
    assert end.read_config(at + 0x12, 2) & 0x3FF == 3 | 16 << 4     # 8 GT/s x16
    assert end.read_config(at + 4, 4) & 1 << 15                      # PCIe 1.1 or later
    pcap = port.read_config(0x34, 1)
    assert port.read_config(pcap, 1) == CAP_PCI_EXPRESS
    assert port.read_config(pcap + 2, 2) >> 4 & 0xF == ROOT_PORT


def _functions_as_lspci(machine: Machine) -> dict[str, tuple[int, int, int]]:
    """What lspci -nn would list: "bus:dev.fn" → (vendor, device, class), by the bus numbers
    the firmware programmed."""
    assign_resources(machine.pci, machine.board)
    out = {}
    for bus in range(256):
        for device in range(32):
            for function in range(8):
                vendor = machine.pci.read(bus, device, function, 0, 2)
                if vendor == 0xFFFF:
                    if function == 0:
                        break
                    continue
                out[f"{bus:02x}:{device:02x}.{function}"] = (
                    vendor, machine.pci.read(bus, device, function, 2, 2),
                    machine.pci.read(bus, device, function, 8, 4) >> 8)
                if function == 0 and not machine.pci.read(bus, device, 0, 0x0E, 1) & 0x80:
                    break
    return out


@pytest.mark.parametrize("cores", (8, 18))
def test_the_pci_tree_is_the_real_imac_pros(cores, tmp_path):
    """Every function of the real machine's lspci at its address with its IDs and class, as a
    scan by the OS finds them (multi-function devices say so), but those docs/LINUX.md lists
    as left out; the Thunderbolt controllers as their bridges below bus 05's root ports."""
    sep = SecureEnclave.create(tmp_path, 0x0012_3456_789A_BCDE)
    with EncryptedStore.create(tmp_path, 64 << 20, sep) as ssd:
        machine = Machine(configure(cpu=cores, memory=32), clock=Clock(), cpus=1, ssd=ssd)
    seen = _functions_as_lspci(machine)
    real = real_imac_pro.real_functions(cores)
    missing = {address for address in real if seen.get(address) != real[address]}
    assert missing == set(real_imac_pro.ABSENT), sorted(missing ^ set(real_imac_pro.ABSENT))
    for port, (upstream, downstream, *absent) in real_imac_pro.THUNDERBOLT.items():
        bus, device = int(port[:2], 16), int(port[3:5], 16)
        secondary = machine.pci.read(bus, device, 0, 0x19, 1)
        subordinate = machine.pci.read(bus, device, 0, 0x1A, 1)
        ids = sorted(ids[1] for address, ids in seen.items()
                     if secondary <= int(address[:2], 16) <= subordinate)
        assert ids == [upstream] + [downstream] * 4, (port, ids)
        assert not set(absent) & set(ids)
        assert set(absent) == set(real_imac_pro.ABSENT_THUNDERBOLT)
    docs = (Path(__file__).parents[1] / "docs/LINUX.md").read_text()
    for address in real_imac_pro.ABSENT:               # the device named (its functions
        assert f"`{address[:6]}" in docs, address      # may be given as a range)
