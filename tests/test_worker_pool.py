"""The worker pool (issue #4): several pinned worker processes, big files
split into ranges, stopping on SIGINT/SIGTERM, workers that die.

Every test checks what is on disk afterwards: content hashes, every stat
field, xattrs and ACLs, hard-link groups, holes; against the source, against
``cp -a`` and with ``rsync -naHAXc``.  Where a test needs to know which path
the walker took (split or not, which worker ran which job), it records the
walker's trace events (``Tuning.on_trace``); nothing is patched, nothing of
the kernel is faked.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

import uringsync
from tests.support.base import KiB, MiB, p, root_only
from tests.support.cli import assert_error_lines, check_cp, run_cli
from tests.support.compare import (
    assert_same_links,
    assert_same_meta,
    assert_same_tree,
    data_map,
    rsync_clean,
    snapshot,
)
from tests.support.system import count_fds, mount_ramfs, mount_tmpfs, run_ok, umount
from tests.support.trees import make_socket, make_sparse, rand_bytes, set_tree_times, write_file
from uringsync import engine
from uringsync import pool as pool_mod
from uringsync import walker as walker_mod
from uringsync.engine import ffi, lib

# the fields a complete copy must have (atime aside: see snapshot's Rec)
FULL = ("type", "mode", "uid", "gid", "size", "mtime_ns", "sha256")

pytestmark = root_only  # owners, trusted.* xattrs, device nodes, mounts


# ----------------------------------------------------------- recording


class Recorder:
    """Watches the walker through its trace events (``Tuning.on_trace``,
    passed as ``api.copy``'s ``_tuning``) to see which worker got which
    job, which files were split, and how many ranges of each came back.
    ``split_min``/``range_size``: the walker's split sizes for the copy."""

    def __init__(
        self,
        split_min: int = walker_mod.Tuning.split_min,
        range_size: int = walker_mod.Tuning.range_size,
    ) -> None:
        # per job sent to a worker: (worker index, type, src name, dst name)
        self.sent: list[tuple[int, int, bytes, bytes]] = []
        self.big: dict[bytes, bool] = {}  # name -> split or not
        self.ranges: dict[bytes, int] = {}  # name -> ranges completed
        self.range_bytes: dict[bytes, int] = {}
        # called (with the walker) before a big file is opened to be split
        self.before_big: Callable[[Any, bytes], None] | None = None
        self.tuning = walker_mod.Tuning(split_min, range_size, on_trace=self.on_trace)

    def on_trace(self, walker: walker_mod.Walker, ev: walker_mod.Trace) -> None:
        if ev.kind == "batch_sent":
            self.sent.extend((ev.worker, *j) for j in ev.jobs)
        elif ev.kind == "big_open":
            if self.before_big is not None:
                self.before_big(walker, ev.name)
        elif ev.kind == "big_split":
            self.big[ev.name] = ev.split
        elif ev.kind == "range_done":
            self.ranges[ev.name] = self.ranges.get(ev.name, 0) + 1
            self.range_bytes[ev.name] = self.range_bytes.get(ev.name, 0) + ev.bytes

    def workers_of(self, jtype: int, name: bytes) -> set[int]:
        return {w for w, t, _s, d in self.sent if t == jtype and d == name}


# ------------------------------------------------ the rich source tree


@dataclass
class Rich:
    src: bytes
    before: dict[bytes, Any]  # snapshot of src
    cp: bytes  # cp -a of src
    cp_snap: dict[bytes, Any]
    counts: tuple[int, int, int, int]  # files, links, symlinks, specials
    big: bytes  # relpath of the file big enough to be split for real


NDIRS = 40
BIG_NAME = b"d05/bigfile"
BIG_SIZE = 80 * MiB + 12_345  # >= walker.SPLIT_MIN (64 MiB): split for real


def build_rich(src: bytes) -> tuple[int, int, int, int]:
    """A few thousand entries: hard-link groups whose names are spread over
    many directories (so over many batches, and so over both workers),
    symlinks (one hard-linked), FIFOs, sockets, devices, xattrs, ACLs, odd
    modes, owners and times, one multi-chunk file per directory and one
    file big enough to be split into ranges."""
    import random

    rng = random.Random(4)
    os.mkdir(src)
    dirs: list[bytes] = []
    for d in range(NDIRS):
        # every fourth directory is nested in the previous one
        rel = p(dirs[-1], b"n%02d" % d) if d % 4 == 3 else b"d%02d" % d
        os.mkdir(p(src, rel))
        dirs.append(rel)
    files = links = symlinks = specials = 0
    modes = [0o644, 0o600, 0o755, 0o4755, 0o2750, 0o6711, 0o000, 0o444, 0o1755, 0o640]
    owners = [(0, 0), (1234, 5678), (65534, 65534), (0, 5678)]
    sizes = [0, 1, 100, 4096, 5000, 70_000, 131_073]
    for di, rel in enumerate(dirs):
        for i in range(45):
            name = p(src, rel, b"f%02d_%03d" % (di, i))
            size = 300_000 + di if i == 0 else rng.choice(sizes)
            write_file(name, rand_bytes(size, name))
            uid, gid = owners[(di + i) % len(owners)]
            os.chown(name, uid, gid)
            os.chmod(name, modes[(di * 7 + i) % len(modes)])
            if i % 9 == 0:
                os.setxattr(name, b"user.k", b"v\0%d" % i)
            if i % 17 == 0:
                os.setxattr(name, b"trusted.t", rand_bytes(300, name))
            files += 1
        for i in range(3):
            os.symlink(b"../" * (i % 3) + b"target%d" % i, p(src, rel, b"l%02d_%d" % (di, i)))
            symlinks += 1
        if di % 2 == 0:
            f = p(src, rel, b"fifo%02d" % di)
            os.mkfifo(f, 0o640)
            os.chmod(f, 0o640 if di % 4 else 0o1620)
            specials += 1
    lchown = p(src, dirs[1], b"l01_0")
    os.lchown(lchown, 1234, 5678)
    os.setxattr(lchown, b"trusted.on_link", b"L", follow_symlinks=False)
    make_socket(p(src, dirs[2], b"sock"))
    os.mknod(p(src, dirs[3], b"chr"), 0o620 | stat.S_IFCHR, os.makedev(1, 7))
    os.chown(p(src, dirs[3], b"chr"), 1234, 5678)
    specials += 2

    # hard-link groups: each name in another directory, 2 to 5 names
    for g in range(200):
        first = p(src, dirs[g % NDIRS], b"h%03d_0" % g)
        write_file(first, rand_bytes(rng.choice([0, 10, 5000, 140_000]), first))
        os.chown(first, *owners[g % len(owners)])
        os.chmod(first, modes[g % len(modes)])
        if g % 5 == 0:
            os.setxattr(first, b"user.group", b"%d" % g)
        files += 1
        for k in range(1, 2 + g % 4):
            os.link(first, p(src, dirs[(g * 7 + k * 13) % NDIRS], b"h%03d_%d" % (g, k)))
            links += 1
    # a hard-linked FIFO and a hard-linked symlink, across directories
    os.link(p(src, dirs[0], b"fifo00"), p(src, dirs[21], b"fifo_link"))
    os.link(p(src, dirs[4], b"l04_1"), p(src, dirs[33], b"symlink_link"), follow_symlinks=False)
    links += 2

    # ACLs: on files, a directory, a default ACL with entries made under it
    acl_files = [p(src, dirs[k], b"f%02d_%03d" % (k, 5)) for k in range(0, NDIRS, 5)]
    run_ok("setfacl", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", *acl_files)
    run_ok("setfacl", "-m", "u:4321:r-x,o::---", p(src, dirs[6]))
    defacl = p(src, dirs[7], b"defacl")
    os.mkdir(defacl)
    run_ok("setfacl", "-d", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", defacl)
    for i in range(5):
        write_file(p(defacl, b"inh%d" % i), b"inherits %d\n" % i)
        files += 1
    os.mkdir(p(defacl, b"sub"))
    os.setxattr(p(src, dirs[8]), b"user.dir", rand_bytes(2000, "dir"))
    os.setxattr(p(src, dirs[9]), b"trusted.dir", b"\0")

    # the file split into ranges with several workers (walker.SPLIT_MIN)
    big = p(src, BIG_NAME)
    write_file(big, rand_bytes(BIG_SIZE, "big"))
    os.chown(big, 1234, 5678)
    os.chmod(big, 0o6751)
    os.setxattr(big, b"user.big", b"\xff\0" * 50)
    run_ok("setfacl", "-m", "u:1234:rw-,g:5678:r--", big)
    files += 1

    # directory modes and owners, after their contents exist
    dmodes = [0o755, 0o1777, 0o2775, 0o555, 0o700, 0o000, 0o750, 0o3777]
    for di, rel in enumerate(dirs):
        if di % 3 == 0:
            os.chown(p(src, rel), *owners[di % len(owners)])
        os.chmod(p(src, rel), dmodes[di % len(dmodes)])
    # times: random past mtimes (a few before 1970, ns precision), future
    # atimes (relatime never bumps them, whoever reads first)
    mtimes = {dirs[10]: -1_234_567_890_123_456_789, dirs[11] + b"/f11_001": -1}
    set_tree_times(src, mtimes, seed=11, keep_mtime=False)
    return files, links, symlinks, specials


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> Rich:
    base = os.fsencode(tmp_path_factory.mktemp("rich"))
    src = p(base, b"src")
    counts = build_rich(src)
    before = snapshot(src)
    check_cp(b"-a", src, p(base, b"cp"))
    return Rich(src, before, p(base, b"cp"), snapshot(p(base, b"cp")), counts, BIG_NAME)


def check_rich_copy(rich: Rich, dst: bytes) -> None:
    """dst is cp -a's result field by field, and the source's."""
    assert_same_tree(rich.cp_snap, dst)  # every field, atime too, dirs' mtimes too
    assert_same_tree(rich.before, dst)
    assert_same_links(rich.src, dst)
    assert_same_meta(rich.src, rich.cp, dst)
    rsync_clean(rich.src, dst)


# ---------------------------------------------- 1. several workers, cp -a


@pytest.mark.parametrize("jobs", [2, 3, 1, 0])
def test_tree_with_workers_is_cp_a(rich: Rich, tmp: bytes, jobs: int) -> None:
    rec = Recorder()
    dst = p(tmp, b"us")
    res = uringsync.copy([rich.src], dst, archive=True, jobs=jobs, _tuning=rec.tuning)
    assert res.exit_code == 0, res.errors[:5]
    assert res.workers == jobs
    assert (res.files, res.links, res.symlinks, res.specials) == rich.counts
    assert res.dirs == sum(r.type == "dir" for r in rich.before.values())
    check_rich_copy(rich, dst)
    shutil.rmtree(dst)  # passed: pytest keeps tmp dirs, not 150 MB each

    big = os.path.basename(rich.big)
    if jobs == 0:
        assert not rec.sent  # no workers: nothing sent
        return
    per_worker = {w for w, *_ in rec.sent}
    assert per_worker == set(range(jobs)), "a worker never got a batch"
    if jobs == 1:
        assert rec.big == {}, "split with a single worker"
        return
    # every hard link went to a worker after the job that made its target
    # (which worker links is the least busy one's: not promised, so not
    # asserted; names are unique in the tree, so a name says which job)
    order = {d: i for i, (_w, t, _s, d) in enumerate(rec.sent) if t == engine.T_REG}
    linked = [(i, s) for i, (_w, t, s, _d) in enumerate(rec.sent) if t == engine.T_HARDLINK]
    assert len(linked) == rich.counts[1]
    reg_targets = [(i, s) for i, s in linked if s in order]
    assert reg_targets, "no link to a regular file went through a worker"
    assert all(order[s] < i for i, s in reg_targets), "a link sent before its target's copy"
    # the big file went in ranges (which worker runs a range is the least
    # busy one's: both, most of the time, but that is not promised)
    assert rec.big == {big: True}
    assert rec.ranges[big] >= 3
    assert rec.range_bytes[big] == BIG_SIZE


# ------------------------------------------------- 2. big-file splitting

SPLIT_MIN = 1 * MiB
RANGE = 256 * KiB

# sizes straddling SPLIT_MIN, RANGE, the 128 KiB chunk and O_DIRECT's 4 KiB
BIG_SIZES = {
    b"below": SPLIT_MIN - 1,  # not split
    b"exact_min": SPLIT_MIN,  # 4 ranges
    b"min_plus_1": SPLIT_MIN + 1,  # 4 ranges + a 1-byte one (or tail)
    b"ranges_9": 9 * RANGE,  # an exact multiple of RANGE
    b"tail_123": 5 * MiB + 123,  # unaligned tail, body ends on a chunk
    b"tail_5123": 5 * MiB + 5123,  # body (O_DIRECT: 4 KiB-aligned) ends mid-chunk
    b"odd_chunks": 3 * MiB + 3 * 4096 + 77,
}


@pytest.fixture
def small_split() -> Recorder:
    """Split files from 1 MiB on, in 256 KiB ranges (the split is decided in
    this process: api.copy runs the walker here); pass ``_tuning``."""
    return Recorder(SPLIT_MIN, RANGE)


def build_bigs(src: bytes) -> dict[bytes, int]:
    """Big files with xattrs, an ACL, odd modes/owners/times; plus a
    hard-linked big file and a sparse one (neither is split)."""
    os.makedirs(p(src, b"sub"))
    modes = [0o6750, 0o4711, 0o640, 0o2755, 0o444, 0o1700, 0o600]
    for k, (name, size) in enumerate(BIG_SIZES.items()):
        f = p(src, b"sub" if k % 2 else b"", name)
        write_file(f, rand_bytes(size, name))
        os.chown(f, 1234 + k, 5678 + k)
        os.chmod(f, modes[k % len(modes)])
        os.setxattr(f, b"user.name", name)
        os.setxattr(f, b"user.bin", b"\0\xff" * (k + 1))
        os.setxattr(f, b"trusted.t", b"t%d" % k)
        run_ok("setfacl", "-m", f"u:{4000 + k}:rw-,g:5678:r--", f)
    write_file(p(src, b"linked"), rand_bytes(2 * MiB + 7, "linked"), 0o640)
    os.link(p(src, b"linked"), p(src, b"sub", b"linked2"))
    make_sparse(
        p(src, b"sparse"), [(0, rand_bytes(64 * KiB, 1)), (6 * MiB, rand_bytes(64 * KiB, 2))],
        8 * MiB + 3,
    )  # fmt: skip
    for i in range(30):
        write_file(p(src, b"sub", b"small%02d" % i), rand_bytes(i * 1000, i))
    set_tree_times(src, {b"tail_123": -5, b"sub/min_plus_1": 2**33 * 10**9 + 7}, seed=3,
                   keep_mtime=False)  # fmt: skip
    return {(b"sub/" if k % 2 else b"") + n: s for k, (n, s) in enumerate(BIG_SIZES.items())}


@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "direct"])
@pytest.mark.parametrize("into", ["new", "default_acl_dir"])
def test_big_files_split_into_ranges(
    tmp: bytes, small_split: Recorder, direct: bool, into: str
) -> None:
    """Split files equal their source and cp -a's copy in every field, xattr
    and ACL, with no holes made.  The split path was really taken (seen by
    the Recorder's wrappers): the walker split exactly the files it should,
    each came back as several ranges whose bytes add up to the file's body
    (the rest is the tail the walker copies), and both workers ran ranges.
    ``default_acl_dir``: the copy lands in a directory with a default ACL,
    so every new file inherits ACLs that must be removed again."""
    src = p(tmp, b"src")
    bigs = build_bigs(src)
    before = snapshot(src)
    us_out, cp_out = p(tmp, b"us_out"), p(tmp, b"cp_out")
    for d in (us_out, cp_out):
        os.mkdir(d)
        if into == "default_acl_dir":
            run_ok("setfacl", "-d", "-m", "u:999:rwx,g:999:rwx,m::rwx", d)
    res = uringsync.copy(
        [src], us_out, archive=True, jobs=2, direct=direct, _tuning=small_split.tuning
    )
    check_cp(b"-a", src, cp_out)
    us, cp = p(us_out, b"src"), p(cp_out, b"src")
    assert res.exit_code == 0, res.errors
    # bytes written: each inode once, a sparse file's data only
    sparse_data = sum(e - b for b, e in data_map(p(src, b"sparse")))
    nbytes = sum(r.size or 0 for r in before.values() if r.type == "reg")
    assert res.bytes == nbytes - (2 * MiB + 7) - (8 * MiB + 3) + sparse_data  # linked2, sparse

    split = {os.path.basename(n) for n, s in bigs.items() if s >= SPLIT_MIN}
    assert small_split.big == dict.fromkeys(split, True), "split the wrong files"
    # which worker gets a range is the least busy one's: over all the
    # files, both ran some
    ran = set().union(*(small_split.workers_of(engine.T_RANGE, n) for n in split))
    assert ran == {0, 1}
    for name in split:
        assert small_split.ranges[name] >= 4, name
        body = small_split.range_bytes[name]
        size = bigs[name] if name in bigs else bigs[b"sub/" + name]
        assert body in (size, size & ~4095), (name, body, size)  # the rest: the tail
        if not direct:
            assert body == size

    assert_same_tree(before, us)
    assert_same_tree(cp, us)
    assert_same_meta(src, cp, us)
    assert_same_links(src, us)
    rsync_clean(src, us)
    for rel, size in bigs.items():
        assert data_map(p(us, rel)) == ([(0, size)] if size else []), rel  # no holes made
    # the sparse file was not split and keeps its holes
    assert data_map(p(us, b"sparse")) == data_map(p(src, b"sparse"))
    assert os.lstat(p(us, b"sparse")).st_blocks <= os.lstat(p(src, b"sparse")).st_blocks + 8


def test_big_file_onto_existing_destination(tmp: bytes, small_split: Recorder) -> None:
    """A destination file already there (a symlink, even): the big file is
    then copied as one job (it replaces, never writes through), correctly."""
    src = p(tmp, b"src")
    os.mkdir(src)
    write_file(p(src, b"big"), rand_bytes(3 * MiB + 5, "b"), 0o751)
    write_file(p(src, b"big2"), rand_bytes(2 * MiB, "b2"), 0o640)
    set_tree_times(src, seed=5, keep_mtime=False)
    out = p(tmp, b"out")
    dst = p(out, b"src")
    os.makedirs(dst)
    write_file(p(dst, b"big"), b"old content", 0o600)
    victim = p(tmp, b"victim")
    write_file(victim, b"must stay")
    os.symlink(victim, p(dst, b"big2"))
    res = uringsync.copy([src], out, archive=True, jobs=2, _tuning=small_split.tuning)
    assert res.exit_code == 0, res.errors
    assert small_split.big == {b"big": False, b"big2": False}
    assert_same_tree(src, dst)
    with open(victim, "rb") as fh:
        assert fh.read() == b"must stay"


@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "direct"])
def test_split_file_onto_full_tmpfs(tmp: bytes, small_split: Recorder, direct: bool) -> None:
    """A split file that does not fit: one 'write' error (ENOSPC) naming the
    destination, no partial file left, the small files all copied."""
    src = p(tmp, b"src")
    os.makedirs(p(src, b"big"))
    for i in range(20):
        write_file(p(src, b"small%02d" % i), rand_bytes(5000 + i, i), 0o640)
    write_file(p(src, b"big", b"f"), rand_bytes(5 * MiB + 123, "f"), 0o644)
    set_tree_times(src, seed=9, keep_mtime=False)
    before = snapshot(src)

    # The small files (in the root, queued first) are copied before the big
    # file is split; otherwise whether they or the big file hit the full
    # disk first would be a race.
    def drain_first(w: Any, name: bytes) -> None:
        w.drain()

    small_split.before_big = drain_first
    mnt = p(tmp, b"mnt")
    os.mkdir(mnt)
    reason = mount_tmpfs(mnt, "3m")
    if reason:
        pytest.skip(reason)
    try:
        dst = p(mnt, b"dst")
        res = uringsync.copy(
            [src], dst, archive=True, jobs=2, direct=direct, _tuning=small_split.tuning
        )
        assert res.exit_code == 23
        assert small_split.big == {b"f": True}  # it was split
        [e] = res.errors
        assert (e.op, e.errno, e.path) == ("write", errno.ENOSPC, p(dst, b"big", b"f")), e
        assert e.message == f"error writing '{os.fsdecode(e.path)}': No space left on device"
        assert os.listdir(p(dst, b"big")) == []  # no partial file
        assert_same_tree(before, dst, exclude=lambda r: r == b"big/f")
    finally:
        umount(mnt)


