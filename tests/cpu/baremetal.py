"""Bare-metal x86-64 test programs: assembled with GNU as, run on a Machine, checked via COM1.

A program is `LIB` (serial output, GDT/TSS/IDT helpers) plus a test body that defines `main`.
The harness enters it in 64-bit mode at PROGRAM_BASE with the firmware's identity map, a kernel
stack below KERNEL_STACK and interrupts off. The program prints `key=value` lines and ends with
`DONE`; `run_program` returns them as a dict.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.firmware import long_mode
from imacpro.machine import Machine

PROGRAM_BASE = 0x100000
KERNEL_STACK = 0x90000


def suite_host_threads() -> int | None:
    """The loop the suite's programs run on: `IMACPRO_HOST_THREADS` as `imacpro boot` reads it
    (a count, or `auto`: one per host core, no more than the vCPUs), else the single-threaded
    loop, the deterministic reference. A test that needs one loop names it."""
    value = os.environ.get("IMACPRO_HOST_THREADS", "1")
    return None if value == "auto" else int(value)


SUITE_HOST_THREADS = suite_host_threads()

LIB = r"""
.code64
.text
.globl _start
_start:
    jmp main

# --- serial output (COM1 transmits at once) -------------------------------------------
putc:                       # al
    push %rdx
    mov $0x3f8, %dx
    outb %al, %dx
    pop %rdx
    ret
puts:                       # rsi: zero-terminated
    push %rax
1:  lodsb
    test %al, %al
    jz 2f
    call putc
    jmp 1b
2:  pop %rax
    ret
puthex:                     # rax, 16 digits
    push %rcx
    push %rax
    push %rbx
    mov %rax, %rbx
    mov $16, %ecx
1:  rol $4, %rbx
    mov %bl, %al
    and $0xf, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  call putc
    loop 1b
    pop %rbx
    pop %rax
    pop %rcx
    ret
.macro PRINT key, reg=%rax      # prints "key=<hex of reg>\n"
    push %rsi
    push %rax
    mov \reg, %rax
    push %rax
    lea 91f(%rip), %rsi
    call puts
    pop %rax
    call puthex
    mov $'\n', %al
    call putc
    pop %rax
    pop %rsi
    .section .rodata
91: .asciz "\key="
    .text
.endm
finish:
    lea done_msg(%rip), %rsi
    call puts
1:  cli
    hlt
    jmp 1b

# --- descriptor tables ------------------------------------------------------------------
# GDT: 0x08 kernel code, 0x10 kernel data, 0x18 user data, 0x20 user code, 0x28 TSS.
setup_gdt:
    lea tss(%rip), %rax             # TSS descriptor base
    mov %ax, gdt_tss+2(%rip)
    shr $16, %rax
    mov %al, gdt_tss+4(%rip)
    mov %ah, gdt_tss+7(%rip)
    shr $16, %rax
    mov %eax, gdt_tss+8(%rip)
    lgdt gdtr(%rip)
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    pushq $0x08
    lea 1f(%rip), %rax
    push %rax
    lretq
1:  mov $0x28, %ax
    ltr %ax
    lidt idtr(%rip)
    ret
set_gate:                   # rdi vector, rsi handler, edx ist, ecx dpl, r8d type (0xe/0xf)
    push %rax
    push %rdi
    shl $4, %rdi
    lea idt(%rip), %rax
    add %rax, %rdi
    mov %si, (%rdi)
    movw $0x08, 2(%rdi)
    mov %dl, 4(%rdi)
    mov %cl, %al
    shl $5, %al
    or %r8b, %al
    or $0x80, %al
    mov %al, 5(%rdi)
    mov %rsi, %rax
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    pop %rdi
    pop %rax
    ret

.macro GATE vector, handler, ist=0   # interrupt gate, DPL 0
    mov $\vector, %edi
    lea \handler(%rip), %rsi
    mov $\ist, %edx
    xor %ecx, %ecx
    mov $0xe, %r8d
    call set_gate
.endm

# TRY name, insn: run insn, then print "name=<the vector it raised>" (0: none). A program
# using it defines the quads `resume` and `vector`, and exception handlers that store their
# vector in `vector` and return to `resume`.
.macro TRY name, insn
    lea 1f(%rip), %rax
    mov %rax, resume(%rip)
    movq $0, vector(%rip)
    \insn
1:  mov vector(%rip), %rax
    PRINT \name
.endm

