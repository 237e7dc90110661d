#!/usr/bin/env python3
"""An interrupt's cost: IPIs between CPUs that sleep in HLT, imacpro beside QEMU, one run.

The guest is tests/cpu/test_wakeups.py's ping-pong: the BSP sends a fixed IPI to each AP in
turn and sleeps in HLT until the AP answers with one; the AP sleeps until called. A round is
two IPIs, two wake-ups from HLT, two handlers that read their APIC ID and EOI: the path of
every interrupt an idle CPU takes (a timer tick, a reschedule IPI, a completion handed over
from the CPU that took an SSD's interrupt to the one that asked).

One image serves both (bench/multiboot.py: QEMU's -kernel loads a stub that enters the
program in 64-bit mode, where imacpro's firmware enters it directly). Each machine
runs the program with ROUNDS and with ROUNDS / 10 rounds; the difference over the rounds
between is a round's host time, so start-up costs cancel out. QEMU runs with its multi-threaded
TCG (one host thread per vCPU), imacpro with --host-threads 1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cpu"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import multiboot  # noqa: E402
import qemu  # noqa: E402
from multiboot import PROGRAM_BASE  # noqa: E402
from baremetal import KERNEL_STACK, assemble  # noqa: E402
from test_wakeups import PING_PONG  # noqa: E402

from imacpro.catalog import configure  # noqa: E402
from imacpro.clock import Clock  # noqa: E402
from imacpro.firmware import long_mode  # noqa: E402
from imacpro.machine import Machine  # noqa: E402

def program(rounds: int, cpus: int) -> str:
    return PING_PONG.replace("CPUS", str(cpus)).replace("ROUND_COUNT", str(rounds))


def build_image(rounds: int, cpus: int, workdir: Path) -> tuple[Path, bytes]:
    """The multiboot image for QEMU, and the program alone for imacpro."""
    body = assemble(program(rounds, cpus), PROGRAM_BASE)
    return multiboot.image(body, KERNEL_STACK, workdir, f"pingpong{rounds}.bin"), body


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
    machine.run(timeout_s=600, stop=qemu.printed(serial, b"DONE"))
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
