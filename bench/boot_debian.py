#!/usr/bin/env python3
"""Boot time of the installed Debian: power-on to systemd's login prompt on COM1, imacpro beside
QEMU booting the same system, in the same run.

Set up once (not timed), from the cached system (`imacpro install --os debian` builds it the
first time, ~2 minutes with the network):
- imacpro: a machine in a temporary IMACPRO_HOME (8-core, 32 GB: 16 vCPUs) with Debian
  installed on its SSD, as a user installs it;
- QEMU: the same system installed onto a raw disk image (`imacpro install --disk`): the same
  kernel, initrd and command line (with that disk's root UUID), booted by QEMU TCG with that
  kernel and initrd, its NVMe with 4 KiB blocks, -cpu Skylake-Server, the same vCPUs and RAM
  (bench/qemu.py).
Every timed boot is the installed system's first: QEMU runs with -snapshot, and imacpro's
encrypted SSD image is put back to its state after the installation before each boot.
Timed: from starting `imacpro boot NAME --headless` (the process, the T2's check of the boot
image, the firmware and the boot) or QEMU, to "login: " on COM1.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from imacpro.disk.block import RawDiskImage  # noqa: E402
from imacpro.disk.esp import find_boot_image  # noqa: E402

LOGIN = b" login: "
NAME = "bench"
DISK_GB = 16


def imacpro(env: dict, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "imacpro", *args], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"imacpro {args[0]} failed: {done.stderr.strip()}")


def set_up(work: Path, env: dict) -> tuple[Path, Path]:
    """The machine with Debian on its SSD, and the same system on a raw disk for QEMU; the
    SSD image's pristine copy and the raw disk."""
    password = work / "password"
    password.write_text("bench\n")
    imacpro(env, "create", NAME, "--cpu", "8", "--memory", "32")
    install = ("install", NAME, "--os", "debian", "--password-file", str(password), "--yes")
    imacpro(env, *install)
    disk = work / "debian.raw"
    imacpro(env, *install, "--disk", str(disk), "--size", str(DISK_GB))
    ssd = ssd_image(env)
    pristine = work / "ssd-installed.img"
    subprocess.run(["cp", "--sparse=always", str(ssd), str(pristine)], check=True)
    return pristine, disk


def ssd_image(env: dict) -> Path:
    return Path(env["IMACPRO_HOME"]) / "machines" / NAME / "t2" / "ssd.img"


def boot_imacpro(env: dict, pristine: Path, work: Path, timeout_s: float) -> float:
    subprocess.run(["cp", "--sparse=always", str(pristine), str(ssd_image(env))], check=True)
    log = work / "imacpro-serial.log"
    log.unlink(missing_ok=True)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "imacpro", "boot", NAME, "--headless",
                                "--serial-log", str(log)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while LOGIN not in (log.read_bytes() if log.exists() else b""):
            if process.poll() is not None or time.perf_counter() - start > timeout_s:
                raise SystemExit("imacpro did not reach the login prompt: "
                                 + process.stderr.read().decode(errors="replace")[-2000:])
            time.sleep(0.05)
        return time.perf_counter() - start
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def boot_qemu(disk: Path, cpus: int, work: Path, timeout_s: float) -> float:
    with RawDiskImage(disk) as image:
        found = find_boot_image(image)
    files = SimpleNamespace(kernel=work / "vmlinuz", initrd=work / "initrd.img")
    files.kernel.write_bytes(found.kernel)
    files.initrd.write_bytes(found.initrd)
    argv = qemu.command(files, cpus, found.cmdline, "-snapshot",
                        "-drive", f"file={disk},if=none,id=ssd,format=raw",
                        "-device", "nvme,drive=ssd,serial=bench,logical_block_size=4096,"
                                   "physical_block_size=4096")
    start = time.perf_counter()
    qemu.run_until(argv, lambda seen: LOGIN in seen, timeout_s)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    measure(args.runs, args.timeout, args.markdown)


def measure(runs: int, timeout_s: float, markdown: bool) -> None:
    """Set up once, then `runs` boots of each, a line per pair (bench/boot.py --installed
    runs this too)."""
    qemu.require()
    with tempfile.TemporaryDirectory(prefix="imacpro-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "IMACPRO_HOME": str(work / "home")}
        pristine, disk = set_up(work, env)
        for _ in range(runs):
            theirs = boot_qemu(disk, 16, work, timeout_s)
            ours = boot_imacpro(env, pristine, work, timeout_s)
            if markdown:
                print(f"| 16 | {theirs:.1f} s | {ours:.1f} s | {ours / theirs:.2f}× |",
                      flush=True)
            else:
                print(f"16 CPUs  QEMU {theirs:7.1f} s   imacpro {ours:7.1f} s   "
                      f"{ours / theirs:5.2f}× QEMU", flush=True)


if __name__ == "__main__":
    main()
