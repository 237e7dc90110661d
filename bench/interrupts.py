#!/usr/bin/env python3
"""An interrupt's cost: IPIs between CPUs that sleep in HLT, imacpro beside QEMU, one run.

The guest is tests/cpu/test_wakeups.py's ping-pong: the BSP sends a fixed IPI to each AP in
turn and sleeps in HLT until the AP answers with one; the AP sleeps until called. A round is
two IPIs, two wake-ups from HLT, two handlers that read their APIC ID and EOI: the path of
every interrupt an idle CPU takes (a timer tick, a reschedule IPI, a completion handed over
from the CPU that took an SSD's interrupt to the one that asked).

One image serves both: a multiboot stub (QEMU's -kernel) builds an identity map of the low
4 GiB at 0x1000 (where imacpro's firmware has its own, which the APs' trampoline names) and
enters the program in 64-bit mode, where imacpro's firmware enters it directly. Each machine
runs the program with ROUNDS and with ROUNDS / 10 rounds; the difference over the rounds
between is a round's host time, so start-up costs cancel out. QEMU runs with its multi-threaded
TCG (one host thread per vCPU), imacpro with --host-threads 1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cpu"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from baremetal import KERNEL_STACK, assemble  # noqa: E402
from test_wakeups import PING_PONG  # noqa: E402

from imacpro.catalog import configure  # noqa: E402
from imacpro.clock import Clock  # noqa: E402
from imacpro.firmware import long_mode  # noqa: E402
from imacpro.machine import Machine  # noqa: E402

STUB_BASE = 0x100000
PROGRAM_BASE = 0x101000     # the program after the stub's page

# Multiboot (a.out kludge: the header gives the load addresses), 32-bit protected mode in,
# 64-bit out, the PICs masked (imacpro's firmware hands over with them masked too): PML4 0x1000 -> PDPT 0x2000 -> four page directories 0x3000-0x6FFF of 2 MiB
# pages (the top one uncached: the APIC's page is there).
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


def program(rounds: int, cpus: int) -> str:
    return PING_PONG.replace("CPUS", str(cpus)).replace("ROUND_COUNT", str(rounds))


def build_image(rounds: int, cpus: int, workdir: Path) -> tuple[Path, bytes]:
    """The multiboot image for QEMU, and the program alone for imacpro."""
    body = assemble(program(rounds, cpus), PROGRAM_BASE)
    src, obj, out = (workdir / f"stub.{ext}" for ext in ("S", "o", "bin"))
    src.write_text(STUB.replace("STACK", hex(KERNEL_STACK)).replace("PROGRAM", hex(PROGRAM_BASE)))
    subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True)
    subprocess.run(["ld", "-Ttext", hex(STUB_BASE), "--oformat=binary", "-o", str(out),
                    str(obj)], check=True)
    stub = out.read_bytes()
    assert len(stub) <= PROGRAM_BASE - STUB_BASE
    image = workdir / f"pingpong{rounds}.bin"
    image.write_bytes(stub.ljust(PROGRAM_BASE - STUB_BASE, b"\0") + body)
    return image, body


def time_qemu(image: Path, cpus: int) -> float:
    argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", qemu.QEMU_CPU,
            "-smp", str(cpus), "-machine", "q35", "-m", "512", "-display", "none",
            "-serial", "stdio", "-monitor", "none", "-no-reboot", "-kernel", str(image)]
    start = time.perf_counter()
    output = qemu.run_until(argv, lambda seen: b"DONE" in seen, 600)
    seconds = time.perf_counter() - start
    if b"rounds=" not in output:
        raise SystemExit("QEMU: the program did not report its rounds")
    return seconds


def time_imacpro(body: bytes, cpus: int, host_threads: int) -> float:
    serial = bytearray()
    machine = Machine(configure(cpu=8), serial_output=serial.extend, cpus=cpus,
                      clock=Clock(realtime=True), idle="sleep", host_threads=host_threads)
    machine.ram.write(PROGRAM_BASE, body)
    long_mode.enter(machine.bsp.uc, machine.ram, rip=PROGRAM_BASE, rsp=KERNEL_STACK)
    start = time.perf_counter()
    machine.run(timeout_s=600, stop=lambda: b"DONE" in serial)
    seconds = time.perf_counter() - start
    machine.close()
    if b"DONE" not in serial:
        raise SystemExit("imacpro: the program did not finish: "
                         + serial[-500:].decode(errors="replace"))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--cpus", type=int, default=4)
    parser.add_argument("--host-threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    qemu.require()
    few = max(args.rounds // 10, 1)
    with tempfile.TemporaryDirectory() as tmp:
        many_image, many_body = build_image(args.rounds, args.cpus, Path(tmp))
        few_image, few_body = build_image(few, args.cpus, Path(tmp))
        qemu_us = (time_qemu(many_image, args.cpus) - time_qemu(few_image, args.cpus)) \
            / (args.rounds - few) * 1e6
        ours_us = (time_imacpro(many_body, args.cpus, args.host_threads)
                   - time_imacpro(few_body, args.cpus, args.host_threads)) \
            / (args.rounds - few) * 1e6
    if args.markdown:
        print(f"| {args.cpus} | {args.host_threads} | {qemu_us:.1f} µs | {ours_us:.1f} µs "
              f"| {ours_us / qemu_us:.2f}× |")
    else:
        print(f"IPI round trip between sleeping CPUs ({args.cpus} vCPUs): QEMU {qemu_us:.1f} µs, "
              f"imacpro {ours_us:.1f} µs ({ours_us / qemu_us:.2f}× QEMU)")


if __name__ == "__main__":
    main()
