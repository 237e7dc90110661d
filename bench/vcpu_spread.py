#!/usr/bin/env python3
"""What spreading work over many vCPUs costs: random SSD reads confined to fewer vCPUs.

bench/nvme.py's sixteen random readers (bench/randread.c: 4 KiB O_DIRECT reads, one in flight
per process) run on a 16-vCPU guest as the guest's scheduler places them, and again confined
by `taskset` to a quarter of the vCPUs and to one. The guest does the same reads in each; what
changes is how many vCPUs take part: spread, every read ends with its vCPU going idle and
another vCPU's interrupt waking it; confined, a vCPU switches from one reader to the next
without idling. An emulator whose cost per vCPU is high (each vCPU's own translations, TLB
and lookup tables cold in the host's caches when its turn comes) loses more by the spread
than one whose vCPUs share their translated code.

imacpro's SSD beside QEMU's NVMe with its default I/O queues (one per vCPU) and with one I/O
queue, as Linux drives Apple's controller (bench/nvme.py says why); each machine boots once
and runs every set --rounds times, the sets interleaved. Figures: 4 KiB reads a second, the
median of the rounds and their range.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nvme  # noqa: E402
import qemu  # noqa: E402

DEVICE = "/dev/nvme0n1"
SPAN_MIB = 256          # the reads fall within the first SPAN_MIB, written first
SET = re.compile(r"^SET (\S+)$")
QEMU, QEMU_ONE_QUEUE, IMACPRO = "QEMU", "QEMU, one I/O queue", "imacpro"   # the columns


def cpu_sets(cpus: int) -> list[str]:
    """Every vCPU, the first quarter of them, the first one (taskset -c lists)."""
    def span(count: int) -> str:
        return f"0-{count - 1}" if count > 1 else "0"
    return list(dict.fromkeys([span(cpus), span(max(1, cpus // 4)), "0"]))


def guest_command(sets: list[str], readers: int, reads: int, rounds: int) -> str:
    count = max(1, reads // readers)
    return (f"dd if=/dev/zero of={DEVICE} bs=1M count={SPAN_MIB} oflag=direct 2>/dev/null; "
            f"for i in $(seq {rounds}); do for s in {' '.join(sets)}; do echo SET $s; "
            f"taskset -c $s randread {DEVICE} {SPAN_MIB} {count} {readers}; done; done 2>&1")


def iops_by_set(console: str) -> dict[str, list[float]]:
    """Each set's runs, 4 KiB reads a second, from the SET lines and randread's."""
    found: dict[str, list[float]] = {}
    current = None
    for line in console.splitlines():
        line = line.strip()
        marker = SET.match(line)
        if marker:
            current = marker.group(1)
            continue
        figures = nvme.RANDREAD.search(line)
        if figures and current is not None:
            reads, ns = int(figures.group(2)), int(figures.group(3))
            found.setdefault(current, []).append(reads / (ns / 1e9))
            current = None
    return found


def cell(runs: list[float]) -> str:
    return f"{statistics.median(runs):,.0f} ({min(runs):,.0f}–{max(runs):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=16)
    parser.add_argument("--readers", type=int, default=16, help="reading processes")
    parser.add_argument("--reads", type=int, default=32_000,
                        help="4 KiB reads per run, shared between the readers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", metavar="LIST",
                        help="taskset -c lists (default: every vCPU, a quarter, one)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--host-threads", type=qemu.host_threads, default="auto",
                        metavar="N|auto", help="as `imacpro boot --host-threads`")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.cpus < 1 or args.readers < 1 or args.reads < 1 or args.rounds < 1:
        parser.error("--cpus, --readers, --reads and --rounds must be positive")
    sets = list(dict.fromkeys(args.sets or cpu_sets(args.cpus)))
    for listed in sets:
        if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", listed):
            parser.error(f"--sets: {listed!r} is not a taskset -c list")
    command = guest_command(sets, args.readers, args.reads, args.rounds)
    guest = qemu.guest_or_exit()
    with tempfile.TemporaryDirectory(prefix="imacpro-bench-") as tmp:
        work = Path(tmp)
        guest = nvme.with_randread(guest, work)
        consoles = {
            QEMU: nvme.run_qemu(guest, args.cpus, SPAN_MIB, work, args.timeout,
                                command=command),
            QEMU_ONE_QUEUE: nvme.run_qemu(guest, args.cpus, SPAN_MIB, work, args.timeout,
                                          queue_pairs=1, command=command),
            IMACPRO: nvme.run_imacpro(guest, args.cpus, SPAN_MIB, work, args.timeout,
                                      args.host_threads, command=command),
        }
    found = {name: iops_by_set(console) for name, console in consoles.items()}
    for name, runs in found.items():
        missing = [listed for listed in sets if len(runs.get(listed, [])) != args.rounds]
        if missing:
            raise SystemExit(f"{name}: no randread figures for {', '.join(missing)}:\n"
                             f"{consoles[name][-2000:]}")
    names = list(found)
    if args.markdown:
        print("| vCPUs the readers run on | " + " | ".join(names) + " | imacpro ÷ QEMU | "
              "imacpro ÷ QEMU, one queue |")
        print("|---" * (len(names) + 3) + "|")
    for listed in sets:
        ours = statistics.median(found[IMACPRO][listed])
        ratios = [ours / statistics.median(found[name][listed])
                  for name in (QEMU, QEMU_ONE_QUEUE)]
        cells = [cell(found[name][listed]) for name in names]
        if args.markdown:
            print(f"| {listed} | " + " | ".join(cells) + " | "
                  + " | ".join(f"{r:.2f}×" for r in ratios) + " |")
        else:
            print(f"{listed:8} " + "   ".join(f"{name} {c}" for name, c in zip(names, cells))
                  + "   " + "  ".join(f"{r:.2f}×" for r in ratios))


if __name__ == "__main__":
    main()
