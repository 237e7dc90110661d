#!/usr/bin/env python3
"""A USB drive's throughput as the guest sees it: sequential direct-I/O dd on a USB 3 flash
drive, imacpro's xHCI and bulk-only drive beside QEMU's `qemu-xhci` + `usb-storage`.

Both boot the default guest's kernel and initramfs (build it first: `imacpro guest fetch`) with
the same logical CPU count and RAM, attach a sparse raw image of the same size as a USB drive
(SuperSpeed on both), wait for Linux's usb-storage to give it a block device, and run
bench/nvme.py's commands on it: `dd` with O_DIRECT, 1 MiB blocks, writing then reading the
start of the drive, three times, timed by busybox's `time`; the best of each is kept.

    bench/usb.py [--cpus N] [--mib M] [--markdown]
"""

from __future__ import annotations

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
from nvme import command, run  # noqa: E402

DRIVE_BYTES = 2 * 2**30
DONE = re.compile(rb"IMACPRO-EXIT=(\d+)")
# The drive: the one SCSI disk with a medium (imacpro's card reader is an empty sda).
FIND_DRIVE = ("until for b in /sys/block/sd*; do [ \"$(cat $b/size 2>/dev/null)\" -gt 0 ] "
              "&& d=/dev/${b##*/}; done; [ -n \"$d\" ]; do sleep 1; done; ")


def drive_image(work: Path, name: str) -> Path:
    path = work / name
    with open(path, "wb") as f:
        f.truncate(DRIVE_BYTES)
    return path


def run_imacpro(guest, cpus: int, mib: int, work: Path, timeout_s: float,
                host_threads: int | None) -> str:
    config = configure(cpu=8, memory=qemu.MEMORY_GIB)
    serial = bytearray()
    machine = Machine(config, serial_output=serial.extend, cpus=cpus, host_threads=host_threads)
    machine.usb.attach_drive(drive_image(work, "imacpro-drive.raw"))
    firmware.install(machine, new_identity(config), guest.kernel.read_bytes(),
                     guest.initrd.read_bytes(),
                     f"{guest.cmdline} {exec_option(FIND_DRIVE + command('$d', mib))}")
    machine.run(timeout_s=timeout_s, stop=qemu.printed(serial, DONE))
    machine.close()
    return serial.decode(errors="replace")


def run_qemu(guest, cpus: int, mib: int, work: Path, timeout_s: float) -> str:
    drive = drive_image(work, "qemu-drive.raw")
    append = f"{guest.cmdline} {exec_option(FIND_DRIVE + command('$d', mib))}"
    argv = qemu.command(guest, cpus, append, "-device", "qemu-xhci,id=xhci",
                        "-drive", f"file={drive},if=none,id=stick,format=raw",
                        "-device", "usb-storage,bus=xhci.0,drive=stick")
    return qemu.run_until(argv, lambda seen: DONE.search(seen) is not None,
                          timeout_s).decode(errors="replace")


def main() -> None:
    run(__doc__, run_qemu, run_imacpro, timeout=1800)


if __name__ == "__main__":
    main()
