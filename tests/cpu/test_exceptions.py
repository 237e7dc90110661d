"""Exceptions as the SDM describes them, seen by bare-metal programs through COM1."""

import struct

from baremetal import run_program

# Test pages (4 KiB each) in a page table that replaces the 2 MiB mapping at 1 GiB.
TEST_BASE = 0x4000_0000
PAGE_TABLE = 0x80000
P, W, U, NX = 1, 2, 4, 1 << 63
TEST_PAGES = {
    0: 0,                 # not present
    1: P,                 # supervisor, read-only
    2: P | W | U,         # user, writable
    3: P | U,             # user, read-only
    4: P | W | NX,        # supervisor, no-execute
    5: P | W | U | NX,    # user, no-execute
    6: P | W,             # supervisor, writable
}


def map_test_pages(machine):
    """User access to the first 2 MiB (program, stacks) and the test pages at 1 GiB."""
    ram = machine.ram
    for table, index in ((0x1000, 0), *((0x2000, i) for i in range(4)), (0x3000, 0)):
        entry, = struct.unpack_from("<Q", ram.read(table + 8 * index, 8))
        ram.write(table + 8 * index, struct.pack("<Q", entry | U))
    ptes = [0] * 512
    for i, flags in TEST_PAGES.items():
        ptes[i] = (TEST_BASE + 0x1000 * i) | flags if flags else 0
    ram.write(PAGE_TABLE, struct.pack("<512Q", *ptes))
    # The 2 MiB entry for 1 GiB lives in the second page directory (0x4000), entry 0.
    ram.write(0x4000, struct.pack("<Q", PAGE_TABLE | P | W | U))
    ram.write(TEST_BASE + 0x4000, b"\xc3")  # ret, in the no-execute pages
    ram.write(TEST_BASE + 0x5000, b"\xc3")


PAGE_FAULTS = r"""
.macro PROBE insn
    lea 1f(%rip), %rax
    mov %rax, recover(%rip)
    \insn
1:
.endm
main:
    call setup_gdt
    mov $14, %edi
    lea pf_handler(%rip), %rsi
    xor %edx, %edx
    xor %ecx, %ecx
    mov $0xe, %r8d
    call set_gate
    mov $0x80, %edi                 # int $0x80: back from user mode
    lea back_to_kernel(%rip), %rsi
    mov $3, %ecx
    call set_gate
    mov $0xC0000080, %ecx           # EFER.NXE
    rdmsr
    or $0x800, %eax
    wrmsr
    mov %cr0, %rax                  # CR0.WP: supervisor writes honour read-only pages
    or $0x10000, %rax
    mov %rax, %cr0
    mov $0x40000000, %rbx

    PROBE "movq (%rbx), %rcx"       # supervisor read, not present      -> 0x00
    PROBE "movq %rcx, (%rbx)"       # supervisor write, not present     -> 0x02
    PROBE "movq %rcx, 0x1000(%rbx)" # supervisor write, read-only       -> 0x03
    lea 0x4000(%rbx), %rdx
    PROBE "call *%rdx"              # supervisor fetch, no-execute      -> 0x11
    PROBE "call *%rbx"              # supervisor fetch, not present     -> 0x10

    TO_RING3 user
user:
    PROBE "movq 8(%rbx), %rcx"      # user read, not present            -> 0x04
    PROBE "movq %rcx, 8(%rbx)"      # user write, not present           -> 0x06
    PROBE "movq 0x6000(%rbx), %rcx" # user read, supervisor page        -> 0x05
    PROBE "movq %rcx, 0x3000(%rbx)" # user write, read-only             -> 0x07
    lea 0x5000(%rbx), %rdx
    PROBE "call *%rdx"              # user fetch, no-execute            -> 0x15
    PROBE "call *%rbx"              # user fetch, not present           -> 0x14
    movq %rcx, 0x2000(%rbx)         # user write to a user page: no fault
    int $0x80
back_to_kernel:
    mov kernel_rsp(%rip), %rsp
    mov %cs, %ax
    PRINT kernel_cs
    jmp finish

pf_handler:
    push %rax
    mov 8(%rsp), %rax
    PRINT pf_ec
    mov %cr2, %rax
    PRINT pf_cr2
    mov 24(%rsp), %rax              # saved CS: the CPL the fault came from
    PRINT pf_cs
    mov recover(%rip), %rax
    mov %rax, 16(%rsp)
    pop %rax
    add $8, %rsp
    iretq
.data
recover: .quad 0
"""


