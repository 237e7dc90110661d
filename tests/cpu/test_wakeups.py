"""No lost wakeup: IPIs between CPUs that sleep in HLT between them, thousands of times.

The BSP sends a fixed IPI to each AP in turn and sleeps until the AP answers with one; each AP
sleeps until it is called. Every sleep is the kernel's pattern (CLI, check, STI; HLT: the STI
shadow lets no interrupt in between the check and the HLT). A single lost IPI, or a CPU that
misses its wakeup, stops the exchange for good and the run ends without DONE (and the
watchdog reports the CPU that stopped taking interrupts). Run with 2 ms slices and with 30 µs
ones, so slices end at every point of the pattern, between the STI and the HLT included.
"""

import pytest
from baremetal import run_program

from imacpro.machine import Machine

from test_interrupts import APIC
from test_smp import SMP

ROUNDS = 20000
CPUS = 4

# The APs started at `entry` in long mode, through test_smp's trampoline (copied to
# TRAMPOLINE, 0x8000, which SIPI vector 0x08 names).
START_APS = r"""
.macro START_APS entry
    lea trampoline(%rip), %rsi
    mov $TRAMPOLINE, %rdi
    mov $(trampoline_end - trampoline), %rcx
    rep movsb
    lea \entry(%rip), %rax
    mov %rax, TRAMPOLINE + (ap_entry - trampoline)
    APIC_WRITE 0x300, $0xc4500      # INIT, all excluding self
    APIC_WRITE 0x300, $0xc4608      # SIPI, vector 0x08
    APIC_WRITE 0x300, $0xc4608
.endm

# An AP's first steps in long mode: its own stack (4 KiB of ap_stacks, by the order it came
# up: next_slot), then the BSP's GDT (its 64-bit code segment, which the IDT's gates name)
# and IDT.
.macro AP_SETUP
    mov $1, %eax
    lock xadd %eax, next_slot(%rip)
    inc %eax
    shl $12, %eax
    lea ap_stacks(%rip), %rsp
    add %rax, %rsp
    lgdt gdtr(%rip)
    pushq $0x08
    lea .Lap_setup\@(%rip), %rax
    push %rax
    lretq
.Lap_setup\@:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %ss
    lidt idtr(%rip)
.endm

# An AP's local APIC enabled (the spurious-vector register), and its APIC ID, which is its
# index, in %ebx.
.macro AP_APIC_ON
    APIC_WRITE 0xf0, $0x1ff
    APIC_READ 0x20
    shr $24, %eax
    mov %eax, %ebx
.endm

# An interrupt handler that counts its interrupts per CPU (array[APIC ID] += 1) and EOIs.
.macro COUNT_AND_EOI array
    push %rax
    push %rdx
    APIC_READ 0x20
    shr $24, %eax
    lea \array(%rip), %rdx
    lock incq (%rdx, %rax, 8)
    APIC_WRITE 0xb0, $0
    pop %rdx
    pop %rax
    iretq
.endm
"""

