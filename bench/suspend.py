#!/usr/bin/env python3
"""Suspend and resume: time and file size, imacpro beside QEMU's migrate to a file.

Both run the default guest (build it first: `imacpro guest fetch`) with 16 logical CPUs, 32 GiB
of RAM and the same CPU family (bench/qemu.py), and the same command in its shell fills N GiB of
tmpfs with half random bytes and half repeated text (no zero pages, which both skip). Then:
  imacpro  `imacpro suspend` (state sealed by the T2, zstd) and `imacpro boot --detach`
           (resume), each timed from the command's start to its return, through the CLI as
           a user runs them;
  QEMU     `stop`, no bandwidth cap, then `migrate "exec:cat > FILE"` on its monitor until
           `info migrate` says completed (what `virsh save` does), and a new QEMU with `-incoming "exec:cat FILE"`
           until the state is in and `cont` has it running (`virsh restore`).
After each resume the guest's shell must answer, with the tmpfs file intact (its checksum).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402

CPUS = 16
# 8 MiB of random bytes (incompressible within a 4 MiB chunk) and 8 MiB of text (one random
# base64 line repeated: compressible), appended in turn until the file has N GiB. A guest
# under TCG makes random bytes and checksums at a few MB/s, so the data repeats every 16 MiB,
# and the check reads samples of it.
FILL = ("mkdir -p /fill && mount -t tmpfs -o size=30g tmpfs /fill && cd /fill && "
        "head -c 8388608 /dev/urandom > random && "
        "line=$(head -c 600 /dev/urandom | base64 | tr -d '\\n') && "
        "yes \"$line\" | head -c 8388608 > text && "
        "for i in $(seq {rounds}); do cat random text >> data; done; rm random text; "
        "ls -l data | awk '{{print $5}}'; " + "{check}")
CHECK = ("for at in 0 1 2 3 5 8 13 21 34 55 89 144 233 377 610 987; do "
         "dd if=/fill/data bs=1M skip=$at count=1 2>/dev/null; done | md5sum")


def fill_command(gib: int) -> str:
    return FILL.format(rounds=gib * 64, check=CHECK)


# --- imacpro, through its CLI -------------------------------------------------------------------

def imacpro(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMACPRO_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "imacpro", *args], capture_output=True,
                            text=True, env=env, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"imacpro {' '.join(args[:2])}: {result.stderr.strip()}")
    return result


def run_imacpro(gib: int, work: Path) -> dict:
    home = work / "imacpro-home"
    imacpro(home, "create", "bench", "--cpu", "8", "--memory", str(qemu.MEMORY_GIB))
    imacpro(home, "install", "bench", "--yes")
    imacpro(home, "boot", "bench", "--detach")
    try:
        digest = imacpro(home, "exec", "bench", fill_command(gib)).stdout.split()[1]
        start = time.perf_counter()
        imacpro(home, "suspend", "bench")
        saved = time.perf_counter() - start
        size = (home / "machines" / "bench" / "suspended.state").stat().st_size
        start = time.perf_counter()
        imacpro(home, "boot", "bench", "--detach")
        resumed = time.perf_counter() - start
        if imacpro(home, "exec", "bench", CHECK).stdout.split()[0] != digest:
            raise SystemExit("imacpro: the tmpfs file changed across suspend and resume")
    finally:
        subprocess.run([sys.executable, "-m", "imacpro", "stop", "bench", "--force"],
                       env={**os.environ, "IMACPRO_HOME": str(home)}, capture_output=True)
    return {"save_s": saved, "size": size, "resume_s": resumed}


# --- QEMU, through its monitor ------------------------------------------------------------------

class Monitor:
    """QEMU's human monitor on a Unix socket."""

    def __init__(self, path: Path, timeout_s: float = 120):
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise SystemExit("QEMU's monitor did not come up") from None
                time.sleep(0.05)
        self._read_prompt()

    def _read_prompt(self) -> str:
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("QEMU's monitor closed")
            data += chunk
        return data.decode(errors="replace")

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self._read_prompt()


