"""Building source trees: files with given bytes and modes, explicit times,
sparse files, UNIX sockets."""

from __future__ import annotations

import os
import random
import stat
import time

from tests.support.base import O_DIR, PathLike, b


def write_at(dirfd: int, name: bytes, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=dirfd)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)
    os.chmod(name, mode, dir_fd=dirfd)


def rand_bytes(n: int, seed: int | bytes | str) -> bytes:
    return random.Random(seed).randbytes(n)


def write_file(path: PathLike, data: bytes, mode: int = 0o644) -> None:
    p = b(path)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)


def future_ns(rng: random.Random | None = None) -> int:
    rng = rng or random.Random()
    return (int(time.time()) + 3600 + rng.randrange(0, 600)) * 10**9 + rng.randrange(1, 10**9)


def set_tree_times(
    root: PathLike,
    mtimes: dict[bytes, int] | None = None,
    seed: int = 0,
    keep_mtime: bool = True,
) -> None:
    """Give every entry under `root` (root included) an explicit future atime.

    The mount is relatime: an atime in the future (and after the mtime and
    ctime) is never bumped by a read, so cp and uringsync see the same source
    whichever reads it first.  `mtimes` maps relpaths to mtime_ns; other
    entries keep their mtime (keep_mtime) or get a random past one.  Done
    bottom-up so directory times are set after everything inside them.
    """
    rng = random.Random(seed)
    mtimes = mtimes or {}
    root = b(root)
    parent, base = os.path.split(root.rstrip(b"/"))
    pfd = os.open(parent or b".", O_DIR & ~os.O_NOFOLLOW)
    try:
        _set_times_at(pfd, base, b"", mtimes, rng, keep_mtime)
    finally:
        os.close(pfd)


def _times_for(
    st: os.stat_result, rel: bytes, mtimes: dict[bytes, int], rng: random.Random, keep: bool
) -> tuple[int, int]:
    if rel in mtimes:
        m = mtimes[rel]
    elif keep:
        m = st.st_mtime_ns
    else:
        m = (1_500_000_000 + rng.randrange(0, 10**8)) * 10**9 + rng.randrange(0, 10**9)
    a = future_ns(rng)
    if a <= m:  # mtime far in the future: atime must still be later
        a = m + 3600 * 10**9 + rng.randrange(1, 10**9)
    return a, m


def _set_times_at(
    dirfd: int, name: bytes, rel: bytes, mtimes: dict[bytes, int], rng: random.Random, keep: bool
) -> None:
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name, O_DIR, dir_fd=dirfd)
        try:
            for child in sorted(os.fsencode(n) for n in os.listdir(fd)):
                _set_times_at(fd, child, rel + b"/" + child if rel else child, mtimes, rng, keep)
        finally:
            os.close(fd)
    a, m = _times_for(st, rel, mtimes, rng, keep)
    os.utime(name, ns=(a, m), dir_fd=dirfd, follow_symlinks=False)


def make_sparse(path: PathLike, segments: list[tuple[int, bytes]], size: int) -> None:
    """A file of `size` bytes holding `data` at each (offset, data); holes elsewhere."""
    fd = os.open(b(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        for off, data in segments:
            os.pwrite(fd, data, off)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def make_socket(path: PathLike) -> None:
    """A UNIX socket node at path (bound, then closed)."""
    import socket

    p = b(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(p) < 100:
            s.bind(p)
        else:  # sun_path is 108 bytes: bind by a short relative name
            d, n = os.path.split(p)
            old = os.open(b".", O_DIR & ~os.O_NOFOLLOW)
            try:
                os.chdir(d)
                s.bind(n)
            finally:
                os.fchdir(old)
                os.close(old)
    finally:
        s.close()
