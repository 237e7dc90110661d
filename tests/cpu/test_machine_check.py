"""Machine-check banks, CMCI and #MC as Linux's mce code drives them: CMCI discovery (the first
CPU to set a shared bank's CMCI_EN owns it), a corrected memory error injected on a DIMM logged
in its channel's bank with its address, the owner's LVT CMCI raised, the bank cleared by
writing zero; an uncorrected one a machine-check exception on every started CPU."""

import pytest
from baremetal import run_program
from unicorn import x86_const

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.cpu import mca
from imacpro.devices import uncore_registers
from imacpro.devices.contract import StateError
from imacpro.errors import UserError
from imacpro.machine import Machine

from test_wakeups import AP_START_CODE, PING_PONG

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
    assert rdmsr(cpu0, 0x179) == 20 | 1 << 10 | 1 << 24    # 20 banks, CMCI_P, SER_P
    assert discover(cpu0) == list(range(20)) and discover(cpu1) == []
    for lapic in m.lapics:                                # software enables, LVT CMCI unmasked
        lapic.write(0xF0, 4, 0x1FF)
        lapic.write(0x2F0, 4, CMCI_VECTOR)
    reply = m.inject_memory_error("B0")
    assert reply["bank"] == 14                            # IMC 0, channel 1
    status = rdmsr(cpu1, 0x401 + 4 * 14)
    assert status & (mca.VAL | mca.EN | mca.ADDRV | mca.MISCV) and not status & mca.UC
    assert status & 0xFFFF == 0x0091 and (status >> 38) & 0x7FFF == 1
    assert rdmsr(cpu1, 0x402 + 4 * 14) == reply["address"]
    assert uncore_registers.locate(reply["address"], m.ram.size)[0] == "B0"
    assert m.lapics[0].irr >> CMCI_VECTOR & 1 and not m.lapics[1].irr >> CMCI_VECTOR & 1
    m.inject_memory_error("B0", reply["address"])
    assert rdmsr(cpu0, 0x401 + 4 * 14) & mca.OVER                 # not yet cleared: overflow
    assert (rdmsr(cpu0, 0x401 + 4 * 14) >> 38) & 0x7FFF == 2
    assert wrmsr(cpu0, 0x401 + 4 * 14, 1) == GP_FAULT             # STATUS takes only 0
    assert wrmsr(cpu0, 0x401 + 4 * 14, 0) == HANDLED
    assert rdmsr(cpu0, 0x401 + 4 * 14) == 0


def test_injection_checks_the_dimm_and_the_address():
    m = machine()
    with pytest.raises(UserError, match="no DIMM"):
        m.inject_memory_error("E0")
    a0 = uncore_registers.address_on("A0", m.ram.size)
    with pytest.raises(UserError, match="is on A0"):
        m.inject_memory_error("C0", a0)
    with pytest.raises(UserError, match="not RAM"):
        m.inject_memory_error("A0", 0x9000_0000)
    assert m.inject_memory_error("A0", a0 + 0x40)["bank"] == 13   # no owner: no CMCI


def test_the_banks_are_saved_and_a_bad_state_refused():
    m = machine()
    discover(m.vcpus[1])
    m.inject_memory_error("D0")
    state = m.save_devices()
    fresh = machine()
    fresh.load_devices(state)
    assert fresh.mca.save() == m.mca.save() and fresh.mca.owner[17] == m.lapics[1].apic_id
    for bad in ({**state["mca"], "ctl2": [1 << 31] * 20}, {**state["mca"], "owner": [None]},
                {**state["mca"], "status": [-1] * 20}, None):
        with pytest.raises(StateError):
            fresh.mca.load(bad)


# --- the machine-check exception (an uncorrected error) ---------------------------------------

