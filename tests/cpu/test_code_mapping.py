"""A direct jump or call to another page runs the code that page maps now.

The engine chains a translated block's direct jump to the block it jumps to. Within a page
that is safe as it is; to another page it is safe only while that page maps the same physical
page as when the jump was chained, for a guest may remap a page (a new PTE, then INVLPG) and
keep the code that jumps there. The engine takes such a chained jump only while the jump
cache's slot for the target holds the block it was chained to: a remapped page's slots are
cleared with its TLB entries (docs/CPU.md's engine table). These programs remap the page a
`call` goes to, under the translated, chained call.
"""

from baremetal import run_program

from test_code_coherence import WRITE_FUNCTION

# V (1 GiB, within a call's reach of the program) is one 4 KiB page of PT, which a program
# points at pages of its own (MAP). The firmware's identity map has its page directory for the
# second GiB at 0x4000; `paging` makes PT its first entry.
PAGING = r"""
.set PD_GIB1, 0x4000
.set PT, 0x410000
.set V, 0x40000000
.macro MAP page, n=0                # V + n pages -> page (0: not present), then INVLPG
    movq $\page, %rax
    test %rax, %rax
    jz 92f
    or $3, %rax
92: mov %rax, PT + 8 * \n
    mov $V + 0x1000 * \n, %rbx
    invlpg (%rbx)
.endm
paging:
    movq $PT + 3, PD_GIB1
    mov %cr3, %rax
    mov %rax, %cr3
    ret
"""

# Here V is mapped to CODE_A or CODE_B: functions returning 1 and 2.
TABLES = PAGING + r"""
.set CODE_A, 0x411000
.set CODE_B, 0x412000
tables:
    mov $CODE_A, %rdi
    mov $1, %eax
    call write_function
    mov $CODE_B, %rdi
    mov $2, %eax
    call write_function
    jmp paging
.macro CALLS name, target            # \name: rax = the sum of what 100 calls of target returned
\name:
    push %rcx
    push %rdx
    xor %edx, %edx
    mov $100, %ecx
1:  call \target                     # a direct call to another page, chained after its first
    add %rax, %rdx
    loop 1b
    mov %rdx, %rax
    pop %rdx
    pop %rcx
    ret
.endm
    CALLS calls, V
""" + WRITE_FUNCTION

REMAP = TABLES + r"""
main:
    call tables
    MAP CODE_A
    call calls
    PRINT a
    MAP CODE_B                      # the call's block is unchanged; the page it calls is not
    call calls
    PRINT b
    MAP CODE_A                      # and back: the block chained under A's mapping again
    call calls
    PRINT again
    jmp finish
"""


def test_a_call_to_a_remapped_page_runs_the_code_it_maps_now():
    values, output, _, result = run_program(REMAP)
    assert "DONE" in output, (result, output)
    assert (values["a"], values["b"], values["again"]) == \
        (f"{100:016x}", f"{200:016x}", f"{100:016x}")


# The page the chained call goes to made not present: the call faults at V (#PF, CR2 = V),
# however often it ran before.
UNMAP = TABLES + r"""
main:
    call setup_gdt
    GATE 14, h14
    call tables
    MAP CODE_A
    call calls
    PRINT a
    MAP 0
    TRY unmapped, "call calls"
    mov %cr2, %rax
    PRINT cr2
    jmp finish
    RESUME_HANDLER 14, 1
.data
resume: .quad 0
vector: .quad 0
"""


def test_a_call_to_a_page_no_longer_mapped_faults():
    values, output, _, result = run_program(UNMAP)
    assert "DONE" in output, (result, output)
    assert values["a"] == f"{100:016x}"
    assert values["unmapped"] == "000000000000000e"
    assert values["cr2"] == "0000000040000000"


# A block that spans two pages: four NOPs at the end of V's page, then `mov $value, %eax; ret`
# on the next page, which the program remaps (V + 4 KiB -> TAIL_A or TAIL_B). An INVLPG of the
# second page must reach the chained call to the block, which starts on the first.
SPANNING = TABLES + r"""
.set HEAD, 0x413000
.set TAIL_A, 0x414000
.set TAIL_B, 0x415000
    CALLS span_calls, V + 0xffc
main:
    call tables
    movl $0x90909090, HEAD + 0xffc
    mov $TAIL_A, %rdi
    mov $1, %eax
    call write_function
    mov $TAIL_B, %rdi
    mov $2, %eax
    call write_function
    MAP HEAD
    MAP TAIL_A, 1
    call span_calls
    PRINT a
    MAP TAIL_B, 1
    call span_calls
    PRINT b
    jmp finish
"""


def test_a_call_to_a_block_across_a_remapped_page_runs_the_code_it_maps_now():
    values, output, _, result = run_program(SPANNING)
    assert "DONE" in output, (result, output)
    assert (values["a"], values["b"]) == (f"{100:016x}", f"{200:016x}")
