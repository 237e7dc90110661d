"""REP STOS and REP MOVS as the SDM describes them, across pages, in both directions.

With 64-bit addresses the engine runs the elements that lie in one page in one step (the
engine patch's string_helper.c): these programs check what that must keep, against memory
read back from the host: every element lands where its address says and nothing else does;
an element that crosses a page boundary; a copy onto itself one element up repeats the first
element (a memmove would not); a segment override adds its base; a page fault in the middle
stops the instruction between two elements with RCX, RSI and RDI saying how far it got, and
it goes on from there after the handler returns; SMAP refuses a supervisor write to a user
page unless RFLAGS.AC is set; code a REP MOVS writes over runs as the new code.
"""

import struct

from baremetal import run_program

BASE = 0x4000_0000                # 4 KiB pages here, in a page table of their own
PAGE_TABLE = 0x80000
P, W, U = 1, 2, 4
WRITABLE = 32                     # pages 0-31: supervisor, writable
ABSENT = (32, 34)                 # not present until the page-fault handler maps them
PRESENT = {33: P | W, 35: P | W | U}


def map_pages(machine):
    """The test pages at 1 GiB, under upper-level entries that allow user access (a page is
    a user page only if every level says so): the PTE decides."""
    pml4, = struct.unpack_from("<Q", machine.ram.read(0x1000, 8))
    machine.ram.write(0x1000, struct.pack("<Q", pml4 | U))
    pdpte, = struct.unpack_from("<Q", machine.ram.read(0x2008, 8))     # the GiB at 1 GiB
    machine.ram.write(0x2008, struct.pack("<Q", pdpte | U))
    ptes = [0] * 512
    for page in range(WRITABLE):
        ptes[page] = BASE + 0x1000 * page | P | W
    for page, flags in PRESENT.items():
        ptes[page] = BASE + 0x1000 * page | flags
    machine.ram.write(PAGE_TABLE, struct.pack("<512Q", *ptes))
    machine.ram.write(0x4000, struct.pack("<Q", PAGE_TABLE | P | W | U))   # the 2 MiB at 1 GiB


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


PROGRAM = r"""
.macro FILL at, count, seed         # bytes (i * 7 + seed) & 0xff, one at a time
    lea \at(%rbx), %rdi
    xor %ecx, %ecx
1:  imul $7, %ecx, %eax
    add $\seed, %eax
    mov %al, (%rdi, %rcx)
    inc %rcx
    cmp $\count, %rcx
    jne 1b
.endm
.macro AFTER name                   # where RDI, RSI (less BASE) and RCX ended
    lea -0x40000000(%rdi), %rax
    PRINT \name\()_rdi
    lea -0x40000000(%rsi), %rax
    PRINT \name\()_rsi
    mov %rcx, %rax
    PRINT \name\()_rcx
.endm
main:
    call setup_gdt
    GATE 14, page_fault
    mov $0x40000000, %rbx
    mov %cr4, %rax                  # SMAP on
    or $0x200000, %rax
    mov %rax, %cr4
    cld

    lea 0xff3(%rbx), %rdi           # bytes up, over four pages, from an odd address
    mov $9000, %rcx
    mov $0xA5, %eax
    rep stosb
    AFTER stosb

    lea 0x4ffc(%rbx), %rdi          # quadwords up, the first across a page boundary
    mov $1000, %rcx
    mov $0x1122334455667788, %rax
    rep stosq
    AFTER stosq

    std                             # doublewords down, over three pages
    lea 0x9ffc(%rbx), %rdi
    mov $3000, %rcx
    mov $0xDEADBEEF, %eax
    rep stosl
    cld
    AFTER stosl

    lea 0x9800(%rbx), %rdi          # a count of zero writes nothing
    xor %ecx, %ecx
    mov $0x77, %eax
    rep stosb
    AFTER none

    FILL 0xa011, 10000, 3           # bytes up, source and target at other page offsets
    lea 0xa011(%rbx), %rsi
    lea 0xe7a5(%rbx), %rdi
    mov $10000, %rcx
    rep movsb
    AFTER movsb

    FILL 0x12ff0, 5001, 11          # onto itself one byte up: the first byte repeated
    lea 0x12ff0(%rbx), %rsi
    lea 0x12ff1(%rbx), %rdi
    mov $5000, %rcx
    rep movsb
    AFTER overlap

    FILL 0x15000, 9608, 29          # quadwords down, one up (memmove's backward copy)
    std
    lea 0x15000 + 8 * 1199(%rbx), %rsi
    lea 8(%rsi), %rdi
    mov $1200, %rcx
    rep movsq
    cld
    AFTER movsq

    FILL 0x19100, 300, 41           # from %fs: the source is FS's base plus RSI
    mov $0xC0000100, %ecx
    lea 0x19000(%rbx), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    mov $0x100, %esi
    lea 0x1a000(%rbx), %rdi
    mov $300, %rcx
    rep movsb %fs:(%rsi), %es:(%rdi)
    lea 0x40000000(%rsi), %rsi      # AFTER takes BASE off: RSI is FS-relative
    AFTER fs

    lea 0x1f800(%rbx), %rdi         # into page 32, not present: a fault at its start
    mov $0x1000, %rcx
    mov $0x3C, %eax
    rep stosb
    AFTER fault_stos

    FILL 0x21f00, 256, 53           # from page 34, not present: a fault at its start
    lea 0x21f00(%rbx), %rsi
    lea 0x1b000(%rbx), %rdi
    mov $0x200, %rcx
    rep movsb
    AFTER fault_movs

    lea 0x23fe0(%rbx), %rdi         # a user page: SMAP lets it be written only with AC
    mov $0x20, %rcx
    mov $0x66, %eax
    stac
    rep stosb
    clac
    AFTER user_ac
    lea 0x23800(%rbx), %rdi
    mov $0x20, %rcx
    rep stosb
    AFTER user_no_ac

    call patched                    # translated once, then written over by REP MOVS
    PRINT before_patch
    lea new_code(%rip), %rsi
    lea patched(%rip), %rdi
    mov $new_code_end - new_code, %rcx
    rep movsb
    call patched
    PRINT after_patch
    jmp finish

# Prints the fault; maps a page that is not present and returns to the instruction, which
# goes on. A present page (SMAP's refusal) is left alone and the instruction ended, RCX 0.
page_fault:
    push %rax
    mov 8(%rsp), %rax
    PRINT pf_ec
    mov %cr2, %rax
    sub $0x40000000, %rax
    PRINT pf_cr2
    mov %rcx, %rax
    PRINT pf_rcx
    lea -0x40000000(%rdi), %rax
    PRINT pf_rdi
    lea -0x40000000(%rsi), %rax
    PRINT pf_rsi
    testq $1, 8(%rsp)
    jnz 1f
    mov %cr2, %rax
    and $~0xfff, %rax
    push %rax
    sub $0x40000000, %rax
    shr $12, %rax
    pop %rdx
    or $3, %rdx
    mov %rdx, 0x80000(, %rax, 8)
    mov %cr2, %rax
    invlpg (%rax)
    jmp 2f
1:  xor %ecx, %ecx
2:  pop %rax
    add $8, %rsp
    iretq

patched:
    mov $1, %eax
    ret
    .fill 16, 1, 0x90
new_code:
    mov $2, %eax
    ret
new_code_end:
"""


