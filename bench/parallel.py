#!/usr/bin/env python3
"""Parallel guest work: as many jobs as vCPUs at once, imacpro on one host thread and on
several, beside QEMU's multi-threaded TCG (MTTCG), in the same run.

Each machine boots the default guest's kernel and initramfs (build it first: `imacpro guest
fetch`) with the same vCPUs, RAM and CPU family, and runs one command: N jobs in the
background, each `md5sum` of a fixed stream from /dev/zero (user-space work and the kernel's
pipe copies), then `wait`, timed by the guest's busybox `time` (the guest's clock follows the
host's). Work that scales takes as long with N vCPUs as with one, given N host cores.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from imacpro.catalog import configure  # noqa: E402
from imacpro.firmware import boot as firmware  # noqa: E402
from imacpro.guest.build import exec_option  # noqa: E402
from imacpro.identity import new_identity  # noqa: E402
from imacpro.machine import Machine  # noqa: E402

DONE = re.compile(rb"IMACPRO-EXIT=(\d+)")
JOB_BYTES = 10_000_000


def command(jobs: int) -> str:
    job = f"head -c {JOB_BYTES} /dev/zero | md5sum >/dev/null"
    return (f"time sh -c 'for j in $(seq {jobs}); do ({job}) & done; wait' 2>&1")


def seconds(console: str) -> float:
    """The guest's `time` of the work (busybox: "real\\t0m 2.57s")."""
    found = re.search(r"real\s+(\d+)m ?([\d.]+)s", console)
    if found is None:
        raise SystemExit(f"no timing in the guest's output:\n{console[-2000:]}")
    return int(found[1]) * 60 + float(found[2])


def run_imacpro(guest, cpus: int, host_threads: int, timeout_s: float,
                work: str | None = None) -> float:
    """The guest's time of `work` (default: `cpus` jobs) on imacpro."""
    work = command(cpus) if work is None else work
    config = configure(cpu=8, memory=qemu.MEMORY_GIB)
    serial = bytearray()
    machine = Machine(config, serial_output=serial.extend, cpus=cpus, host_threads=host_threads)
    firmware.install(machine, new_identity(config), guest.kernel.read_bytes(),
                     guest.initrd.read_bytes(), f"{guest.cmdline} {exec_option(work)}")
    machine.run(timeout_s=timeout_s, stop=qemu.printed(serial, DONE))
    return seconds(serial.decode(errors="replace"))


def run_qemu(guest, cpus: int, timeout_s: float, work: str | None = None) -> float:
    """The guest's time of `work` (default: `cpus` jobs) on QEMU's multi-threaded TCG."""
    work = command(cpus) if work is None else work
    argv = qemu.command(guest, cpus, f"{guest.cmdline} {exec_option(work)}")
    argv[argv.index("-accel") + 1] = "tcg,thread=multi"
    seen = qemu.run_until(argv, lambda seen: DONE.search(seen) is not None, timeout_s)
    return seconds(seen.decode(errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 2, 16])
    parser.add_argument("--host-threads", type=int, default=os.cpu_count() or 1,
                        help="imacpro's host threads beside the single-threaded run "
                             "(default: the host's cores)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    guest = qemu.guest_or_exit()
    n = args.host_threads
    for _ in range(args.runs):
        for cpus in args.cpus:
            theirs = run_qemu(guest, cpus, args.timeout)
            one = run_imacpro(guest, cpus, 1, args.timeout)
            many = run_imacpro(guest, cpus, n, args.timeout)
            if args.markdown:
                print(f"| {cpus} | {theirs:.1f} s | {one:.1f} s ({one / theirs:.2f}×) | "
                      f"{many:.1f} s ({many / theirs:.2f}×) |", flush=True)
            else:
                print(f"{cpus:3} vCPUs  QEMU {theirs:6.1f} s   imacpro 1 thread {one:6.1f} s "
                      f"({one / theirs:.2f}×)   {n} threads {many:6.1f} s "
                      f"({many / theirs:.2f}×)", flush=True)


if __name__ == "__main__":
    main()
