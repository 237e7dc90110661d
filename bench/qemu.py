"""QEMU beside imacpro in the benches: the same guest files, CPU family, CPU count and RAM."""

from __future__ import annotations

import argparse
import contextlib
import re
import select
import shutil
import subprocess
import sys
import time
from typing import Callable

MEMORY_GIB = 32
# QEMU emulates the same CPU family (an Intel Skylake server part, as the Xeon W-2100B is), so
# the guest kernel takes the same paths on both: with QEMU's default qemu64 (an AMD-vendor CPU
# without SMAP or ERMS) Linux skips page-table isolation and the MDS buffer clearing, and its
# syscalls and copies to user memory cost a tenth of what they cost on an iMac Pro's CPU.
QEMU_CPU = "Skylake-Server"


def command(guest, cpus: int, append: str, *devices: str) -> list[str]:
    """qemu-system-x86_64 booting the guest's kernel and initramfs, COM1 on stdout."""
    return ["qemu-system-x86_64", "-accel", "tcg", "-cpu", QEMU_CPU, "-smp", str(cpus),
            "-object", f"memory-backend-ram,id=ram,size={MEMORY_GIB}G,reserve=off",
            "-machine", "q35,memory-backend=ram", "-m", f"{MEMORY_GIB}G",
            "-kernel", str(guest.kernel), "-initrd", str(guest.initrd), "-append", append,
            *devices, "-display", "none", "-serial", "stdio", "-monitor", "none",
            "-no-reboot"]


def run_until(argv: list[str], done: Callable[[bytes], bool], timeout_s: float) -> bytes:
    """Run QEMU until `done(console output)`; the output. Exits the bench if it never is."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL)
    seen = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while not done(bytes(seen)):
            # A guest that hangs prints nothing: wait for output no longer than the deadline.
            left = deadline - time.monotonic()
            ready = select.select([process.stdout], [], [], max(0.0, left))[0]
            chunk = process.stdout.read1(4096) if ready else b""
            if not chunk:
                raise SystemExit("QEMU did not finish: "
                                 + seen[-2000:].decode(errors="replace"))
            seen.extend(chunk)
    finally:
        process.kill()
        process.wait()
    return bytes(seen)


def printed(output: bytearray, marker: bytes | re.Pattern) -> Callable[[], bool]:
    """A `stop()` for imacpro's run loop: whether `output` (the console's, growing) holds
    `marker` yet. Each look searches only what came since the last one (and a marker's
    length before it): the loop asks on every wake-up of its main thread, under the
    machine's lock, and a search of the whole console each time took that lock from the
    vCPUs for as long as the output was long (the console's own exit detection,
    imacpro/console.py, scans the same way)."""
    pattern = marker if isinstance(marker, re.Pattern) else re.compile(re.escape(marker))
    overlap = 64                  # longer than any marker the benches wait for
    looked = 0

    def stop() -> bool:
        nonlocal looked
        start = max(0, looked - overlap)
        looked = len(output)
        return pattern.search(output, start) is not None
    return stop


def require() -> None:
    """Exit the bench, saying what to install, if QEMU is not there."""
    if shutil.which("qemu-system-x86_64") is None:
        sys.exit("qemu-system-x86_64 is needed (Debian package qemu-system-x86)")


def guest_or_exit():
    """The default guest to boot on both, once QEMU is known to be there."""
    from imacpro.guest.build import load
    require()
    guest = load()
    if guest is None:
        sys.exit("the default guest is not built: imacpro guest fetch")
    return guest


def host_threads(text: str) -> int | None:
    """A bench's `--host-threads` value, as `imacpro boot --host-threads` takes it: a count of
    host threads for imacpro's vCPUs, or None for `auto` (the Machine gives one per host core)."""
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a count of threads or auto: {text!r}")
    return int(text)


@contextlib.contextmanager
def busy_cores(count: int):
    """`count` other programs, each keeping a host core busy (a loop that never waits), for
    as long as the block runs: a host that has other work, as a user's often has."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                              stdin=subprocess.DEVNULL) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