def test_sparse_big_file_not_split(tmp: bytes, small_split: Recorder) -> None:
    src = p(tmp, b"src")
    os.mkdir(src)
    segs = [(MiB, rand_bytes(100_000, 1)), (20 * MiB, rand_bytes(5000, 2))]
    make_sparse(p(src, b"holes"), segs, 32 * MiB + 1)
    write_file(p(src, b"dense"), rand_bytes(3 * MiB, 3))
    set_tree_times(src, seed=2, keep_mtime=False)
    res = uringsync.copy([src], p(tmp, b"dst"), archive=True, jobs=2, _tuning=small_split.tuning)
    assert res.exit_code == 0, res.errors
    assert small_split.big == {b"dense": True}
    assert_same_tree(src, p(tmp, b"dst"))
    assert data_map(p(tmp, b"dst", b"holes")) == data_map(p(src, b"holes"))
    assert os.lstat(p(tmp, b"dst", b"holes")).st_blocks <= os.lstat(p(src, b"holes")).st_blocks + 8


def test_split_file_replaced_before_it_is_opened(tmp: bytes, small_split: Recorder) -> None:
    """Replaced (rename over) between the scan and the walker's open: skipped
    and reported, as cp does, not copied with the scanned file's times."""
    src = p(tmp, b"src")
    os.mkdir(src)
    write_file(p(src, b"big"), rand_bytes(2 * MiB, "old"), 0o644)
    write_file(p(src, b"other"), b"fine")
    set_tree_times(src, seed=1, keep_mtime=False)

    def replace(w: Any, name: bytes) -> None:
        if name == b"big":
            write_file(p(src, b"big.new"), rand_bytes(3 * MiB, "new"))
            os.rename(p(src, b"big.new"), p(src, b"big"))

    small_split.before_big = replace
    dst = p(tmp, b"dst")
    res = uringsync.copy([src], dst, archive=True, jobs=2, _tuning=small_split.tuning)
    assert res.exit_code == 23
    [e] = res.errors
    assert (e.op, e.path) == ("src_changed", p(src, b"big")), e
    assert "replaced while being copied" in e.message
    assert sorted(os.listdir(dst)) == [b"other"]
    # (the root's times changed with the rename, after it was scanned)
    assert_same_tree(src, dst, exclude=lambda r: r in (b"", b"big"))


