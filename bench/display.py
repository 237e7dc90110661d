#!/usr/bin/env python3
"""The screen under work: imacpro beside QEMU with a linear framebuffer of the same size.

Both boot the default guest's kernel and initramfs at 3840 × 2160 × 32 bits: imacpro's boot
framebuffer through Linux's efifb (compat mode), QEMU's standard VGA (`-vga std`'s device,
`-device VGA` at that size, as the only display) through Linux's bochs DRM driver and its
fbdev emulation (the modules, from the guest's own kernel package, ride in an overlay). In
the guest, timed by busybox's time:

  fill     dd of a whole frame to /dev/fb0, 100 times (3.3 GB through the fbdev write path)
  scroll   1000 lines printed on tty1 (fbcon redraws the screen at every line)

Then, on imacpro alone, through the CLI as a user does it:

  screenshot   `imacpro screenshot` of a running machine, the 5K PNG: wall time
  busy guest   a shell loop timed in the guest, alone and with a screenshot every 2 s: the
               slowdown screenshots cause

    bench/display.py [--markdown]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from imacpro.catalog import configure  # noqa: E402
from imacpro.firmware import boot as firmware  # noqa: E402
from imacpro.guest import overlay  # noqa: E402
from imacpro.guest.build import DOWNLOADS_DIR, collect_modules, exec_option, guest_dir  # noqa
from imacpro.identity import new_identity  # noqa: E402
from imacpro.machine import Machine  # noqa: E402

WIDTH, HEIGHT = 3840, 2160
DONE = re.compile(rb"IMACPRO-EXIT=(\d+)")
BOCHS = ("bochs",)                      # QEMU's side: the DRM driver and what it needs
TASKS = {
    "fill /dev/fb0 ×100": "for i in \\$(seq 100); do dd if=/tmp/frame of=/dev/fb0 bs=1M "
                          "2>/dev/null; done",
    "scroll 1000 lines": "seq 1000 > /dev/tty1",
}
SCRIPT = (
    "if grep -q 0x1234 /sys/bus/pci/devices/*/vendor; then\n"
    "  for m in $(cat /lib/modules/extra/order); do insmod /lib/modules/extra/$m.ko; done\n"
    "  sleep 2\n"
    "fi\n"
    "cat /sys/class/graphics/fb0/virtual_size\n"
    f"head -c {WIDTH * HEIGHT * 4} /dev/urandom > /tmp/frame\n"
    + "".join(f'echo "== {name}"; time sh -c "{command}" 2>&1; echo "status=$?"\n'
              for name, command in TASKS.items()))
BUSY = "time sh -c 'i=0; while [ $i -lt 600000 ]; do i=$((i+1)); done' 2>&1"


def build_image(work: Path):
    deb = next((guest_dir() / DOWNLOADS_DIR).glob("linux-image-*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "kernel")], check=True)
    modules = collect_modules(next((work / "kernel/lib/modules").iterdir()), BOCHS)
    files = {f"lib/modules/extra/{name}.ko": ko for name, ko in modules.items()}
    files["lib/modules/extra/order"] = " ".join(modules).encode()
    files["bin/display-bench"] = SCRIPT.encode()
    return overlay.with_programs(qemu.guest_or_exit(), [], work / "image", files)


def seconds(console: str) -> dict[str, float | None]:
    out = {}
    for name, body, status in re.findall(r"== (.+?)\r?\n(.*?)status=(\d+)", console, re.S):
        real = re.search(r"real\s+(\d+)m ?([\d.]+)s", body)
        out[name.strip()] = int(real.group(1)) * 60 + float(real.group(2)) \
            if status == "0" and real else None
    return out


def run_imacpro(image, timeout_s: float) -> str:
    config = configure(cpu=8, memory=qemu.MEMORY_GIB)
    serial = bytearray()
    machine = Machine(config, serial_output=serial.extend, cpus=1)
    firmware.install(machine, new_identity(config), image.kernel.read_bytes(),
                     image.initrd.read_bytes(),
                     f"{image.cmdline} {exec_option('display-bench')}")
    machine.run(timeout_s=timeout_s, stop=qemu.printed(serial, DONE))
    return serial.decode(errors="replace")


def run_qemu(image, timeout_s: float) -> str:
    argv = qemu.command(image, 1, f"{image.cmdline} {exec_option('display-bench')}",
                        "-vga", "none",
                        "-device", f"VGA,edid=on,xres={WIDTH},yres={HEIGHT},vgamem_mb=64")
    return qemu.run_until(argv, lambda seen: DONE.search(seen) is not None,
                          timeout_s).decode(errors="replace")


def cli(*args: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imacpro", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


def screenshots(work: Path) -> tuple[float, list[float], list[float]]:
    """(seconds per 5K screenshot, busy loop alone, busy loop with screenshots: three of
    each, taken in turn)."""
    env = {**os.environ, "IMACPRO_HOME": str(work / "home")}
    for step in (("create", "bench"), ("install", "bench", "--yes"),
                 ("boot", "bench", "--detach")):
        done = cli(*step, env=env)
        if done.returncode:
            sys.exit(f"imacpro {' '.join(step)}: {done.stderr.strip()}")
    try:
        started = time.monotonic()
        for i in range(3):
            cli("screenshot", "bench", "-o", str(work / f"s{i}.png"), env=env)
        per_shot = (time.monotonic() - started) / 3

        def busy() -> float:
            out = cli("exec", "bench", BUSY, env=env).stdout
            real = re.search(r"real\s+(\d+)m ?([\d.]+)s", out)
            return int(real.group(1)) * 60 + float(real.group(2))
        alone, with_shots = [], []
        for _ in range(3):
            alone.append(busy())
            taker = subprocess.Popen(
                ["sh", "-c", f"while :; do {sys.executable} -m imacpro screenshot bench -o "
                             f"{work}/busy.png >/dev/null 2>&1; sleep 2; done"], env=env)
            try:
                with_shots.append(busy())
            finally:
                taker.kill()
                taker.wait()
        return per_shot, alone, with_shots
    finally:
        cli("stop", "bench", "--force", env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imacpro-bench-") as tmp:
        work = Path(tmp)
        image = build_image(work)
        theirs = seconds(run_qemu(image, args.timeout))
        ours = seconds(run_imacpro(image, args.timeout))
        per_shot, alone, with_shots = screenshots(work)
    for name in TASKS:
        q, o = theirs.get(name), ours.get(name)
        ratio = f"{o / q:.2f}×" if q and o else "-"
        line = (f"| {name} | {q:.2f} s | {o:.2f} s | {ratio} |" if args.markdown and q and o
                else f"{name:20} QEMU {q} s   imacpro {o} s   {ratio}")
        print(line)
    print(f"screenshot (5120 × 2880 PNG): {per_shot:.2f} s")
    a, w = sorted(alone)[1], sorted(with_shots)[1]
    print(f"busy guest (median of 3): {a:.2f} s alone, {w:.2f} s with a screenshot every 2 s "
          f"({(w / a - 1) * 100:+.1f}%); alone {alone}, with {with_shots}")


if __name__ == "__main__":
    main()