def test_page_fault_error_codes_and_cr2():
    values, output, _, result = run_program(PAGE_FAULTS, setup=map_test_pages)
    assert "DONE" in output, (result, output)
    codes = [int(v, 16) for v in values["pf_ec"]]
    cr2 = [int(v, 16) for v in values["pf_cr2"]]
    cs = [int(v, 16) for v in values["pf_cs"]]
    assert codes == [0x00, 0x02, 0x03, 0x11, 0x10, 0x04, 0x06, 0x05, 0x07, 0x15, 0x14]
    base = TEST_BASE
    assert cr2 == [base, base, base + 0x1000, base + 0x4000, base, base + 8, base + 8,
                   base + 0x6000, base + 0x3000, base + 0x5000, base]
    assert cs == [0x08] * 5 + [0x23] * 6
    assert int(values["kernel_cs"], 16) & 0xFFFF == 0x08


FAULT_FRAMES = r"""
.macro HANDLER name, vector, has_error
\name:
    .if \has_error
    mov (%rsp), %rax
    PRINT ec_\vector
    add $8, %rsp
    .endif
    mov (%rsp), %rax
    PRINT rip_\vector
    mov 8(%rsp), %rax
    PRINT cs_\vector
    mov 16(%rsp), %rax
    PRINT rflags_\vector
    mov 24(%rsp), %rax
    PRINT rsp_\vector
    mov %rsp, %rax
    PRINT handler_rsp_\vector
    mov recover(%rip), %rax
    mov %rax, (%rsp)
    iretq
.endm
.macro EXPECT name, insn
    lea 2f(%rip), %rax
    mov %rax, recover(%rip)
    lea 1f(%rip), %rax
    PRINT at_\name
    mov %rsp, %rax
    PRINT sp_\name
1:  \insn
2:
.endm
main:
    call setup_gdt
    lea ist1_top(%rip), %rax
    mov %rax, tss_ist1(%rip)
    GATE 0, de
    GATE 6, ud
    GATE 13, gp
    GATE 3, bp, 1                   # int3 runs on IST stack 1
    xor %ecx, %ecx
    EXPECT de, "div %ecx"
    EXPECT ud, "ud2"
    mov $0x8000000000000000, %rbx
    EXPECT gp, "movq (%rbx), %rcx"  # non-canonical address: #GP(0)
    mov $0x33, %dx
    EXPECT gpsel, "mov %dx, %ds"    # selector 0x30 beyond the GDT limit: #GP(0x30)
    EXPECT bp, "int3"
    lea ist1_top(%rip), %rax
    PRINT ist1_top
    jmp finish
HANDLER de, 0, 0
HANDLER ud, 6, 0
HANDLER gp, 13, 1
HANDLER bp, 3, 0
.data
recover: .quad 0
.align 16
ist1: .fill 512, 8, 0
ist1_top:
"""


def test_de_ud_gp_frames_and_ist():
    values, output, _, result = run_program(FAULT_FRAMES)
    assert "DONE" in output, (result, output)
    h = {k: (int(v, 16) if isinstance(v, str) else [int(i, 16) for i in v])
         for k, v in values.items()}
    # Faults push the address of the faulting instruction; int3 (a trap) the next one.
    assert h["rip_0"] == h["at_de"]
    assert h["rip_6"] == h["at_ud"]
    assert h["rip_13"] == [h["at_gp"], h["at_gpsel"]]
    assert h["ec_13"] == [0, 0x30]
    assert h["rip_3"] == h["at_bp"] + 1
    for vector in (0, 6, 3):
        assert h[f"cs_{vector}"] == 0x08
        assert h[f"rflags_{vector}"] & 0x2
    # Same-privilege faults still push SS:RSP in 64-bit mode: the RSP at the fault.
    assert h["rsp_0"] == h["sp_de"] and h["rsp_6"] == h["sp_ud"]
    assert h["rsp_13"] == [h["sp_gp"], h["sp_gpsel"]]
    # The IST gate switches to its own stack; the others stay on the current one.
    assert h["ist1_top"] - 0x1000 < h["handler_rsp_3"] < h["ist1_top"]
    assert h["handler_rsp_0"] < h["sp_de"] and h["sp_de"] - h["handler_rsp_0"] < 0x100
