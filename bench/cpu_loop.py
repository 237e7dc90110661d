#!/usr/bin/env python3
"""CPU-bound guest loop: imacpro vs QEMU TCG vs raw Unicorn, the same machine code, one run.

One image serves all three. It is a multiboot kernel (QEMU's -kernel): a 32-bit entry builds an
identity map and enters 64-bit mode at ENTRY64, which imacpro's firmware enters directly. At
ENTRY64 a loop of ITERATIONS × 4 instructions runs, then "DONE" goes to COM1 and the guest
stops (QEMU: isa-debug-exit; imacpro: HLT with interrupts off).

Each configuration runs with the loop and with zero iterations; the difference is the loop's
time, so start-up costs cancel out. Prints a table; --markdown prints rows for PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from imacpro.catalog import configure  # noqa: E402
from imacpro.firmware import long_mode  # noqa: E402
from imacpro.machine import Machine  # noqa: E402

BASE = 0x100000
ENTRY64_OFFSET = 0x400
INSTRUCTIONS_PER_ITERATION = 4

SOURCE = r"""
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
    mov $0x1000, %edi               # PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 (2 MiB pages)
    xor %eax, %eax
    mov $0xC00, %ecx
    rep stosl
    movl $0x2003, 0x1000
    movl $0x3003, 0x2000
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, 0x3000(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jb 1b
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
    ljmp $0x10, $(BASE + ENTRY64_OFFSET)
.align 8
gdt: .quad 0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff
gdtr: .word 31
      .long BASE + (gdt - _start)
.org ENTRY64_OFFSET
.code64
entry64:
    mov $ITERATIONS, %rcx
    xor %rax, %rax
2:  add %rcx, %rax
    xor $0x55, %rax
    dec %rcx
    jnz 2b
    mov $0x3f8, %dx
    lea done(%rip), %rsi
3:  lodsb
    test %al, %al
    jz 4f
    outb %al, %dx
    jmp 3b
4:  mov $0xf4, %dx                  # QEMU isa-debug-exit
    xor %al, %al
    outb %al, %dx
5:  cli
    hlt
    jmp 5b
done: .asciz "DONE\n"
"""


def build(iterations: int, workdir: Path) -> Path:
    src = workdir / f"loop{iterations}.S"
    obj = src.with_suffix(".o")
    out = src.with_suffix(".bin")
    src.write_text(SOURCE.replace("ENTRY64_OFFSET", hex(ENTRY64_OFFSET))
                   .replace("ITERATIONS", str(max(iterations, 1))))
    subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True)
    subprocess.run(["ld", "-Ttext", hex(BASE), "--oformat=binary", "-o", str(out), str(obj)],
                   check=True)
    return out


def time_qemu(image: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", "512",
                    "-display", "none", "-serial", "null", "-monitor", "none", "-no-reboot",
                    "-device", "isa-debug-exit,iobase=0xf4,iosize=1", "-kernel", str(image)],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_imacpro(image: Path) -> float:
    serial = bytearray()
    machine = Machine(configure(cpu=8), serial_output=serial.extend, cpus=1, idle="warp")
    machine.ram.write(BASE, image.read_bytes())
    long_mode.enter(machine.bsp.uc, machine.ram, rip=BASE + ENTRY64_OFFSET, rsp=0x90000)
    start = time.perf_counter()
    machine.run(timeout_s=600, stop=lambda: b"DONE" in serial)
    return time.perf_counter() - start


def time_raw_unicorn(image: Path) -> float:
    """The loop on a plain Unicorn instance: no machine, no hooks."""
    import unicorn
    from unicorn import x86_const as x
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(BASE, 0x100000)
    uc.mem_write(BASE, image.read_bytes())
    loop_end = BASE + ENTRY64_OFFSET + image.read_bytes()[ENTRY64_OFFSET:].index(b"\x66\xba\xf8\x03")
    uc.reg_write(x.UC_X86_REG_RIP, BASE + ENTRY64_OFFSET)
    start = time.perf_counter()
    uc.emu_start(BASE + ENTRY64_OFFSET, loop_end)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    qemu.require()
    with tempfile.TemporaryDirectory() as tmp:
        loop = build(args.iterations, Path(tmp))
        empty = build(0, Path(tmp))
        rows = {}
        for name, fn in (("QEMU TCG", time_qemu), ("imacpro", time_imacpro),
                         ("raw Unicorn", time_raw_unicorn)):
            loop_s = min(fn(loop) for _ in range(args.repeat))
            empty_s = min(fn(empty) for _ in range(args.repeat))
            rows[name] = max(loop_s - empty_s, 1e-9)
    instructions = args.iterations * INSTRUCTIONS_PER_ITERATION
    qemu_s = rows["QEMU TCG"]
    for name, seconds in rows.items():
        mips = instructions / seconds / 1e6
        if args.markdown:
            print(f"| {name} | {seconds:.3f} s | {mips:.0f} | {seconds / qemu_s:.2f}× |")
        else:
            print(f"{name:12} {seconds:8.3f} s  {mips:8.0f} MIPS  {seconds / qemu_s:6.2f}× QEMU")


if __name__ == "__main__":
    main()
