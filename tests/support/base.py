"""Paths, constants and markers that the other support modules and the tests share.

Everything in tests/support works on bytes paths (names need not be UTF-8)
and walks trees with directory fds (trees may be deeper than PATH_MAX).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]  # the repository's top directory

ROOT = os.geteuid() == 0
# The unprivileged user (and group) the as-nobody tests run as: not 65534
# but a uid of this run's own.  The kernel keeps some counts per uid, summed
# over every process of that uid on the machine whatever container it is in
# (io_uring's rings and pinned buffers against RLIMIT_MEMLOCK, inotify
# instances, RLIMIT_NPROC): another program running as nobody must not be able
# to fail these tests, and root here cannot lift those limits for the child.
NOBODY = 3_000_000_000 + os.getpid()
_PRIVATE = [0]


def private_uid() -> int:
    """A uid no other test has used: for tests whose outcome depends on what
    the kernel has charged to the uid (RLIMIT_MEMLOCK), since a ring closed
    by one test is unaccounted asynchronously and may still count against
    the next."""
    _PRIVATE[0] += 1
    return 3_500_000_000 + os.getpid() * 64 + _PRIVATE[0] % 64


root_only = pytest.mark.skipif(not ROOT, reason="needs root")

PathLike = str | bytes | os.PathLike

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Reading content for the hash must not touch atimes (O_NOATIME: owner or root only).
O_NOATIME = getattr(os, "O_NOATIME", 0) if ROOT else 0

KiB = 1 << 10
MiB = 1 << 20
BLOCK = 8  # one 4 KiB file-system block, in 512-byte st_blocks units
NEG_MTIME = -1_234_567_890_123_456_789  # 1930-11-18, ns precision
Y2200_MTIME = 7_258_118_400 * 10**9 + 987_654_321  # 2200-01-01


def b(p: PathLike) -> bytes:
    return os.fsencode(p)


def p(root: bytes, *parts: bytes) -> bytes:
    """root/part/...: os.path.join for bytes paths."""
    return os.path.join(root, *parts)
