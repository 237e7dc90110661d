#!/usr/bin/env python3
"""Random guest accesses to every device register of a machine, many more than the test makes.

Uses the same driver as tests/devices/test_fuzz_machine.py; any exception out of a device is a
bug and ends the run with its traceback. Prints the access rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "devices")]

from test_fuzz_machine import fuzz  # noqa: E402

from imacpro.catalog import configure  # noqa: E402
from imacpro.clock import Clock  # noqa: E402
from imacpro.machine import Machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accesses", type=int, default=2_000_000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    for seed in range(args.seeds):
        machine = Machine(configure(cpu=18), clock=Clock(realtime=False), cpus=36)
        targets = fuzz(machine, args.accesses // args.seeds, seed=seed)
    elapsed = time.perf_counter() - start
    print(f"{args.accesses} accesses over {targets} register blocks, {args.seeds} machines: "
          f"no exception, {args.accesses / elapsed:,.0f} accesses/s")


if __name__ == "__main__":
    main()
