"""A jump to an address in a register goes where the address says, in the flags it runs in.

A return, an indirect call or an indirect jump finds its next block through the engine's
next-block lookup (the jump cache, then the hash table of blocks). Two shortcuts past it were
built and measured, and not kept (docs/PERFORMANCE.md, "2026-12-06, evening"): a return stack
(a call pushes the block its return went to last time) and a jump cache whose slots hold what
translated code needs to enter a block without the lookup. Any such shortcut must keep what
these programs check: after a jump has gone one way a hundred times, the page a return goes to
is remapped under it, the return address on the stack is rewritten, the callee returns with
other flags (AC cleared under SMAP, so the caller's next instruction, a read of a user page,
must fault), and two targets that share a slot of the jump cache take turns. Each failed on
one of those forms with the compare that guards it taken out.
"""

from baremetal import run_program

from test_code_coherence import WRITE_FUNCTION
from test_code_mapping import PAGING

# V (test_code_mapping's PAGING) is mapped to SITE_A or SITE_B: each holds
# `call *%rsi; mov $value, %eax; ret` (value 1 and 2).
TABLES = PAGING + r"""
.set SITE_A, 0x411000
.set SITE_B, 0x412000
write_site:                         # rdi: where; eax: the value returned after the call
    movw $0xd6ff, (%rdi)            # call *%rsi
    movb $0xb8, 2(%rdi)             # mov $value, %eax
    mov %eax, 3(%rdi)
    movb $0xc3, 7(%rdi)             # ret
    ret
tables:
    mov $SITE_A, %rdi
    mov $1, %eax
    call write_site
    mov $SITE_B, %rdi
    mov $2, %eax
    call write_site
    jmp paging
.macro CALLS site, callee           # rax = the sum of what 100 calls of site returned
    lea \callee(%rip), %rsi
    xor %edx, %edx
    mov $100, %ecx
1:  call \site
    add %rax, %rdx
    loop 1b
    mov %rdx, %rax
.endm
plain:
    ret
"""

REMAPPED = TABLES + r"""
remap_to_b:                         # V -> SITE_B under the call at V, then return into V
    MAP SITE_B
    ret
main:
    call tables
    MAP SITE_A
    CALLS V, plain
    PRINT a
    lea remap_to_b(%rip), %rsi
    call V
    PRINT b
    CALLS V, plain
    PRINT after
    jmp finish
"""


def test_a_return_into_a_page_remapped_under_it_runs_the_code_it_maps_now():
    values, output, _, result = run_program(REMAPPED)
    assert "DONE" in output, (result, output)
    assert (values["a"], values["b"], values["after"]) == \
        (f"{100:016x}", f"{2:016x}", f"{200:016x}")


REWRITTEN = TABLES + r"""
site:
    call *%rsi
    mov $1, %eax
    ret
elsewhere:
    mov $7, %eax
    ret
redirect:                           # return to elsewhere instead of into site
    lea elsewhere(%rip), %rax
    mov %rax, (%rsp)
    ret
main:
    CALLS site, plain
    PRINT a
    lea redirect(%rip), %rsi
    call site
    PRINT b
    CALLS site, plain
    PRINT after
    jmp finish
"""


def test_a_return_to_a_rewritten_address_goes_there():
    values, output, _, result = run_program(REWRITTEN)
    assert "DONE" in output, (result, output)
    assert (values["a"], values["b"], values["after"]) == \
        (f"{100:016x}", f"{7:016x}", f"{100:016x}")


# A user page (V's PT entry with U, and U on the levels above it: PML4[0], PDPT[1], the page
# directory's entry) read by supervisor code under SMAP: allowed with EFLAGS.AC set (STAC),
# a #PF without. The caller sets AC and calls; a callee that clears it (CLAC) returns into the
# caller's read, which must then fault, though the same call returned a hundred times with AC
# set.
SMAP = TABLES + r"""
.set DATA, 0x413000
site_ac:
    stac
    call *%rsi
    mov V, %eax                     # AC as the callee left it
    clac
    ret
clear_ac:
    clac
    ret
main:
    call setup_gdt
    GATE 14, h14
    movl $5, DATA
    movq $PT + 7, PD_GIB1
    movq $DATA + 7, PT
    orq $4, 0x1000
    orq $4, 0x2008
    mov %cr4, %rax
    bts $21, %rax                   # CR4.SMAP
    mov %rax, %cr4
    mov %cr3, %rax
    mov %rax, %cr3
    CALLS site_ac, plain
    PRINT a
    lea clear_ac(%rip), %rsi
    TRY cleared, "call site_ac"
    mov %cr2, %rax
    PRINT cr2
    jmp finish
    RESUME_HANDLER 14, 1
.data
resume: .quad 0
vector: .quad 0
"""


def test_a_return_in_other_flags_than_the_call_runs_in_them():
    values, output, _, result = run_program(SMAP)
    assert "DONE" in output, (result, output)
    assert values["a"] == f"{500:016x}"
    assert values["cleared"] == "000000000000000e"
    assert values["cr2"] == "0000000040000000"


# F1 and F2, 16 MiB apart, share a slot of the jump cache (its index takes bits 0-23 of the
# address): an indirect call that goes to each in turn finds the other's block there each time.
SAME_SLOT = r"""
.set F1, 0x500000
.set F2, 0x1500000
main:
    mov $F1, %rdi
    mov $1, %eax
    call write_function
    mov $F2, %rdi
    mov $2, %eax
    call write_function
    xor %edx, %edx
    mov $100, %ecx
1:  mov $F1, %rsi
    test $1, %ecx
    jz 2f
    mov $F2, %rsi
2:  call *%rsi
    add %rax, %rdx
    loop 1b
    mov %rdx, %rax
    PRINT sum
    jmp finish
""" + WRITE_FUNCTION


def test_calls_to_two_addresses_that_share_a_slot_each_run_their_own_code():
    values, output, _, result = run_program(SAME_SLOT)
    assert "DONE" in output, (result, output)
    assert values["sum"] == f"{150:016x}"
