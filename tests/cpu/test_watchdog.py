"""The machine's watchdog names a lost interrupt, with the state that shows where it was lost.

The program waits in HLT for the ACPI SCI (I/O APIC pin 9, level-triggered) that the power
button raises. With the I/O APIC's fault-injection switch on, that message is lost after the
pin took it as delivered: Remote IRR stays set, no CPU ever sees the vector, the CPU sleeps.
"""

from baremetal import run_program

from imacpro.watchdog import format_report
from test_interrupts import APIC

WAIT_FOR_SCI = APIC + r"""
main:
    call setup_gdt
    GATE 0x49, sci
    APIC_WRITE 0xf0, $0x1ff
    mov $0xfec00000, %r8d           # I/O APIC pin 9: level, active high, vector 0x49, APIC 0
    movl $0x22, (%r8)
    movl $0x8049, 0x10(%r8)
    movl $0x23, (%r8)
    movl $0, 0x10(%r8)
    mov $0x602, %dx                 # PM1_EN: the power button's event
    mov $0x100, %ax
    outw %ax, %dx
    sti
1:  hlt
    cmpq $0, scis(%rip)
    je 1b
    cli
    mov scis(%rip), %rax
    PRINT scis
    jmp finish
sci:
    push %rax
    push %rdx
    incq scis(%rip)
    mov $0x600, %dx                 # PM1_STS: clear the power button's status
    mov $0x100, %ax
    outw %ax, %dx
    APIC_WRITE 0xb0, $0
    pop %rdx
    pop %rax
    iretq
.data
scis: .quad 0
"""


def _press_power_button(machine, drop: bool):
    machine.watchdog.stall_s = 0.5
    if drop:
        machine.ioapic.drop_next.add(9)
    machine.clock.add_timer(machine.clock.now_ns() + 10_000_000,
                            machine.acpi_pm.press_power_button)


def test_a_dropped_interrupt_is_reported_with_the_state_that_shows_it():
    values, output, machine, result = run_program(
        WAIT_FOR_SCI, timeout_s=3, setup=lambda m: _press_power_button(m, drop=True))
    assert "DONE" not in output                       # the CPU never saw its interrupt
    findings = {f.kind: f.text for report in machine.watchdog.reports
                for f in report.findings}
    assert "lost-eoi" in findings and "pin 9" in findings["lost-eoi"], findings
    assert "vector 0x49" in findings["lost-eoi"]
    assert "silent-cpu" in findings and "CPU 0 (halted)" in findings["silent-cpu"]
    report = machine.watchdog.reports[0]
    bsp = report.state["cpus"][0]
    assert bsp["state"] == "halted" and bsp["if"] and bsp["irr"] == 0 and bsp["isr"] == 0
    pin9 = report.state["ioapic"]["entries"][9]
    assert pin9 & 0xFF == 0x49 and pin9 >> 14 & 1               # Remote IRR, held for ever
    text = format_report(report)
    assert "ioapic pin  9: vector=0x49" in text and "remote_irr=1" in text
    assert "cpu  0: halted" in text and "if=1 irr=- isr=-" in text


def test_an_interrupt_that_arrives_raises_nothing():
    values, output, machine, result = run_program(
        WAIT_FOR_SCI, timeout_s=10, setup=lambda m: _press_power_button(m, drop=False))
    assert "DONE" in output and int(values["scis"], 16) == 1, (result, output)
    assert machine.watchdog.reports == []
