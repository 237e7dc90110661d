#!/usr/bin/env python3
"""The T2's encrypted SSD store: sequential and random 4 KiB throughput, beside plain file I/O.

Runs on a temporary directory (a real SecureEnclave and EncryptedStore, 1 TB sparse image):
    sequential write / overwrite / read   SIZE bytes in 1 MiB requests (256 sectors)
    sequential read of unwritten space    zeros: no decryption
    random 4 KiB write / read             COUNT requests at random sectors of a SPAN-byte area
The same patterns with os.pwrite/os.pread on a plain sparse file give the baseline: the ratio is
the cost of the encryption layer. Data goes to the page cache: flush (fsync) is not timed, so the
figures are the store's CPU cost, not the host disk's. Best of --repeat runs.
Prints a table; --markdown prints rows for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imacpro.t2.sep import SecureEnclave  # noqa: E402
from imacpro.t2.storage import EncryptedStore  # noqa: E402

SECTOR = EncryptedStore.SECTOR_SIZE
CAPACITY = 10**12
BIG = 256   # sectors per sequential request (1 MiB)


class PlainFile:
    """The baseline: the same requests on a plain sparse file, no encryption."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, CAPACITY)

    def read(self, lba: int, count: int) -> bytes:
        return os.pread(self.fd, count * SECTOR, lba * SECTOR)

    def write(self, lba: int, data: bytes) -> None:
        os.pwrite(self.fd, data, lba * SECTOR)

    def close(self) -> None:
        os.close(self.fd)


def timed(requests) -> float:
    start = time.perf_counter()
    for call, lba, arg in requests:
        call(lba, arg)
    return time.perf_counter() - start


def run(dev, size: int, span: int, count: int, seed: int) -> dict[str, tuple[int, int, float]]:
    """{test: (requests, bytes, seconds)} for one device."""
    rng = random.Random(seed)
    chunk = rng.randbytes(BIG * SECTOR)
    small = [rng.randbytes(SECTOR) for _ in range(64)]
    seq = [BIG * i for i in range(size // (BIG * SECTOR))]
    unwritten = [lba + 4 * size // SECTOR for lba in seq]
    lbas = rng.sample(range(8 * size // SECTOR, 8 * size // SECTOR + span // SECTOR), count)
    read_order = rng.sample(lbas, len(lbas))
    plan = {
        "sequential write (1 MiB)": [(dev.write, lba, chunk) for lba in seq],
        "sequential overwrite (1 MiB)": [(dev.write, lba, chunk) for lba in seq],
        "sequential read (1 MiB)": [(dev.read, lba, BIG) for lba in seq],
        "sequential read, unwritten (1 MiB)": [(dev.read, lba, BIG) for lba in unwritten],
        "random write (4 KiB)": [(dev.write, lba, small[i % 64]) for i, lba in enumerate(lbas)],
        "random read (4 KiB)": [(dev.read, lba, 1) for lba in read_order],
    }
    return {name: (len(reqs), len(reqs) * (BIG if "1 MiB" in name else 1) * SECTOR,
                   timed(reqs)) for name, reqs in plan.items()}


def measure(args) -> list[tuple[str, float, float, float]]:
    best: dict[str, dict[str, tuple[int, int, float]]] = {"store": {}, "plain": {}}
    for repeat in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            t2 = Path(tmp) / "t2"
            store = EncryptedStore.create(t2, CAPACITY, SecureEnclave.create(t2, 0x1234_5678_9ABC))
            plain = PlainFile(Path(tmp) / "plain.img")
            for kind, dev in (("store", store), ("plain", plain)):
                for name, result in run(dev, args.size, args.span, args.count, repeat).items():
                    if name not in best[kind] or result[2] < best[kind][name][2]:
                        best[kind][name] = result
                dev.close()
    rows = []
    for name, (requests, nbytes, seconds) in best["store"].items():
        plain_seconds = best["plain"][name][2]
        rows.append((name, nbytes / seconds / 1e6, seconds / requests * 1e6,
                     nbytes / plain_seconds / 1e6))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256 * 2**20,
                        help="bytes per sequential test (default 256 MiB)")
    parser.add_argument("--span", type=int, default=2**30,
                        help="area of the random tests (default 1 GiB)")
    parser.add_argument("--count", type=int, default=20000, help="random requests")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is kept")
    parser.add_argument("--dir", default=None, help="where to put the images (default: $TMPDIR)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = measure(args)
    if args.markdown:
        print("| test | imacpro store | per request | plain file | store vs plain |")
        print("|---|---|---|---|---|")
        for name, mbs, us, plain in rows:
            print(f"| {name} | {mbs:,.0f} MB/s | {us:,.1f} µs | {plain:,.0f} MB/s | "
                  f"{mbs / plain:.2f}× |")
        return
    print(f"{'test':38} {'store MB/s':>11} {'µs/request':>11} {'plain MB/s':>11} {'ratio':>6}")
    for name, mbs, us, plain in rows:
        print(f"{name:38} {mbs:11,.0f} {us:11,.1f} {plain:11,.0f} {mbs / plain:6.2f}")


if __name__ == "__main__":
    main()
