"""#DF and NMI delivery, MSRs, PCI configuration access and the reset paths, from the guest."""

from baremetal import run_program
from test_interrupts import APIC

DOUBLE_FAULT = r"""
main:
    call setup_gdt
    lea ist1_top(%rip), %rax
    mov %rax, tss_ist1(%rip)
    GATE 8, df, 1
    GATE 13, gp                     # then mark the #GP gate not present
    lea idt(%rip), %rax
    andb $0x7f, 13*16+5(%rax)
    mov $0x8000000000000000, %rbx
    movq (%rbx), %rcx               # #GP; its gate is not present (#NP): a double fault
    jmp finish
gp: jmp finish
df:
    mov (%rsp), %rax
    PRINT df_error_code
    mov %rsp, %rax
    PRINT df_rsp
    lea ist1_top(%rip), %rax
    PRINT ist1_top
    jmp finish
.data
.align 16
ist1: .fill 512, 8, 0
ist1_top:
"""


def test_fault_during_delivery_is_a_double_fault_on_its_ist_stack():
    values, output, _, result = run_program(DOUBLE_FAULT)
    assert "DONE" in output, (result, output)
    v = {k: int(x, 16) for k, x in values.items()}
    assert v["df_error_code"] == 0
    assert v["ist1_top"] - 0x1000 < v["df_rsp"] < v["ist1_top"]


NMI = APIC + r"""
main:
    call setup_gdt
    GATE 2, nmi
    APIC_WRITE 0xf0, $0x1ff
    APIC_WRITE 0x300, $0x44400      # NMI to self: not held off by IF=0
    mov $100000, %ecx
1:  cmpq $0, nmis(%rip)
    jne 2f
    loop 1b
2:  mov nmis(%rip), %rax
    PRINT nmis
    jmp finish
nmi:
    incq nmis(%rip)
    iretq
.data
nmis: .quad 0
"""


def test_nmi_is_taken_with_interrupts_disabled():
    values, output, _, result = run_program(NMI)
    assert "DONE" in output, (result, output)
    assert int(values["nmis"], 16) == 1


MSRS = r"""
.macro READ_MSR name, index
    mov $\index, %ecx
    lea 1f(%rip), %rax
    mov %rax, recover(%rip)
    xor %eax, %eax
    xor %edx, %edx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    PRINT \name
1:
.endm
main:
    call setup_gdt
    GATE 13, gp
    READ_MSR apic_base, 0x1b
    READ_MSR platform_info, 0xce
    READ_MSR misc_enable, 0x1a0
    READ_MSR mcg_cap, 0x179
    READ_MSR mc0_status, 0x401
    READ_MSR feature_control, 0x3a
    READ_MSR unknown, 0x12345678       # not an MSR of this CPU: #GP
    mov gp_count(%rip), %rax
    PRINT gp_count
    jmp finish
gp:
    incq gp_count(%rip)
    push %rax
    mov recover(%rip), %rax
    mov %rax, 16(%rsp)
    pop %rax
    add $8, %rsp
    iretq
.data
recover: .quad 0
gp_count: .quad 0
"""


def test_msrs_fit_the_sku():
    values, output, _, result = run_program(MSRS, cpu=14)
    assert "DONE" in output, (result, output)
    v = {k: int(x, 16) for k, x in values.items()}
    assert v["apic_base"] == 0xFEE00000 | 1 << 11 | 1 << 8     # enabled, BSP
    assert (v["platform_info"] >> 8) & 0xFF == 25               # W-2170B: 2.5 GHz base
    assert v["misc_enable"] & 1                                 # fast strings
    assert v["mcg_cap"] & 0xFF == 20
    assert v["mc0_status"] == 0
    assert v["feature_control"] & 1                             # locked
    assert v["gp_count"] == 1 and "unknown" not in values


TSC_ADJUST = APIC + r"""
main:
    call setup_gdt
    GATE 0x41, timer
    APIC_WRITE 0xf0, $0x1ff
    APIC_WRITE 0x320, $0x40041      # LVT timer: TSC-deadline mode, vector 0x41
    mov $7, %eax                    # CPUID.7.0:EBX bit 1 names the MSR
    xor %ecx, %ecx
    cpuid
    shr $1, %ebx
    and $1, %ebx
    PRINT cpuid_tsc_adjust, %rbx
    call rdtsc64
    mov %rax, %rbx
    mov $0x3b, %ecx                 # IA32_TSC_ADJUST += 2^40: the TSC moves with it
    xor %eax, %eax
    mov $0x100, %edx
    wrmsr
    call rdtsc64
    sub %rbx, %rax
    PRINT tsc_step
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    PRINT adjust
    call rdtsc64                    # a deadline 1 ms ahead on the adjusted TSC
    mov %rax, %rbx
    add $3200000, %rax
    mov %rax, %rdx
    shr $32, %rdx
    mov $0x6e0, %ecx
    wrmsr
    sti
1:  hlt
    cmpq $0, fired_at(%rip)
    je 1b
    cli
    mov fired_at(%rip), %rax
    sub %rbx, %rax
    PRINT fired_after
    jmp finish
timer:
    push %rax
    call rdtsc64
    mov %rax, fired_at(%rip)
    APIC_WRITE 0xb0, $0
    pop %rax
    iretq
.data
fired_at: .quad 0
"""


def test_tsc_adjust_moves_the_tsc_and_its_deadlines():
    values, output, _, result = run_program(TSC_ADJUST)
    assert "DONE" in output, (result, output)
    v = {k: int(x, 16) for k, x in values.items()}
    assert v["cpuid_tsc_adjust"] == 1 and v["adjust"] == 1 << 40
    assert 1 << 40 <= v["tsc_step"] < (1 << 40) + 3_200_000_000   # moved, not run away
    # Fires at its deadline on the adjusted TSC (1 ms), not 2^40 ticks (5.7 min) later
    # or at once.
    assert 3_200_000 <= v["fired_after"] < 3_200_000_000


PCI = r"""
main:
    call setup_gdt
    mov $0x80000000, %eax           # CONFIG_ADDRESS: bus 0, device 0, function 0, register 0
    mov $0xcf8, %dx
    outl %eax, %dx
    mov $0xcfc, %dx
    inl %dx, %eax
    PRINT via_ports
    mov $0x80000800, %eax           # device 1: absent
    mov $0xcf8, %dx
    outl %eax, %dx
    mov $0xcfc, %dx
    inl %dx, %eax
    PRINT absent
    mov $0xe0000000, %ebx           # ECAM, register 0x08: class code and revision
    mov 8(%rbx), %eax
    PRINT class_via_ecam
    jmp finish
"""


def test_pci_host_bridge_via_ports_and_ecam():
    values, output, _, result = run_program(PCI)
    assert "DONE" in output, (result, output)
    v = {k: int(x, 16) for k, x in values.items()}
    assert v["via_ports"] == 0x2020_8086
    assert v["absent"] == 0xFFFF_FFFF
    assert v["class_via_ecam"] >> 8 == 0x060000


def test_reset_through_0xcf9_and_the_keyboard_controller():
    for reset in ("mov $0x06, %al\n    mov $0xcf9, %dx\n    outb %al, %dx", "mov $0xfe, %al\n    outb %al, $0x64"):
        body = f"main:\n    {reset}\n1:  jmp 1b\n"
        _, _, _, result = run_program(body, timeout_s=10)
        assert result.reason == "reset"
