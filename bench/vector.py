#!/usr/bin/env python3
"""The vector units under real work: imacpro beside QEMU's TCG (-cpu Skylake-Server).

Both boot the default guest's kernel with its initramfs and an overlay (imacpro/guest/
overlay.py) holding the host's Debian openssl, xz and zstd and the numeric workload of
tests/integration/programs/vector_workload.c built -O3 for -march=skylake-avx512 and for
-march=haswell (AVX2, FMA), and run the same commands, each timed in the guest:

  openssl speed -evp aes-256-gcm, and sha256     (OpenSSL picks its code by CPUID: AES-NI
                                                   with AVX/AVX-512 paths where offered)
  xz -6 and zstd -9 of a 16 MiB file               (the guest's own binaries, concatenated)
  the workload, AVX-512 build and AVX2 build       (GCC's vectorized loops, glibc's EVEX or
                                                   AVX2 string functions, intrinsics)

QEMU's TCG has AVX2 but no AVX-512, and keeps the Skylake-SP model: its run of the AVX-512
workload ends with SIGILL, which the table shows as such.

    bench/vector.py [--cpus 4] [--markdown]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from imacpro.catalog import configure  # noqa: E402
from imacpro.firmware import boot as firmware  # noqa: E402
from imacpro.guest import overlay  # noqa: E402
from imacpro.guest.build import exec_option  # noqa: E402
from imacpro.identity import new_identity  # noqa: E402
from imacpro.machine import Machine  # noqa: E402

PROGRAM = Path(__file__).resolve().parents[1] / "tests/integration/programs/vector_workload.c"
DONE = re.compile(rb"IMACPRO-EXIT=(\d+)")
TASKS = {   # name: the command, timed by busybox time
    "openssl aes-256-gcm": "/usr/bin/openssl speed -seconds 3 -bytes 16384 -evp aes-256-gcm",
    "openssl sha256": "/usr/bin/openssl speed -seconds 3 -bytes 16384 sha256",
    "xz -6": "/usr/bin/xz -T1 -6 -c /tmp/data > /dev/null",      # not busybox's (no -6)
    "zstd -9": "/usr/bin/zstd -q -T1 -9 -c /tmp/data > /dev/null",
    "workload (AVX-512)": "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/workload-avx512; done >/dev/null",
    "workload (AVX2)": "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/workload-avx2; done >/dev/null",
}
SCRIPT = "cat /usr/bin/* /bin/* | head -c 16777216 > /tmp/data\n" + "".join(
    f'echo "== {name}"; time sh -c "{command}" 2>&1; echo "status=$?"\n'
    for name, command in TASKS.items())


def build_image(work: Path):
    binaries = {}
    for name, march in (("workload-avx512", "skylake-avx512"), ("workload-avx2", "haswell")):
        binaries[f"bin/{name}"] = work / name
        subprocess.run(["gcc", "-O3", f"-march={march}", "-static", "-o", str(work / name),
                        str(PROGRAM), "-lm"], check=True)
    files = {name: path.read_bytes() for name, path in binaries.items()}
    files["bin/vector-bench"] = SCRIPT.encode()
    programs = [Path(shutil.which(p)) for p in ("openssl", "xz", "zstd")]
    return overlay.with_programs(qemu.guest_or_exit(), programs, work / "image", files)


def results(console: str) -> dict[str, float | None]:
    """Seconds per task, lower is better (None: it failed, e.g. SIGILL). openssl speed runs
    for a fixed time: its throughput becomes the seconds 100 MB would take."""
    out = {}
    for name, body, status in re.findall(r"== (.+?)\r?\n(.*?)status=(\d+)", console, re.S):
        name = name.strip()
        rate = re.search(r"^(?:AES-256-GCM|aes-256-gcm|sha256)\s+([\d.]+)k\s*$", body, re.M)
        real = re.search(r"real\s+(\d+)m ?([\d.]+)s", body)
        if status != "0":
            out[name] = None
        elif name.startswith("openssl") and rate:
            out[name] = 100e6 / (float(rate.group(1)) * 1000)
        elif real:
            out[name] = int(real.group(1)) * 60 + float(real.group(2))
        else:
            out[name] = None
    return out


def run_imacpro(image, cpus: int, timeout_s: float) -> str:
    config = configure(cpu=8, memory=qemu.MEMORY_GIB)
    serial = bytearray()
    machine = Machine(config, serial_output=serial.extend, cpus=cpus)
    firmware.install(machine, new_identity(config), image.kernel.read_bytes(),
                     image.initrd.read_bytes(), f"{image.cmdline} {exec_option('vector-bench')}")
    machine.run(timeout_s=timeout_s, stop=qemu.printed(serial, DONE))
    return serial.decode(errors="replace")


def run_qemu(image, cpus: int, timeout_s: float) -> str:
    argv = qemu.command(image, cpus, f"{image.cmdline} {exec_option('vector-bench')}")
    return qemu.run_until(argv, lambda seen: DONE.search(seen) is not None,
                          timeout_s).decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imacpro-bench-") as tmp:
        image = build_image(Path(tmp))
        theirs = results(run_qemu(image, args.cpus, args.timeout))
        ours = results(run_imacpro(image, args.cpus, args.timeout))
    for name in TASKS:
        q, o = theirs.get(name), ours.get(name)
        ratio = f"{o / q:.2f}×" if q and o else "-"
        qs = f"{q:.2f} s" if q else "failed (SIGILL)" if name.endswith("(AVX-512)") else "failed"
        os_ = f"{o:.2f} s" if o else "failed"
        if args.markdown:
            print(f"| {name} | {qs} | {os_} | {ratio} |")
        else:
            print(f"{name:22} QEMU {qs:>16}   imacpro {os_:>10}   {ratio}")


if __name__ == "__main__":
    main()
