"""Which data path is faster per file size: copy_file_range or io_uring READ/WRITE?

Run as root on an otherwise idle machine:  python3 benchmarks/datapath.py
For each file size, a directory of files of that size (about 256 MiB in all,
at least 8 files) is copied with every file forced through one path, cold
(caches dropped) and warm, interleaved, several rounds; medians are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import uringsync

ALWAYS = 0  # copy_range_min=0: every file through copy_file_range
NEVER = 1 << 62  # never: every file through io_uring READ/WRITE


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def make(dirpath: Path, size: int, total: int) -> int:
    dirpath.mkdir(parents=True)
    n = max(8, total // size)
    block = os.urandom(min(size, 1 << 20))
    for i in range(n):
        with open(dirpath / f"f{i}", "wb") as f:
            left = size
            while left:
                f.write(block[: min(left, len(block))])
                left -= min(left, len(block))
    return n


def one(src: Path, dst: Path, threshold: int, cold: bool) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    if cold:
        drop_caches()
    t = time.perf_counter()
    res = uringsync.copy([src], dst, archive=True, copy_range_min=threshold)
    took = time.perf_counter() - t
    assert res.exit_code == 0, res.errors
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--total-mib", type=int, default=256)
    ap.add_argument(
        "--sizes",
        default="4096,65536,1048576,8388608,67108864,268435456",
        help="comma-separated file sizes in bytes",
    )
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="us-datapath-", dir="/var/tmp"))
    try:
        print(f"{'size':>10} {'files':>6} {'mode':>5} {'uring s':>8} {'cfr s':>8} {'cfr/uring':>9}")
        for size in (int(s) for s in args.sizes.split(",")):
            src = base / f"src{size}"
            n = make(src, size, args.total_mib << 20)
            for cold in (True, False):
                times: dict[int, list[float]] = {ALWAYS: [], NEVER: []}
                for _ in range(args.rounds):
                    for thr in (NEVER, ALWAYS):
                        times[thr].append(one(src, base / "dst", thr, cold))
                u, c = statistics.median(times[NEVER]), statistics.median(times[ALWAYS])
                mode = "cold" if cold else "warm"
                print(f"{size:>10} {n:>6} {mode:>5} {u:>8.3f} {c:>8.3f} {c / u:>9.2f}", flush=True)
            shutil.rmtree(src)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
