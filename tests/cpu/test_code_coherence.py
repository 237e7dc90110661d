"""Self-modifying and cross-modifying code: a write to code takes effect at the next fetch.

Linux depends on it: text_poke writes kernel text through a temporary alias mapping, and
text_poke_bp patches code other CPUs are running (int3 first, then the new bytes). The vCPUs'
engines share the machine's translations, so a write, by this CPU through any mapping or by
another CPU, must drop the translations made from that page for all of them (the engine's
shared code map).
"""

from baremetal import run_program

from test_smp import SMP

# A function that returns a value, written into memory as code.
WRITE_FUNCTION = r"""
write_function:                     # eax: the value `mov $value, %eax; ret` returns; rdi: where
    movb $0xb8, (%rdi)
    mov %eax, 1(%rdi)
    movb $0xc3, 5(%rdi)
    ret
"""

# Identity map from the firmware: PML4 at 0x1000. PML4 entry 1 pointing at the same PDPT makes
# virtual 0x80_0000_0000 + X an alias of physical X; NX on it makes the alias a data-only
# mapping, whose TLB entries the engine would otherwise mark dirty for good.
ALIAS = r"""
.text
.set CODE, 0x300000
.set ALIAS_BASE, 0x8000000000
alias_setup:
    mov $0xC0000080, %ecx           # EFER.NXE
    rdmsr
    or $0x800, %eax
    wrmsr
    mov 0x1000, %rax                # PML4[1] = PML4[0] | NX
    bts $63, %rax
    mov %rax, 0x1008
    mov %cr3, %rax
    mov %rax, %cr3
    ret
""" + WRITE_FUNCTION

SAME_CPU = ALIAS + r"""
main:
    call alias_setup
    movabs $ALIAS_BASE + CODE, %rdi    # write the function through the alias: a TLB entry for it
    mov $1, %eax
    call write_function
    mov $CODE, %rax                 # run it: translated
    call *%rax
    PRINT first
    movabs $ALIAS_BASE + CODE, %rdi    # rewrite it through the same alias entry
    mov $2, %eax
    call write_function
    mov $CODE, %rax
    call *%rax
    PRINT second
    mov $CODE, %rdi                 # and through the mapping it runs from
    mov $3, %eax
    call write_function
    mov $CODE, %rax
    call *%rax
    PRINT third
    jmp finish
"""


def test_code_written_through_an_alias_mapping_runs_new():
    values, output, _, result = run_program(SAME_CPU)
    assert "DONE" in output, (result, output)
    assert (values["first"], values["second"], values["third"]) == \
        ("0000000000000001", "0000000000000002", "0000000000000003")


# The AP calls the function in a loop and publishes what it returns; the BSP rewrites the
# function (through the alias, as text_poke does) once the AP has run it, and waits to see the
# new value. Without cross-CPU invalidation the AP runs its old translation for ever.
CROSS_CPU = SMP.replace("main:\n", "main:\n    call alias_setup\n    mov $CODE, %rdi\n"
                        "    mov $1, %eax\n    call write_function\n", 1) \
    .replace("4:  jmp finish", r"""4:  call rdtsc64
    mov %rax, %rbx
5:  pause                           # wait for the AP to run the old function
    cmpq $1, seen(%rip)
    je 6f
    call rdtsc64
    sub %rbx, %rax
    movabs $16000000000, %rdx
    cmp %rdx, %rax
    jb 5b
6:  mov seen(%rip), %rax
    PRINT before
    movabs $ALIAS_BASE + CODE, %rdi
    mov $2, %eax
    call write_function
    call rdtsc64
    mov %rax, %rbx
7:  pause                           # the AP must see the new code
    cmpq $2, seen(%rip)
    je 8f
    call rdtsc64
    sub %rbx, %rax
    movabs $16000000000, %rdx       # 5 s of guest time
    cmp %rdx, %rax
    jb 7b
8:  mov seen(%rip), %rax
    PRINT after
    jmp finish""").replace("""    lock incq started(%rip)
5:  cli
    hlt
    jmp 5b""", """    lock incq started(%rip)
    lea ap_stack(%rip), %rsp
9:  mov $CODE, %rax
    call *%rax
    mov %rax, seen(%rip)
    jmp 9b""").replace(".data\n", ".data\nseen: .quad 0\n.fill 64, 8, 0\nap_stack:\n", 1) + ALIAS


def test_code_another_cpu_rewrites_runs_new():
    values, output, machine, result = run_program(CROSS_CPU.replace("EXPECTED_APS", "1"),
                                                  cpus=2, timeout_s=120)
    assert "DONE" in output, (result, output)
    assert values["before"] == "0000000000000001"
    assert values["after"] == "0000000000000002"
    # One set of translations for the machine: each engine sees every block either CPU
    # made (each engine its own, the AP's would hold only what the AP ran).
    bsp, ap = (vcpu.engine.blocks() for vcpu in machine.vcpus)
    assert bsp > 0 and bsp == ap
