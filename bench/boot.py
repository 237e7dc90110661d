#!/usr/bin/env python3
"""Boot time: power-on to the default guest's ready marker, imacpro beside QEMU TCG, one run.

With --installed: the installed Debian to systemd's login prompt instead (bench/boot_debian.py,
which says how), --runs times.

Both boot the same kernel, initramfs and command line from the default guest (build it first:
`imacpro guest fetch`), with the same logical CPU count, 32 GiB of RAM and the same CPU family
(bench/qemu.py). QEMU's RAM is a memory backend with reserve=off, the equivalent of imacpro's
sparse RAM. The time is wall time
from starting the machine to the line IMACPRO-READY on COM1. imacpro runs its vCPUs on as many
host threads as `imacpro boot` gives them (one per host core; `--host-threads N` to choose).

imacpro's machine has its 10GbE port on user-mode networking (passt), as `imacpro boot` gives
it by default (`--network none`: no cable, `imacpro boot --network none`). The guest prints
its ready marker after bringing the port up: with a cable it asks DHCP for an address, and
without one it waits 2 s for a carrier that does not come. QEMU's guest has no port its
drivers know (QEMU's NIC is not the iMac Pro's), so it goes on at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from imacpro.catalog import configure  # noqa: E402
from imacpro.firmware import boot as firmware  # noqa: E402
from imacpro.identity import new_identity  # noqa: E402
from imacpro.host_events import HostEvents  # noqa: E402
from imacpro.machine import Machine  # noqa: E402
from imacpro.net import link as net_link  # noqa: E402
from imacpro.net.link import Network  # noqa: E402

READY = b"IMACPRO-READY"


def boot_imacpro(guest, cpus: int, timeout_s: float, host_threads: int | None = 1,
                 network: str = "user") -> float:
    config = configure(cpu=8, memory=qemu.MEMORY_GIB)
    serial = bytearray()
    events = HostEvents()
    start = time.perf_counter()
    link = net_link.start(Network(network, required=network != "none"), events, print)
    machine = Machine(config, serial_output=serial.extend, cpus=cpus, host_threads=host_threads)
    try:
        firmware.install(machine, new_identity(config), guest.kernel.read_bytes(),
                         guest.initrd.read_bytes(), guest.cmdline)
        if link is not None:
            link.plug(machine.nic)
        result = machine.run(timeout_s=timeout_s, stop=qemu.printed(serial, READY),
                             events=events)
    finally:
        machine.close()
        if link is not None:
            link.close()
    if READY not in serial:
        raise SystemExit(f"imacpro did not reach the ready marker ({result.reason})")
    return time.perf_counter() - start


def boot_qemu(guest, cpus: int, timeout_s: float) -> float:
    start = time.perf_counter()
    qemu.run_until(qemu.command(guest, cpus, guest.cmdline), lambda seen: READY in seen,
                   timeout_s)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--host-threads", type=qemu.host_threads, default="auto",
                        metavar="N|auto",
                        help="imacpro's host threads for the vCPUs (boot --host-threads; "
                             "default: auto, one per host core, as `imacpro boot` gives)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--network", choices=["user", "none"], default="user",
                        help="imacpro's 10GbE port: on user-mode networking (passt), as "
                             "`imacpro boot` gives it by default, or no cable")
    parser.add_argument("--installed", action="store_true",
                        help="Debian installed on the SSD, booted to its login prompt by "
                             "systemd, beside QEMU booting the same disk (16 vCPUs)")
    parser.add_argument("--runs", type=int, default=3, help="with --installed: boots of each")
    args = parser.parse_args()
    if args.installed:
        import boot_debian
        boot_debian.measure(args.runs, max(args.timeout, 1200), args.markdown)
        return
    guest = qemu.guest_or_exit()
    for cpus in args.cpus:
        theirs = boot_qemu(guest, cpus, args.timeout)
        ours = boot_imacpro(guest, cpus, args.timeout, args.host_threads, args.network)
        if args.markdown:
            print(f"| {cpus} | {theirs:.1f} s | {ours:.1f} s | {ours / theirs:.2f}× |")
        else:
            print(f"{cpus:3} CPUs  QEMU {theirs:7.1f} s   imacpro {ours:7.1f} s   "
                  f"{ours / theirs:5.2f}× QEMU")


if __name__ == "__main__":
    main()
