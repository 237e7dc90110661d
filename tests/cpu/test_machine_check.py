"""Machine-check banks and CMCI as Linux's mce code drives them: CMCI discovery (the first CPU
to set a shared bank's CMCI_EN owns it), a corrected memory error injected on a DIMM logged in
its channel's bank with its address, the owner's LVT CMCI raised, the bank cleared by writing
zero."""

import pytest

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.cpu import mca
from imacpro.devices import uncore_registers
from imacpro.devices.contract import StateError
from imacpro.errors import UserError
from imacpro.machine import Machine

HANDLED, GP_FAULT = 1, -1
CMCI_VECTOR = 0xF9


def machine():
    return Machine(configure(cpu=8, memory=32), clock=Clock(), cpus=2)


def rdmsr(vcpu, index):
    status, value = vcpu.msrs.access(False, index, 0)
    assert status == HANDLED, hex(index)
    return value


def wrmsr(vcpu, index, value):
    return vcpu.msrs.access(True, index, value)[0]


def discover(vcpu):
    """cmci_discover(): claim every bank whose CMCI_EN is not already set."""
    owned = []
    for bank in range(rdmsr(vcpu, 0x179) & 0xFF):
        if rdmsr(vcpu, 0x280 + bank) & mca.CTL2_CMCI_EN:
            continue
        wrmsr(vcpu, 0x280 + bank, mca.CTL2_CMCI_EN | 1)
        if rdmsr(vcpu, 0x280 + bank) & mca.CTL2_CMCI_EN:
            owned.append(bank)
    return owned


def test_a_corrected_error_on_a_dimm_reaches_the_banks_owner_by_cmci():
    m = machine()
    cpu0, cpu1 = m.vcpus
    assert rdmsr(cpu0, 0x179) == 20 | 1 << 10            # 20 banks, CMCI_P
    assert discover(cpu0) == list(range(20)) and discover(cpu1) == []
    for lapic in m.lapics:                                # software enables, LVT CMCI unmasked
        lapic.write(0xF0, 4, 0x1FF)
        lapic.write(0x2F0, 4, CMCI_VECTOR)
    reply = m.inject_corrected_memory_error("B0")
    assert reply["bank"] == 14                            # IMC 0, channel 1
    status = rdmsr(cpu1, 0x401 + 4 * 14)
    assert status & (mca.VAL | mca.EN | mca.ADDRV | mca.MISCV) and not status & mca.UC
    assert status & 0xFFFF == 0x0091 and (status >> 38) & 0x7FFF == 1
    assert rdmsr(cpu1, 0x402 + 4 * 14) == reply["address"]
    assert uncore_registers.locate(reply["address"], m.ram.size)[0] == "B0"
    assert m.lapics[0].irr >> CMCI_VECTOR & 1 and not m.lapics[1].irr >> CMCI_VECTOR & 1
    m.inject_corrected_memory_error("B0", reply["address"])
    assert rdmsr(cpu0, 0x401 + 4 * 14) & mca.OVER                 # not yet cleared: overflow
    assert (rdmsr(cpu0, 0x401 + 4 * 14) >> 38) & 0x7FFF == 2
    assert wrmsr(cpu0, 0x401 + 4 * 14, 1) == GP_FAULT             # STATUS takes only 0
    assert wrmsr(cpu0, 0x401 + 4 * 14, 0) == HANDLED
    assert rdmsr(cpu0, 0x401 + 4 * 14) == 0


def test_injection_checks_the_dimm_and_the_address():
    m = machine()
    with pytest.raises(UserError, match="no DIMM"):
        m.inject_corrected_memory_error("E0")
    a0 = uncore_registers.address_on("A0", m.ram.size)
    with pytest.raises(UserError, match="is on A0"):
        m.inject_corrected_memory_error("C0", a0)
    with pytest.raises(UserError, match="not RAM"):
        m.inject_corrected_memory_error("A0", 0x9000_0000)
    assert m.inject_corrected_memory_error("A0", a0 + 0x40)["bank"] == 13   # no owner: no CMCI


def test_the_banks_are_saved_and_a_bad_state_refused():
    m = machine()
    discover(m.vcpus[1])
    m.inject_corrected_memory_error("D0")
    state = m.save_devices()
    fresh = machine()
    fresh.load_devices(state)
    assert fresh.mca.save() == m.mca.save() and fresh.mca.owner[17] == m.lapics[1].apic_id
    for bad in ({**state["mca"], "ctl2": [1 << 31] * 20}, {**state["mca"], "owner": [None]},
                {**state["mca"], "status": [-1] * 20}, None):
        with pytest.raises(StateError):
            fresh.mca.load(bad)