def test_files_replaced_after_the_scan_with_workers(tmp: bytes, small_split: Recorder) -> None:
    """At a directory's 'scanned' event its jobs are queued, not run: a small
    file replaced then is skipped and reported.  A split file is already
    open by then (the walker opened it while queueing): the copy is the
    opened file, whole, with its own times; content and times never mix.
    (They are in two directories: splitting flushes the jobs queued before.)"""
    src = p(tmp, b"src")
    os.makedirs(p(src, b"s"))
    write_file(p(src, b"s", b"small"), rand_bytes(100_000, "s"), 0o644)
    write_file(p(src, b"s", b"other"), b"fine")
    write_file(p(src, b"big"), rand_bytes(3 * MiB + 99, "old"), 0o640)
    set_tree_times(src, seed=4, keep_mtime=False)
    old_big = snapshot(p(src, b"big"))[b""]

    def swap(ev: uringsync.Event) -> None:
        if ev.kind != "scanned":
            return
        f = {src: p(src, b"big"), p(src, b"s"): p(src, b"s", b"small")}.get(ev.src_dir)
        if f is not None:
            write_file(f + b".new", rand_bytes(200_000, f))
            os.rename(f + b".new", f)

    dst = p(tmp, b"dst")
    res = uringsync.copy(
        [src], dst, archive=True, jobs=2, progress=swap, _tuning=small_split.tuning
    )
    assert res.exit_code == 23
    [e] = res.errors
    assert (e.op, e.path) == ("src_changed", p(src, b"s", b"small")), e
    assert small_split.big == {b"big": True}
    assert sorted(os.listdir(dst)) == [b"big", b"s"]
    assert os.listdir(p(dst, b"s")) == [b"other"]
    assert snapshot(p(dst, b"big"))[b""] == old_big