PING_PONG = APIC + START_APS + r"""
.set TRAMPOLINE, 0x8000
.set APS, CPUS - 1
.set ROUNDS, ROUND_COUNT
main:
    call setup_gdt
    GATE 0x40, ipi
    APIC_WRITE 0xf0, $0x1ff
    START_APS ap_main
1:  pause
    cmpq $APS, started(%rip)
    jb 1b

    xor %r13, %r13                  # the round
round:
    mov %r13, %rax                  # target: AP 1 + round % APS
    xor %edx, %edx
    mov $APS, %ecx
    div %rcx
    lea 1(%rdx), %rbx
    mov got(%rip), %r12             # the BSP's count before it calls
    shl $24, %ebx
    APIC_WRITE 0x310, %ebx
    APIC_WRITE 0x300, $0x4040       # fixed, vector 0x40
2:  cli                             # sleep until the answer
    cmp got(%rip), %r12
    jne 3f
    sti
    hlt
    jmp 2b
3:  inc %r13
    cmp $ROUNDS, %r13
    jb round
    movq $1, finished(%rip)
    mov %r13, %rax
    PRINT rounds
    xor %ecx, %ecx                  # what each CPU's handler counted
4:  lea got(%rip), %rdx
    mov (%rdx, %rcx, 8), %rax
    PRINT got
    inc %ecx
    cmp $(APS + 1), %ecx
    jb 4b
    jmp finish

ap_main:
    AP_SETUP
    AP_APIC_ON                      # this CPU's APIC ID, its index, in %ebx
    lea got(%rip), %r14
    mov (%r14, %rbx, 8), %r12
    lock incq started(%rip)
2:  cli                             # sleep until called
    mov (%r14, %rbx, 8), %rax
    cmp %r12, %rax
    jne 3f
    sti
    hlt
    jmp 2b
3:  mov %rax, %r12
    APIC_WRITE 0x310, $0            # answer the BSP (APIC ID 0)
    APIC_WRITE 0x300, $0x4040
    jmp 2b

ipi:
    COUNT_AND_EOI got
""" + SMP[SMP.index(".code16\ntrampoline:"):SMP.index(".data\nnext_slot")] + r"""
.data
next_slot: .long 0
.align 8
started: .quad 0
finished: .quad 0
got: .fill 64, 8, 0
.align 4096
ap_stacks: .fill 4096 * 8, 1, 0
"""


@pytest.mark.parametrize("slice_us", [2000, 30])
def test_thousands_of_ipis_between_sleeping_cpus_lose_no_wakeup(slice_us):
    program = PING_PONG.replace("CPUS", str(CPUS)).replace("ROUND_COUNT", str(ROUNDS))
    values, output, machine, result = run_program(program, cpus=CPUS, timeout_s=240,
                                                  slice_us=slice_us)
    reports = [r.text for r in machine.watchdog.reports]
    assert "DONE" in output, (result, output[-500:], reports)
    got = [int(x, 16) for x in values["got"]]
    assert int(values["rounds"], 16) == ROUNDS
    assert got[0] == ROUNDS                                  # every answer arrived
    assert sum(got[1:]) == ROUNDS and max(got[1:]) - min(got[1:]) <= 1
    assert reports == []


# The APs' real-mode start, to splice into a program built on PING_PONG's macros (before its
# .data, which must define next_slot and ap_stacks).
AP_START_CODE = PING_PONG[PING_PONG.index(".code16\ntrampoline:"):
                          PING_PONG.index(".data\nnext_slot")]


WITH_BUSY_CPUS = PING_PONG.replace(".set APS, CPUS - 1", ".set APS, 3\n.set ALL_APS, 7").replace(
    "    cmpq $APS, started(%rip)\n    jb 1b", "    cmpq $ALL_APS, started(%rip)\n    jb 1b").replace(
    """    lock incq started(%rip)
2:  cli                             # sleep until called""", """    lock incq started(%rip)
    cmp $3, %ebx                    # CPUs 4-7 never sleep
    jbe 2f
9:  inc %rax
    jmp 9b
2:  cli                             # sleep until called""")


def test_a_cpu_woken_from_hlt_runs_before_the_busy_ones(monkeypatch):
    """Four CPUs exchange IPIs while four others never halt. A CPU an IPI wakes runs after
    the slice in progress, not after every busy CPU ahead of it in the round: a round trip
    (two wakeups) let the busy CPUs run about one slice with it, four without it."""
    slices = []
    run_slice = Machine._run_slice
    monkeypatch.setattr(Machine, "_run_slice",
                        lambda self, cpu, us: (slices.append(cpu.index), run_slice(self, cpu, us)))
    rounds = 500
    program = WITH_BUSY_CPUS.replace("ROUND_COUNT", str(rounds))
    values, output, machine, result = run_program(program, cpus=8, timeout_s=240,
                                                  host_threads=1)   # the order of one thread's turns
    assert "DONE" in output, (result, output[-500:])
    start = slices.index(4)                       # from when the busy CPUs are up
    busy = sum(1 for index in slices[start:] if index >= 4)
    assert busy <= 2 * rounds, (busy, rounds)
