"""Application processors: INIT/SIPI from the BSP starts them in real mode at the SIPI vector."""

from baremetal import run_program

from test_interrupts import APIC

TRAMPOLINE = 0x8000          # SIPI vector 0x08

SMP = APIC + r"""
.set TRAMPOLINE, 0x8000
main:
    call setup_gdt
    APIC_WRITE 0xf0, $0x1ff
    lea trampoline(%rip), %rsi      # copy the real-mode start-up code below 1 MiB
    mov $TRAMPOLINE, %rdi
    mov $(trampoline_end - trampoline), %rcx
    rep movsb
    lea ap_main(%rip), %rax
    mov %rax, TRAMPOLINE + (ap_entry - trampoline)
    APIC_READ 0x20
    shr $24, %eax
    PRINT bsp_apic_id
    APIC_WRITE 0x300, $0xc4500      # INIT, all excluding self
    APIC_WRITE 0x300, $0xc4608      # SIPI, vector 0x08 (0x8000), twice as the MP spec says
    APIC_WRITE 0x300, $0xc4608
    call rdtsc64
    mov %rax, %rbx
1:  pause
    mov started(%rip), %rax
    cmp expected_aps(%rip), %rax
    jae 2f
    call rdtsc64
    sub %rbx, %rax
    movabs $16000000000, %rdx       # give up after 5 s of guest time
    cmp %rdx, %rax
    jb 1b
2:  mov started(%rip), %rax
    PRINT started
    xor %ecx, %ecx
3:  cmp started(%rip), %rcx
    jae 4f
    lea ap_ids(%rip), %rdx
    movzbq (%rdx, %rcx), %rax
    PRINT ap_apic_id
    lea ap_cpuid_ids(%rip), %rdx
    movzbq (%rdx, %rcx), %rax
    PRINT ap_cpuid_id
    inc %rcx
    jmp 3b
4:  jmp finish

ap_main:                            # 64-bit, on the firmware's page tables
    mov $1, %eax
    lock xadd %eax, next_slot(%rip)
    mov %eax, %r8d                  # this AP's slot
    APIC_READ 0x20
    mov %eax, %ebx
    shr $24, %ebx
    lea ap_ids(%rip), %rdx
    mov %bl, (%rdx, %r8)
    mov $1, %eax
    cpuid
    shr $24, %ebx
    lea ap_cpuid_ids(%rip), %rdx
    mov %bl, (%rdx, %r8)
    lock incq started(%rip)
5:  cli
    hlt
    jmp 5b

.code16
trampoline:                         # CS = 0x0800, IP = 0
    cli
    mov %cs, %ax
    mov %ax, %ds
    lgdtl gdt32_ptr - trampoline
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(TRAMPOLINE + pm32 - trampoline)
.code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x1000, %eax               # the firmware's PML4
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $0x18, $(TRAMPOLINE + lm64 - trampoline)
.code64
lm64:
    mov TRAMPOLINE + (ap_entry - trampoline), %rax
    jmp *%rax
.align 8
gdt32:
    .quad 0
    .quad 0x00cf9b000000ffff        # 0x08: 32-bit code
    .quad 0x00cf93000000ffff        # 0x10: data
    .quad 0x00af9b000000ffff        # 0x18: 64-bit code
gdt32_ptr:
    .word gdt32_ptr - gdt32 - 1
    .long TRAMPOLINE + gdt32 - trampoline
ap_entry: .quad 0
trampoline_end:

.data
next_slot: .long 0
.align 8
started: .quad 0
expected_aps: .quad EXPECTED_APS
ap_ids: .fill 64, 1, 0xff
ap_cpuid_ids: .fill 64, 1, 0xff
"""


def run_smp(cpu: int, cpus: int):
    total = cpus or 2 * cpu
    return run_program(SMP.replace("EXPECTED_APS", str(total - 1)), cpu=cpu, cpus=cpus,
                       timeout_s=120)


def test_ipi_wakes_a_second_core():
    values, output, _, result = run_smp(cpu=8, cpus=2)
    assert "DONE" in output, (result, output)
    assert int(values["bsp_apic_id"], 16) == 0
    assert int(values["started"], 16) == 1
    assert int(values["ap_apic_id"], 16) == 1
    assert int(values["ap_cpuid_id"], 16) == 1


def test_all_36_logical_cpus_of_the_18_core_start():
    values, output, machine, result = run_smp(cpu=18, cpus=None)
    assert len(machine.vcpus) == 36
    assert "DONE" in output, (result, output)
    assert int(values["started"], 16) == 35
    ids = sorted(int(x, 16) for x in values["ap_apic_id"])
    assert ids == list(range(1, 36))
    assert sorted(int(x, 16) for x in values["ap_cpuid_id"]) == ids
