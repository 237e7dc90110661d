#!/usr/bin/env python3
"""CPU-bound guest loop: imacpro vs QEMU TCG vs raw Unicorn, the same machine code, one run.

One program serves all three: a loop of ITERATIONS × 4 instructions in 64-bit mode, then
"DONE" to COM1, and the guest stops (QEMU: isa-debug-exit; imacpro: HLT with interrupts off).
QEMU's -kernel loads it behind bench/multiboot.py's stub, which enters it in 64-bit mode, as
imacpro's firmware does directly.

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

import multiboot  # noqa: E402
import qemu  # noqa: E402
from imacpro.catalog import configure  # noqa: E402
from imacpro.firmware import long_mode  # noqa: E402
from imacpro.machine import Machine  # noqa: E402
from multiboot import PROGRAM_BASE  # noqa: E402

INSTRUCTIONS_PER_ITERATION = 4
STACK = 0x90000

# The loop, entered in 64-bit mode at PROGRAM_BASE (bench/multiboot.py's stub enters it on QEMU).
LOOP = r"""
.code64
.globl _start
_start:
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


def build(iterations: int, workdir: Path) -> tuple[Path, bytes]:
    """The multiboot image for QEMU, and the loop alone for imacpro and raw Unicorn."""
    src = workdir / f"loop{iterations}.S"
    obj = src.with_suffix(".o")
    out = src.with_suffix(".bin")
    src.write_text(LOOP.replace("ITERATIONS", str(max(iterations, 1))))
    subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True)
    subprocess.run(["ld", "-Ttext", hex(PROGRAM_BASE), "--oformat=binary", "-o", str(out),
                    str(obj)], check=True)
    program = out.read_bytes()
    return multiboot.image(program, STACK, workdir, f"image{iterations}.bin"), program


def time_qemu(image: Path, _program: bytes) -> float:
    start = time.perf_counter()
    subprocess.run(["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", "512",
                    "-display", "none", "-serial", "null", "-monitor", "none", "-no-reboot",
                    "-device", "isa-debug-exit,iobase=0xf4,iosize=1", "-kernel", str(image)],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_imacpro(_image: Path, program: bytes) -> float:
    serial = bytearray()
    machine = Machine(configure(cpu=8), serial_output=serial.extend, cpus=1, idle="warp")
    machine.ram.write(PROGRAM_BASE, program)
    long_mode.enter(machine.bsp.uc, machine.ram, rip=PROGRAM_BASE, rsp=STACK)
    start = time.perf_counter()
    machine.run(timeout_s=600, stop=qemu.printed(serial, b"DONE"))
    return time.perf_counter() - start


def time_raw_unicorn(_image: Path, program: bytes) -> float:
    """The loop on a plain Unicorn instance: no machine, no hooks."""
    import unicorn
    from unicorn import x86_const as x
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(PROGRAM_BASE, 0x100000)
    uc.mem_write(PROGRAM_BASE, program)
    loop_end = PROGRAM_BASE + program.index(b"\x66\xba\xf8\x03")
    uc.reg_write(x.UC_X86_REG_RIP, PROGRAM_BASE)
    start = time.perf_counter()
    uc.emu_start(PROGRAM_BASE, loop_end)
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
            loop_s = min(fn(*loop) for _ in range(args.repeat))
            empty_s = min(fn(*empty) for _ in range(args.repeat))
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