def run():
    values, output, machine, result = run_program(PROGRAM, setup=map_pages)
    assert "DONE" in output, (result, output)
    h = {k: (int(v, 16) if isinstance(v, str) else [int(i, 16) for i in v])
         for k, v in values.items()}
    return h, lambda offset, n: machine.ram.read(BASE + offset, n)


def test_rep_stos_fills_every_element_and_nothing_else():
    h, ram = run()
    assert ram(0xFF2, 9002) == b"\0" + b"\xA5" * 9000 + b"\0"
    assert (h["stosb_rdi"], h["stosb_rcx"]) == (0xFF3 + 9000, 0)
    assert ram(0x4FF8, 8008) == bytes(4) + struct.pack("<Q", 0x1122334455667788) * 1000 \
        + bytes(4)
    assert (h["stosq_rdi"], h["stosq_rcx"]) == (0x4FFC + 8000, 0)
    low = 0x9FFC - 2999 * 4
    assert ram(low - 4, 12008) == bytes(4) + struct.pack("<I", 0xDEADBEEF) * 3000 + bytes(4)
    assert (h["stosl_rdi"], h["stosl_rcx"]) == (low - 4, 0)
    assert ram(0x9800, 1) != b"\x77" and h["none_rdi"] == 0x9800


def test_rep_movs_copies_up_down_onto_itself_and_from_a_segment():
    h, ram = run()
    assert ram(0xE7A5, 10000) == pattern(10000, 3)
    assert (h["movsb_rsi"], h["movsb_rdi"], h["movsb_rcx"]) == (0xA011 + 10000,
                                                                0xE7A5 + 10000, 0)
    assert ram(0x12FF0, 5001) == bytes([pattern(1, 11)[0]]) * 5001
    shifted = pattern(9608, 29)
    assert ram(0x15000, 8) + ram(0x15008, 9600) == shifted[:8] + shifted[:9600]
    assert (h["movsq_rsi"], h["movsq_rdi"], h["movsq_rcx"]) == (0x15000 - 8, 0x15000, 0)
    assert ram(0x1A000, 300) == pattern(300, 41)
    assert (h["fs_rsi"], h["fs_rdi"], h["fs_rcx"]) == (0x100 + 300, 0x1A000 + 300, 0)


def test_a_fault_stops_rep_between_elements_and_it_goes_on_after():
    h, ram = run()
    # The write into page 32, then the read from page 34: not present, a write and a read.
    assert h["pf_ec"][:2] == [0x02, 0x00]
    assert h["pf_cr2"][:2] == [0x20000, 0x22000]
    assert h["pf_rcx"][:2] == [0x800, 0x100]
    assert h["pf_rdi"][:2] == [0x20000, 0x1B100]
    assert h["pf_rsi"][1] == 0x22000
    assert ram(0x1F800, 0x1000) == b"\x3C" * 0x1000
    assert (h["fault_stos_rdi"], h["fault_stos_rcx"]) == (0x20800, 0)
    assert ram(0x1B000, 0x200) == pattern(256, 53) + bytes(0x100)   # page 34: zeros
    assert (h["fault_movs_rsi"], h["fault_movs_rcx"]) == (0x22100, 0)


def test_smap_refuses_a_supervisor_rep_stos_to_a_user_page_without_ac():
    h, ram = run()
    assert ram(0x23FE0, 0x20) == b"\x66" * 0x20
    assert h["pf_ec"][2:] == [0x03]                     # present, write, supervisor
    assert h["pf_cr2"][2:] == [0x23800]
    assert ram(0x23800, 0x20) == bytes(0x20)
    assert h["user_ac_rcx"] == 0


def test_code_written_by_rep_movs_runs_as_written():
    h, _ = run()
    assert (h["before_patch"], h["after_patch"]) == (1, 2)
