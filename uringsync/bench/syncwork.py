"""The sync workloads: ``uringsync sync -aHAX`` against ``rsync -aHAX`` on the
tree and a destination prepared outside the timing.

- ``sync-unchanged``: DST is a complete earlier sync of SRC (``rsync -aHAX``,
  once); every run syncs into it again, so nothing should change.  Before and
  after each run the bench notes every DST entry's (inode, ctime): an entry
  replaced (new inode) or touched (same inode, new ctime) by a sync that had
  nothing to do is reported per run.
- ``sync-1pct``: DST is a copy (``cp -a``, untimed, per run) of a template:
  an earlier sync of SRC in which 1% of the files got longer (their mtime
  kept, so only the size says so), 1% are missing and 1% extra files exist
  that SRC lacks; the runs use ``--delete``.
- ``sync-first``: a first sync into an empty DST, against ``uringsync cp -a``
  (and rsync).
- ``sync-rss-1m`` (opt-in): as ``sync-unchanged`` (with ``--delete``) on a tree
  of 1,000,000 tiny entries, once, warm: uringsync sync's peak RSS.
- ``cp-verify`` (opt-in): a copy that is checked: ``uringsync cp -a --verify
  SRC DST`` against ``cp -a SRC DST && rsync -naHAXc --delete SRC/ DST/``
  (what people do now), into a new DST each run, in the same columns.
- ``verify`` (opt-in): the check after a migration: ``uringsync verify SRC DST``
  against ``rsync -naHAXc --delete SRC/ DST/`` (what people run now), DST a
  complete earlier sync as for ``sync-unchanged``; a run that finds a
  difference (prints one) failed.  The two run in the sync rows' columns:
  "sync" is uringsync verify there, "rsync" rsync -naHAXc.
- ``bigfile-fio`` (opt-in, cold): one big file (``--big-size``, 4 GiB),
  ``uringsync cp -a SRC DST && sync`` against the device's own limit: fio
  reading the source and writing a new file of its size at once (two jobs,
  ``O_DIRECT``, 1 MiB blocks, queue depth 32, io_uring), then ``sync``.
  Both timed until their data is on disk.  "sync" is uringsync cp there,
  "rsync" fio (its file is not a copy: not checked).
- ``hash`` (opt-in, warm): hashing must not be the limit: ``uringsync sync
  -naHAXc SRC/ DST/`` (the big file and its copy hashed from the page cache;
  a line printed is a failure) against ``xxh128sum`` of the same two files.
  Not ``uringsync verify``: it reads DST from the device on purpose, which
  would time the disk, not the hash.

Every run is checked as a copy is (the DST must then be SRC's copy).  No
deletion happens inside a timed region except what the tool under test does:
destinations are prepared before ``sync``/``drop_caches`` and the timer.
"""

from __future__ import annotations

import os
import random
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uringsync.bench.base import BenchError, Say, run_quiet
from uringsync.bench.report import progress_line
from uringsync.bench.sources import Source, warm_read
from uringsync.bench.tools import (
    SYNC_TOOL,
    Caps,
    Run,
    execute,
    finished_run,
    prepare,
    sync_commands,
)
from uringsync.bench.verify import walk
from uringsync.bench.workspace import Workspace

SYNC_WORKLOADS = ("sync-unchanged", "sync-1pct", "sync-first")  # ``--workloads sync``
SYNC_RSS = "sync-rss-1m"  # opt-in: uringsync sync's peak RSS on a big tree
VERIFY = "verify"  # opt-in: uringsync verify against rsync -naHAXc
CP_VERIFY = "cp-verify"  # opt-in: uringsync cp -a --verify against cp -a && rsync -naHAXc
BIG_FIO = "bigfile-fio"  # opt-in: uringsync cp -a of one big file against fio (cold)
HASH = "hash"  # opt-in: uringsync sync -naHAXc of the big file against xxh128sum (warm)
ALL_SYNC = (*SYNC_WORKLOADS, SYNC_RSS, VERIFY, CP_VERIFY, BIG_FIO, HASH)
CHECKS = (VERIFY, CP_VERIFY, HASH)  # a run that prints a line found a difference: it failed
SYNC_RSS_SOURCE = "sync-rss"  # its source (tiny entries); the others use "tree"
BIG_SOURCE = "bigfile"  # bigfile-fio's and hash's: the bigfile workload's file
# the one cache each of these is timed in (the others: every cache asked)
ONE_CACHE = {SYNC_RSS: "warm", BIG_FIO: "cold", HASH: "warm"}
BIG_TOOLS = {BIG_FIO: ("fio",), HASH: ("xxh128sum",)}  # the reference each one runs
PERTURB_FRACTION = 0.01  # sync-1pct: this share of SRC's files changed, missing, extra
EXTRA_PREFIX = b"zz-bench-extra-"  # the extra files' names in DST
STDOUT_KEPT = 500  # bytes of a check's stdout kept when it found differences
GROW_MAX = 4096  # a changed file gets 1..this many bytes longer
EXTRA_MAX = 8192  # an extra file has 1..this many bytes