# ------------------------------------------------------------- CLI runs


def start_cli(*args: bytes) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uringsync", "cp", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}")


def workers_of(proc: subprocess.Popen[bytes], n: int) -> list[psutil.Process]:
    me = psutil.Process(proc.pid)

    def kids() -> list[psutil.Process] | None:
        assert proc.poll() is None, "the copy ended early: " + repr(proc.communicate())
        k = me.children()
        return sorted(k, key=lambda c: c.pid) if len(k) == n else None

    return wait_for(f"{n} workers", kids)  # type: ignore[no-any-return]


def fd_names() -> dict[int, str]:
    """This process's open fds and what they are."""
    out = {}
    for f in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[int(f)] = os.readlink(f"/proc/self/fd/{f}")
    return out


def kill_all(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


# ------------------------------------------------------------- 3. stop


HUGE = b"big/huge"


@pytest.fixture(scope="module")
def stop_src(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[bytes, dict[bytes, Any]]]:
    """2,000 files of 64 KiB (half in the root, queued first) and a 1 GiB
    file in a subdirectory (split into 32 ranges, queued after them): long
    enough to be stopped in the middle, with ranges in flight."""
    src = p(os.fsencode(tmp_path_factory.mktemp("stop")), b"src")
    os.makedirs(p(src, b"big"))
    blk = rand_bytes(MiB, "stop")
    with open(p(src, HUGE), "wb") as fh:
        for i in range(1024):  # every MiB differs: misplaced data shows
            fh.write(i.to_bytes(8, "little") + blk[8:])
    os.chmod(p(src, HUGE), 0o640)
    for n in range(2000):
        sub = b"" if n < 1000 else b"d%d" % (n // 100)
        if n % 100 == 0 and sub:
            os.mkdir(p(src, sub))
        data = n.to_bytes(8, "little") + blk[n * 97 :][: 64 * KiB - 8]
        write_file(p(src, sub, b"f%04d" % n), data)
    set_tree_times(src, seed=6, keep_mtime=False)
    yield src, snapshot(src)
    shutil.rmtree(src)  # pytest keeps the last runs' tmp dirs: not this GiB


def check_stopped_copy(want: dict[bytes, Any], dst: bytes) -> None:
    """What a stopped copy may leave: directories, and regular files that
    are complete (content, mode, owner, times); nothing 0600 that the
    source does not have as 0600; and it must really be incomplete."""
    got = snapshot(dst) if os.path.lexists(dst) else {}
    for rel, r in got.items():
        assert rel in want, rel
        if r.type == "reg":
            w = want[rel]
            assert [getattr(r, f) for f in FULL] == [getattr(w, f) for f in FULL], (
                f"{rel!r} left incomplete: size {r.size} of {w.size}, mode {oct(r.mode)}"
            )
        if r.type != "dir" and r.mode & 0o7777 == 0o600:
            assert want[rel].mode & 0o7777 == 0o600, f"{rel!r} left with mode 0600"
    missing = [rel for rel, r in want.items() if r.type == "reg" and rel not in got]
    assert missing, "the copy was complete before the signal: nothing was tested"
    assert any(r.type == "reg" for r in got.values()), "no file was complete at the signal"


@pytest.mark.parametrize(
    "how", ["sigint_group", "sigterm_main"], ids=["SIGINT-to-group", "SIGTERM-to-main"]
)
def test_stop(
    tmp: bytes, stop_src: tuple[bytes, dict[bytes, Any]], how: str, engine_name: str
) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it)
    or SIGTERM to the main process only: exit 130 within 2 s, 'stopped' on
    stderr, no worker left behind, no partial file in the destination."""
    src, want = stop_src
    dst = p(tmp, b"dst")

    # Signal once the big file's ranges are being written (it grows; its
    # final mode comes last): the root's small files, queued before it,
    # are done or in flight then.
    def huge_in_flight() -> bool:
        assert proc.poll() is None, "the copy ended before the signal"
        try:
            st = os.lstat(p(dst, HUGE))
        except FileNotFoundError:
            return False
        assert st.st_mode & 0o7777 == 0o600, "the big file was complete before the signal"
        return st.st_size > 0

    proc = start_cli(b"-a", b"-j", b"2", src, dst)
    try:
        workers_of(proc, 2)
        wait_for("the big file's first range", huge_in_flight)
        kids = psutil.Process(proc.pid).children()  # as they are now
        assert len(kids) == 2
        t0 = time.monotonic()
        if how == "sigint_group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            # the pipes close only once every process holding them is gone
            _out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("no exit 10 s after the signal")
        took = time.monotonic() - t0
    finally:
        kill_all(proc)
    assert proc.returncode == 130, err
    assert took <= 2.0, f"exit took {took:.2f} s after the signal"
    lines = assert_error_lines(err)
    assert lines[-1] == b"uringsync: stopped: the copy is incomplete (partial files were removed)"
    for k in kids:
        assert not k.is_running(), f"worker {k.pid} still there ({k.status()})"
    check_stopped_copy(want, dst)
    assert not os.path.lexists(p(dst, HUGE)), "the partial big file was left"
    shutil.rmtree(dst)  # passed: pytest keeps tmp dirs


def test_stop_in_process(tmp: bytes, small_split: Recorder) -> None:
    """api.copy of two arguments stopped by SIGINT while it walks the second
    (sent by the progress callback at its 'scanned' event, once a file of
    the first is complete): Stopped, a KeyboardInterrupt, is raised; the
    workers are gone, every fd is closed, only complete files remain; the
    next copy works (the stop flag is reset)."""
    a, b = p(tmp, b"a"), p(tmp, b"b")
    os.makedirs(p(a, b"big"))
    os.makedirs(p(b, b"sub"))
    for i in range(300):
        write_file(p(a, b"f%03d" % i), rand_bytes(20_000 + i, i), 0o644)
        write_file(p(b, b"sub", b"g%03d" % i), rand_bytes(i, i), 0o644)
    for i in range(4):
        write_file(p(a, b"big", b"b%d" % i), rand_bytes(6 * MiB + i, i), 0o640)
    set_tree_times(a, seed=12, keep_mtime=False)
    set_tree_times(b, seed=13, keep_mtime=False)
    before = {p(n, k).rstrip(b"/"): v for n in (b"a", b"b") for k, v in snapshot(p(tmp, n)).items()}
    dst = p(tmp, b"dst")
    os.mkdir(dst)
    me = psutil.Process()
    fds0, kids0 = count_fds(), len(me.children())

    def done(f: bytes) -> bool:
        with contextlib.suppress(FileNotFoundError):
            return os.lstat(p(dst, b"a", f)).st_mode & 0o7777 == 0o644
        return False

    def ctrl_c(ev: uringsync.Event) -> None:
        if ev.kind == "scanned" and ev.src_dir == b:
            # the first argument's jobs were sent when the second began
            wait_for("a file of the first argument", lambda: done(b"f000") or done(b"f299"))
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(walker_mod.Stopped):
        uringsync.copy(
            [a, b], dst, archive=True, jobs=2, progress=ctrl_c, _tuning=small_split.tuning
        )
    fds1, names1 = count_fds(), fd_names()
    assert len(me.children()) == kids0
    assert small_split.big, "no file was split"
    before[b""] = snapshot(dst)[b""]  # dst is not a copy of anything
    check_stopped_copy(before, dst)
    os.mkdir(p(tmp, b"again"))
    res = uringsync.copy([a, b], p(tmp, b"again"), archive=True, jobs=2, _tuning=small_split.tuning)
    assert res.exit_code == 0, res.errors
    assert_same_tree(a, p(tmp, b"again", b"a"))
    assert_same_tree(b, p(tmp, b"again", b"b"))
    assert fds1 == fds0, f"fds left open by the stopped copy (of {names1})"


# ------------------------------------------------------ 4. dead workers

WORKER_LINE = re.compile(
    rb"^uringsync: worker (\d) \(pid (\d+), cpu (\d+)\) killed by SIGKILL; "
    rb"(\d+) of its files are copied again$"
)


@pytest.mark.parametrize(
    ("jobs", "nkill"), [(2, 1), (2, 2), (1, 1)], ids=["one-of-two", "both", "the-only-one"]
)
def test_killed_workers(tmp: bytes, rich: Rich, jobs: int, nkill: int) -> None:
    """SIGKILL one worker (its unfinished jobs go to the other) or every
    worker (the walker finishes alone): exit 23 with one line per dead
    worker, and the copy is still complete and exact.

    Made deterministic with SIGSTOP: the victims are stopped as soon as they
    exist, so they take batches (the walker keeps feeding the least busy
    worker) but never finish them; the copy cannot end without them.  They
    are killed 0.3 s later, certainly holding unfinished jobs (ranges of
    the split file among them, most likely).  The walker is stopped while
    they die, so it finds them dead at once (as when several die together)."""
    dst = p(tmp, b"dst")
    proc = start_cli(b"-a", b"-j", b"%d" % jobs, rich.src, dst)
    try:
        kids = workers_of(proc, jobs)
        victims = kids[:nkill]
        for v in victims:
            v.suspend()
        time.sleep(0.3)
        assert proc.poll() is None
        walker = psutil.Process(proc.pid)
        walker.suspend()
        for v in victims:
            v.kill()
        wait_for("dead workers", lambda: all(v.status() == psutil.STATUS_ZOMBIE for v in victims))
        walker.resume()
        try:
            _out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the copy did not finish after its worker(s) died")
    finally:
        kill_all(proc)
    assert proc.returncode == 23, err
    lines = assert_error_lines(err, nkill)
    dead = set()
    for ln in lines:
        m = WORKER_LINE.match(ln)
        assert m, ln
        dead.add(int(m.group(2)))
        assert int(m.group(4)) > 0, ln  # it held unfinished jobs
    assert dead == {v.pid for v in victims}
    check_rich_copy(rich, dst)
    shutil.rmtree(dst)  # passed: pytest keeps tmp dirs, not 150 MB each


def test_split_file_whose_workers_died_twice(tmp: bytes) -> None:
    """A range of a split file whose worker is killed twice (MAX_TRIES) fails
    the file as an ordinary file's job does: one 'worker' error naming the
    destination ("'dst/big' not copied: its workers died"), not the C step
    'none'; the partial copy removed, exit 23, every other file copied.

    Deterministic, in process, through the trace hook: the small files are
    copied first (drained before the big file is opened), then the three
    workers are stopped (SIGSTOP: they run nothing more), so each worker
    sent the file's only range (8 MiB ranges, a 6 MiB file) is killed
    before it has read a byte of it.  The range goes to a second worker,
    killed too; the third, which never gets it, is resumed once the big
    file is done (failed) and copies what is left."""
    src = p(tmp, b"src")
    os.makedirs(p(src, b"sub"))
    for i in range(20):
        write_file(p(src, b"a%02d" % i), rand_bytes(3000 + i, i), 0o640)
        write_file(p(src, b"sub", b"z%02d" % i), rand_bytes(70_000 + i, -i), 0o644)
    write_file(p(src, b"big"), rand_bytes(6 * MiB + 123, "big"), 0o600)
    set_tree_times(src, seed=21, keep_mtime=False)
    before = snapshot(src)
    stopped: list[int] = []
    killed: list[tuple[int, int]] = []  # (worker index, pid)
    split: dict[bytes, bool] = {}

    def on_trace(w: Any, ev: walker_mod.Trace) -> None:
        if ev.kind == "big_open":
            w.drain()  # the small files queued so far: copied, not in the way
            stopped.extend(wk.pid for wk in w.pool.workers if wk.alive)
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
        elif ev.kind == "batch_sent" and any(t == engine.T_RANGE for t, *_ in ev.jobs):
            pid = w.pool.workers[ev.worker].pid
            os.kill(pid, signal.SIGKILL)  # stopped: it never started the range
            killed.append((ev.worker, pid))
        elif ev.kind == "big_split":
            split[ev.name] = ev.split
            w.drain()  # the range dies twice, the big file fails
            for pid in stopped:
                if pid not in {k for _w, k in killed}:
                    os.kill(pid, signal.SIGCONT)

    tuning = walker_mod.Tuning(1 * MiB, 8 * MiB, on_trace=on_trace)
    dst = p(tmp, b"dst")
    res = uringsync.copy([src], dst, archive=True, jobs=3, _tuning=tuning)
    assert split == {b"big": True}
    assert len(stopped) == 3
    assert len(killed) == 2 and len({pid for _w, pid in killed}) == 2, killed
    assert res.exit_code == 23, res.errors
    # one line per dead worker, then the file
    *deaths, big = res.errors
    assert [(e.op, e.path, e.errno) for e in deaths] == [("worker", b"", errno.ECHILD)] * 2
    for e, (i, pid) in zip(deaths, killed, strict=True):
        assert re.fullmatch(
            rf"worker {i} \(pid {pid}, cpu \d+\) killed by SIGKILL; "
            r"1 of its files are copied again",
            e.message,
        ), e.message
    path = p(dst, b"big")
    assert (big.op, big.path, big.errno) == ("worker", path, errno.ECHILD), big
    assert big.message == f"'{os.fsdecode(path)}' not copied: its workers died"
    assert not os.path.lexists(path), "the partial big file was left"
    assert res.files == 40
    assert_same_tree(before, dst, exclude=lambda r: r == b"big")


# ------------------------------------------------------------ 5. pinning


@pytest.mark.parametrize("jobs", [2, 3])
def test_workers_are_pinned_to_one_cpu_each(tmp: bytes, rich: Rich, jobs: int) -> None:
    cpus = pool_mod.usable_cpus()
    if len(cpus) < 2:
        pytest.skip("fewer than 2 usable CPUs")
    seen: list[list[tuple[int, list[int]]]] = []

    def on_batch(ev: uringsync.Event) -> None:
        if ev.kind == "batch" and not seen:
            kids = psutil.Process().children()  # (zombies: the leak tests' business)
            live = [c for c in kids if c.status() != psutil.STATUS_ZOMBIE]
            seen.append([(c.pid, c.cpu_affinity()) for c in live])

    res = uringsync.copy([p(rich.src, b"d00")], p(tmp, b"dst"), archive=True, jobs=jobs,
                         progress=on_batch)  # fmt: skip
    assert res.exit_code == 0, res.errors
    [kids] = seen
    assert len(kids) == jobs
    for pid, aff in kids:
        assert len(aff) == 1, f"worker {pid} may run on CPUs {aff}"
    # worker k on the k-th usable CPU, round robin
    assert sorted(aff[0] for _pid, aff in kids) == sorted(cpus[k % len(cpus)] for k in range(jobs))
    assert len({aff[0] for _pid, aff in kids}) == min(jobs, len(cpus))


# --------------------------------------------------------------- 6. leaks


def test_no_fd_or_process_leak_over_many_copies(tmp: bytes) -> None:
    src = p(tmp, b"src")
    for d in range(4):
        os.makedirs(p(src, b"d%d" % d))
        for i in range(30):
            write_file(p(src, b"d%d" % d, b"f%d" % i), rand_bytes(i * 300, i))
    os.link(p(src, b"d0", b"f1"), p(src, b"d3", b"link"))
    me = psutil.Process()
    fds0, kids0 = count_fds(), len(me.children())
    for k in range(20):
        res = uringsync.copy([src], p(tmp, b"dst%02d" % k), archive=True, jobs=2)
        assert res.exit_code == 0, res.errors
        assert res.workers == 2
    assert count_fds() == fds0, fd_names()
    assert len(me.children()) == kids0  # zombies would be listed too
    assert_same_tree(src, p(tmp, b"dst19"))


def test_workers_started_with_fds_beyond_1024(tmp: bytes) -> None:
    """A worker's socket may get a number past 1,023 (the walker can hold
    that many directories open when the first worker starts): waiting on
    it must still work (select() refuses such fds; poll does not)."""
    import resource

    src = p(tmp, b"src")
    os.makedirs(src)
    for i in range(40):
        write_file(p(src, b"f%d" % i), rand_bytes(i * 100, i))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1200
    if hard != resource.RLIM_INFINITY and hard < want + 100:
        pytest.skip(f"RLIMIT_NOFILE's hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want + 100), hard))
    held = []
    try:
        while not held or held[-1] < want:
            held.append(os.open(b"/dev/null", os.O_RDONLY))
        res = uringsync.copy([src], p(tmp, b"dst"), archive=True, jobs=2)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert res.exit_code == 0, res.errors
    assert res.workers == 2
    rsync_clean(src, p(tmp, b"dst"))


def test_batch_pack_and_bind_do_not_leak() -> None:
    """engine.Batch (shared memory) + us_batch_pack_fds + us_batch_bind_fds,
    2,000 rounds: the fds are right every round and RSS stays flat."""
    st = ffi.new("struct us_stat *")
    st.type = engine.T_REG
    fds = ffi.new("int[]", 512)
    me = psutil.Process()

    def round_(r: int) -> None:
        b = engine.Batch(256)
        for i in range(200):
            b.add(
                100 + i % 7,
                b"src%d" % i,
                200 + (i + r) % 5,
                b"dst%d" % i,
                st,
                engine.T_REG,
                0,
                0o7777,
            )
        n = lib.us_batch_pack_fds(b.c, fds, 512)
        assert n == 12
        got = [fds[k] for k in range(n)]
        new = ffi.new("int[]", [1000 + f for f in got])
        assert lib.us_batch_bind_fds(b.c, new, n) == 0
        j = b.jobs[199]
        assert (j.src_dirfd, j.dst_dirfd) == (1100 + 199 % 7, 1200 + (199 + r) % 5)
        assert ffi.string(j.dst_name) == b"dst199"

    for r in range(200):
        round_(r)
    gc.collect()
    rss0 = me.memory_info().rss
    for r in range(2000):
        round_(r)
    gc.collect()
    grown = me.memory_info().rss - rss0
    assert grown < 4 * MiB, f"RSS grew by {grown / MiB:.1f} MiB over 2,000 rounds"


# ---------------------------------------------------------------- 7. JSON


def test_json_reports_workers_and_peak_rss(tmp: bytes, rich: Rich) -> None:
    src = p(rich.src, b"d01")
    peak = {}
    for j in (b"2", b"0"):
        dst = p(tmp, b"dst" + j)
        rc, out, err = run_cli(b"cp", b"-a", b"--json", b"-j", j, src, dst)
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["workers"] == int(j)
        assert doc["exit_code"] == 0 and doc["errors"] == []
        assert doc["peak_rss"] > 0
        peak[j] = doc["peak_rss"]
        assert_same_tree(src, dst)
    # summed over the walker and its two workers: more than the walker alone
    assert peak[b"2"] > peak[b"0"], peak


@pytest.mark.parametrize("jobs", [2, 0])
def test_hard_links_to_many_directories_stay_in_the_fd_budget(tmp: bytes, jobs: int) -> None:
    """Each hard-link job pins its target directory's fds until its batch is
    sent: a directory of links into 300 others, under `ulimit -n 128`, used
    to run out of fds ('cannot open directory ...: Too many open files')."""
    import resource

    src, dst = p(tmp, b"src"), p(tmp, b"dst")
    os.makedirs(p(src, b"zz"))
    for i in range(300):
        d = p(src, b"d%d" % i)
        os.mkdir(d)
        write_file(p(d, b"f"), b"%d" % i)
        os.link(p(d, b"f"), p(src, b"zz", b"l%d" % i))

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    r = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "-a", "-j", str(jobs), src, dst],
        capture_output=True,
        preexec_fn=low_fd_limit,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr == b""
    assert_same_links(src, dst)
    rsync_clean(src, dst)


def test_split_file_metadata_refused_keeps_the_data(tmp: bytes, small_split: Recorder) -> None:
    """us_big_finish's metadata step failing (ramfs refuses xattrs): the
    split file's data is complete, so it stays, with its times and mode, and
    the refusal is reported once as xattr_set (exit 23)."""
    src = p(tmp, b"src")
    os.makedirs(src)
    data = rand_bytes(3 * MiB + 77, "x")
    write_file(p(src, b"big"), data, 0o640)
    os.setxattr(p(src, b"big"), b"user.k", b"v")
    os.utime(p(src, b"big"), ns=(1_000_000_123, 2_000_000_456))
    mnt = p(tmp, b"mnt")
    os.mkdir(mnt)
    reason = mount_ramfs(mnt)
    if reason:
        pytest.skip(reason)
    try:
        dst = p(mnt, b"dst")
        res = uringsync.copy([src], dst, archive=True, jobs=2, _tuning=small_split.tuning)
        assert small_split.big == {b"big": True}  # it was split
        assert res.exit_code == 23
        assert [(e.op, e.path) for e in res.errors] == [("xattr_set", p(dst, b"big"))]
        with open(p(dst, b"big"), "rb") as f:
            assert f.read() == data
        st = os.stat(p(dst, b"big"))
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o640, 2_000_000_456)
    finally:
        umount(mnt)
