#!/usr/bin/env python3
"""SSD throughput as the guest sees it: sequential direct-I/O dd, imacpro beside QEMU's NVMe.

Both boot the default guest's kernel and initramfs (build it first: `imacpro guest fetch`) with
the same logical CPU count, RAM and CPU family, and run the same commands in it: `dd` with
O_DIRECT, 1 MiB blocks, writing then reading the start of the NVMe namespace, timed by the
guest's busybox `time`; then random 4 KiB O_DIRECT reads within the part written
(bench/randread.c, built here and added to the initramfs) by one process and by one per vCPU
(queue depth 1 and N), timed by the program; and those again on a QEMU whose NVMe has one I/O
queue pair, as Linux drives Apple's controller (its SHARED_TAGS quirk: one I/O queue), where
QEMU's default gives each vCPU its own. imacpro's SSD is its real one: the Apple ANS2
controller over the T2's encrypted store (AES-XTS per 4 KiB sector, a sparse file). QEMU's is
its `nvme` device with 4 KiB logical blocks on a sparse raw file, host page cache on (as
imacpro's store uses it). imacpro runs its vCPUs on `--host-threads` (default auto, one per
host core, as `imacpro boot`). `--busy-cores N` keeps N host cores busy with another program
while both run, to see each on a host that has other work.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from imacpro.catalog import configure  # noqa: E402
from imacpro.devices.nvme import ssd_serial  # noqa: E402
from imacpro.firmware import boot as firmware  # noqa: E402
from imacpro.guest.build import exec_option  # noqa: E402
from imacpro.guest.cpio import CpioWriter  # noqa: E402
from imacpro.identity import new_identity  # noqa: E402
from imacpro.machine import Machine  # noqa: E402
from imacpro.t2.sep import SecureEnclave  # noqa: E402
from imacpro.t2.storage import EncryptedStore  # noqa: E402

DISK_BYTES = 4 * 2**30
DONE = re.compile(rb"IMACPRO-EXIT=(\d+)")
RANDOM_READS = 20_000   # 4 KiB reads per random-read run, shared between its processes
RANDREAD = re.compile(r"RANDREAD jobs=(\d+) reads=(\d+) ns=(\d+)")


def command(device: str, mib: int) -> str:
    write = f"dd if=/dev/zero of={device} bs=1M count={mib} oflag=direct"
    read = f"dd if={device} of=/dev/null bs=1M count={mib} iflag=direct"
    # busybox time reports on stderr: "real\t0m 2.57s"
    return (f"for i in 1 2 3; do echo WRITE; time {write}; echo READ; time {read}; done 2>&1")


def random_command(device: str, mib: int, cpus: int) -> str:
    """Random 4 KiB reads in the first `mib` MiB, one process then one per vCPU, three times."""
    runs = " ".join(f"randread {device} {mib} {RANDOM_READS // jobs} {jobs};"
                    for jobs in sorted({1, cpus}))
    return f"for i in 1 2 3; do {runs} done 2>&1"


def random_iops(console: str) -> dict[int, float]:
    """Best of the runs, 4 KiB reads a second, by the number of processes."""
    best: dict[int, float] = {}
    for jobs, reads, ns in RANDREAD.findall(console):
        best[int(jobs)] = max(best.get(int(jobs), 0.0), int(reads) / (int(ns) / 1e9))
    return best


def with_randread(guest, work: Path):
    """The guest with bench/randread.c built and added to its initramfs as /bin/randread (the
    kernel unpacks each archive of a concatenation in turn)."""
    program = work / "randread"
    subprocess.run(["cc", "-static", "-O2", "-s", "-o", str(program),
                    str(Path(__file__).resolve().parent / "randread.c")], check=True)
    archive = CpioWriter()
    archive.file("bin/randread", program.read_bytes(), mode=0o755)
    initrd = work / "initrd-randread"
    first = guest.initrd.read_bytes()
    # zeros between archives are skipped; the next header starts 4-byte aligned
    initrd.write_bytes(first + bytes(-len(first) % 512) + archive.finish())
    return dataclasses.replace(guest, initrd=initrd)


def throughput(console: str, mib: int) -> tuple[float, float]:
    """Best of the runs, MB/s (10^6 bytes), for write and read."""
    best = {"WRITE": 0.0, "READ": 0.0}
    for kind, minutes, seconds in re.findall(r"(WRITE|READ)\s.*?real\s+(\d+)m ?([\d.]+)s",
                                             console, re.S):
        elapsed = int(minutes) * 60 + float(seconds)
        best[kind] = max(best[kind], mib * 2**20 / 1e6 / max(elapsed, 1e-3))
    if not best["WRITE"] or not best["READ"]:
        raise SystemExit(f"no dd timings in the guest's output:\n{console[-2000:]}")
    return best["WRITE"], best["READ"]


def commands(cpus: int, mib: int) -> str:
    return f"{command('/dev/nvme0n1', mib)}; {random_command('/dev/nvme0n1', mib, cpus)}"


def run_imacpro(guest, cpus: int, mib: int, work: Path, timeout_s: float,
                host_threads: int | None, command: str | None = None) -> str:
    """imacpro's console after the guest ran `command` (default: this benchmark's)."""
    config = configure(cpu=8, memory=qemu.MEMORY_GIB)
    identity = new_identity(config)
    sep = SecureEnclave.create(work / "t2", identity.t2_ecid)
    with EncryptedStore.create(work / "t2", DISK_BYTES, sep) as store:
        serial = bytearray()
        machine = Machine(config, serial_output=serial.extend, cpus=cpus, ssd=store,
                          ssd_serial=ssd_serial(identity.serial_number),
                          host_threads=host_threads)
        firmware.install(machine, identity, guest.kernel.read_bytes(), guest.initrd.read_bytes(),
                         f"{guest.cmdline} {exec_option(command or commands(cpus, mib))}")
        machine.run(timeout_s=timeout_s, stop=qemu.printed(serial, DONE))
    return serial.decode(errors="replace")


def run_qemu(guest, cpus: int, mib: int, work: Path, timeout_s: float,
             queue_pairs: int | None = None, command: str | None = None) -> str:
    """QEMU's NVMe; `queue_pairs`: its I/O queues (default: as many as Linux asks, one per
    vCPU here); `command` as run_imacpro's."""
    disk = work / "qemu-disk.raw"
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)
    append = f"{guest.cmdline} {exec_option(command or commands(cpus, mib))}"
    argv = qemu.command(guest, cpus, append,
                        "-drive", f"file={disk},if=none,id=ssd,format=raw",
                        "-device", "nvme,drive=ssd,serial=bench,logical_block_size=4096,"
                                   "physical_block_size=4096"
                                   + (f",max_ioqpairs={queue_pairs}" if queue_pairs else ""))
    seen = qemu.run_until(argv, lambda seen: DONE.search(seen) is not None, timeout_s)
    return seen.decode(errors="replace")


