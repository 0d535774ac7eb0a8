"""The workloads' specs: generated trees and big files, what each makes
(:func:`estimate`, without making it) and the plan both the estimate and the
generator (:mod:`.gen`) follow, so they agree name for name."""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from uringsync.bench.base import PAGE, BenchError, MiB

WORKLOADS = ("tree", "bigfile", "mixed")
# mixed: 8 big files, these fractions of --mixed-big
MIXED_BIG_FRACTIONS = (1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 1)
POOL_SIZE = 16 * MiB  # small files are slices of one seeded random pool
DIR_NAMES = (5, 20)  # realistic: names directly in a directory, uniform in this range
FAST_SYMLINK = 60  # ext4 keeps a symlink target shorter than this in the inode
BIG_FILE_META = 256  # estimate: a big file's metadata, 1/this of its size, roughly


def _blocks(size: int) -> int:
    """Bytes an ext4 file of this size occupies, roughly (4 KiB blocks)."""
    return -(-size // PAGE) * PAGE


@dataclass(frozen=True)
class TreeSpec:
    """A generated tree of ``entries`` names under its root.

    ``realistic``: 5-20 names per directory, nested up to ``max_depth``, file
    sizes lognormal (median about 2.5 KiB, 2% empty, 1 in 2,000 of 1-10 MiB),
    3% symlinks (some dangling), 0.5% hard links (across directories too), 10%
    executable, 0.5% with a user xattr, a few names that are not UTF-8.
    ``tiny``: 80% empty files, the rest up to 512 bytes, 1% symlinks, 0.2%
    hard links (the RSS check: many entries, fast to make).
    ``big_sizes``: big files put in random directories, counted in ``entries``.
    """

    entries: int
    seed: int = 1
    profile: str = "realistic"
    big_sizes: tuple[int, ...] = ()
    max_depth: int = 6


@dataclass(frozen=True)
class BigFileSpec:
    """One file of ``size`` bytes (``big.bin``) in a directory: random-looking, no holes."""

    size: int
    seed: int = 1


Spec = TreeSpec | BigFileSpec


def spec_dict(spec: Spec) -> dict[str, Any]:
    kind = "tree" if isinstance(spec, TreeSpec) else "bigfile"
    d = asdict(spec)
    if "big_sizes" in d:
        d["big_sizes"] = list(d["big_sizes"])
    return {"kind": kind, **d}


@dataclass
class _Dir:
    parent: int
    depth: int
    cap: int  # names directly inside (sub-directories included)
    rel: bytes  # path from the tree's root; b"" for the root
    nsub: int = 0


@dataclass(frozen=True)
class _Item:
    dir: int
    kind: str  # "dir" (start of a directory), "file", "symlink", "link"
    name: bytes = b""
    size: int = 0
    offset: int = 0  # a small file's bytes are pool[offset:offset + size]
    mode: int = 0o644
    target: bytes = b""  # symlink target; for "link" the existing file's path from the root
    xattr: bool = False
    big: int = -1  # index of a big file (stamped blocks instead of the pool)


_DIR_WORDS = (b"src", b"lib", b"docs", b"data", b"build", b"test", b"img", b"cache", b"share")
_EXTS = (b".c", b".h", b".py", b".txt", b".json", b".png", b".o", b".dat", b".html", b"")


def _plan_dirs(spec: TreeSpec) -> list[_Dir]:
    """The directories, parents before children; sum of ``cap`` is ``entries``."""
    rng = random.Random(f"uringsync-bench dirs {spec.seed} {spec.entries} {spec.profile}")
    n = spec.entries
    lo, hi = DIR_NAMES
    ndirs = max(1, round(n / ((lo + hi) / 2)))
    if not lo * ndirs <= n <= hi * ndirs:
        lo, hi = 0, n
    caps = [rng.randint(lo, hi) for _ in range(ndirs)]
    diff = n - sum(caps)
    while diff:
        i = rng.randrange(ndirs)
        if diff > 0 and caps[i] < hi:
            caps[i] += 1
            diff -= 1
        elif diff < 0 and caps[i] > lo:
            caps[i] -= 1
            diff += 1
    dirs = [_Dir(parent=-1, depth=0, cap=caps[0], rel=b"")]
    # a directory takes sub-directories while it keeps one name that is not one
    open_ = [0] if caps[0] > 1 and spec.max_depth > 0 else []
    spill = 0
    for j in range(1, ndirs):
        if not open_:  # no room within max_depth: its names become files elsewhere
            spill += caps[j]
            continue
        k = rng.randrange(len(open_))
        pi = open_[k]
        p = dirs[pi]
        name = b"%s%d" % (rng.choice(_DIR_WORDS), p.nsub)
        p.nsub += 1
        if p.nsub >= p.cap - 1:
            open_[k] = open_[-1]
            open_.pop()
        d = _Dir(pi, p.depth + 1, caps[j], p.rel + b"/" + name if p.rel else name)
        dirs.append(d)
        if d.depth < spec.max_depth and d.cap > 1:
            open_.append(len(dirs) - 1)
    i = 0
    while spill:
        dirs[i % len(dirs)].cap += 1
        spill -= 1
        i += 1
    return dirs


def _file_size(rng: random.Random, profile: str) -> int:
    u = rng.random()
    if profile == "tiny":
        return 0 if u < 0.8 else rng.randint(1, 512)
    if u < 0.02:
        return 0
    if u < 0.02 + 1 / 2000:
        return int(MiB * 10 ** rng.uniform(0, 1))  # 1-10 MiB, log-uniform
    return min(max(int(rng.lognormvariate(math.log(2500), 1.3)), 1), MiB)


def _items(spec: TreeSpec, dirs: list[_Dir]) -> Iterator[_Item]:
    """Everything in the tree, in creation order (deterministic from the spec)."""
    realistic = spec.profile == "realistic"
    p_symlink, p_link = (0.03, 0.005) if realistic else (0.01, 0.002)
    # big files go to directories that have room for one more file
    free = [d.cap - d.nsub for d in dirs]
    bigs: dict[int, list[int]] = {}
    rb = random.Random(f"uringsync-bench bigs {spec.seed}")
    for b, _size in enumerate(spec.big_sizes):
        room = [i for i in range(len(dirs)) if free[i] > len(bigs.get(i, []))]
        if not room:
            raise BenchError(f"a tree of {spec.entries} entries has no room for its big files")
        bigs.setdefault(rb.choice(room), []).append(b)
    recent: collections.deque[bytes] = collections.deque(maxlen=64)  # files to hard-link
    for di, d in enumerate(dirs):
        yield _Item(di, "dir")
        rng = random.Random(f"uringsync-bench {spec.seed} {spec.profile} {spec.entries} {di}")
        siblings: list[bytes] = []
        for k in range(d.cap - d.nsub):
            mine = bigs.get(di, [])
            if k < len(mine):
                b = mine[k]
                yield _Item(di, "file", b"big%02d.bin" % b, size=spec.big_sizes[b], big=b)
                continue
            r = rng.random()
            if r < p_symlink:
                u = rng.random()
                if u < 0.6 and siblings:
                    target = rng.choice(siblings)
                elif u < 0.9:
                    target = b"../" * rng.randint(1, 3) + b"share/missing-%d" % k
                else:
                    target = b"/usr/share/doc/dangling-%d" % k
                yield _Item(di, "symlink", b"l%04d" % k, target=target)
            elif r < p_symlink + p_link and recent:
                yield _Item(di, "link", b"h%04d" % k, target=rng.choice(recent))
            else:
                size = _file_size(rng, spec.profile)
                name = b"f%04d%s" % (k, rng.choice(_EXTS) if realistic else b"")
                if realistic and rng.random() < 0.0005:
                    name = b"caf\xe9-" + name  # Latin-1: not UTF-8
                offset = rng.randrange(POOL_SIZE - size + 1) if size else 0
                mode = 0o755 if realistic and rng.random() < 0.1 else 0o644
                xattr = realistic and rng.random() < 0.005
                siblings.append(name)
                recent.append(d.rel + b"/" + name if d.rel else name)
                yield _Item(di, "file", name, size=size, offset=offset, mode=mode, xattr=xattr)


@dataclass(frozen=True)
class Estimate:
    entries: int  # names under the root
    bytes: int  # file data
    disk: int  # what a copy takes on ext4, roughly


def estimate(spec: Spec) -> Estimate:
    """Size of the tree the spec makes, without making it."""
    if isinstance(spec, BigFileSpec):
        return Estimate(1, spec.size, _blocks(spec.size) + spec.size // BIG_FILE_META + PAGE)
    dirs = _plan_dirs(spec)
    nbytes = disk = entries = 0
    for it in _items(spec, dirs):
        if it.kind == "dir":
            disk += PAGE
            entries += it.dir > 0
            continue
        entries += 1
        if it.kind == "file":
            nbytes += it.size
            disk += _blocks(it.size) + (it.size // BIG_FILE_META if it.big >= 0 else 0)
        elif it.kind == "symlink" and len(it.target) >= FAST_SYMLINK:
            disk += PAGE
    return Estimate(entries, nbytes, disk)


def workload_specs(
    workloads: Sequence[str],
    *,
    entries: int,
    big_size: int,
    mixed_files: int,
    mixed_big: int,
    seed: int,
) -> dict[str, Spec]:
    """The spec of each named workload (``rss`` is added by the session)."""
    specs: dict[str, Spec] = {}
    for w in workloads:
        if w == "tree":
            specs[w] = TreeSpec(entries=entries, seed=seed)
        elif w == "bigfile":
            specs[w] = BigFileSpec(size=big_size, seed=seed)
        elif w == "mixed":
            bigs = tuple(max(1, int(mixed_big * f)) for f in MIXED_BIG_FRACTIONS)
            specs[w] = TreeSpec(entries=mixed_files + len(bigs), seed=seed, big_sizes=bigs)
        else:
            raise BenchError(f"unknown workload {w!r}: choose from {', '.join(WORKLOADS)}")
    return specs
