"""A multiboot stub for the benches' bare-metal programs: the same program runs on QEMU
(its -kernel loads the stub, which enters the program in 64-bit mode) and on imacpro (whose
firmware enters it directly, `long_mode.enter`), with the same memory map around it.

The stub builds an identity map of the low 4 GiB where imacpro's firmware has its own (PML4
0x1000, which the bare-metal tests' AP trampoline names), masks the PICs and jumps to the
program at PROGRAM_BASE with its stack at `stack`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

STUB_BASE = 0x100000
PROGRAM_BASE = 0x101000     # the program after the stub's page

# Multiboot (a.out kludge: the header gives the load addresses), 32-bit protected mode in,
# 64-bit out, the PICs masked (imacpro's firmware hands over with them masked too): PML4
# 0x1000 -> PDPT 0x2000 -> four page directories 0x3000-0x6FFF of 2 MiB pages (the top
# GiB uncached: the APIC's page is there).
STUB = r"""
.set BASE, 0x100000
.code32
.globl _start
_start:
    jmp mb_entry
.align 4
mb_header:
    .long 0x1BADB002, 0x00010000, -(0x1BADB002 + 0x00010000)
    .long BASE + (mb_header - _start), BASE, 0, 0, BASE + (mb_entry - _start)
mb_entry:
    mov $0xff, %al                  # the PICs masked: the firmware left the PIT's IRQ 0
    out %al, $0x21                  # on at vector 8, which the program has no gate for
    out %al, $0xa1
    mov $0x1000, %edi
    xor %eax, %eax
    mov $(6 * 1024), %ecx
    rep stosl
    movl $0x2003, 0x1000
    xor %ecx, %ecx
1:  mov %ecx, %eax                  # PDPT entry n -> page directory 0x3000 + n * 4 KiB
    shl $12, %eax
    add $0x3003, %eax
    mov %eax, 0x2000(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jb 1b
    xor %ecx, %ecx
2:  mov %ecx, %eax                  # 2048 pages of 2 MiB: the low 4 GiB
    shl $21, %eax
    or $0x83, %eax
    cmp $1536, %ecx
    jb 3f
    or $0x18, %eax                  # the top GiB (APIC, I/O APIC): PCD, PWT
3:  mov %eax, 0x3000(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 2b
    mov $0x1000, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    lgdt BASE + (gdtr - _start)
    ljmp $0x08, $(BASE + (entry64 - _start))
.align 8
gdt: .quad 0, 0x00af9b000000ffff, 0x00cf93000000ffff
gdtr: .word 23
      .long BASE + (gdt - _start)
.code64
entry64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $STACK, %rsp
    movabs $PROGRAM, %rax
    jmp *%rax
"""


def image(program: bytes, stack: int, workdir: Path, name: str) -> Path:
    """The multiboot image for QEMU: the stub, then `program` (linked at PROGRAM_BASE)."""
    src, obj, out = (workdir / f"stub.{ext}" for ext in ("S", "o", "bin"))
    src.write_text(STUB.replace("STACK", hex(stack)).replace("PROGRAM", hex(PROGRAM_BASE)))
    subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True)
    subprocess.run(["ld", "-Ttext", hex(STUB_BASE), "--oformat=binary", "-o", str(out),
                    str(obj)], check=True)
    stub = out.read_bytes()
    assert len(stub) <= PROGRAM_BASE - STUB_BASE
    path = workdir / name
    path.write_bytes(stub.ljust(PROGRAM_BASE - STUB_BASE, b"\0") + program)
    return path
