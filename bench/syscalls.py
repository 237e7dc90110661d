#!/usr/bin/env python3
"""System calls: a guest process that does little else, imacpro beside QEMU TCG, in the same run.

The Xeon W is affected by Meltdown, so Linux isolates the kernel's page tables (PTI) and
writes CR3 at every entry to the kernel and every return to user mode; with PCIDs it keeps
the TLB across them (docs/CPU.md). The work: `dd bs=1` copying N bytes from /dev/zero to
/dev/null, a read and a write system call per byte, timed by the guest's busybox `time`
(the guest's clock follows the host's). Both boot the default guest (`imacpro guest fetch`)
with one vCPU, 32 GiB and the same CPU family; QEMU's TCG offers no PCID.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import parallel  # noqa: E402
import qemu  # noqa: E402


def work(count: int) -> str:
    return f"time dd if=/dev/zero of=/dev/null bs=1 count={count} 2>&1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300_000, help="bytes, a read and a "
                        "write system call each (default: 300000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    guest = qemu.guest_or_exit()
    calls = 2 * args.count
    for _ in range(args.runs):
        theirs = parallel.run_qemu(guest, 1, args.timeout, work(args.count))
        ours = parallel.run_imacpro(guest, 1, 1, args.timeout, work(args.count))
        if args.markdown:
            print(f"| {theirs:.2f} s ({theirs / calls * 1e6:.2f} µs) | {ours:.2f} s "
                  f"({ours / calls * 1e6:.2f} µs) | {ours / theirs:.2f}× |", flush=True)
        else:
            print(f"{calls} system calls  QEMU {theirs:6.2f} s ({theirs / calls * 1e6:5.2f} µs "
                  f"each)   imacpro {ours:6.2f} s ({ours / calls * 1e6:5.2f} µs each, "
                  f"{ours / theirs:.2f}×)", flush=True)


if __name__ == "__main__":
    main()
