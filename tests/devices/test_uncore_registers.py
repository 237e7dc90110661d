"""The memory controllers' registers say where each address lives, as Linux's skx_edac reads
them (drivers/edac/skx_base.c: SAD, then TAD, then RIR), and `locate()` agrees with them."""

import random

import pytest

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.devices import uncore_registers as ur
from imacpro.machine import Machine


def _field(value, low, high):
    return (value >> low) & ((1 << (high - low + 1)) - 1)


class EdacDecoder:
    """skx_edac's decode of a physical address, over the machine's configuration space."""

    def __init__(self, machine):
        self.read = lambda bus, device, function, offset: machine.pci.read(
            bus, device, function, offset, 4)
        self.tolm = self.read(0x03, 5, 0, 0xD0)
        self.tohm = self.read(0x03, 5, 0, 0xD4) | self.read(0x03, 5, 0, 0xD8) << 32
        self.mcroute = self.read(0x03, 0x0E, 0, 0xB4)

    def decode(self, address):
        if address >= self.tohm or self.tolm <= address < 1 << 32:
            return None
        previous = 0
        for i in range(24):                                       # SAD
            sad = self.read(0x03, 0x1D, 0, 0x60 + 8 * i)
            limit = _field(sad, 7, 26) << 26 | (1 << 26) - 1
            if sad & 1 and previous <= address <= limit:
                break
            previous = limit + 1
        else:
            return None
        shift = {0: 6, 1: 8, 2: 12}[_field(sad, 1, 2)]
        index = _field(address, shift, shift + 2)
        target = _field(self.read(0x03, 0x1D, 0, 0x64 + 8 * i), 4 * index, 4 * index + 3)
        assert target & 8 and not _field(sad, 27, 27)            # local, no mod-3
        lchan = target & 7
        imc = _field(self.mcroute, 3 * lchan, 3 * lchan + 2)
        channel = _field(self.mcroute, 18 + 2 * lchan, 19 + 2 * lchan)
        device = 0x0A + 2 * imc
        for i in range(8):                                        # TAD
            base = self.read(0x05, device, 0, 0x850 + 4 * i)
            wayness = self.read(0x05, device, 0, 0x880 + 4 * i)
            if _field(base, 12, 31) << 26 <= address <= (_field(wayness, 12, 31) << 26
                                                          | (1 << 26) - 1):
                break
        else:
            return None
        grain = [6, 8, 12, 30]
        offset = _field(self.read(0x05, device + channel * 4 // 8, channel * 4 % 8,
                                  0x90 + 4 * i), 4, 23) << 26
        channel_address = address - offset
        for ways, bit in ((1 << _field(wayness, 10, 11), grain[_field(base, 4, 5)]),
                          (_field(wayness, 8, 9) + 1, grain[_field(base, 6, 7)])):
            channel_address = ((channel_address >> bit) // ways) << bit | address & (1 << bit) - 1
        cdev = (0x05, device + channel * 4 // 8, channel * 4 % 8)
        rir = self.read(*cdev, 0x108)                             # RIR rule 0
        assert rir >> 31 and channel_address <= _field(rir, 1, 11) << 29 | (1 << 29) - 1
        ways = 1 << _field(rir, 28, 29)
        rank_index = (channel_address >> 13) % ways
        channel_rank = _field(self.read(*cdev, 0x120 + 16 * rank_index), 16, 19)
        mtr = self.read(*cdev, 0x80)
        assert mtr >> 15 & 1 and self.read(0x05, device, 0, 0x87C) & 4   # present; ECC on
        return imc, channel, channel_rank // 4, channel_rank % 4


@pytest.mark.parametrize("memory", (32, 64, 128, 256))
def test_linuxs_decode_of_every_address_finds_the_dimm_locate_names(memory):
    machine = Machine(configure(cpu=8, memory=memory), clock=Clock(), cpus=1)
    ram = machine.ram.size
    edac = EdacDecoder(machine)
    rng = random.Random(memory)
    addresses = [0, 0x1000, 0x7FFF_F000, 1 << 32, (1 << 32) + 0x3000]
    addresses += [rng.randrange(0, 1 << 31) for _ in range(200)]
    addresses += [rng.randrange(1 << 32, (1 << 32) + ram - (1 << 31)) for _ in range(200)]
    for address in addresses:
        imc, channel, dimm, rank = edac.decode(address)
        name, rank_there = ur.locate(address, ram)
        assert (ur.DIMMS[name], 0, rank_there) == ((imc, channel), dimm, rank), hex(address)
    assert edac.decode(0x8000_0000) is None and edac.decode((1 << 32) + ram) is None
    for name in ur.DIMMS:
        address = ur.address_on(name, ram)
        assert ur.locate(address, ram)[0] == name and address >= 1 << 32


def test_the_dimms_geometry_gives_their_size_and_a_cha_route_each_core():
    """skx_get_dimm_info's size from MTR: 2^(rows + columns + ranks) * 16 banks * 8 bytes."""
    for memory in (32, 64, 128, 256):
        machine = Machine(configure(cpu=18, memory=memory), clock=Clock(), cpus=1)
        for imc, channel in ur.DIMMS.values():
            offset = 4 * channel
            mtr = machine.pci.read(0x05, 0x0A + 2 * imc + offset // 8, offset % 8, 0x80, 4)
            bits = _field(mtr, 2, 4) + 12 + _field(mtr, 0, 1) + 10 + _field(mtr, 12, 13)
            assert (1 << bits) * 16 * 8 == (memory << 30) // 4
        routes = {machine.pci.read(0x03, 0x0E + n // 8, n % 8, 0xB4, 4) for n in range(18)}
        assert len(routes) == 1 and routes != {0}
        assert machine.pci.read(0x03, 0x1E, 3, 0x9C, 4) == (1 << 18) - 1
