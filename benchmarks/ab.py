"""Two builds of uringsync side by side with cp -a: did a change make it slower?

    python benchmarks/ab.py --old /path/to/old/checkout --new . [--entries 50000] [--rounds 5]

Each checkout needs its extension built (``python build_ffi.py`` in it).  A fresh
ext4 is made in a file under ``--workdir`` (loop device, direct I/O, noatime), a
tree and a big file are generated in it with the bench's generator, and then,
round after round, ``cp -a``, the old and the new ``uringsync cp -a`` copy them
cold (caches dropped) and warm, in a rotated order, each into a fresh
destination (copies are deleted between rounds, never while timing).  It prints the median seconds
and each build's ratio to cp -a per workload and cache state.  Root only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
TOOLS = ("cp", "old", "new")


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def read_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                with open(p, "rb") as fh:
                    while fh.read(4 * MiB):
                        pass


def command(
    tool: str, src: Path, dst: Path, checkouts: dict[str, Path]
) -> tuple[list[str], dict[str, str]]:
    if tool == "cp":
        return ["cp", "-a", str(src), str(dst)], dict(os.environ)
    env = {**os.environ, "PYTHONPATH": str(checkouts[tool])}
    return [sys.executable, "-m", "uringsync", "cp", "-a", str(src), str(dst)], env


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--entries", type=int, default=50_000)
    ap.add_argument("--big", type=int, default=1024, help="big file size in MiB (0: none)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    ap.add_argument("--image-gib", type=int, default=12)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("ab.py: needs root (loop device, drop_caches)", file=sys.stderr)
        return 1
    checkouts = {"old": a.old.resolve(), "new": a.new.resolve()}
    sys.path.insert(0, str(checkouts["new"]))
    from uringsync.bench import BigFileSpec, TreeSpec, generate

    tmp = Path(tempfile.mkdtemp(prefix="uringsync-ab-", dir=a.workdir))
    img, mnt = tmp / "fs.img", tmp / "mnt"
    mnt.mkdir()
    sh("fallocate", "-l", f"{a.image_gib}G", str(img))
    sh("mkfs.ext4", "-q", "-N", str(max(a.entries * 12, 100_000)), str(img))
    dev = sh("losetup", "--direct-io=on", "--find", "--show", str(img))
    try:
        sh("mount", "-o", "noatime", dev, str(mnt))
        try:
            work: dict[str, Path] = {}
            (mnt / "src").mkdir()
            if a.entries:
                work["tree"] = mnt / "src" / "tree"
                generate(TreeSpec(entries=a.entries, seed=1), work["tree"])
            if a.big:
                work["bigfile"] = mnt / "src" / "big"
                generate(BigFileSpec(size=a.big * MiB, seed=1), work["bigfile"])
            os.sync()
            times: dict[tuple[str, str, str], list[float]] = {}
            n = 0
            for r in range(a.rounds):
                for name, src in work.items():
                    for cache in ("cold", "warm"):
                        order = TOOLS[r % 3 :] + TOOLS[: r % 3]
                        for tool in order:
                            n += 1
                            dst = mnt / "dst" / f"{n}"
                            dst.parent.mkdir(exist_ok=True)
                            argv, env = command(tool, src, dst, checkouts)
                            if cache == "cold":
                                drop_caches()
                            else:  # warm: the source read once, untimed
                                read_tree(src)
                            t = time.perf_counter()
                            p = subprocess.run(argv, env=env, capture_output=True)
                            dt = time.perf_counter() - t
                            if p.returncode != 0:
                                print(
                                    f"{tool} failed: {p.stderr.decode(errors='replace')}",
                                    file=sys.stderr,
                                )
                                return 1
                            times.setdefault((name, cache, tool), []).append(dt)
                # untimed: remove this round's copies, let the file system settle
                subprocess.run(["rm", "-rf", str(mnt / "dst")], check=True)
                os.sync()
                time.sleep(2)
                print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
            print(
                f"{'workload':10} {'cache':5} {'cp -a s':>8} {'old s':>8} {'new s':>8} "
                f"{'old/cp':>7} {'new/cp':>7} {'new/old':>8}"
            )
            for name in work:
                for cache in ("cold", "warm"):
                    med = {t: statistics.median(times[(name, cache, t)]) for t in TOOLS}
                    print(
                        f"{name:10} {cache:5} {med['cp']:8.3f} {med['old']:8.3f} {med['new']:8.3f} "
                        f"{med['old'] / med['cp']:7.2f} {med['new'] / med['cp']:7.2f} "
                        f"{med['new'] / med['old']:8.2f}"
                    )
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        img.unlink(missing_ok=True)
        mnt.rmdir()
        tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
