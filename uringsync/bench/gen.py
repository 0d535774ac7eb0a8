"""Making the workloads' trees on disk from their specs (deterministic: the
same spec makes the same names, types, modes, links, xattrs and bytes)."""

from __future__ import annotations

import contextlib
import os
import random
import struct
from pathlib import Path

from uringsync.bench.base import PAGE, MiB
from uringsync.bench.spec import POOL_SIZE, BigFileSpec, Spec, TreeSpec, _items, _plan_dirs

GENERATOR_VERSION = 1  # bump when the generated trees change: old caches are remade
BLOCK_SIZE = 64 * MiB  # big files: one random block, repeated with a counter
STAMP_MIX = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: XORed into the file id of each stamp
BIGFILE_ID = 1  # the file id stamped into the bigfile workload's pages
BIG_IN_TREE_ID = 1000  # ... and into a tree's big file N: this + N


_pools: dict[tuple[str, int], bytes] = {}  # seeded random bytes, made once per run


def _random_bytes(kind: str, seed: int, size: int) -> bytes:
    key = (kind, seed)
    if key not in _pools:
        _pools[key] = random.Random(f"uringsync-bench {kind} {seed}").randbytes(size)
    return _pools[key]


def release_pools() -> None:
    """Drop the generator's random bytes (80 MiB): the bench stays small while it times."""
    _pools.clear()


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
            _STAMP.pack_into(buf, off, file_id ^ STAMP_MIX, (k << 32) | page)
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
                        write_stamped(fd, it.size, BIG_IN_TREE_ID + it.big, spec.seed)
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
        write_stamped(fd, spec.size, BIGFILE_ID, spec.seed)
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
