"""External interrupts: LAPIC timer and RFLAGS.IF, the STI shadow, PIT/HPET rates in guest time."""

from baremetal import run_program

TSC_HZ = 3_200_000_000  # the 8-core W-2140B's base clock
APIC_TIMER_HZ = 25_000_000

APIC = r"""
.set APIC, 0xfee00000
.macro APIC_WRITE reg, value       # MMIO above 2 GiB: through a register, not a disp32
    push %r11
    mov $APIC, %r11d
    movl \value, \reg(%r11)
    pop %r11
.endm
.macro APIC_READ reg               # eax = APIC register
    mov $APIC, %eax
    mov \reg(%rax), %eax
.endm
rdtsc64:                       # rax = TSC
    push %rdx
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    pop %rdx
    ret
"""

LAPIC_TIMER = APIC + r"""
main:
    call setup_gdt
    GATE 0x40, timer
    APIC_WRITE 0xf0, $0x1ff        # software enable, spurious vector 0xff
    APIC_WRITE 0x3e0, $0xb         # divide by 1
    APIC_WRITE 0x320, $0x40        # one-shot, vector 0x40
    APIC_WRITE 0x380, $250000      # 10 ms
1:  APIC_READ 0x390                # with IF=0, wait for the count to run out ...
    test %eax, %eax
    jnz 1b
    call rdtsc64
    mov %rax, %rbx
2:  call rdtsc64                   # ... and 10 ms more
    sub %rbx, %rax
    cmp $32000000, %rax
    jb 2b
    mov ticks(%rip), %rax
    PRINT ticks_while_if0
    sti                            # the interrupt is taken after the next instruction
    incq marker(%rip)
    cli
    mov ticks(%rip), %rax
    PRINT ticks_after_sti
    mov seen_marker(%rip), %rax
    PRINT marker_seen_by_handler

    movq $0, ticks(%rip)           # periodic, 5 ms, waiting with HLT
    APIC_WRITE 0x320, $0x20040
    APIC_WRITE 0x380, $125000
    sti
3:  hlt
    cmpq $1, ticks(%rip)
    jb 3b
    call rdtsc64
    mov %rax, %rbx
4:  hlt
    cmpq $21, ticks(%rip)
    jb 4b
    call rdtsc64
    cli
    sub %rbx, %rax
    PRINT tsc_per_20_ticks
    APIC_WRITE 0x320, $0x10040     # masked: no more interrupts
    xor %ecx, %ecx
5:  lea tick_tsc(%rip), %rdx       # the TSC at each tick, as the handler saw it
    mov (%rdx, %rcx, 8), %rax
    PRINT tick_tsc
    inc %ecx
    cmp $22, %ecx
    jb 5b
    jmp finish
timer:
    push %rax
    push %rdx
    push %rcx
    mov ticks(%rip), %rcx
    cmp $22, %rcx
    jae 6f
    call rdtsc64
    lea tick_tsc(%rip), %rdx
    mov %rax, (%rdx, %rcx, 8)
6:  pop %rcx
    pop %rdx
    incq ticks(%rip)
    mov marker(%rip), %rax
    mov %rax, seen_marker(%rip)
    APIC_WRITE 0xb0, $0
    pop %rax
    iretq
.data
ticks: .quad 0
marker: .quad 0
seen_marker: .quad -1
tick_tsc: .fill 22, 8, 0
"""