# RESUME_HANDLER vec, code: the handler h<vec> for TRY: it drops the error code if the exception
# pushes one (code 1), stores vec in `vector` and returns to `resume`.
.macro RESUME_HANDLER vec, code
h\vec:
    .if \code
    add $8, %rsp
    .endif
    movq $\vec, vector(%rip)
    push %rax
    mov resume(%rip), %rax
    mov %rax, 8(%rsp)
    pop %rax
    iretq
.endm

# TO_RING3 target, rflags: continue at target in ring 3 (code 0x23, data and stack 0x1b, the
# stack at 0x88000); an exception or `int` there switches to the stack it left, kernel_rsp.
.macro TO_RING3 target, rflags=0x2
    mov %rsp, kernel_rsp(%rip)
    mov %rsp, tss_rsp0(%rip)
    pushq $0x1b
    pushq $0x88000
    pushq $\rflags
    pushq $0x23
    lea \target(%rip), %rax
    push %rax
    iretq
.endm

.data
kernel_rsp: .quad 0
.align 16
gdt:
    .quad 0
    .quad 0x00af9b000000ffff
    .quad 0x00cf93000000ffff
    .quad 0x00cff3000000ffff
    .quad 0x00affb000000ffff
gdt_tss:
    .quad 0x0000890000000067
    .quad 0
gdt_end:
gdtr: .word gdt_end - gdt - 1
      .quad gdt
.align 16
tss:
    .long 0
tss_rsp0: .quad 0
    .quad 0, 0
    .quad 0
tss_ist1: .quad 0
tss_ist2: .quad 0
    .quad 0, 0, 0, 0, 0
    .quad 0
    .word 0, 0x68
.align 16
idtr: .word 256 * 16 - 1
      .quad idt
.align 16
idt: .fill 512, 8, 0
.section .rodata
done_msg: .asciz "DONE\n"
.text
"""


def assemble(body: str, base: int = PROGRAM_BASE) -> bytes:
    if shutil.which("as") is None or shutil.which("ld") is None:
        pytest.fail("GNU binutils (as, ld) are needed to build the bare-metal test programs")
    with tempfile.TemporaryDirectory() as tmp:
        src, obj, out = (Path(tmp) / n for n in ("p.S", "p.o", "p.bin"))
        src.write_text(LIB + body)
        built = subprocess.run(["as", "--64", "-o", str(obj), str(src)],
                               capture_output=True, text=True)
        if built.returncode:
            pytest.fail(f"assembler: {built.stderr}")
        subprocess.run(["ld", "-Ttext", hex(base), "--oformat=binary", "-o", str(out),
                        str(obj)], check=True, capture_output=True, text=True)
        return out.read_bytes()


def parse(output: str) -> dict[str, str]:
    values = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), []).append(value.strip())
    return {k: v[0] if len(v) == 1 else v for k, v in values.items()}


def allow_user_access(machine, size: int = 2 << 20) -> None:
    """Set the U bit on the firmware identity map's entries covering [0, size) (2 MiB pages
    under one PML4 and PDPT entry), so that ring-3 code may run and touch memory there."""
    user = 4
    entries = [(0x1000, 0), (0x2000, 0)] + [(0x3000, i) for i in range(-(-size // (2 << 20)))]
    for table, index in entries:
        entry, = struct.unpack_from("<Q", machine.ram.read(table + 8 * index, 8))
        machine.ram.write(table + 8 * index, struct.pack("<Q", entry | user))


def run_program(body: str, *, cpu: int = 8, memory: int = 32, cpus: int | None = 1,
                timeout_s: float = 30, setup=None, idle: str = "warp", slice_us: int = 2000,
                stop=None, host_threads: int | None = SUITE_HOST_THREADS):
    """Assemble and run `body`; returns (values, output, machine, result). `stop(machine,
    serial)`, called between slices, says when the run ends (default: at DONE); a test acts
    on the running machine there."""
    image = assemble(body)
    serial = bytearray()
    machine = Machine(configure(cpu=cpu, memory=memory), serial_output=serial.extend,
                      clock=Clock(realtime=True), idle=idle, cpus=cpus,
                      host_threads=host_threads)
    machine.ram.write(PROGRAM_BASE, image)
    long_mode.enter(machine.bsp.uc, machine.ram, rip=PROGRAM_BASE, rsp=KERNEL_STACK)
    if setup is not None:
        setup(machine)
    if stop is None:
        def stop(_machine, output):
            return b"DONE\n" in output
    result = machine.run(timeout_s=timeout_s, stop=lambda: stop(machine, serial),
                         slice_us=slice_us)
    output = serial.decode(errors="replace")
    return parse(output), output, machine, result
