"""The local APIC's interrupt core (native/apic_core.c) as a guest sees it: the accesses it
answers without Python (TPR, PPR, ISR, TMR, IRR, EOI) agree with each other and with the
interrupts the CPU takes, through the page, from a bare-metal program."""

from baremetal import run_program

from test_interrupts import APIC

PROGRAM = APIC + r"""
main:
    call setup_gdt
    GATE 0x40, handler
    GATE 0x61, handler_high
    APIC_WRITE 0xf0, $0x1ff
    APIC_WRITE 0x80, $0x50          # TPR class 5 holds vector 0x40 (class 4) back
    APIC_WRITE 0x300, $0x40040      # a self IPI, fixed, vector 0x40
    sti
    nop
    nop
    cli
    mov taken(%rip), %rax
    PRINT held_taken
    APIC_READ 0x220                 # IRR, vectors 0x40-0x5f: bit 0
    PRINT held_irr
    APIC_READ 0x80
    PRINT held_tpr
    APIC_READ 0xa0
    PRINT held_ppr
    APIC_READ 0x1a0                 # TMR: an IPI is edge-triggered
    PRINT held_tmr
    APIC_WRITE 0x80, $0             # TPR down: it is taken at the STI
    sti
    nop
    nop
    cli
    mov taken(%rip), %rax
    PRINT taken
    mov isr_in_handler(%rip), %rax
    PRINT isr_in_handler
    mov ppr_in_handler(%rip), %rax
    PRINT ppr_in_handler
    mov nested_isr(%rip), %rax
    PRINT nested_isr
    mov nested_ppr(%rip), %rax
    PRINT nested_ppr
    APIC_READ 0x120
    PRINT isr_after
    APIC_READ 0x130
    PRINT isr_high_after
    APIC_READ 0x220
    PRINT irr_after
    APIC_READ 0xa0
    PRINT ppr_after
    APIC_WRITE 0xb0, $0             # an EOI with nothing in service changes nothing
    APIC_READ 0xa0
    PRINT ppr_spare_eoi
    APIC_READ 0x20
    PRINT id
    jmp finish

handler:                            # vector 0x40: raises 0x61 from inside, which nests
    push %rax
    APIC_READ 0x120
    mov %rax, isr_in_handler(%rip)
    APIC_READ 0xa0
    mov %rax, ppr_in_handler(%rip)
    APIC_WRITE 0x300, $0x40061      # a higher class than the one in service: it nests
    sti
    nop
    nop
    cli
    incq taken(%rip)
    APIC_WRITE 0xb0, $0
    pop %rax
    iretq

handler_high:                       # vector 0x61, in service above 0x40
    push %rax
    APIC_READ 0x130                 # ISR, vectors 0x60-0x7f
    mov %rax, nested_isr(%rip)
    APIC_READ 0xa0
    mov %rax, nested_ppr(%rip)
    APIC_WRITE 0xb0, $0             # EOIs 0x61, the highest in service
    pop %rax
    iretq

.data
taken: .quad 0
isr_in_handler: .quad 0
ppr_in_handler: .quad 0
nested_isr: .quad 0
nested_ppr: .quad 0
"""


def test_priority_service_and_eoi_through_the_page():
    values, output, machine, result = run_program(PROGRAM)
    assert "DONE" in output, (result, output)
    v = {key: int(value, 16) for key, value in values.items()}
    # Held back by the task priority: pending in IRR, PPR = TPR.
    assert v["held_taken"] == 0 and v["held_irr"] == 1
    assert v["held_tpr"] == 0x50 and v["held_ppr"] == 0x50 and v["held_tmr"] == 0
    # Taken once TPR came down: in service in its handler, PPR its class.
    assert v["taken"] == 1 and v["isr_in_handler"] == 1 and v["ppr_in_handler"] == 0x40
    # A higher class nested inside it: both in service, PPR the higher class.
    assert v["nested_isr"] == 1 << 1 and v["nested_ppr"] == 0x60
    # Each EOI took the highest in service: nothing left in service or pending.
    assert v["isr_after"] == 0 and v["isr_high_after"] == 0 and v["irr_after"] == 0
    assert v["ppr_after"] == 0 and v["ppr_spare_eoi"] == 0
    assert v["id"] == 0
    assert machine.vcpus[0].interrupts == 2
    assert machine.lapics[0].isr == 0 and machine.lapics[0].irr == 0