def main() -> None:
    # 1 GiB: a 256 MiB read takes 0.1-0.3 s, which busybox `time`'s 10 ms steps cut to a
    # few figures (three runs on 2026-12-04 each gave exactly 2065 and 994 MB/s).
    # Linux gives Apple's controller one I/O queue (its SHARED_TAGS quirk for 106b:2005), and
    # QEMU's NVMe one per vCPU: the random reads run on QEMU a second time with one queue, the
    # same shape of device under the same driver.
    run(__doc__, run_qemu, run_imacpro, timeout=900, mib=1024, random_reads=True,
        run_qemu_one_queue=functools.partial(run_qemu, queue_pairs=1))


def run(doc: str, run_qemu, run_imacpro, timeout: float, mib: int = 256,
        random_reads: bool = False, run_qemu_one_queue=None) -> None:
    """A sequential dd benchmark's command line: both machines, then the rows. `run_qemu`
    takes (guest, cpus, mib, work directory, timeout), `run_imacpro` the same and the host
    threads (None: one per host core); both return the guest's console. With `random_reads`
    the guest has /bin/randread and the consoles carry its lines too; with
    `run_qemu_one_queue` too, the random reads are compared with that QEMU's as well."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=16)
    parser.add_argument("--mib", type=int, default=mib, help="MiB per dd run")
    parser.add_argument("--timeout", type=float, default=timeout)
    parser.add_argument("--host-threads", type=qemu.host_threads, default="auto",
                        metavar="N|auto",
                        help="imacpro's host threads for the vCPUs, as `imacpro boot "
                             "--host-threads` (default: auto, one per host core)")
    parser.add_argument("--busy-cores", type=int, default=0, metavar="N",
                        help="keep N host cores busy with another program (a loop) while "
                             "both machines run, as on a host with other work")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.busy_cores < 0:
        parser.error("--busy-cores: not a count of cores")
    guest = qemu.guest_or_exit()
    with tempfile.TemporaryDirectory(prefix="imacpro-bench-") as tmp, \
            qemu.busy_cores(args.busy_cores):
        work = Path(tmp)
        if random_reads:
            guest = with_randread(guest, work)
        theirs = run_qemu(guest, args.cpus, args.mib, work, args.timeout)
        one_queue = None if run_qemu_one_queue is None or not random_reads else \
            run_qemu_one_queue(guest, args.cpus, args.mib, work, args.timeout)
        ours = run_imacpro(guest, args.cpus, args.mib, work, args.timeout, args.host_threads)
    (qemu_write, qemu_read), (ours_write, ours_read) = (throughput(theirs, args.mib),
                                                        throughput(ours, args.mib))
    rows = [("sequential write", qemu_write, ours_write, "MB/s"),
            ("sequential read", qemu_read, ours_read, "MB/s")]
    if random_reads:
        qemu_iops, ours_iops = random_iops(theirs), random_iops(ours)
        if not qemu_iops or qemu_iops.keys() != ours_iops.keys():
            raise SystemExit(f"no randread figures in a guest's output:\n{ours[-2000:]}"
                             f"\n{theirs[-2000:]}")
        rows += [(f"random 4 KiB read, {jobs} process{'es' if jobs > 1 else ''}",
                  qemu_iops[jobs], ours_iops[jobs], "IOPS") for jobs in sorted(qemu_iops)]
        if one_queue is not None:
            single = random_iops(one_queue)
            if single.keys() != ours_iops.keys():
                raise SystemExit(f"no randread figures from QEMU with one I/O queue:\n"
                                 f"{one_queue[-2000:]}")
            rows += [(f"random 4 KiB read, {jobs} process{'es' if jobs > 1 else ''} "
                      "(QEMU: one I/O queue)", single[jobs], ours_iops[jobs], "IOPS")
                     for jobs in sorted(single)]
    report(rows, args.markdown)


def report(rows, markdown: bool) -> None:
    """(name, QEMU's figure, imacpro's, unit) rows, higher is better: a table's lines or text."""
    for name, theirs, ours, unit in rows:
        if markdown:
            print(f"| {name} | {theirs:,.0f} {unit} | {ours:,.0f} {unit} | "
                  f"{ours / theirs:.2f}× |")
        else:
            print(f"{name:30} QEMU {theirs:9,.0f} {unit:4}   imacpro {ours:9,.0f} {unit:4}   "
                  f"{ours / theirs:5.2f}× QEMU")


if __name__ == "__main__":
    main()