def sync_tools(name: str) -> tuple[str, ...]:
    """The tools a sync workload times; the first is the one judged."""
    return (SYNC_TOOL, "uringsync", "rsync") if name == "sync-first" else (SYNC_TOOL, "rsync")


def sync_source(name: str) -> str:
    if name in (BIG_FIO, HASH):
        return BIG_SOURCE
    return SYNC_RSS_SOURCE if name == SYNC_RSS else "tree"


def new_dst_per_run(name: str) -> bool:
    """Whether each run writes a new destination (else one DST, prepared once)."""
    return name in ("sync-1pct", "sync-first", CP_VERIFY, BIG_FIO)


def _delete(name: str) -> bool:
    return name in ("sync-1pct", SYNC_RSS)


@dataclass
class Perturbation:
    """What makes a sync-1pct destination differ: paths relative to its root."""

    changed: list[bytes] = field(default_factory=list)  # longer, same mtime
    missing: list[bytes] = field(default_factory=list)  # deleted from DST: to add
    extra: list[bytes] = field(default_factory=list)  # not in SRC: to delete

    def counts(self) -> dict[str, int]:
        return {
            "changed": len(self.changed),
            "missing": len(self.missing),
            "extra": len(self.extra),
        }


def perturb(dst: Path, files: int, seed: int, fraction: float = PERTURB_FRACTION) -> Perturbation:
    """Make ``dst`` (a copy of a source of ``files`` regular files) differ from
    it by ``fraction`` of ``files`` in each way (at least 1): files that got
    longer, files missing, extra files.  Only files with one name are changed
    or removed (a hard-linked one would change its other names too); the same
    tree and seed choose the same files."""
    root = os.fsencode(dst)
    singles, dirs = [], [root]
    for path, st in walk(root):
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            singles.append(path)
        elif stat.S_ISDIR(st.st_mode):
            dirs.append(path)
    singles.sort()
    dirs.sort()
    n = max(1, round(files * fraction))
    if 2 * n > len(singles):
        raise BenchError(f"{dst} has {len(singles)} files with one name: too few to change {n}")
    rng = random.Random(seed)
    pick = rng.sample(singles, 2 * n)
    out = Perturbation()
    cut = len(root) + 1
    for p in pick[:n]:
        st = os.lstat(p)
        with open(p, "ab") as f:
            f.write(rng.randbytes(rng.randint(1, GROW_MAX)))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the size differs
        out.changed.append(p[cut:])
    for p in pick[n:]:
        os.unlink(p)
        out.missing.append(p[cut:])
    for i in range(n):
        p = rng.choice(dirs) + b"/" + EXTRA_PREFIX + b"%d" % i
        with open(p, "xb") as f:
            f.write(rng.randbytes(rng.randint(1, EXTRA_MAX)))
        out.extra.append(p[cut:])
    return out


def itemized(src: Path, dst: Path) -> dict[str, int]:
    """What ``rsync -naHAX --delete --itemize-changes`` would do to make ``dst``
    a copy of ``src``, counted: files changed (``>f`` not new), added (``>f+``),
    deleted, and other lines (directories' times and the like)."""
    p = run_quiet(
        [
            b"rsync",
            b"-naHAX",
            b"--delete",
            b"--itemize-changes",
            os.fsencode(src) + b"/",
            os.fsencode(dst) + b"/",
        ]
    )
    if p.returncode != 0:
        raise BenchError(f"rsync -n on {dst} failed: {p.stderr.decode(errors='replace').strip()}")
    counts = {"changed": 0, "added": 0, "deleted": 0, "other": 0}
    for line in p.stdout.splitlines():
        if line.startswith(b"*deleting"):
            counts["deleted"] += 1
        elif line.startswith(b">f+"):
            counts["added"] += 1
        elif line.startswith(b">f"):
            counts["changed"] += 1
        elif line.strip():
            counts["other"] += 1
    return counts