def test_lapic_timer_respects_if_and_sti_shadow():
    values, output, _, result = run_program(LAPIC_TIMER)
    assert "DONE" in output, (result, output)
    v = {k: int(x, 16) for k, x in values.items() if k != "tick_tsc"}
    assert v["ticks_while_if0"] == 0          # pending, but IF=0 holds it off
    assert v["ticks_after_sti"] == 1          # taken as soon as IF=1 ...
    assert v["marker_seen_by_handler"] == 1   # ... after the instruction in STI's shadow
    # The period is the median interval between ticks, so one late delivery (the host
    # thread preempted) does not count against the rate; 20 periods must also add up.
    period = 125000 * TSC_HZ // APIC_TIMER_HZ
    stamps = [int(x, 16) for x in values["tick_tsc"]][1:]
    intervals = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    assert abs(intervals[len(intervals) // 2] - period) / period < 0.01
    assert abs(v["tsc_per_20_ticks"] - 20 * period) / (20 * period) < 0.1


PIT_HPET = APIC + r"""
.set IOAPIC, 0xfec00000
.set HPET, 0xfed00000
main:
    call setup_gdt
    GATE 0x30, pit_irq
    APIC_WRITE 0xf0, $0x1ff
    mov $IOAPIC, %r8d
    movl $0x14, (%r8)               # redirection entry 2 (ISA IRQ 0): vector 0x30, APIC 0
    movl $0x30, 0x10(%r8)
    movl $0x15, (%r8)
    movl $0, 0x10(%r8)
    mov $HPET, %r9d
    movq $1, 0x10(%r9)              # HPET: enable the main counter

    movb $0x34, %al                 # PIT channel 0, mode 2, count 11932 (100 Hz)
    outb %al, $0x43
    mov $11932, %ax
    outb %al, $0x40
    movb %ah, %al
    outb %al, $0x40
    sti
2:  hlt                             # the handler stamps each tick with the TSC and HPET
    cmpq $TICKS, ticks(%rip)
    jb 2b
    cli
    xor %ecx, %ecx
4:  lea tick_tsc(%rip), %rdx
    mov (%rdx, %rcx, 8), %rax
    PRINT tick_tsc
    lea tick_hpet(%rip), %rdx
    mov (%rdx, %rcx, 8), %rax
    PRINT tick_hpet
    inc %ecx
    cmp $TICKS, %ecx
    jb 4b

    movb $0xb0, %al                 # channel 2, mode 0, counting from 0xffff, gate on
    outb %al, $0x43
    movb $0xff, %al
    outb %al, $0x42
    outb %al, $0x42
    inb $0x61, %al
    or $1, %al
    outb %al, $0x61
    call rdtsc64                    # each latch between two TSC reads: the host may
    mov %rax, %rbx                  # stop the CPU between a read and the latch
    call read_ch2
    mov %rax, %r12
    call rdtsc64
    mov %rax, %r15
3:  call rdtsc64                    # about 40 ms of TSC
    sub %rbx, %rax
    cmp $128000000, %rax
    jb 3b
    call rdtsc64
    mov %rax, %r14
    call read_ch2
    sub %rax, %r12
    call rdtsc64
    sub %rbx, %rax
    PRINT ch2_tsc_most               # from before the first latch to after the second
    mov %r14, %rax
    sub %r15, %rax
    PRINT ch2_tsc_least              # from after the first to before the second
    mov %r12, %rax
    PRINT ch2_counts
    jmp finish
read_ch2:                           # latch channel 2, rax = count
    movb $0x80, %al
    outb %al, $0x43
    xor %eax, %eax
    inb $0x42, %al
    mov %al, %cl
    inb $0x42, %al
    shl $8, %eax
    mov %cl, %al
    ret
pit_irq:
    push %rax
    push %rdx
    push %rcx
    mov ticks(%rip), %rcx
    cmp $TICKS, %rcx
    jae 1f
    call rdtsc64
    lea tick_tsc(%rip), %rdx
    mov %rax, (%rdx, %rcx, 8)
    mov 0xf0(%r9), %rax
    lea tick_hpet(%rip), %rdx
    mov %rax, (%rdx, %rcx, 8)
1:  incq ticks(%rip)
    APIC_WRITE 0xb0, $0
    pop %rcx
    pop %rdx
    pop %rax
    iretq
.set TICKS, 21
.data
ticks: .quad 0
tick_tsc: .fill 21, 8, 0
tick_hpet: .fill 21, 8, 0
"""


def test_pit_and_hpet_count_at_their_rates():
    values, output, _, result = run_program(PIT_HPET)
    assert "DONE" in output, (result, output)
    v = {k: int(x, 16) for k, x in values.items() if not k.startswith("tick_")}
    # The period is the median interval between the PIT's interrupts, stamped by their handler
    # with the TSC and the HPET, so one late delivery (the host thread preempted) does not
    # count against the rate.
    period_s = 11932 / 1_193_182
    for stamps, hz in (("tick_tsc", TSC_HZ), ("tick_hpet", 14_318_180)):
        times = [int(x, 16) for x in values[stamps]]
        intervals = sorted(b - a for a, b in zip(times, times[1:]))
        assert abs(intervals[len(intervals) // 2] / hz - period_s) / period_s < 0.01, stamps
    # Channel 2 counted between two latches, each taken between two TSC reads: its time lies
    # between the TSC's least and most.
    counted_s = v["ch2_counts"] / 1_193_182
    assert v["ch2_tsc_least"] / TSC_HZ * 0.99 <= counted_s <= v["ch2_tsc_most"] / TSC_HZ * 1.01
