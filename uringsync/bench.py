"""``uringsync bench``: uringsync cp -a against cp -a, rsync -aHAX and a tar pipe.

docs/benchmarks.md explains the method; in short:

- Workloads: ``tree`` (tens of thousands of entries, realistic sizes),
  ``bigfile`` (one big file) and ``mixed`` (small files and 8 big ones), made
  by a seeded generator and kept between runs (a marker file next to each
  source records the parameters it was made with).
- By default everything happens on a fresh ext4 in a loop image under the
  work directory, because deleting many files on the root file system slows
  later file creation for every tool.
- Every timed run writes to a new destination; nothing is deleted between
  timed runs.  Copies are deleted only when the next round would not fit, and
  then the file system is given time to settle before timing goes on.
- Cold runs follow ``sync`` and ``drop_caches``; warm runs follow an untimed
  read of the whole source (once per round) and a ``sync``.
- Each round runs every tool once, in an order rotated per round; the medians
  over the rounds are reported, with the ratios to ``cp -a``.

The generator, the workspace and the runners are also used by the
pytest-benchmark suite in ``benchmarks/``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import importlib
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import stat
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

TOOLS = ("uringsync", "cp", "rsync", "tar")
WORKLOADS = ("tree", "bigfile", "mixed")
CACHES = ("cold", "warm")
# uringsync's time / cp -a's time must stay at or under these (issue #4)
RATIO_TARGETS: dict[tuple[str, str], float] = {
    ("tree", "cold"): 0.45,
    ("tree", "warm"): 0.85,
    ("bigfile", "cold"): 0.60,
    ("mixed", "cold"): 0.60,
}
RSS_TARGET = 200 * 10**6  # bytes, summed over uringsync's processes ...
RSS_TARGET_ENTRIES = 1_000_000  # ... when copying a tree of this many entries

GENERATOR_VERSION = 1  # bump when the generated trees change: old caches are remade
SCHEMA_VERSION = 1
POOL_SIZE = 16 * MiB  # small files are slices of one seeded random pool
BLOCK_SIZE = 64 * MiB  # big files: one random block, repeated with a counter
PAGE = 4096
MIXED_BIG_FRACTIONS = (1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 1)

Say = Callable[[str], None]


class BenchError(Exception):
    """Stops the benchmark; the message says what to do about it."""


def _say_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ sizes


def parse_size(text: str) -> int:
    """'4G', '64M', '512K', '1.5GiB', '4096' -> bytes (K, M, G, T are powers of 1024)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": KiB, "M": MiB, "G": GiB, "T": 1 << 40}
    mult = units.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in units else t
    try:
        value = float(num)
    except ValueError:
        raise BenchError(
            f"bad size {text!r}: a number with an optional K, M, G or T suffix (powers of 1024)"
        ) from None
    if value < 0 or not math.isfinite(value):
        raise BenchError(f"bad size {text!r}: must be a positive number")
    return int(value * mult)


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _blocks(size: int) -> int:
    """Bytes an ext4 file of this size occupies, roughly (4 KiB blocks)."""
    return -(-size // PAGE) * PAGE


# -------------------------------------------------------------- generator


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
    ndirs = max(1, round(n / 12.5))
    lo, hi = (5, 20) if 5 * ndirs <= n <= 20 * ndirs else (0, n)
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
        return Estimate(1, spec.size, _blocks(spec.size) + spec.size // 256 + PAGE)
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
            disk += _blocks(it.size) + (it.size // 256 if it.big >= 0 else 0)
        elif it.kind == "symlink" and len(it.target) >= 60:
            disk += PAGE
    return Estimate(entries, nbytes, disk)


_pools: dict[tuple[str, int], bytes] = {}


def _random_bytes(kind: str, seed: int, size: int) -> bytes:
    key = (kind, seed)
    if key not in _pools:
        _pools[key] = random.Random(f"uringsync-bench {kind} {seed}").randbytes(size)
    return _pools[key]


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


_STAMP = struct.Struct("<QQ")


def write_stamped(fd: int, size: int, file_id: int, seed: int) -> None:
    """``size`` bytes: a 64 MiB random block, repeated, with every 4 KiB page
    stamped with (file, block, page), so no two pages are the same and nothing
    is zero or sparse."""
    block = _random_bytes("block", seed, BLOCK_SIZE)
    buf = bytearray(BLOCK_SIZE)
    view = memoryview(buf)
    done = k = 0
    while done < size:
        n = min(BLOCK_SIZE, size - done)
        buf[:] = block
        for page, off in enumerate(range(0, n, PAGE)):
            _STAMP.pack_into(buf, off, file_id ^ 0x9E3779B97F4A7C15, (k << 32) | page)
        _write_all(fd, view[:n])
        done += n
        k += 1


def _write_tree(spec: TreeSpec, root: Path) -> None:
    dirs = _plan_dirs(spec)
    pool = memoryview(_random_bytes("pool", spec.seed, POOL_SIZE))
    dflags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fflags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    os.mkdir(root, 0o755)
    rootfd = os.open(root, dflags)
    dfd = rootfd
    try:
        for it in _items(spec, dirs):
            if it.kind == "dir":
                if dfd != rootfd:
                    os.close(dfd)
                    dfd = rootfd
                rel = dirs[it.dir].rel
                if rel:
                    os.mkdir(rel, 0o755, dir_fd=rootfd)
                    dfd = os.open(rel, dflags, dir_fd=rootfd)
            elif it.kind == "file":
                fd = os.open(it.name, fflags, it.mode, dir_fd=dfd)
                try:
                    if it.big >= 0:
                        write_stamped(fd, it.size, 1000 + it.big, spec.seed)
                    elif it.size:
                        _write_all(fd, pool[it.offset : it.offset + it.size])
                    if it.xattr:
                        with contextlib.suppress(OSError):  # a file system without user xattrs
                            os.setxattr(fd, b"user.bench", b"tag-%d" % it.offset)
                finally:
                    os.close(fd)
            elif it.kind == "symlink":
                os.symlink(it.target, it.name, dir_fd=dfd)
            else:
                os.link(it.target, it.name, src_dir_fd=rootfd, dst_dir_fd=dfd)
    finally:
        if dfd != rootfd:
            os.close(dfd)
        os.close(rootfd)


def _write_bigfile(spec: BigFileSpec, root: Path) -> None:
    os.mkdir(root, 0o755)
    fd = os.open(root / "big.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        write_stamped(fd, spec.size, 1, spec.seed)
    finally:
        os.close(fd)


def generate(spec: Spec, root: Path) -> None:
    """Make the tree (``root`` must not exist)."""
    old = os.umask(0o022)
    try:
        if isinstance(spec, TreeSpec):
            _write_tree(spec, root)
        else:
            _write_bigfile(spec, root)
    finally:
        os.umask(old)


# --------------------------------------------------------------- checking


@dataclass(frozen=True)
class Summary:
    """What a correct copy has the same of: names by type, bytes, link structure."""

    entries: int
    dirs: int
    files: int
    symlinks: int
    others: int
    bytes: int
    inodes: int  # distinct regular-file inodes
    linked: int  # regular-file names whose inode has several names


def walk(root: Path | bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """Every entry below ``root`` (not following symlinks): path, lstat."""
    stack = [os.fsencode(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                yield e.path, st


def summarize(root: Path | bytes) -> Summary:
    dirs = files = symlinks = others = nbytes = linked = 0
    inodes: set[int] = set()
    for _, st in walk(root):
        if stat.S_ISDIR(st.st_mode):
            dirs += 1
        elif stat.S_ISREG(st.st_mode):
            files += 1
            nbytes += st.st_size
            inodes.add(st.st_ino)
            linked += st.st_nlink > 1
        elif stat.S_ISLNK(st.st_mode):
            symlinks += 1
        else:
            others += 1
    entries = dirs + files + symlinks + others
    return Summary(entries, dirs, files, symlinks, others, nbytes, len(inodes), linked)


def check_copy(src: Path, copy: Path, expect: Summary, how: str) -> str | None:
    """None if ``copy`` is a correct copy of ``src``, else what is wrong.

    ``count``: same numbers of names by type, bytes and hard links;
    ``rsync``: also ``rsync -naHAXc --delete`` (contents, metadata, xattrs, ACLs)
    lists nothing; ``none``: no check.
    """
    if how == "none":
        return None
    if not os.path.isdir(copy):
        return f"{copy} is not a directory"
    got = summarize(copy)
    if got != expect:
        diffs = [
            f"{k} {v} (source {getattr(expect, k)})"
            for k, v in asdict(got).items()
            if v != getattr(expect, k)
        ]
        return "copy differs: " + ", ".join(diffs)
    if how == "rsync":
        p = subprocess.run(
            [
                b"rsync",
                b"-naHAXc",
                b"--delete",
                b"--itemize-changes",
                os.fsencode(src) + b"/",
                os.fsencode(copy) + b"/",
            ],
            capture_output=True,
            check=False,
        )
        if p.returncode != 0 or p.stdout.strip():
            out = (p.stdout + p.stderr).decode(errors="backslashreplace")
            return f"rsync -naHAXc lists differences ({p.returncode}): {out[:2000]}"
    return None


# -------------------------------------------------------------- workspace


@dataclass(frozen=True)
class Mount:
    mountpoint: str
    fstype: str
    source: str
    options: str


def mount_of(path: Path | str) -> Mount:
    """The mount that holds ``path`` (from /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    best = Mount("/", "?", "?", "")
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) < 6 or len(rest) < 2:
                continue
            mp = fields[4].encode().decode("unicode_escape")  # \040 for spaces
            inside = real == mp or real.startswith(mp.rstrip("/") + "/")
            if inside and len(mp) >= len(best.mountpoint):
                opts = fields[5] + ("," + rest[2] if len(rest) > 2 else "")
                best = Mount(mp, rest[0], rest[1], opts)
    return best


def _run_quiet(
    argv: Sequence[str | bytes | os.PathLike[str]],
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), capture_output=True, check=False)


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BenchError(
            f"{', '.join(missing)} not found: install it (Debian: apt-get install "
            f"{' '.join(sorted({_PACKAGES.get(t, t) for t in missing}))})"
        )


_PACKAGES = {
    "mkfs.ext4": "e2fsprogs",
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "cp": "coreutils",
    "rsync": "rsync",
    "tar": "tar",
}


def drop_caches() -> None:
    """Write back dirty data, then drop the page cache, dentries and inodes (root)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


class Workspace:
    """Where the sources and copies live.

    With ``loop`` (root): an ext4 made fresh in ``WORKDIR/fs.img``
    (preallocated, so the host file system allocates nothing while timing),
    attached with direct I/O (no second copy in the host's page cache) and
    mounted ``noatime`` at ``WORKDIR/mnt``.  Without: ``WORKDIR`` itself.
    Sources go to ``ROOT/src/NAME``, copies to ``ROOT/dst/LABEL``.
    """

    def __init__(
        self, workdir: Path, *, loop: bool, keep: bool, settle: float, say: Say = _say_stderr
    ) -> None:
        self.workdir = workdir.absolute()
        self.loop = loop
        self.keep = keep
        self.settle = settle
        self.say = say
        self.root = self.workdir / "mnt" if loop else self.workdir
        self.image = self.workdir / "fs.img"
        self.device: str | None = None
        self.dio: bool | None = None
        self.image_size = 0
        self.active = False  # the image is ours to remove: attached or made by this run
        self.events: list[dict[str, Any]] = []

    # -- set-up and tear-down

    def setup(self, image_size: int, inodes: int) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.loop:
            self._setup_loop(image_size, inodes)
        (self.root / "src").mkdir(exist_ok=True)
        (self.root / "dst").mkdir(exist_ok=True)
        if any((self.root / "dst").iterdir()):  # copies kept by an earlier --keep run
            self.delete_copies("copies left by an earlier run")

    def _setup_loop(self, size: int, inodes: int) -> None:
        if os.geteuid() != 0:
            raise BenchError(
                "the loop file system needs root (mkfs.ext4, losetup, mount): run as root, "
                "or pass --no-loop to measure in the work directory as it is"
            )
        _need("mkfs.ext4", "losetup", "mount", "umount")
        host = mount_of(self.workdir)
        if host.fstype in ("tmpfs", "ramfs"):
            raise BenchError(
                f"{self.workdir} is on {host.fstype}: the loop image would live in memory; "
                "use --workdir on a disk (default /var/tmp/uringsync-bench)"
            )
        self.root.mkdir(exist_ok=True)
        if os.path.ismount(self.root):
            dev = mount_of(self.root).source
            if self._backing(dev) != os.path.realpath(self.image):
                raise BenchError(
                    f"{self.root} is already a mount point (of {dev}), not of {self.image}: "
                    "unmount it or choose another --workdir"
                )
            self.device = dev
            self.active = True
            self._read_dio()
            if self._reuse(size, inodes, f"the mounted {self.image} ({dev})"):
                return
        elif self.image.exists():
            self._attach()
            if self._reuse(size, inodes, f"{self.image} kept by an earlier run"):
                return
        free = shutil.disk_usage(self.workdir).free
        if size > free - 2 * GiB:
            raise BenchError(
                f"not enough space for the loop image in {self.workdir}: it needs "
                f"{fmt_bytes(size)} and 2 GiB must stay free, but {fmt_bytes(free)} is free; "
                "use --workdir on a larger disk, --image-size, or smaller workloads "
                "(--workloads, --entries, --big-size, --mixed-big)"
            )
        self.say(f"making a {fmt_bytes(size)} ext4 in {self.image} ({inodes} inodes) ...")
        fd = os.open(self.image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.active = True
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            os.close(fd)
            self.image.unlink()
            raise BenchError(f"cannot allocate {fmt_bytes(size)} for {self.image}: {e}") from None
        os.close(fd)
        # nodiscard: a discard would punch the preallocated image full of holes;
        # no lazy init: no kernel thread zeroing inode tables while timing;
        # -m 0: no blocks reserved for root (scratch space, all of it planned);
        # a 1 GiB journal, as mke2fs gives disks of 128 GiB or more (the default
        # for a 30 GiB file system, 128 MiB, stalls making 1,000,000 files)
        mkfs = [
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-J",
            f"size={max(16, min(1024, size // (8 * MiB)))}",
            "-N",
            str(inodes),
            "-E",
            "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
            str(self.image),
        ]
        p = _run_quiet(mkfs)
        if p.returncode != 0:
            self.image.unlink()
            raise BenchError(f"mkfs.ext4 failed: {p.stderr.decode(errors='replace').strip()}")
        self.image_size = size
        self._attach()
        self.events.append({"at": _now(), "event": "made the loop file system", "size": size})

    def _reuse(self, size: int, inodes: int, what: str) -> bool:
        """Keep the attached image if it is big enough; else drop it."""
        if self._big_enough(size, inodes):
            self.say(f"re-using {what}")
            self.image_size = self.image.stat().st_size
            return True
        self.say(f"{self.image} is too small for these parameters: making a new one")
        self._detach()
        self.image.unlink()
        return False

    def _attach(self) -> None:
        p = _run_quiet(["losetup", "--find", "--show", "--direct-io=on", str(self.image)])
        if p.returncode != 0:  # a host file system without O_DIRECT
            p = _run_quiet(["losetup", "--find", "--show", str(self.image)])
        if p.returncode != 0:
            raise BenchError(f"losetup failed: {p.stderr.decode(errors='replace').strip()}")
        self.device = p.stdout.decode().strip()
        self.active = True
        self._read_dio()
        m = _run_quiet(["mount", "-t", "ext4", "-o", "noatime", self.device, str(self.root)])
        if m.returncode != 0:
            _run_quiet(["losetup", "-d", self.device])
            self.device = None
            raise BenchError(f"mount failed: {m.stderr.decode(errors='replace').strip()}")

    def _read_dio(self) -> None:
        if self.device:
            with contextlib.suppress(OSError):
                name = os.path.basename(self.device)
                self.dio = Path(f"/sys/block/{name}/loop/dio").read_text().strip() == "1"

    @staticmethod
    def _backing(dev: str) -> str | None:
        try:
            name = os.path.basename(dev)
            return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
        except OSError:
            return None

    def _big_enough(self, size: int, inodes: int) -> bool:
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize >= size * 0.9 and st.f_files >= inodes * 0.9

    def _detach(self) -> None:
        if self.device is None:
            return
        os.sync()
        if _run_quiet(["umount", str(self.root)]).returncode != 0:
            _run_quiet(["umount", "-l", str(self.root)])
        _run_quiet(["losetup", "-d", self.device])
        self.device = None

    def teardown(self) -> None:
        """Unmount and delete the image (loop), or delete the copies (--no-loop);
        with ``keep``, leave everything."""
        if self.keep:
            where = f"{self.root} ({self.device} on {self.image})" if self.loop else str(self.root)
            self.say(f"kept the sources and copies in {where}")
            if self.loop:
                self.say(
                    f"  to remove: umount {self.root}; losetup -d {self.device}; rm {self.image}"
                )
            return
        if self.loop:
            if not self.active:
                return
            self._detach()
            with contextlib.suppress(OSError):
                self.image.unlink()
            with contextlib.suppress(OSError):
                self.root.rmdir()
                self.workdir.rmdir()  # only if nothing else is in it
        else:
            _run_quiet(["rm", "-rf", "--one-file-system", str(self.root / "dst")])

    # -- space

    def free(self) -> tuple[int, int]:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize, st.f_favail

    def delete_copies(self, reason: str) -> None:
        """Delete every copy (never between timed runs of one round), then
        sync, trim (--no-loop) and wait ``settle`` seconds before timing again."""
        dst = self.root / "dst"
        t = time.perf_counter()
        p = _run_quiet(["rm", "-rf", "--one-file-system", str(dst)])
        if p.returncode != 0:
            raise BenchError(f"cannot delete {dst}: {p.stderr.decode(errors='replace').strip()}")
        dst.mkdir()
        os.sync()
        if not self.loop and os.geteuid() == 0 and shutil.which("fstrim"):
            _run_quiet(["fstrim", str(self.root)])
        took = time.perf_counter() - t
        self.say(f"deleted the copies ({reason}) in {took:.1f} s; settling {self.settle:g} s")
        time.sleep(self.settle)
        self.events.append(
            {
                "at": _now(),
                "event": "deleted the copies",
                "reason": reason,
                "seconds": round(took, 3),
                "settle": self.settle,
            }
        )

    def make_room(self, nbytes: int, inodes: int, what: str) -> None:
        free_b, free_i = self.free()
        if free_b >= nbytes and free_i >= inodes:
            return
        self.delete_copies(f"room for {what}")
        free_b, free_i = self.free()
        if free_b < nbytes or free_i < inodes:
            raise BenchError(
                f"not enough space on {self.root} for {what}: it needs {fmt_bytes(nbytes)} and "
                f"{inodes} inodes, {fmt_bytes(free_b)} and {free_i} are free even without the "
                "copies; use a larger --image-size, another --workdir, or smaller workloads"
            )

    def destination(self, label: str) -> Path:
        """A name under dst/ that was never used in this run."""
        p = self.root / "dst" / label
        n = 1
        while os.path.lexists(p):
            n += 1
            p = self.root / "dst" / f"{label}.{n}"
        return p


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- sources


@dataclass
class Source:
    name: str
    path: Path
    spec: Spec
    summary: Summary


def ensure_source(ws: Workspace, name: str, spec: Spec) -> Source:
    """The workload's source tree: the cached one if its marker matches the
    spec, else made anew."""
    path = ws.root / "src" / name
    marker = ws.root / "src" / f"{name}.json"
    want = {"generator": GENERATOR_VERSION, "spec": spec_dict(spec)}
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        have = json.loads(marker.read_text())
        if {k: have[k] for k in want} == want and path.is_dir():
            ws.say(f"{name}: re-using {path} ({have['summary']['entries']} entries)")
            return Source(name, path, spec, Summary(**have["summary"]))
    if os.path.lexists(path) or marker.exists():
        marker.unlink(missing_ok=True)
        p = _run_quiet(["rm", "-rf", "--one-file-system", str(path)])
        if p.returncode != 0:
            raise BenchError(f"cannot remove the stale {path}: {p.stderr.decode(errors='replace')}")
        os.sync()
        time.sleep(ws.settle)
    est = estimate(spec)
    ws.say(f"{name}: generating {est.entries} entries, {fmt_bytes(est.bytes)} in {path} ...")
    t = time.perf_counter()
    generate(spec, path)
    os.sync()
    summary = summarize(path)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({**want, "summary": asdict(summary), "made": _now()}, indent=1))
    tmp.replace(marker)
    ws.say(f"{name}: made in {time.perf_counter() - t:.1f} s")
    return Source(name, path, spec, summary)


def warm_read(root: Path) -> None:
    """Untimed warm-up: stat every entry, read every file and symlink."""
    buf = bytearray(4 * MiB)
    for path, st in walk(root):
        if stat.S_ISLNK(st.st_mode):
            os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                while os.readv(fd, [buf]) > 0:
                    pass
            finally:
                os.close(fd)


# ---------------------------------------------------------------- runners


@dataclass
class Caps:
    """What this uringsync's ``cp`` takes (other changes add --json and -j)."""

    json: bool
    jobs: bool


def probe_uringsync() -> Caps:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    p = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "--help"],
        capture_output=True,
        check=False,
        env=env,
    )
    if p.returncode != 0:
        raise BenchError(
            f"`{sys.executable} -m uringsync cp --help` failed ({p.returncode}): "
            + p.stderr.decode(errors="replace").strip()
        )
    text = p.stdout.decode(errors="replace")
    return Caps(json="--json" in text, jobs="--jobs" in text)


Argv = list[str | bytes]


def tool_commands(
    tool: str,
    src: Path,
    dst: Path,
    caps: Caps,
    jobs: int | None = None,
    extra: Sequence[str] = (),
) -> tuple[list[Argv], Path]:
    """The command(s) (several: a pipe) for one copy, and where the copy ends up.
    ``extra``: more options for uringsync cp (e.g. --direct)."""
    s, d = os.fsencode(src), os.fsencode(dst)
    if tool == "uringsync":
        argv: Argv = [sys.executable, "-m", "uringsync", "cp", "-a", *extra]
        if caps.json:
            argv.append("--json")
        if jobs is not None:
            argv += ["-j", str(jobs)]
        return [[*argv, s, d]], dst
    if tool == "cp":
        return [["cp", "-a", s, d]], dst
    if tool == "rsync":
        return [["rsync", "-aHAX", s + b"/", d + b"/"]], dst
    if tool == "tar":
        name = os.fsencode(src.name)
        create: Argv = [
            "tar",
            "--xattrs",
            "--acls",
            "-C",
            os.fsencode(src.parent),
            "-cf",
            "-",
            name,
        ]
        extract: Argv = ["tar", "--xattrs", "--acls", "-C", d, "-xpf", "-"]
        return [create, extract], dst / src.name
    raise ValueError(f"unknown tool {tool!r}")


def describe(cmds: list[Argv]) -> str:
    def word(a: str | bytes) -> str:
        return a if isinstance(a, str) else a.decode(errors="backslashreplace")

    return " | ".join(" ".join(word(a) for a in argv) for argv in cmds)


@dataclass
class Outcome:
    exit_codes: list[int]
    seconds: float
    maxrss: list[int]  # ru_maxrss of each process (with its children), bytes
    stdout: bytes
    stderr: bytes

    @property
    def exit_code(self) -> int:
        return next((c for c in self.exit_codes if c != 0), 0)


_gnu_time: list[str | None] = []


def gnu_time() -> str | None:
    """GNU time, if installed: it forks each tool from a 2 MB process, so the
    tool's ru_maxrss is its own (see ``execute``)."""
    if not _gnu_time:
        path = shutil.which("time")
        if path:
            p = _run_quiet([path, "--version"])
            if b"GNU" not in p.stdout + p.stderr:
                path = None
        _gnu_time.append(path)
    return _gnu_time[0]


def rss_method() -> str:
    if gnu_time():
        return "GNU time -f %M: ru_maxrss of each process and its children, from wait4"
    return (
        "wait4 ru_maxrss of each child: an upper bound, since a child starts with the "
        "bench's own resident size (apt-get install time for exact numbers)"
    )


def _reset_peak_rss() -> None:
    """A child's ru_maxrss starts at this process's peak resident size (the
    kernel records it when the child execs): bring that peak down to now."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def execute(cmds: list[Argv]) -> Outcome:
    """Run the commands (each piped into the next), timed with perf_counter
    from the first start to the last exit; peak RSS of each from wait4.

    The peak RSS a child reports includes the resident size of the process
    that forked it (Linux keeps the larger at exec), so each command is started
    by GNU time when it is installed, which forks it from a small process and
    writes its ru_maxrss to a file; else by this process, after resetting its
    own peak."""
    timer = gnu_time()
    _reset_peak_rss()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory(prefix="uringsync-bench-") as tmp,
    ):
        rss_files = [os.path.join(tmp, f"rss{i}") for i in range(len(cmds))]
        procs: list[subprocess.Popen[bytes]] = []
        t0 = time.perf_counter()
        try:
            stdin: Any = subprocess.DEVNULL
            for i, argv in enumerate(cmds):
                last = i == len(cmds) - 1
                if timer:
                    argv = [timer, "-f", "%M", "-o", rss_files[i], "--", *argv]
                p = subprocess.Popen(
                    argv, stdin=stdin, stdout=out if last else subprocess.PIPE, stderr=err
                )
                if p.stdout is not None:
                    stdin = p.stdout
                procs.append(p)
                if i > 0 and procs[i - 1].stdout is not None:
                    procs[i - 1].stdout.close()  # type: ignore[union-attr]
        except OSError as e:
            for p in procs:
                p.kill()
                p.wait()
            return Outcome([127], time.perf_counter() - t0, [0], b"", str(e).encode())
        codes, rss = [], []
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            codes.append(p.returncode)
            rss.append(ru.ru_maxrss * 1024)
        took = time.perf_counter() - t0
        if timer:
            for i, path in enumerate(rss_files):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    # "Command exited with non-zero status N" may come first
                    rss[i] = int(Path(path).read_text().split()[-1]) * 1024
        out.seek(0)
        err.seek(0)
        return Outcome(codes, took, rss, out.read(), err.read())


def prepare(cache: str) -> None:
    """Right before a timed run: write back what earlier runs left dirty; cold:
    also drop the caches."""
    if cache == "cold":
        drop_caches()
    else:
        os.sync()


@dataclass
class Run:
    workload: str
    cache: str
    round: int
    tool: str  # "uringsync", "cp", "rsync", "tar", or "uringsync-jN"
    jobs: int | None
    command: str
    seconds: float
    sync_seconds: float  # the sync right after (not in ``seconds``)
    exit_code: int
    exit_codes: list[int]
    peak_rss: int | None  # uringsync: from --json (all processes); others: wait4
    peak_rss_source: str | None
    maxrss_wait4: list[int]
    verified: bool | None
    verify_error: str | None
    copy: str
    stderr: str
    result: dict[str, Any] | None  # uringsync's --json object (errors cut to 10)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.verified is not False


def uringsync_result(stdout: bytes) -> dict[str, Any] | None:
    """The object ``uringsync cp --json`` printed (its last JSON line)."""
    for line in reversed(stdout.splitlines()):
        if line.strip().startswith(b"{"):
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    return obj
    return None


def uringsync_peak_rss(stdout: bytes) -> int | None:
    """``peak_rss`` from ``uringsync cp --json``: bytes, summed over its processes."""
    res = uringsync_result(stdout)
    rss = res.get("peak_rss") if res else None
    return rss if isinstance(rss, int) else None


def run_one(
    ws: Workspace,
    source: Source,
    tool: str,
    cache: str,
    caps: Caps,
    *,
    round_no: int = 0,
    jobs: int | None = None,
    verify: str = "count",
    label: str | None = None,
    extra: Sequence[str] = (),
) -> Run:
    """One timed copy of ``source`` to a fresh destination, checked afterwards."""
    base = "uringsync" if tool.startswith("uringsync") else tool
    dst = ws.destination(label or f"{source.name}-{cache}-r{round_no + 1}-{tool}")
    cmds, copy = tool_commands(base, source.path, dst, caps, jobs, extra)
    if base == "tar":
        dst.mkdir()
    prepare(cache)
    out = execute(cmds)
    if (
        base == "uringsync"
        and caps.json
        and out.exit_code != 0
        and b"--json" in out.stderr
        and b"No such option" in out.stderr
    ):
        ws.say("uringsync cp has no --json: timing it without, peak RSS not reported")
        caps.json = False
        cmds, copy = tool_commands(base, source.path, dst, caps, jobs, extra)
        prepare(cache)
        out = execute(cmds)
    t = time.perf_counter()
    os.sync()
    sync_seconds = time.perf_counter() - t
    result = uringsync_result(out.stdout) if base == "uringsync" and caps.json else None
    if base == "uringsync":
        peak = uringsync_peak_rss(out.stdout) if caps.json else None
        peak_src = "json" if peak is not None else None
    else:
        peak, peak_src = sum(out.maxrss), "wait4"
    if result and isinstance(result.get("errors"), list):
        result["errors"] = result["errors"][:10]
    error = None
    if out.exit_code == 0:
        error = check_copy(source.path, copy, source.summary, verify)
    return Run(
        workload=source.name,
        cache=cache,
        round=round_no + 1,
        tool=tool,
        jobs=jobs,
        command=describe(cmds),
        seconds=out.seconds,
        sync_seconds=sync_seconds,
        exit_code=out.exit_code,
        exit_codes=out.exit_codes,
        peak_rss=peak,
        peak_rss_source=peak_src,
        maxrss_wait4=out.maxrss,
        verified=None if verify == "none" or out.exit_code != 0 else error is None,
        verify_error=error,
        copy=str(copy),
        stderr=out.stderr[-2000:].decode(errors="backslashreplace"),
        result=result,
    )


# ------------------------------------------------------------------ plan


@dataclass
class Options:
    workloads: tuple[str, ...] = WORKLOADS
    entries: int = 50_000
    big_size: int = 4 * GiB
    mixed_files: int = 5_000
    mixed_big: int = 512 * MiB
    rounds: int = 3
    cold: bool = True
    warm: bool = True
    jobs_sweep: bool = True
    workdir: Path = Path("/var/tmp/uringsync-bench")
    loop: bool = True
    image_size: int | None = None
    keep: bool = False
    settle: float = 10.0
    verify: str = "count"
    rss_entries: int = 0
    seed: int = 1
    json_out: Path | None = None
    plot: Path | None = None
    uringsync_args: tuple[str, ...] = ()  # more options for every uringsync cp run


def workload_specs(
    workloads: Sequence[str],
    *,
    entries: int,
    big_size: int,
    mixed_files: int,
    mixed_big: int,
    seed: int,
) -> dict[str, Spec]:
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


def _rotate(seq: Sequence[str], k: int) -> list[str]:
    k %= max(1, len(seq))
    return [*seq[k:], *seq[:k]]


def jobs_list(cpus: int) -> list[int]:
    """Worker counts of the -j sweep: 1..cpus; above 8 CPUs, powers of two and cpus."""
    if cpus <= 8:
        return list(range(1, cpus + 1))
    return sorted({cpus, *(1 << k for k in range(cpus.bit_length()) if 1 << k < cpus)})


def _cli_tools(name: str, cpus: int, sweep: bool) -> list[str]:
    tools = list(TOOLS)
    if sweep and name == "tree":
        tools += [f"uringsync-j{j}" for j in jobs_list(cpus)]
    return tools


def _jobs_of(tool: str) -> int | None:
    return int(tool.removeprefix("uringsync-j")) if tool.startswith("uringsync-j") else None


def _row(workload: str, cache: str, runs: list[Run]) -> dict[str, Any]:
    sel = [r for r in runs if r.workload == workload and r.cache == cache]
    medians: dict[str, float | None] = {}
    failures: dict[str, int] = {}
    for tool in TOOLS:
        ok = [r.seconds for r in sel if r.tool == tool and r.ok]
        medians[tool] = statistics.median(ok) if ok else None
        failures[tool] = sum(1 for r in sel if r.tool == tool and not r.ok)
    cp = medians["cp"]
    ratios = {t: (m / cp if m is not None and cp else None) for t, m in medians.items()}
    rss = [r.peak_rss for r in sel if r.tool == "uringsync" and r.peak_rss is not None]
    target = RATIO_TARGETS.get((workload, cache))
    us, rs = medians["uringsync"], medians["rsync"]
    ratio_ok = (
        None
        if target is None
        else (ratios["uringsync"] is not None and ratios["uringsync"] <= target)
    )
    rsync_ok = us is not None and rs is not None and rs > us
    return {
        "workload": workload,
        "cache": cache,
        "rounds": max((r.round for r in sel), default=0),
        "median": medians,
        "ratio_to_cp": ratios,
        "failures": failures,
        "uringsync_peak_rss": max(rss) if rss else None,
        "target": target,
        "ratio_ok": ratio_ok,
        "rsync_slower_ok": rsync_ok,
        "passed": ratio_ok is not False and rsync_ok and not any(failures.values()),
    }


def _workers(runs: list[Run], entries: int) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(r.cache, r.jobs) for r in runs if r.jobs is not None}, key=str)
    for cache, jobs in keys:
        ok = [r.seconds for r in runs if r.cache == cache and r.jobs == jobs and r.ok]
        med = statistics.median(ok) if ok else None
        out.append(
            {
                "workload": "tree",
                "cache": cache,
                "jobs": jobs,
                "median": med,
                "entries": entries,
                "files_per_s": entries / med if med else None,
                "failures": sum(
                    1 for r in runs if r.cache == cache and r.jobs == jobs and not r.ok
                ),
            }
        )
    return out


def _first_line(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, check=False, text=True)
        return p.stdout.splitlines()[0] if p.stdout else ""
    except OSError:
        return ""


def machine_info(ws: Workspace) -> dict[str, Any]:
    u = os.uname()
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    ram = None
    with contextlib.suppress(ImportError, AttributeError):
        ram = int(importlib.import_module("psutil").virtual_memory().total)
    fs = mount_of(ws.root)
    host = mount_of(ws.workdir)
    disk: dict[str, Any] = {"device": host.source}
    dev = os.path.basename(host.source)
    for key, rel in (("rotational", "queue/rotational"), ("model", "device/model")):
        with contextlib.suppress(OSError):
            disk[key] = Path(f"/sys/class/block/{dev}/{rel}").read_text().strip()
    git = ""
    with contextlib.suppress(OSError):
        here = Path(__file__).resolve().parent.parent
        p = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
        git = p.stdout.strip()
    return {
        "uname": " ".join([u.sysname, u.nodename, u.release, u.version, u.machine]),
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": ram,
        "python": platform.python_version(),
        "filesystem": asdict(fs),
        "loop": {
            "image": str(ws.image),
            "image_size": ws.image_size,
            "device": ws.device,
            "direct_io": ws.dio,
            "host_filesystem": asdict(host),
        }
        if ws.loop
        else None,
        "host_disk": disk,
        "versions": {
            "uringsync_git": git,
            "cp": _first_line(["cp", "--version"]),
            "rsync": _first_line(["rsync", "--version"]),
            "tar": _first_line(["tar", "--version"]),
        },
    }


@dataclass(frozen=True)
class SpacePlan:
    image: int  # loop image bytes: room for every round of the small-file workloads
    image_min: int  # the least that works: sources and the largest round
    inodes: int
    need_bytes: int  # sources and the largest round, without file system overhead
    need_inodes: int


def space_plan(
    ests: dict[str, Estimate], copies: dict[str, int], rounds: dict[str, int]
) -> SpacePlan:
    """How big a file system the sources and their copies need.

    ``copies[name]``: copies of that source made in one round (between two
    chances to delete copies); ``rounds[name]``: how many rounds it has.  A workload
    of small files (under 64 KiB on average) gets room for all its rounds, so
    that its copies, thousands of files, need not be deleted between rounds;
    the others need room for one round.
    """
    src_b = sum(e.disk for e in ests.values())
    src_i = sum(e.entries + 1 for e in ests.values())
    round_b, round_i, all_b, all_i = [0], [0], [0], [0]
    for name, e in ests.items():
        n = copies.get(name, 1)
        round_b.append(int(n * e.disk * 1.05) + 64 * MiB)
        round_i.append(n * (e.entries + 1) + 100)
        if e.disk < 64 * KiB * max(1, e.entries):
            all_b.append(round_b[-1] * rounds.get(name, 1))
            all_i.append(round_i[-1] * rounds.get(name, 1))
    inodes = int((src_i + max(*round_i, *all_i)) * 1.2) + 20_000
    overhead = inodes * 256 + 2 * GiB  # inode tables; journal (up to 1 GiB) and the rest
    return SpacePlan(
        image=int((src_b + max(*round_b, *all_b)) * 1.1) + overhead,
        image_min=int((src_b + max(round_b)) * 1.1) + overhead,
        inodes=inodes,
        need_bytes=src_b + max(round_b),
        need_inodes=src_i + max(round_i),
    )


def _default_json(workdir: Path) -> Path:
    here = Path("benchmarks")
    return here / "results" / "bench.json" if here.is_dir() else workdir / "bench.json"


def run(opts: Options, say: Say = _say_stderr) -> tuple[int, dict[str, Any]]:
    """The whole benchmark; returns (exit code, the results written to JSON)."""
    _need("cp", "rsync", "tar")
    if opts.verify not in ("count", "rsync", "none"):
        raise BenchError(f"--verify must be count, rsync or none, not {opts.verify!r}")
    root_user = os.geteuid() == 0
    caches = [c for c, on in (("cold", opts.cold), ("warm", opts.warm)) if on]
    notes: list[str] = []
    if "cold" in caches and not root_user:
        caches.remove("cold")
        notes.append("cold runs skipped: dropping the page cache needs root")
        say("warning: " + notes[-1])
    if not caches and opts.workloads:
        raise BenchError("nothing to time: both --no-cold and --no-warm (or cold without root)")
    cpus = os.cpu_count() or 1
    specs = workload_specs(
        opts.workloads,
        entries=opts.entries,
        big_size=opts.big_size,
        mixed_files=opts.mixed_files,
        mixed_big=opts.mixed_big,
        seed=opts.seed,
    )
    if opts.rss_entries:
        specs["rss"] = TreeSpec(entries=opts.rss_entries, seed=opts.seed, profile="tiny")
    ests = {name: estimate(spec) for name, spec in specs.items()}
    copies = {name: len(_cli_tools(name, cpus, opts.jobs_sweep)) for name in opts.workloads}
    plan = space_plan(ests, copies, {name: opts.rounds * len(caches) for name in opts.workloads})
    image, inodes, min_b, min_i = plan.image, plan.inodes, plan.need_bytes, plan.need_inodes
    if opts.image_size is not None:
        image = opts.image_size
        inodes = max(min_i * 2, image // (64 * KiB))
    ws = Workspace(opts.workdir, loop=opts.loop, keep=opts.keep, settle=opts.settle, say=say)
    json_out = opts.json_out or _default_json(ws.workdir)
    plot_out = opts.plot or json_out.with_suffix(".png")
    if not opts.loop:
        ws.workdir.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(ws.workdir)
        free_b, free_i = st.f_bavail * st.f_frsize, st.f_favail
        if free_b < min_b or (st.f_files and free_i < min_i):
            raise BenchError(
                f"not enough space in {ws.workdir}: the sources and one round of copies need "
                f"about {fmt_bytes(min_b)} and {min_i} inodes, {fmt_bytes(free_b)} and {free_i} "
                "are free; use another --workdir or smaller workloads"
            )
    elif opts.image_size is not None and image < plan.image_min:
        raise BenchError(
            f"--image-size {fmt_bytes(image)} is too small: the sources and one round of "
            f"copies need about {fmt_bytes(plan.image_min)}"
        )
    elif not os.path.exists(ws.image) and image > plan.image_min:
        ws.workdir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(ws.workdir).free - 2 * GiB
        if image > free:
            image = max(plan.image_min, free)
            notes.append(
                f"the loop image is {fmt_bytes(image)}, not {fmt_bytes(plan.image)} (free space): "
                "copies of the tree are deleted between rounds"
            )
            say("note: " + notes[-1])
    data: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "date": _now(),
        "params": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
            "caches": caches,
            "cpus": cpus,
        },
        "tools": {
            "uringsync": f"{Path(sys.executable).name} -m uringsync cp -a "
            + "".join(f"{shlex.quote(a)} " for a in opts.uringsync_args)
            + "--json SRC DST",
            "cp": "cp -a SRC DST",
            "rsync": "rsync -aHAX SRC/ DST/",
            "tar": "tar --xattrs --acls -C PARENT -cf - NAME | tar --xattrs --acls -C DST -xpf -",
        },
        "targets": {
            "ratio_to_cp": {f"{w}/{c}": t for (w, c), t in RATIO_TARGETS.items()},
            "rsync_slower_than_uringsync": True,
            "peak_rss_bytes": RSS_TARGET,
            "peak_rss_at_entries": RSS_TARGET_ENTRIES,
        },
        "notes": notes,
    }
    runs: list[Run] = []
    old_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)  # clean up on Ctrl-C
    try:
        ws.setup(image, inodes)
        data["machine"] = machine_info(ws)
        caps = probe_uringsync()
        data["capabilities"] = asdict(caps)
        if not caps.json:
            notes.append("uringsync cp has no --json: its peak RSS is not reported")
        if opts.jobs_sweep and not caps.jobs:
            notes.append("uringsync cp has no -j/--jobs: files/s per worker count skipped")
        sweep = opts.jobs_sweep and caps.jobs
        sources = {name: ensure_source(ws, name, spec) for name, spec in specs.items()}
        _pools.clear()  # the generator's 80 MiB: the bench stays small while it times
        data["params"]["rss_method"] = rss_method()
        data["workloads"] = {
            n: {"spec": spec_dict(s.spec), "summary": asdict(s.summary), "path": str(s.path)}
            for n, s in sources.items()
        }
        data["rows"], data["workers"], data["rss_check"] = [], [], None
        for name in opts.workloads:
            src = sources[name]
            tools = _cli_tools(name, cpus, sweep)
            est = ests[name]
            for cache in caches:
                for r in range(opts.rounds):
                    ws.make_room(
                        int(len(tools) * est.disk * 1.05) + 64 * MiB,
                        len(tools) * (est.entries + 1) + 100,
                        f"{name} {cache} round {r + 1}",
                    )
                    if cache == "warm":
                        warm_read(src.path)
                    for tool in _rotate(tools, r):
                        run_ = run_one(
                            ws,
                            src,
                            tool,
                            cache,
                            caps,
                            round_no=r,
                            jobs=_jobs_of(tool),
                            verify=opts.verify,
                            extra=opts.uringsync_args,
                        )
                        runs.append(run_)
                        say(_progress(run_))
                data["rows"].append(_row(name, cache, runs))
            if name == "tree":
                data["workers"] = _workers(runs, src.summary.entries)
            data["runs"] = [_run_dict(r) for r in runs]
            data["events"] = ws.events
            write_json(data, json_out)
        if "rss" in sources:
            data["rss_check"] = _rss_check(ws, sources["rss"], ests["rss"], caps, opts, say)
        data["runs"] = [_run_dict(r) for r in runs]
        data["events"] = ws.events
        data["finished"] = _now()
        write_json(data, json_out)
    finally:
        try:
            ws.teardown()
        finally:
            signal.signal(signal.SIGINT, old_sigint)
    say(f"results: {json_out}")
    try:
        plot(data, plot_out)
        say(f"plot: {plot_out}")
    except ImportError:
        say("matplotlib is not installed (pip install matplotlib): no plot")
    failed = [r for r in runs if not r.ok]
    rss = data.get("rss_check")
    failed_rss = rss is not None and not rss.get("ok")
    return (1 if failed or failed_rss else 0), data


def _rss_check(
    ws: Workspace, src: Source, est: Estimate, caps: Caps, opts: Options, say: Say
) -> dict[str, Any]:
    ws.make_room(int(est.disk * 1.05) + 64 * MiB, est.entries + 100, "the RSS check")
    say(f"rss: copying {src.summary.entries} entries once with uringsync ...")
    r = run_one(
        ws,
        src,
        "uringsync",
        "warm",
        caps,
        verify=opts.verify,
        label="rss-uringsync",
        extra=opts.uringsync_args,
    )
    say(_progress(r))
    peak, how = r.peak_rss, "json: summed over all uringsync processes"
    if peak is None:
        peak = max(r.maxrss_wait4) if r.maxrss_wait4 else None
        how = "wait4: largest single process (uringsync cp has no --json)"
    at_target = src.summary.entries >= RSS_TARGET_ENTRIES
    return {
        "entries": src.summary.entries,
        "seconds": r.seconds,
        "entries_per_s": src.summary.entries / r.seconds if r.seconds else None,
        "peak_rss": peak,
        "peak_rss_source": how,
        "target": RSS_TARGET,
        "target_entries": RSS_TARGET_ENTRIES,
        "passed": (peak is not None and peak <= RSS_TARGET) if at_target else None,
        "ok": r.ok,
        "run": _run_dict(r),
    }


def _run_dict(r: Run) -> dict[str, Any]:
    d = asdict(r)
    d["ok"] = r.ok
    return d


def _progress(r: Run) -> str:
    rss = f" rss {fmt_bytes(r.peak_rss)}" if r.peak_rss is not None else ""
    state = "ok" if r.ok else f"FAILED (exit {r.exit_code}) {r.verify_error or r.stderr[-300:]}"
    return f"{r.workload:8} {r.cache:4} r{r.round} {r.tool:13} {r.seconds:8.3f} s{rss}  {state}"


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


# ----------------------------------------------------------------- output

TOOL_LABELS = {
    "uringsync": "uringsync cp -a",
    "cp": "cp -a",
    "rsync": "rsync -aHAX",
    "tar": "tar | tar",
}


def _secs(row: dict[str, Any], tool: str) -> str:
    m, f = row["median"][tool], row["failures"][tool]
    if m is None:
        return f"FAILED ({f})" if f else "-"
    return f"{m:.3f}" + (f" ({f} failed)" if f else "")


def print_table(data: dict[str, Any]) -> None:
    """The results as tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(140, shutil.get_terminal_size().columns))
    if data.get("rows"):
        t = Table(title="median seconds, and ratio to cp -a's: lower is faster")
        for col in (
            "workload",
            "cache",
            "uringsync s",
            "cp s",
            "rsync s",
            "tar s",
            "us/cp",
            "rsync/cp",
            "tar/cp",
            "us peak RSS",
            "target us/cp",
            "rsync>us",
            "result",
        ):
            t.add_column(col, justify="left" if col in ("workload", "cache", "result") else "right")
        for row in data["rows"]:
            ratios, rss, target = row["ratio_to_cp"], row["uringsync_peak_rss"], row["target"]
            t.add_row(
                row["workload"],
                row["cache"],
                *(_secs(row, tool) for tool in TOOLS),
                *(
                    f"{ratios[tool]:.2f}" if ratios[tool] is not None else "-"
                    for tool in ("uringsync", "rsync", "tar")
                ),
                fmt_bytes(rss) if rss is not None else "n/a",
                f"<= {target:.2f} {'ok' if row['ratio_ok'] else 'MISSED'}" if target else "-",
                "ok" if row["rsync_slower_ok"] else "NO",
                "[green]pass[/]" if row["passed"] else "[red]FAIL[/]",
            )
        console.print(t)
    if data.get("workers"):
        w = Table(title="uringsync on the tree by worker count (-j)")
        for col in ("cache", "-j", "median s", "entries/s"):
            w.add_column(col, justify="right")
        for row in data["workers"]:
            med, fps = row["median"], row["files_per_s"]
            w.add_row(
                row["cache"],
                str(row["jobs"]),
                f"{med:.3f}" if med else "FAILED",
                f"{fps:,.0f}" if fps else "-",
            )
        console.print(w)
    rss = data.get("rss_check")
    if rss:
        peak = rss["peak_rss"]
        verdict = {True: "pass", False: "FAIL", None: "not judged below that size"}
        console.print(
            f"RSS check: {rss['entries']:,} entries in {rss['seconds']:.1f} s, peak RSS "
            f"{fmt_bytes(peak) if peak is not None else 'n/a'} ({rss['peak_rss_source']}); "
            f"target <= {RSS_TARGET / 1e6:.0f} MB at {RSS_TARGET_ENTRIES:,} entries: "
            f"{verdict[rss['passed']]}" + ("" if rss["ok"] else "; [red]the copy FAILED[/]")
        )
    for note in data.get("notes", []):
        console.print(f"note: {note}")


def plot(data: dict[str, Any], path: Path) -> None:
    """A PNG of the results: ratios to cp -a with the targets, median seconds,
    and files/s by worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data.get("rows", [])
    workers = data.get("workers", [])
    panels = 2 + bool(workers) if rows else 1
    fig, axes = plt.subplots(
        panels, 1, figsize=(max(8.0, 1.7 * len(rows) + 3), 4.0 * panels), squeeze=False
    )
    ax_list = [a for (a,) in axes]
    labels = [f"{r['workload']}\n{r['cache']}" for r in rows]
    xs = list(range(len(rows)))
    width = 0.8 / len(TOOLS)
    colors = {"uringsync": "tab:green", "cp": "tab:gray", "rsync": "tab:orange", "tar": "tab:blue"}
    if rows:
        ratio_ax, secs_ax = ax_list[0], ax_list[1]
        for i, tool in enumerate(TOOLS):
            pos = [x + (i - (len(TOOLS) - 1) / 2) * width for x in xs]
            ratio = [
                r["ratio_to_cp"][tool] if r["ratio_to_cp"][tool] is not None else math.nan
                for r in rows
            ]
            secs = [r["median"][tool] if r["median"][tool] is not None else math.nan for r in rows]
            bars = ratio_ax.bar(pos, ratio, width, label=TOOL_LABELS[tool], color=colors[tool])
            if tool == "uringsync":
                ratio_ax.bar_label(bars, fmt="%.2f", fontsize=8)
            secs_ax.bar(pos, secs, width, label=TOOL_LABELS[tool], color=colors[tool])
            for x, r in zip(pos, rows, strict=True):
                if r["median"][tool] is None and r["failures"][tool]:
                    ratio_ax.text(
                        x,
                        0.02,
                        "failed",
                        rotation=90,
                        color="red",
                        fontsize=8,
                        ha="center",
                        va="bottom",
                    )
        first = True
        for x, r in zip(xs, rows, strict=True):
            if r["target"] is not None:
                ratio_ax.hlines(
                    r["target"],
                    x - 0.45,
                    x + 0.45,
                    colors="red",
                    linestyles="--",
                    label="target for uringsync" if first else None,
                )
                first = False
        ratio_ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
        ratio_ax.set_ylabel("median time / cp -a's (lower is faster)")
        ratio_ax.set_xticks(xs, labels)
        ratio_ax.legend(fontsize=8, ncols=5, loc="upper left")
        ratio_ax.set_ylim(
            0,
            max(2.0, *(v for r in rows for v in r["ratio_to_cp"].values() if v is not None)) * 1.15,
        )
        secs_ax.set_ylabel("median seconds")
        secs_ax.set_yscale("log")
        secs_ax.set_xticks(xs, labels)
        secs_ax.legend(fontsize=8, ncols=4, loc="upper left")
        if workers:
            w_ax = ax_list[2]
            for cache in sorted({w["cache"] for w in workers}):
                pts = [
                    (w["jobs"], w["files_per_s"])
                    for w in workers
                    if w["cache"] == cache and w["files_per_s"]
                ]
                if pts:
                    w_ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=cache)
            w_ax.set_xlabel("uringsync -j (worker processes)")
            w_ax.set_ylabel("entries/s (tree)")
            w_ax.set_xticks(sorted({w["jobs"] for w in workers}))
            w_ax.set_ylim(bottom=0)
            w_ax.legend(fontsize=8)
    else:
        ax_list[0].axis("off")
        ax_list[0].text(0.5, 0.5, "no timed workloads in this run", ha="center", va="center")
    m = data.get("machine", {})
    ram = m.get("ram_bytes")
    fs = (m.get("filesystem") or {}).get("fstype", "?")
    fig.suptitle(
        f"uringsync bench {data.get('date', '')[:10]}: {m.get('cpu_model', '?')}, "
        f"{m.get('cores', '?')} cores, {ram / GiB if ram else 0:.0f} GiB RAM, {fs}"
        + (" on a loop image" if m.get("loop") else ""),
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_only(json_path: Path, plot_path: Path | None) -> Path:
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"cannot read the results {json_path}: {e}") from None
    if not isinstance(data, dict) or "rows" not in data:
        raise BenchError(f"{json_path} is not the JSON written by uringsync bench")
    out = plot_path or json_path.with_suffix(".png")
    plot(data, out)
    return out


# -------------------------------------------------------------------- cli


def cli(
    *,
    workloads: str,
    entries: int,
    big_size: str,
    mixed_files: int,
    mixed_big: str,
    rounds: int,
    cold: bool,
    warm: bool,
    jobs_sweep: bool,
    workdir: str,
    loop: bool,
    image_size: str | None,
    keep: bool,
    settle: float,
    verify: str,
    rss_entries: int,
    seed: int,
    json_out: str | None,
    plot_path: str | None,
    plot_only_json: str | None,
    uringsync_args: str = "",
) -> int:
    """``uringsync bench``: parse the options, run, print the table; exit code."""
    try:
        if plot_only_json is not None:
            src = Path(plot_only_json)
            out = plot_only(src, Path(plot_path) if plot_path else None)
            _say_stderr(f"plot: {out}")
            print_table(json.loads(src.read_text()))
            return 0
        names = tuple(w.strip() for w in workloads.split(",") if w.strip() not in ("", "none"))
        opts = Options(
            workloads=names,
            entries=entries,
            big_size=parse_size(big_size),
            mixed_files=mixed_files,
            mixed_big=parse_size(mixed_big),
            rounds=rounds,
            cold=cold,
            warm=warm,
            jobs_sweep=jobs_sweep,
            workdir=Path(workdir),
            loop=loop,
            image_size=parse_size(image_size) if image_size else None,
            keep=keep,
            settle=settle,
            verify=verify,
            rss_entries=rss_entries,
            seed=seed,
            json_out=Path(json_out) if json_out else None,
            plot=Path(plot_path) if plot_path else None,
            uringsync_args=tuple(shlex.split(uringsync_args)),
        )
        if not names and not rss_entries:
            raise BenchError("no workloads and no --rss-entries: nothing to do")
        code, data = run(opts)
        print_table(data)
        return code
    except BenchError as e:
        _say_stderr(f"uringsync bench: {e}")
        return 1
