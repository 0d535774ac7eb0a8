"""Start-up, side by side: what a run costs before and around the copy.

    python benchmarks/startup.py [--runs 40] [--json benchmarks/results/startup.json]

Times whole commands (perf_counter around the process, warm cache, in a
temporary directory), interleaved round by round in a rotated order, and
prints each one's median and 90th percentile, and its median minus the
median of ``python3 -c pass`` (the interpreter the ``uringsync`` script
runs on).  The targets of issue #12 are differences to that baseline:
``uringsync --version`` within 40 ms, a copy of one small file within
60 ms.  Nothing is asserted: the figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _script() -> str:
    """The installed console script (what users run), else ``python -m``."""
    found = shutil.which("uringsync")
    return found or ""


def commands(work: Path, module: bool) -> dict[str, list[str]]:
    us = [_script()] if _script() and not module else [sys.executable, "-m", "uringsync"]
    return {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "cp FILE NEW": ["cp", str(work / "small"), str(work / "out-cp")],
        "uringsync --version": [*us, "--version"],
        "uringsync cp --help": [*us, "cp", "--help"],
        "uringsync cp FILE NEW": [*us, "cp", str(work / "small"), str(work / "out-us")],
        "cp -a TREE(200) NEW": ["cp", "-a", str(work / "tree"), str(work / "tree-cp")],
        "uringsync cp -a TREE(200) NEW": [
            *us,
            "cp",
            "-a",
            str(work / "tree"),
            str(work / "tree-us"),
        ],
    }


def _clean(work: Path) -> None:
    for name in ("out-cp", "out-us"):
        (work / name).unlink(missing_ok=True)
    for name in ("tree-cp", "tree-us"):
        shutil.rmtree(work / name, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument(
        "--checkout",
        default=None,
        help="time python3 -m uringsync run from this checkout (its extension built), "
        "e.g. an older one for a before/after",
    )
    args = ap.parse_args()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users have their .pyc files
    cwd = args.checkout  # python -m uringsync finds that checkout's package first
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # no disk in the figures
    with tempfile.TemporaryDirectory(prefix="uringsync-startup-", dir=shm) as tmp:
        work = Path(tmp)
        (work / "small").write_bytes(b"x" * 4096)
        for k in range(200):
            d = work / "tree" / f"d{k % 10}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{k}").write_bytes(b"y" * (k * 37 % 8192))
        cmds = commands(work, module=args.checkout is not None)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        names = list(cmds)
        for _ in range(3):  # warm-up: .pyc files, the page cache
            for name in names:
                subprocess.run(cmds[name], env=env, capture_output=True, check=False, cwd=cwd)
                _clean(work)
        for r in range(args.runs):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                subprocess.run(cmds[name], env=env, capture_output=True, check=False, cwd=cwd)
                times[name].append(time.perf_counter() - t0)
                _clean(work)
    base = statistics.median(times["python3 -c pass"])
    rows = []
    print(f"{'command':34} {'median ms':>10} {'p90 ms':>8} {'- python ms':>12}")
    for name in names:
        ts = sorted(times[name])
        med = statistics.median(ts)
        p90 = ts[int(0.9 * (len(ts) - 1))]
        rows.append({"command": name, "median_s": med, "p90_s": p90, "over_python_s": med - base})
        print(f"{name:34} {med * 1e3:10.1f} {p90 * 1e3:8.1f} {(med - base) * 1e3:12.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": args.runs, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
