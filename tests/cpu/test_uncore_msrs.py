"""The package's uncore MSRs, as Linux's intel_uncore uses them on Skylake-SP/W: box controls
written on one CPU are the package's (read back on another), CPUBUSNO names the board's root
buses and is read-only, what no Xeon W has still raises #GP, and a reset clears them."""

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.cpu.msr import BUS_NUMBER_VALID, GP_FAULT, HANDLED
from imacpro.devices.contract import StateError
from imacpro.machine import Machine

import pytest


def machine():
    return Machine(configure(cpu=8, memory=32), clock=Clock(), cpus=2)


def test_uncore_msrs_are_the_packages_and_cpubusno_names_the_root_buses():
    m = machine()
    cpu0, cpu1 = (vcpu.msrs for vcpu in m.vcpus)
    assert cpu0.access(True, 0xA40, 0x10003) == (HANDLED, None)    # IIO 0's box control
    assert cpu1.access(False, 0xA40, 0) == (HANDLED, 0x10003)
    assert cpu1.access(False, 0x710, 0) == (HANDLED, 0)            # PCU box control
    assert cpu0.access(True, 0xAE0, 3) == (HANDLED, None)           # IIO 5's box control
    assert cpu0.access(False, 0x620, 0) == (HANDLED, 12 << 8 | 24)  # mesh: 1.2-2.4 GHz
    assert cpu0.access(False, 0x621, 0) == (HANDLED, 24)
    status, value = cpu0.access(False, 0x300, 0)
    buses = [root.bus for root in m.board.root_buses]
    assert status == HANDLED and value & BUS_NUMBER_VALID
    assert list(value.to_bytes(8, "little")[:len(buses)]) == buses
    assert cpu0.access(True, 0x300, 0)[0] == GP_FAULT              # read-only
    assert cpu0.access(True, 0x621, 0)[0] == GP_FAULT
    assert cpu0.access(True, 0xE70, 1) == (HANDLED, None)           # CHA 7's box control
    assert cpu0.access(False, 0xE80, 0)[0] == GP_FAULT             # an 8-core die: no CHA 8
    state = m.save_devices()
    assert state["uncore"] == {"values": [[0x620, 12 << 8 | 24], [0xA40, 0x10003],
                                          [0xAE0, 3], [0xE70, 1]]}
    m.reset()
    assert cpu1.access(False, 0xA40, 0) == (HANDLED, 0)
    m.load_devices(state)
    assert cpu1.access(False, 0xA40, 0) == (HANDLED, 0x10003)
    for bad in ({"values": [[0x300, 1]]}, {"values": [[0x621, 1]]}, {"values": [[0xE80, 1]]}, {"values": [[0xA40]]},
                {"values": [[0xA40, -1]]}, {}, None):
        with pytest.raises(StateError):
            m.uncore.load(bad)