MACHINE_CHECK = PING_PONG[:PING_PONG.index("main:")] + r"""
.set TRAMPOLINE, 0x8000
main:
    call setup_gdt
    GATE 18, machine_check
    mov %cr4, %rax                  # CR4.MCE: machine checks are taken, not a shutdown
    or $0x40, %rax
    mov %rax, %cr4
    START_APS ap_main
1:  pause
    cmpq $1, started(%rip)
    jb 1b
    mov $0x3f8, %dx                 # the host injects the error once it reads this
    mov $'R', %al
    outb %al, %dx
    mov $'\n', %al
    outb %al, %dx
2:  cmpq $2, taken(%rip)            # busy until both CPUs took it: a running one ...
    jb 2b
    mov mcg_status(%rip), %rax
    PRINT mcg_status
    mov mcg_status + 8(%rip), %rax
    PRINT mcg_status
    mov bank_status(%rip), %rax
    PRINT bank_status
    mov bank_addr(%rip), %rax
    PRINT bank_addr
    mov $0x17a, %ecx                # the handlers cleared MCG_STATUS
    rdmsr
    PRINT mcg_status_after
    jmp finish

ap_main:
    AP_SETUP
    mov %cr4, %rax
    or $0x40, %rax
    mov %rax, %cr4
    lock incq started(%rip)
    cli                             # ... and a halted one with interrupts off: #MC wakes it
2:  hlt
    jmp 2b

machine_check:                      # what Linux's do_machine_check reads, then MCG_STATUS 0
    push %rax
    push %rcx
    push %rdx
    push %rbx
    APIC_READ 0x20
    shr $24, %eax
    mov %eax, %ebx
    mov $0x17a, %ecx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    lea mcg_status(%rip), %rcx
    mov %rax, (%rcx, %rbx, 8)
    mov $0x439, %ecx                # bank 14 (memory controller 0, channel 1): STATUS
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    test %rax, %rax
    jz 3f
    mov %rax, bank_status(%rip)
    mov $0x43a, %ecx                # ADDR
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, bank_addr(%rip)
    mov $0x439, %ecx                # the first CPU clears the shared bank
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
3:  mov $0x17a, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    lock incq taken(%rip)
    pop %rbx
    pop %rdx
    pop %rcx
    pop %rax
    iretq
""" + AP_START_CODE + r"""
.data
next_slot: .long 0
.align 8
started: .quad 0
taken: .quad 0
mcg_status: .fill 2, 8, 0
bank_status: .quad 0
bank_addr: .quad 0
.align 4096
ap_stacks: .fill 4096 * 2, 1, 0
"""


def test_an_uncorrected_error_is_a_machine_check_on_every_cpu():
    """Both CPUs take #MC, the busy one and the halted one with interrupts off, each with
    MCG_STATUS RIPV and MCIP; the bank holds an uncorrected, software-recoverable,
    action-optional memory scrubbing error (Linux: "Action optional: memory scrubbing
    error") with its address."""
    injected = []

    def inject_when_ready(machine, serial):
        if b"R\n" in serial and not injected:
            injected.append(machine.inject_memory_error("B0", uncorrected=True))
        return b"DONE\n" in serial

    values, output, machine, result = run_program(MACHINE_CHECK, cpus=2, timeout_s=60,
                                                  stop=inject_when_ready)
    assert "DONE" in output, (result, output[-500:])
    assert [int(v, 16) for v in values["mcg_status"]] == [0b101, 0b101]   # MCIP, RIPV
    status = int(values["bank_status"], 16)
    assert status & (mca.VAL | mca.UC | mca.EN | mca.ADDRV | mca.MISCV | mca.S) == \
        mca.VAL | mca.UC | mca.EN | mca.ADDRV | mca.MISCV | mca.S
    assert not status & (mca.AR | mca.PCC | mca.OVER)
    assert status & 0xFFFF == 0x00C1                     # memory scrubbing, channel 1
    assert int(values["bank_addr"], 16) == injected[0]["address"] and injected[0]["bank"] == 14
    assert int(values["mcg_status_after"], 16) == 0
    assert all(cpu.online for cpu in machine.vcpus)


def test_a_machine_check_shuts_down_a_cpu_that_cannot_take_it():
    """CR4.MCE clear, or MCIP still set from one not yet handled: the CPU shuts down (SDM
    15.10.1). A CPU still waiting for its start-up IPI is not signalled."""
    m = machine()
    cpu0, cpu1 = m.vcpus
    m.inject_memory_error("A0", uncorrected=True)          # the firmware's CR4: no MCE
    assert "CR4.MCE" in cpu0.shutdown_reason and not cpu0.online
    assert cpu1.shutdown_reason == "" and not cpu1.online  # waiting for its SIPI
    m = machine()
    cpu0 = m.vcpus[0]
    cpu0.uc.reg_write(x86_const.UC_X86_REG_CR4, cpu0.uc.reg_read(x86_const.UC_X86_REG_CR4)
                      | 0x40)
    cpu0.msrs.mcg_status = mca.MCG_STATUS_MCIP
    m.inject_memory_error("A0", uncorrected=True)
    assert "MCIP" in cpu0.shutdown_reason