class Console:
    """The guest's COM1 on QEMU's stdio: type a command, wait for its end marker."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.seen = bytearray()

    def wait_for(self, marker: bytes, timeout_s: float = 3600) -> bytes:
        start = time.monotonic()
        while marker not in self.seen:
            chunk = self.process.stdout.read1(65536)
            if not chunk or time.monotonic() - start > timeout_s:
                raise SystemExit("QEMU's guest did not answer: "
                                 + self.seen[-1000:].decode(errors="replace"))
            self.seen.extend(chunk)
        return bytes(self.seen)

    def run(self, command: str) -> str:
        self.seen.clear()
        self.process.stdin.write(f"{command}; echo BENCH''-END\n".encode())
        self.process.stdin.flush()
        # The shell's echo of the typed line comes first (wrapped by the terminal where it
        # pleases): callers look for their answer in all of it.
        return self.wait_for(b"BENCH-END\r\n").decode(errors="replace")


def start_qemu(guest, work: Path, *extra: str) -> tuple[subprocess.Popen, Monitor]:
    monitor = work / "qemu-monitor.sock"
    monitor.unlink(missing_ok=True)
    argv = qemu.command(guest, CPUS, guest.cmdline)
    at = argv.index("-monitor")
    argv[at + 1] = f"unix:{monitor},server=on,wait=off"
    process = subprocess.Popen(argv + list(extra), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return process, Monitor(monitor)


def wait_monitor(monitor: Monitor, command: str, pattern: str, timeout_s: float = 3600) -> None:
    deadline = time.monotonic() + timeout_s
    while not re.search(pattern, monitor.command(command)):
        if time.monotonic() > deadline:
            raise SystemExit(f"QEMU: {command!r} never said {pattern!r}")
        time.sleep(0.02)


def run_qemu(guest, gib: int, work: Path) -> dict:
    state = work / "qemu.state"
    process, monitor = start_qemu(guest, work)
    try:
        console = Console(process)
        console.wait_for(b"IMACPRO-READY")
        digest = re.search(r"[0-9a-f]{32}", console.run(fill_command(gib))).group(0)
        start = time.perf_counter()
        monitor.command("stop")
        # No bandwidth cap (QEMU's default is 128 MiB/s, for live migration over a
        # network): `virsh save` lifts it for a file too.
        monitor.command("migrate_set_parameter max-bandwidth 100G")
        monitor.command(f'migrate "exec:cat > {state}"')
        wait_monitor(monitor, "info migrate", r"Migration status: completed")
        saved = time.perf_counter() - start
    finally:
        process.kill()
        process.wait()
    size = state.stat().st_size
    start = time.perf_counter()
    process, monitor = start_qemu(guest, work, "-incoming", f"exec:cat {state}")
    try:
        # The state came from a stopped VM, and QEMU keeps the run state it was saved in.
        wait_monitor(monitor, "info status", r"VM status: (running|paused)\r?\n")
        monitor.command("cont")
        resumed = time.perf_counter() - start
        console = Console(process)
        if digest not in console.run(CHECK):
            raise SystemExit("QEMU: the tmpfs file changed across save and restore")
    finally:
        process.kill()
        process.wait()
    state.unlink()
    return {"save_s": saved, "size": size, "resume_s": resumed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    guest = qemu.guest_or_exit()
    print("| touched | run | QEMU save | imacpro suspend | QEMU file | imacpro file | "
          "QEMU restore | imacpro resume |")
    print("|---|---|---|---|---|---|---|---|")
    for gib in args.gib:
        for run in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
                theirs = run_qemu(guest, gib, Path(tmp))
                ours = run_imacpro(gib, Path(tmp))
            print(f"| {gib} GiB | {run} | {theirs['save_s']:.1f} s | {ours['save_s']:.1f} s "
                  f"({ours['save_s'] / theirs['save_s']:.2f}×) | "
                  f"{theirs['size'] / 1e9:.2f} GB | {ours['size'] / 1e9:.2f} GB "
                  f"({ours['size'] / theirs['size']:.2f}×) | {theirs['resume_s']:.1f} s | "
                  f"{ours['resume_s']:.1f} s ({ours['resume_s'] / theirs['resume_s']:.2f}×) |",
                  flush=True)


if __name__ == "__main__":
    main()
