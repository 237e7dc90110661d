"""The local APIC timer's TSC-deadline mode is served in C (native/tsc_deadline.c): the guest's
WRMSR arms it and RDMSR reads it without Python, and the deadline fires on time, never before
the TSC reaches it, on either run loop."""

import pytest
from baremetal import run_program

from imacpro.catalog import configure
from imacpro.cpu.msr import IA32_TSC_DEADLINE
from test_interrupts import APIC

DEADLINES = APIC + r"""
main:
    call setup_gdt
    GATE 0x41, tick
    APIC_WRITE 0xf0, $0x1ff
    APIC_WRITE 0x320, $0x40041      # LVT timer: TSC-deadline mode, vector 0x41
    sti
1:  mov ticks(%rip), %rbx
    call rdtsc64
    add $DELTA, %rax                # 50 us of this CPU's TSC from now
    mov %rax, deadline(%rip)
    mov %rax, %rdx
    shr $32, %rdx
    mov $0x6e0, %ecx
    wrmsr
    rdmsr                           # armed: it reads back
    shl $32, %rdx
    or %rdx, %rax
    cmp deadline(%rip), %rax
    je 2f
    test %rax, %rax                 # or 0, fired, which it may be only once it is due
    jnz 5f
    call rdtsc64
    cmp deadline(%rip), %rax
    jae 2f
5:  incq misread(%rip)
2:  cli                             # STI's shadow: no tick between the look and HLT
    cmp ticks(%rip), %rbx
    jne 3f
    sti
    hlt
    jmp 2b
3:  sti
    cmpq $SHOTS, ticks(%rip)
    jb 1b
    cli
    mov $0x6e0, %ecx                # fired: it reads 0
    rdmsr
    or %edx, %eax
    PRINT after
    mov ticks(%rip), %rax
    PRINT ticks
    mov early(%rip), %rax
    PRINT early
    mov misread(%rip), %rax
    PRINT misread
    jmp finish
tick:
    push %rax
    push %rdx
    call rdtsc64
    cmp deadline(%rip), %rax
    jae 4f
    incq early(%rip)                # the interrupt came before the TSC reached the deadline
4:  incq ticks(%rip)
    APIC_WRITE 0xb0, $0
    pop %rdx
    pop %rax
    iretq
.data
ticks: .quad 0
early: .quad 0
misread: .quad 0
deadline: .quad 0
"""


@pytest.mark.parametrize("host_threads,cores", [(1, 8), (2, 8), (2, 18)])
def test_tsc_deadlines_are_armed_and_fired_without_python(monkeypatch, host_threads, cores):
    """200 deadlines 50 us ahead, the CPU halted until each fires: Python's MSR handler is
    never asked for IA32_TSC_DEADLINE, and with host threads the main thread is not woken for
    them (the workers fire them). The deadline turns into guest time at the CPU's own TSC
    rate (3.2 GHz on the 8-core, 2.3 GHz on the 18-core): at another rate the interrupt
    would come early or late."""
    from imacpro.cpu.vcpu import Vcpu
    from imacpro.host_events import HostEvents
    asked, moves = [], []
    on_msr, wake_at = Vcpu._on_msr, HostEvents.wake_at
    monkeypatch.setattr(Vcpu, "_on_msr", lambda self, is_write, index, value: (
        asked.append(index), on_msr(self, is_write, index, value))[1])
    monkeypatch.setattr(HostEvents, "wake_at",
                        lambda self, ns: (moves.append(ns), wake_at(self, ns)))
    tsc_hz = round(configure(cpu=cores, memory=32).processor.base_ghz * 1e9)
    shots = 200
    body = DEADLINES.replace("SHOTS", str(shots)).replace("DELTA", str(tsc_hz // 20_000))
    values, output, machine, result = run_program(
        body, cpu=cores, cpus=host_threads, host_threads=host_threads, idle="sleep",
        timeout_s=60)
    assert "DONE" in output, (result, output[-500:])
    assert int(values["ticks"], 16) == shots
    assert int(values["early"], 16) == 0 and int(values["misread"], 16) == 0, values
    assert int(values["after"], 16) == 0
    assert IA32_TSC_DEADLINE not in asked
    assert len(moves) < shots // 10, len(moves)


BUSY_WITH_TICKS = APIC + r"""
main:
    call setup_gdt
    GATE 0x41, tick
    APIC_WRITE 0xf0, $0x1ff
    APIC_WRITE 0x320, $0x40041      # LVT timer: TSC-deadline mode, vector 0x41
    lea spins(%rip), %rax
    PRINT spins_at
    call arm
    sti
1:  incq spins(%rip)                # busy for ever: the test ends the run
    jmp 1b
arm:
    call rdtsc64
    add $DELTA, %rax
    mov %rax, %rdx
    shr $32, %rdx
    mov $0x6e0, %ecx
    wrmsr
    ret
tick:
    push %rax
    push %rcx
    push %rdx
    incq ticks(%rip)
    call arm
    APIC_WRITE 0xb0, $0
    pop %rdx
    pop %rcx
    pop %rax
    iretq
.data
.align 4096
spins: .quad 0
ticks: .quad 0
"""


def test_stopped_cpus_neither_run_nor_take_their_deadlines():
    """A suspend saves the CPUs, the APICs and RAM as one instant: inside cpus_stopped() no
    worker runs guest code or fires a TSC deadline (they do both without the machine's
    lock), though the deadlines fall due meanwhile; after it the guest goes on."""
    import time
    from baremetal import parse
    body = BUSY_WITH_TICKS.replace("DELTA", str(3_200_000_000 // 20_000))   # 50 us
    seen = []

    def counters(machine, output):
        at = int(parse(output.decode())["spins_at"], 16)
        return tuple(int.from_bytes(machine.ram.read(at + n, 8), "little") for n in (0, 8))

    def stop(machine, output):
        if b"spins_at" not in output or counters(machine, output)[1] < 20:
            return False
        if not seen:
            with machine.cpus_stopped():
                before = counters(machine, output)
                irr = machine.bsp.lapic.irr
                time.sleep(0.05)                    # a thousand deadlines' worth
                seen.append((before, counters(machine, output), irr, machine.bsp.lapic.irr))
            seen.append(counters(machine, output))
            return False
        return counters(machine, output)[1] > seen[-1][1]   # ticking again after it

    values, output, machine, result = run_program(body, cpus=2, host_threads=2,
                                                  stop=stop, timeout_s=60)
    assert result.reason == "stopped", result
    (before, during, irr_before, irr_during), after = seen
    assert during == before and irr_during == irr_before
    assert after[1] >= before[1]