Snapshot = dict[bytes, tuple[int, int, bool]]  # path -> inode, ctime (ns), is a directory


def snapshot(root: Path) -> Snapshot:
    return {p: (st.st_ino, st.st_ctime_ns, stat.S_ISDIR(st.st_mode)) for p, st in walk(root)}


def changes(before: Snapshot, after: Snapshot, expected: set[bytes], root: Path) -> dict[str, Any]:
    """Entries of DST that were there before and after a run and changed,
    other than those ``expected`` to (paths relative to ``root``): ``replaced``
    (another inode: rewritten), ``touched`` (same inode, new ctime: metadata
    written again), and directories whose ctime changed."""
    cut = len(os.fsencode(root)) + 1
    replaced = touched = dirs = 0
    examples: list[str] = []
    for p, (ino, ctime, is_dir) in before.items():
        now_ = after.get(p)
        if now_ is None or now_[:2] == (ino, ctime) or p[cut:] in expected:
            continue
        if is_dir:
            dirs += 1
            continue
        if now_[0] != ino:
            replaced += 1
        else:
            touched += 1
        if len(examples) < 5:
            examples.append(p[cut:].decode(errors="backslashreplace"))
    return {
        "replaced": replaced,
        "touched": touched,
        "dirs_touched": dirs,
        "examples": examples,
    }


def _rsync_into(src: Path, dst: Path) -> None:
    """``rsync -aHAX --delete SRC/ DST/``: DST becomes a complete earlier sync of SRC."""
    p = run_quiet(["rsync", "-aHAX", "--delete", os.fsencode(src) + b"/", os.fsencode(dst) + b"/"])
    if p.returncode != 0:
        raise BenchError(
            f"rsync -aHAX into {dst} failed: {p.stderr.decode(errors='replace').strip()}"
        )


def _cp_a(src: Path, dst: Path) -> None:
    p = run_quiet(["cp", "-a", os.fsencode(src), os.fsencode(dst)])
    if p.returncode != 0:
        raise BenchError(f"cp -a to {dst} failed: {p.stderr.decode(errors='replace').strip()}")


def _rotate(seq: Sequence[str], k: int) -> list[str]:
    k %= max(1, len(seq))
    return [*seq[k:], *seq[:k]]


@dataclass
class SyncPlan:
    """One sync workload's settings for :func:`run_workload`."""

    name: str
    caches: list[str]
    rounds: int
    verify: str
    seed: int
    stand_in: tuple[str, ...] = ()  # the command timed as uringsync sync, if not uringsync's
    room: tuple[int, int] = (0, 0)  # bytes and inodes one copy of the source needs


def sync_one(
    ws: Workspace,
    source: Source,
    plan: SyncPlan,
    tool: str,
    cache: str,
    caps: Caps,
    dst: Path,
    *,
    round_no: int,
    expected: set[bytes] | None = None,
    prepare_seconds: float = 0.0,
) -> Run:
    """One timed run of a sync workload into ``dst`` (prepared by the caller),
    checked afterwards; ``expected``: the DST entries the run should change
    (None: DST is new, nothing to compare)."""
    before = snapshot(dst) if expected is not None else None
    check = plan.name if plan.name in CHECKS or plan.name == BIG_FIO else ""
    cmds = sync_commands(
        tool,
        source.path,
        dst,
        caps,
        delete=_delete(plan.name),
        stand_in=plan.stand_in,
        check=check,
    )
    is_us = tool == "uringsync" or (tool == SYNC_TOOL and not plan.stand_in)
    has_json = (caps.json if tool == "uringsync" else caps.sync_json) and not check
    # the reference's output is its own (xxh128sum's digests), and fio's file no copy
    checked = plan.name in CHECKS and (is_us or plan.name != HASH)
    verify = "none" if plan.name == BIG_FIO and not is_us else plan.verify
    load = os.getloadavg()
    prepare(cache)
    out = execute(cmds)
    detail: dict[str, Any] = {
        "loadavg": [round(x, 2) for x in load],
        "prepare_seconds": prepare_seconds,
    }
    if before is not None and expected is not None and os.path.isdir(dst):
        detail["dst_changes"] = changes(before, snapshot(dst), expected, dst)
    if checked and out.exit_code == 0 and out.stdout.strip():
        # rsync -n exits 0 whatever it finds: a line is a difference found
        out.exit_codes = [*out.exit_codes, 1]
        out.stderr += b"differences found: " + out.stdout[:STDOUT_KEPT]
    return finished_run(
        out,
        cmds,
        workload=plan.name,
        cache=cache,
        round_no=round_no,
        tool=tool,
        jobs=None,
        source=source,
        copy=dst,
        verify=verify,
        json_out=is_us and has_json,
        wait4_peak="max" if is_us else "sum",
        detail=detail,
    )


