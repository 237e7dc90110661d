"""PCIDs and INVPCID, as the Xeon W has them (Linux's page-table isolation uses both).

With CR4.PCIDE set, CR3 bits 11:0 name the address space's PCID and a MOV to CR3 with bit 63
set keeps what the TLB holds for it. The engine keeps a TLB per PCID (cputlb.c, the PCID
contexts) instead of flushing at every CR3 write. A TLB may always hold less than the SDM
allows it to keep, so these tests check what must be seen: each PCID's own translations,
and every invalidation that must reach a TLB put aside, the one that protects code included.
"""

from baremetal import run_program

from test_code_coherence import WRITE_FUNCTION

# Two address spaces over the firmware's identity map (PML4 entry 0, copied), each mapping the
# 4 KiB page at V (PML4 entry 2) to its own data page; B also maps the code page CODE at
# V + 4 KiB, writable: the alias through which it rewrites code that A runs.
TABLES = r"""
.set PML4_A, 0x400000
.set PDPT_A, 0x401000
.set PD_A, 0x402000
.set PT_A, 0x403000
.set PML4_B, 0x404000
.set PDPT_B, 0x405000
.set PD_B, 0x406000
.set PT_B, 0x407000
.set DATA_A, 0x408000
.set DATA_B, 0x409000
.set DATA_C, 0x40a000
.set CODE, 0x40b000
.set V, 0x10000000000
.set KEEP, 0x8000000000000000
.macro CR3 value                    # mov $value, %cr3
    movabs $\value, %rax
    mov %rax, %cr3
.endm
.macro READ key                     # print the quad at V
    movabs $V, %rbx
    mov (%rbx), %rax
    PRINT \key
.endm
.macro INV_PCID type, pcid, address=0
    movq $\pcid, desc(%rip)
    movabs $\address, %rax
    mov %rax, desc+8(%rip)
    mov $\type, %eax
    invpcid desc(%rip), %rax
.endm
tables:
    mov 0x1000, %rax                # the identity map's PML4 entry
    mov %rax, PML4_A
    mov %rax, PML4_B
    movq $PDPT_A + 3, PML4_A + 16
    movq $PDPT_B + 3, PML4_B + 16
    movq $PD_A + 3, PDPT_A
    movq $PD_B + 3, PDPT_B
    movq $PT_A + 3, PD_A
    movq $PT_B + 3, PD_B
    movq $DATA_A + 3, PT_A
    movq $DATA_B + 3, PT_B
    movq $CODE + 3, PT_B + 8
    movq $0xa, DATA_A
    movq $0xb, DATA_B
    movq $0xc, DATA_C
    ret
""" + WRITE_FUNCTION

DATA = r"""
.data
.align 16
desc: .quad 0, 0
resume: .quad 0
vector: .quad 0
"""

PCIDS = TABLES + r"""
main:
    call tables
    mov %cr4, %rax                  # PCIDE (CR3 holds PCID 0)
    or $0x20000, %rax
    mov %rax, %cr4
    CR3 PML4_A + 1
    READ a1
    CR3 PML4_B + 2
    READ b1
    CR3 KEEP + PML4_A + 1           # each PCID's own translations, kept or not
    READ a2
    CR3 KEEP + PML4_B + 2
    READ b2
    mov %cr3, %rax                  # bit 63 is not kept
    PRINT cr3

    movq $DATA_C + 3, PT_A          # INVPCID of PCID 1 while B is live: A sees C
    INV_PCID 1, 1
    CR3 KEEP + PML4_A + 1
    READ single

    movq $DATA_A + 3, PT_A          # INVPCID of the address, in the live PCID
    INV_PCID 0, 1, V
    READ address

    movq $DATA_B + 3, PT_A          # a MOV to CR3 without bit 63 starts the PCID afresh
    CR3 KEEP + PML4_B + 2
    CR3 PML4_A + 1
    READ fresh

    movq $DATA_A + 3, PT_B          # INVPCID of every PCID, from A: B sees A
    INV_PCID 2, 0
    CR3 KEEP + PML4_B + 2
    READ all

    movq $DATA_C + 3, PT_A          # INVLPG in B reaches A's TLB put aside (A, B or C are
    movabs $V, %rbx                 # all the SDM allows; this TLB drops the page everywhere,
    invlpg (%rbx)                   # as it does not know which translations were global)
    CR3 KEEP + PML4_A + 1
    READ invlpg

    # Code A runs, rewritten through B's alias whose TLB entry was made before the page
    # held code and was put aside with B's TLB while A translated it.
    CR3 KEEP + PML4_B + 2
    movabs $V + 0x1000, %rdi
    mov $1, %eax
    call write_function
    CR3 KEEP + PML4_A + 1
    mov $CODE, %rax
    call *%rax
    PRINT code1
    CR3 KEEP + PML4_B + 2
    movabs $V + 0x1000, %rdi
    mov $2, %eax
    call write_function
    CR3 KEEP + PML4_A + 1
    mov $CODE, %rax
    call *%rax
    PRINT code2
    jmp finish
""" + DATA


def test_each_pcid_keeps_its_translations_and_every_invalidation_reaches_them():
    values, output, _, result = run_program(PCIDS)
    assert "DONE" in output, (result, output)
    assert (values["a1"], values["b1"], values["a2"], values["b2"]) == \
        ("000000000000000a", "000000000000000b", "000000000000000a", "000000000000000b")
    assert values["cr3"] == "0000000000404002"
    assert values["single"] == "000000000000000c"
    assert values["address"] == "000000000000000a"
    assert values["fresh"] == "000000000000000b"
    assert values["all"] == "000000000000000a"
    assert values["invlpg"] == "000000000000000c"
    assert (values["code1"], values["code2"]) == ("0000000000000001", "0000000000000002")


# What raises #GP (SDM: MOV to CR0/CR4, INVPCID), and INVPCID in ring 3.
FAULTS = TABLES + r"""
main:
    call setup_gdt
    GATE 13, h13
    call tables
    mov $0x404001, %eax             # PCIDE with a PCID in CR3 already
    mov %rax, %cr3
    mov %cr4, %rbx
    or $0x20000, %rbx
    TRY pcide_with_pcid, "mov %rbx, %cr4"
    mov $0x404000, %eax
    mov %rax, %cr3
    TRY pcide, "mov %rbx, %cr4"
    mov %cr0, %rbx                  # paging off while PCIDE is set
    btr $31, %rbx
    TRY paging_off, "mov %rbx, %cr0"
    TRY type4, "INV_PCID 4, 0"
    TRY pcid_too_big, "INV_PCID 1, 0x1000"
    movabs $0x0000800000000000, %rcx
    TRY noncanonical, "INV_PCID 0, 1, 0x0000800000000000"
    TRY type3, "INV_PCID 3, 0"
    jmp finish
    RESUME_HANDLER 13, 1
""" + DATA


def test_what_the_sdm_faults_faults():
    values, output, _, result = run_program(FAULTS)
    assert "DONE" in output, (result, output)
    assert values["pcide_with_pcid"] == "000000000000000d"
    assert values["pcide"] == "0000000000000000"
    assert values["paging_off"] == "000000000000000d"
    assert values["type4"] == "000000000000000d"
    assert values["pcid_too_big"] == "000000000000000d"
    assert values["noncanonical"] == "000000000000000d"
    assert values["type3"] == "0000000000000000"
