"""A vCPU saved in the middle of its work and loaded into a new machine goes on as if nothing
happened: registers, flags, x87/SSE state, control registers, MSRs, the halted state and a
LAPIC timer that was counting (what suspend and resume stand on)."""

import copy

from baremetal import KERNEL_STACK, PROGRAM_BASE, assemble, parse
from test_interrupts import APIC

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.devices.contract import StateError
from imacpro.firmware import long_mode
from imacpro.machine import Machine

import pytest

# A computation whose result depends on every step: general registers, flags (adc), SSE
# integer and double lanes, AVX-512 lanes under an opmask (ZMM20 and the XCR0 that enables
# it), the x87 stack, and a running sum in memory; then LAPIC timer ticks
# waited for with HLT (the CPU halted, an interrupt pending, the count in flight).
PROGRAM = APIC + r"""
main:
    call setup_gdt
    mov %cr4, %rax
    or $0x40600, %rax              # OSFXSR, OSXMMEXCPT, OSXSAVE: SSE and XSETBV on
    mov %rax, %cr4
    xor %ecx, %ecx
    mov $0xe7, %eax                # XCR0: the AVX and AVX-512 state
    xor %edx, %edx
    xsetbv
    mov $0xaa, %eax
    kmovq %rax, %k1
    vpxorq %zmm20, %zmm20, %zmm20
    GATE 0x40, tick
    APIC_WRITE 0xf0, $0x1ff
    APIC_WRITE 0x3e0, $0xb
    mov $0x243f6a8885a308d3, %rax
    mov $0x13198a2e03707344, %rbx
    pxor %xmm1, %xmm1
    mov $2, %ecx
    cvtsi2sd %ecx, %xmm2
    fld1
    fldz
    xor %r12, %r12
    mov $3000000, %r15
1:  imul $0x5851f42d, %rax, %rax
    adc %rax, %rbx
    rol $7, %rbx
    movq %rbx, %xmm0
    paddq %xmm0, %xmm1
    vpbroadcastq %rbx, %zmm21
    vpaddq %zmm21, %zmm20, %zmm20{%k1}
    vprolq $3, %zmm20, %zmm20
    sqrtsd %xmm2, %xmm3
    addsd %xmm3, %xmm2
    fadd %st(1), %st
    add %rbx, sum(%rip)
    dec %r15
    jnz 1b
    PRINT rax
    PRINT rbx
    movq %xmm1, %rax
    PRINT xmm1
    movq %xmm2, %rax
    PRINT xmm2
    vmovdqu64 %zmm20, zmm20(%rip)
    mov zmm20+8(%rip), %rax
    PRINT zmm20_1
    mov zmm20+56(%rip), %rax
    PRINT zmm20_7
    fistpq fpu(%rip)
    mov fpu(%rip), %rax
    PRINT x87
    mov sum(%rip), %rax
    PRINT sum
    APIC_WRITE 0x320, $0x20040     # periodic, vector 0x40
    APIC_WRITE 0x380, $2500000     # 100 Hz
    sti
2:  hlt
    cmpq $30, ticks(%rip)
    jb 2b
    cli
    mov ticks(%rip), %rax
    PRINT ticks
    jmp finish
tick:
    push %rax
    mov $'t', %al                  # a line per tick: the test stops the machine mid-wait
    call putc
    mov $'\n', %al
    call putc
    pop %rax
    incq ticks(%rip)
    APIC_WRITE 0xb0, $0
    iretq
.data
.align 64
zmm20: .fill 8, 8, 0
sum: .quad 0
fpu: .quad 0
ticks: .quad 0
"""


def machine_with(image, serial):
    machine = Machine(configure(cpu=8), serial_output=serial.extend, clock=Clock(realtime=True),
                      idle="warp", cpus=1)
    machine.ram.write(PROGRAM_BASE, image)
    return machine


def run_to_done(machine, serial, stop_after_rounds=None):
    rounds = [0]

    def stop():
        rounds[0] += 1
        return b"DONE\n" in serial or (stop_after_rounds is not None
                                       and rounds[0] >= stop_after_rounds)
    return machine.run(timeout_s=120, stop=stop)


def save(machine):
    """What suspend keeps of a machine: its clock, CPUs, devices and touched RAM."""
    return copy.deepcopy({
        "now": machine.clock.now_ns(), "cpus": [cpu.save() for cpu in machine.vcpus],
        "devices": machine.save_devices(),
        "ram": [(offset, bytes(machine.ram.view[offset:offset + size]))
                for offset, size in machine.ram.resident()]})


def load(machine, state):
    machine.clock.set_now(state["now"])
    for offset, data in state["ram"]:
        machine.ram.view[offset:offset + len(data)] = data
    for cpu, saved in zip(machine.vcpus, state["cpus"]):
        cpu.load(saved)
    machine.load_devices(state["devices"])


@pytest.mark.parametrize("when", ["computing", "halted"])
def test_a_cpu_saved_mid_program_finishes_in_another_machine(when):
    image = assemble(PROGRAM)
    whole = bytearray()
    reference = machine_with(image, whole)
    long_mode.enter(reference.bsp.uc, reference.ram, rip=PROGRAM_BASE, rsp=KERNEL_STACK)
    run_to_done(reference, whole)
    expected = parse(whole.decode())
    assert int(expected["ticks"], 16) == 30

    first = bytearray()
    a = machine_with(image, first)
    long_mode.enter(a.bsp.uc, a.ram, rip=PROGRAM_BASE, rsp=KERNEL_STACK)
    if when == "computing":
        run_to_done(a, first, stop_after_rounds=20)
        assert b"rax=" not in first                       # stopped inside the loop
    else:
        # Stopped once it waits for its eleventh tick (the tenth printed, then HLT: a slice
        # may end between the two on a busy host).
        a.run(timeout_s=120,
              stop=lambda: first.count(b"t\n") >= 10 and a.bsp.state.value == "halted")
        assert b"ticks=" not in first and a.bsp.state.value == "halted"
    state = save(a)
    del a
    second = bytearray(first)
    b = machine_with(image, second)
    load(b, state)
    run_to_done(b, second)
    assert parse(second.decode()) == expected


def test_a_cpu_state_from_another_engine_layout_is_refused():
    machine = Machine(configure(cpu=8), clock=Clock(), cpus=1)
    saved = machine.bsp.save()
    for broken in (saved["engine"][:-8], b"x" + saved["engine"][1:]):
        with pytest.raises(StateError, match="another build"):
            machine.bsp.load({**saved, "engine": broken})
    with pytest.raises(StateError):
        machine.bsp.load({**saved, "state": "dancing"})
