#!/usr/bin/env python3
"""The guest under stress for minutes: every vCPU busy with kernel-heavy and user-space work
at once, every result checked (imacpro/guest/stress.py says what runs).

    bench/stress.py --minutes 10 [--cores 8] [--runs 3] [--host-threads auto|N]

Each run creates a machine in a scratch installation (IMACPRO_HOME), boots the default guest with Debian's
stress-ng added (`imacpro boot --exec`, as a user runs it) and reports the checksummed rounds,
stress-ng's verdict, lockup lines and unexpected kernel warnings, and the wall time. The
exit status is 1 if any run had a problem. Build the guest first: `imacpro guest fetch`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imacpro import guest  # noqa: E402
from imacpro.guest import overlay, stress  # noqa: E402


def imacpro(env: dict, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imacpro", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_run(image: overlay.BootImage, name: str, cores: int, seconds: int,
            host_threads: str) -> dict:
    env = dict(os.environ)
    for step in (("create", name, "--cpu", str(cores)), ("install", name, "--yes")):
        done = imacpro(env, *step, timeout=900)
        if done.returncode:
            raise SystemExit(f"imacpro {' '.join(step)}: {done.stderr.strip()}")
    started = time.monotonic()
    done = imacpro(env, "boot", name, "--kernel", str(image.kernel), "--initrd",
                   str(image.initrd), "--append", image.cmdline, "--manifest",
                   str(image.manifest), "--host-threads", host_threads,
                   "--exec", f"stress-check {seconds}", timeout=seconds * 4 + 1800)
    wall = time.monotonic() - started
    result = stress.parse(done.stdout)
    problems = result.problems() + ([f"exit status {done.returncode}"] if done.returncode else [])
    return {"wall_s": wall, "rounds": result.rounds, "workers": len(result.workers),
            "problems": problems, "tail": done.stdout[-3000:] + done.stderr[-2000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--cores", type=int, default=8, help="the Xeon W's cores (vCPUs: twice)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--host-threads", default="auto")
    args = parser.parse_args()
    stress_ng = shutil.which("stress-ng")
    if stress_ng is None:
        raise SystemExit("stress-ng is not installed (apt-get install stress-ng)")
    seconds = round(args.minutes * 60)
    with tempfile.TemporaryDirectory(prefix="imacpro-stress-") as scratch:
        # One scratch installation: its platform key signs the image its machines trust.
        os.environ["IMACPRO_HOME"] = str(Path(scratch) / "home")
        image = overlay.with_programs(guest.build(progress=lambda line: None), [Path(stress_ng)],
                                      Path(scratch) / "image",
                                      {"bin/stress-check": stress.SCRIPT.encode()})
        failed = 0
        for n in range(1, args.runs + 1):
            outcome = one_run(image, f"stress{n}", args.cores, seconds, args.host_threads)
            verdict = "ok" if not outcome["problems"] else "FAILED"
            print(f"run {n}: {args.cores * 2} vCPUs, host threads {args.host_threads}, "
                  f"{seconds} s of stress: {verdict}; {outcome['rounds']} checksummed rounds "
                  f"on {outcome['workers']} workers, {outcome['wall_s']:.0f} s wall", flush=True)
            if outcome["problems"]:
                failed += 1
                print("\n".join(["  " + p for p in outcome["problems"]]), outcome["tail"],
                      sep="\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
