#!/usr/bin/env python3
"""Boot time: power-on to the default guest's ready marker, imacpro beside QEMU TCG, one run.

Both boot the same kernel, initramfs and command line from the default guest (build it first:
`imacpro guest fetch`), with the same logical CPU count, 32 GiB of RAM and the same CPU family. QEMU's RAM is a
memory backend with reserve=off, the equivalent of imacpro's sparse RAM. The time is wall time
from starting the machine to the line IMACPRO-READY on COM1.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imacpro.catalog import configure  # noqa: E402
from imacpro.firmware import boot as firmware  # noqa: E402
from imacpro.guest.build import load  # noqa: E402
from imacpro.identity import new_identity  # noqa: E402
from imacpro.machine import Machine  # noqa: E402

READY = b"IMACPRO-READY"
MEMORY_GIB = 32
# QEMU emulates the same CPU family (an Intel Skylake server part, as the Xeon W-2100B is), so
# the guest kernel takes the same paths on both: with QEMU's default qemu64 (an AMD-vendor CPU
# without SMAP or ERMS) Linux skips page-table isolation and the MDS buffer clearing, and its
# syscalls and copies to user memory cost a tenth of what they cost on an iMac Pro's CPU.
QEMU_CPU = "Skylake-Server"


def boot_imacpro(guest, cpus: int, timeout_s: float) -> float:
    config = configure(cpu=8, memory=MEMORY_GIB)
    serial = bytearray()
    start = time.perf_counter()
    machine = Machine(config, serial_output=serial.extend, cpus=cpus)
    firmware.install(machine, new_identity(config), guest.kernel.read_bytes(),
                     guest.initrd.read_bytes(), guest.cmdline)
    result = machine.run(timeout_s=timeout_s, stop=lambda: READY in serial)
    if READY not in serial:
        raise SystemExit(f"imacpro did not reach the ready marker ({result.reason})")
    return time.perf_counter() - start


def boot_qemu(guest, cpus: int, timeout_s: float) -> float:
    command = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", QEMU_CPU, "-smp", str(cpus),
               "-object", f"memory-backend-ram,id=ram,size={MEMORY_GIB}G,reserve=off",
               "-machine", "q35,memory-backend=ram", "-m", f"{MEMORY_GIB}G",
               "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
               "-append", guest.cmdline, "-display", "none", "-serial", "stdio",
               "-monitor", "none", "-no-reboot"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL)
    seen = bytearray()
    try:
        while READY not in seen:
            chunk = process.stdout.read1(4096)
            if not chunk or time.perf_counter() - start > timeout_s:
                raise SystemExit("QEMU did not reach the ready marker")
            seen.extend(chunk)
        return time.perf_counter() - start
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if shutil.which("qemu-system-x86_64") is None:
        sys.exit("qemu-system-x86_64 is needed (Debian package qemu-system-x86)")
    guest = load()
    if guest is None:
        sys.exit("the default guest is not built: imacpro guest fetch")
    for cpus in args.cpus:
        qemu = boot_qemu(guest, cpus, args.timeout)
        ours = boot_imacpro(guest, cpus, args.timeout)
        if args.markdown:
            print(f"| {cpus} | {qemu:.1f} s | {ours:.1f} s | {ours / qemu:.2f}× |")
        else:
            print(f"{cpus:3} CPUs  QEMU {qemu:7.1f} s   imacpro {ours:7.1f} s   "
                  f"{ours / qemu:5.2f}× QEMU")


if __name__ == "__main__":
    main()
