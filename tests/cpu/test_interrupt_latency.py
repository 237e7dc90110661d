"""An interrupt is taken at the next instruction boundary that allows it, whoever raised it.

A running CPU that raises an interrupt for itself (a self-IPI, a TSC deadline already past,
a device it writes to) must take it at once, not when its time slice ends: the slices here
are 5 s of host time, so a late interrupt shows as a loop that ran to its end before the
handler did. The counter lives in a page without code, so its stores do not end blocks.

A platform reset leaves nothing of the CPU's past behind: an NMI sent just before it, or
the halted state, must not reach the program that runs after it (before the engine's
power-on entry point, that NMI was taken by the first instruction after the reset).
"""

from baremetal import KERNEL_STACK, PROGRAM_BASE, assemble, parse, run_program

from imacpro.firmware import long_mode
from test_interrupts import APIC

LOOPS = 2_000_000
LONG_SLICE_US = 5_000_000

SELF_INTERRUPTS = APIC + r"""
main:
    call setup_gdt
    GATE 0x40, handler
    GATE 0x41, handler
    GATE 0x42, handler
    APIC_WRITE 0xf0, $0x1ff
    sti
    movq $0, count(%rip)
    APIC_WRITE 0x300, $0x40040      # fixed IPI to self, vector 0x40
    call spin
    mov seen_at(%rip), %rax
    PRINT self_ipi_seen_at

    movq $-1, seen_at(%rip)
    movq $0, count(%rip)
    APIC_WRITE 0x320, $0x40041      # LVT timer: TSC-deadline mode, vector 0x41
    call rdtsc64
    mov %rax, %rdx
    shr $32, %rdx
    mov $0x6e0, %ecx                # a deadline that has already passed
    wrmsr
    call spin
    mov seen_at(%rip), %rax
    PRINT deadline_seen_at

    movq $-1, seen_at(%rip)
    mov $0xfec00000, %r8d           # I/O APIC pin 4 (COM1): edge, vector 0x42, APIC 0
    movl $0x18, (%r8)
    movl $0x42, 0x10(%r8)
    movl $0x19, (%r8)
    movl $0, 0x10(%r8)
    movq $0, count(%rip)
    mov $0x3f9, %dx                 # IER: transmitter empty
    mov $0x02, %al
    outb %al, %dx
    mov $0x3fc, %dx                 # MCR: OUT2 lets the UART's interrupt out
    mov $0x08, %al
    outb %al, %dx
    call spin
    cli
    mov $0x3f9, %dx
    xor %eax, %eax
    outb %al, %dx
    mov seen_at(%rip), %rax
    PRINT uart_seen_at
    jmp finish

spin:                               # count up to LOOPS with interrupts enabled
1:  incq count(%rip)
    cmpq $LOOPS, count(%rip)
    jb 1b
    ret
handler:
    push %rax
    mov count(%rip), %rax
    mov %rax, seen_at(%rip)
    APIC_WRITE 0xb0, $0
    pop %rax
    iretq
.data
.align 4096                         # a page with no code in it: stores there stay fast
count: .quad 0
seen_at: .quad -1
.align 4096
""".replace("$LOOPS", f"${LOOPS}")


def test_an_interrupt_a_cpu_raises_for_itself_is_taken_at_once():
    values, output, _, result = run_program(SELF_INTERRUPTS, slice_us=LONG_SLICE_US,
                                            timeout_s=60)
    assert "DONE" in output, (result, output)
    # A few iterations at most: the write that raised it ends its translated block.
    assert int(values["self_ipi_seen_at"], 16) < 4, values
    assert int(values["deadline_seen_at"], 16) < 4, values
    assert int(values["uart_seen_at"], 16) < 4, values


TIMER_ARMED_IN_SLICE = APIC + r"""
main:
    call setup_gdt
    GATE 0x41, handler
    movb $0x30, %al                 # PIT channel 0 waits for a count: no other timer runs
    outb %al, $0x43
    mov $32, %ecx                   # a pause loop ends the slice: the next is 5 s long
0:  pause
    loop 0b
    APIC_WRITE 0xf0, $0x1ff
    APIC_WRITE 0x320, $0x40041      # LVT timer: TSC-deadline mode, vector 0x41
    sti
    call rdtsc64
    mov %rax, %rbx
    add $320000, %rax               # 100 us from now
    mov %rax, %rdx
    shr $32, %rdx
    mov $0x6e0, %ecx
    wrmsr
1:  call rdtsc64                    # spin for 1 s of TSC with interrupts enabled
    sub %rbx, %rax
    cmpq $0, seen(%rip)
    jne 2f
    movabs $3200000000, %rdx
    cmp %rdx, %rax
    jb 1b
2:  cli
    PRINT tsc_when_seen
    jmp finish
handler:
    movq $1, seen(%rip)
    APIC_WRITE 0xb0, $0
    iretq
.data
.align 4096
seen: .quad 0
.align 4096
"""


def test_a_timer_armed_during_a_slice_ends_it_on_time():
    """The deadline falls due 100 us into a 5 s slice: the slice ends then, and the loop
    sees the interrupt long before its 1 s is up (it would see it only after 5 s)."""
    values, output, _, result = run_program(TIMER_ARMED_IN_SLICE, slice_us=LONG_SLICE_US,
                                            timeout_s=60)
    assert "DONE" in output, (result, output)
    assert int(values["tsc_when_seen"], 16) < 3_200_000_000, values


AFTER_RESET = r"""
main:
    call setup_gdt
    GATE 2, nmi
    mov $100000, %ecx
1:  loop 1b
    mov nmis(%rip), %rax
    PRINT nmis
    jmp finish
nmi:
    incq nmis(%rip)
    iretq
.data
nmis: .quad 0
"""

HALT = r"""
main:
    cli
    hlt
    jmp main
"""


def _run(machine, serial, body: str):
    machine.ram.write(PROGRAM_BASE, assemble(body))
    long_mode.enter(machine.bsp.uc, machine.ram, rip=PROGRAM_BASE, rsp=KERNEL_STACK)
    return machine.run(timeout_s=30, stop=lambda: b"DONE\n" in serial)


def test_a_reset_leaves_no_nmi_and_no_halt_behind():
    serial = bytearray()
    _, _, machine, _ = run_program(HALT, timeout_s=1)
    machine.uart._output = serial.extend
    assert machine.bsp.engine.status() & 1            # halted with interrupts off
    machine.bsp.engine.nmi()                          # an NMI the CPU never got to take
    machine.reset()
    result = _run(machine, serial, AFTER_RESET)
    output = serial.decode(errors="replace")
    assert "DONE" in output, (result, output)
    assert int(parse(output)["nmis"], 16) == 0