def run_workload(
    ws: Workspace,
    source: Source,
    plan: SyncPlan,
    caps: Caps,
    runs: list[Run],
    say: Say,
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Every round of one sync workload, cold and/or warm; each run is appended
    to ``runs``; ``skip``: tools not timed (uringsync sync where there is none).
    Returns what was prepared (for the JSON)."""
    name = plan.name
    tools = tuple(t for t in sync_tools(name) if t not in skip)
    info: dict[str, Any] = {
        "source": source.name,
        "tools": list(tools),
        "delete": _delete(name),
        "stand_in": list(plan.stand_in) or None,
    }
    room_b, room_i = plan.room
    base: Path | None = None  # sync-unchanged: the one DST; sync-1pct: the template
    pert = Perturbation()

    def make_base() -> Path:
        nonlocal pert
        t = time.perf_counter()
        path = ws.destination(f"{name}-{'template' if name == 'sync-1pct' else 'dst'}")
        _rsync_into(source.path, path)
        if name == "sync-1pct":
            pert = perturb(path, source.summary.files, plan.seed)
        os.sync()
        info["prepared"] = {
            "path": str(path),
            "how": "rsync -aHAX" + (", then perturbed" if name == "sync-1pct" else ""),
            "seconds": round(time.perf_counter() - t, 3),
            "perturbation": pert.counts() if name == "sync-1pct" else None,
            "fraction": PERTURB_FRACTION if name == "sync-1pct" else None,
            "itemized": itemized(source.path, path),  # what rsync -n says is to do
        }
        prep = info["prepared"]
        say(f"{name}: prepared {path} in {prep['seconds']:.1f} s: {prep['itemized']}")
        return path

    if not new_dst_per_run(name) or name == "sync-1pct":
        ws.make_room(room_b, room_i, f"{name}'s destination")
        base = make_base()
    for cache in plan.caches:
        for r in range(plan.rounds):
            if new_dst_per_run(name):
                copies = len(tools)
                ws.make_room(room_b * copies, room_i * copies, f"{name} {cache} round {r + 1}")
            if base is not None and not base.exists():  # deleted to make room
                base = make_base()
            if cache == "warm":
                warm_read(source.path)
                if name in ("sync-unchanged", SYNC_RSS, VERIFY, HASH) and base is not None:
                    warm_read(base)
            for tool in _rotate(tools, r):
                expected: set[bytes] | None = None
                took = 0.0
                if name in ("sync-first", CP_VERIFY, BIG_FIO):
                    dst = ws.destination(f"{name}-{cache}-r{r + 1}-{tool}")
                elif name == "sync-1pct":
                    assert base is not None
                    dst = ws.destination(f"{name}-{cache}-r{r + 1}-{tool}")
                    t = time.perf_counter()
                    _cp_a(base, dst)
                    took = time.perf_counter() - t
                    if cache == "warm":
                        warm_read(dst)
                    expected = {*pert.changed, *pert.missing, *pert.extra}
                else:
                    assert base is not None
                    dst, expected = base, set()
                run_ = sync_one(
                    ws,
                    source,
                    plan,
                    tool,
                    cache,
                    caps,
                    dst,
                    round_no=r,
                    expected=expected,
                    prepare_seconds=round(took, 3),
                )
                runs.append(run_)
                ch = (run_.detail or {}).get("dst_changes")
                extra = f" (dst: {ch['replaced']} replaced, {ch['touched']} touched)" if ch else ""
                say(progress_line(run_) + extra)
                if base is not None and name != "sync-1pct" and not run_.ok:
                    _rsync_into(source.path, base)  # back to a complete sync for the next run
                    say(f"{name}: {base} synced again after a failed run")
    return info
