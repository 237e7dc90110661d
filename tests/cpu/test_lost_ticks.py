"""A host that stalls the emulator for a few PIT periods loses no tick the guest counts.

Linux checks at boot that the PIT's IRQ 0 reaches a CPU (arch/x86/kernel/apic/io_apic.c,
`timer_irq_works`): with interrupts on it waits up to 40e9/HZ TSC cycles (50 ms at the
W-2140B's 3.2 GHz and HZ=250) for jiffies to pass its start by more than 4, and logs
"MP-BIOS bug: 8254 timer not connected to IO-APIC" when they do not. A host that stops the
emulator's thread for longer than the window's remainder ran the PIT's timer late, and the
missed periods used to merge into one edge: the check failed. The PIT now gives the missed
edges back, one per IRQ 0 the guest acknowledges (KVM's reinjection). Linux checks the tick
device it chose: on this machine, whose HPET can take over IRQ 0 (LEG_RT_CAP), that is the
HPET's timer 0 in periodic mode, which gives its lost periods back the same way.

The stalls here are made by a clock timer that sleeps the run loop's thread for 60 ms of
host time every 5 ms of guest time, so one lands in every window of 5 ticks, whatever the host.
The check is run with the PIT through the I/O APIC (Linux's first try) and through the 8259
on LINT0 as ExtINT (its fallback, "virtual wire"), and with the HPET's legacy route through
the I/O APIC.
"""

import time

import pytest
from baremetal import run_program

from test_interrupts import APIC

STALL_S = 0.060
STALL_EVERY_NS = 5_000_000
STALLS = 40

TIMER_IRQ_WORKS = APIC + r"""
.set IOAPIC, 0xfec00000
.set HPET, 0xfed00000
main:
    call setup_gdt
    GATE 0x30, pit_irq
    APIC_WRITE 0xf0, $0x1ff
.if VIA_PIC
    movb $0x11, %al                 # 8259 master: ICW1..4, vector base 0x30, IR0 unmasked
    outb %al, $0x20
    movb $0x30, %al
    outb %al, $0x21
    movb $0x04, %al
    outb %al, $0x21
    movb $0x01, %al
    outb %al, $0x21
    movb $0xfe, %al
    outb %al, $0x21
    APIC_WRITE 0x350, $0x700        # LVT LINT0: ExtINT
.else
    mov $IOAPIC, %r8d
    movl $0x14, (%r8)               # redirection entry 2 (ISA IRQ 0): edge, vector 0x30
    movl $0x30, 0x10(%r8)
    movl $0x15, (%r8)
    movl $0, 0x10(%r8)
.endif
.if VIA_HPET
    mov $HPET, %r8d                 # hpet_clkevt_set_state_periodic, counter halted:
    movl $0x14c, 0x100(%r8)         # timer 0: 32-bit, VAL_SET, periodic, interrupts on
    movl $57273, 0x108(%r8)         # the first match (counter 0 + the period) ...
    movl $57273, 0x108(%r8)         # ... then the period (HZ = 250 at 14.31818 MHz)
    movl $3, 0x10(%r8)              # LEG_RT_CNF (timer 0 drives IRQ 0) and ENABLE_CNF
.else
    movb $0x34, %al                 # PIT channel 0, mode 2, count 4773 (HZ = 250)
    outb %al, $0x43
    mov $4773, %ax
    outb %al, $0x40
    movb %ah, %al
    outb %al, $0x40
.endif

    mov ticks(%rip), %rbx           # timer_irq_works: t1 = jiffies
    sti
    lea 4(%rbx), %r13               # delay_with_tsc: end = jiffies + 4
    call rdtsc64
    mov %rax, %r12
1:  pause
    call rdtsc64
    sub %r12, %rax
    cmp $160000000, %rax            # 40e9 / HZ cycles
    jae 2f
    cmp ticks(%rip), %r13
    jae 1b
2:  cli
    mov %rax, %r14
    mov ticks(%rip), %rax
    sub %rbx, %rax
    PRINT ticks_in_window
    mov %r14, %rax
    PRINT window_tsc
    jmp finish
pit_irq:
    incq ticks(%rip)
.if VIA_PIC
    push %rax
    movb $0x20, %al                 # non-specific EOI to the 8259
    outb %al, $0x20
    pop %rax
.else
    APIC_WRITE 0xb0, $0
.endif
    iretq
.data
ticks: .quad 0
"""


class HostStalls:
    """Stops the run loop's thread for STALL_S of host time every STALL_EVERY_NS of guest
    time, STALLS times: a host that deschedules the emulator."""

    def __init__(self, machine):
        self.clock = machine.clock
        self.count = 0
        self.timer = self.clock.timer(self.stall)
        self.timer.arm(self.clock.now_ns() + STALL_EVERY_NS)

    def stall(self):
        time.sleep(STALL_S)
        self.count += 1
        if self.count < STALLS:
            self.timer.arm(self.clock.now_ns() + STALL_EVERY_NS)


@pytest.mark.parametrize("route", ["ioapic", "pic", "hpet"])
def test_timer_irq_works_with_the_host_stalling_the_emulator(route):
    stalls = []
    body = (TIMER_IRQ_WORKS.replace("VIA_PIC", "1" if route == "pic" else "0")
            .replace("VIA_HPET", "1" if route == "hpet" else "0"))
    values, output, _, result = run_program(
        body, setup=lambda machine: stalls.append(HostStalls(machine)))
    assert "DONE" in output, (result, output)
    assert stalls[0].count >= 1  # a stall happened
    ticks = int(values["ticks_in_window"], 16)
    # Linux's condition (time_after(jiffies, t1 + 4)); before the PIT gave lost edges back
    # the window saw 2 or 3 ticks: the edges of the periods the stall covered had merged.
    assert ticks > 4, output
