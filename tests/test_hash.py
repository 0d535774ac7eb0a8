"""US_T_HASH jobs: a file's XXH3-128 digest read through the engine
(both engines), checked against xxh128sum."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from tests.support.base import O_DIR, MiB
from tests.support.trees import rand_bytes, write_file
from tests.support.users import as_user
from uringsync import engine
from uringsync.engine import JobError, Ring

# every test here runs with both engines (conftest.engine_name)
pytestmark = [
    pytest.mark.usefixtures("engine_name"),
    pytest.mark.skipif(not shutil.which("xxh128sum"), reason="xxh128sum (apt: xxhash) missing"),
]

SIZES = [0, 1, 4095, 4096, 131071, 131072, 131073, 3 * MiB + 5]


def xxh128sum(d: bytes, names: list[bytes]) -> list[bytes]:
    """xxh128sum's digests of the files, as 16 bytes each."""
    out = subprocess.run(
        [b"xxh128sum", b"--", *names], cwd=d, check=True, capture_output=True
    ).stdout
    return [bytes.fromhex(line.split(b"  ", 1)[0].decode()) for line in out.splitlines()]


def hashes(d: bytes, names: list[bytes], queue_depth: int = 8) -> list[bytes | JobError]:
    fd = os.open(d, O_DIR)
    try:
        with Ring(queue_depth=queue_depth) as ring:
            return engine.hash_files(ring, fd, names)
    finally:
        os.close(fd)


def test_sizes_match_xxh128sum(tmp: bytes) -> None:
    names = [b"f%d" % n for n in SIZES]
    for name, n in zip(names, SIZES, strict=True):
        write_file(tmp + b"/" + name, rand_bytes(n, n))
    got = hashes(tmp, names)
    assert got == xxh128sum(tmp, names)
    fd = os.open(tmp, O_DIR)
    try:
        with Ring(queue_depth=4) as ring:
            batch = engine.Batch(len(names))
            st = engine.ffi.new("struct us_stat *")
            for name in names:
                batch.add(fd, name, -1, name, st, engine.T_HASH, 0, 0)
            assert ring.run(batch) == 0
            assert [batch.jobs[i].bytes for i in range(len(names))] == SIZES
    finally:
        os.close(fd)


def test_sparse_file(tmp: bytes) -> None:
    p = tmp + b"/sparse"
    with open(p, "wb") as f:
        f.seek(5 * MiB)
        f.write(b"middle")
        f.truncate(9 * MiB + 3)
    assert hashes(tmp, [b"sparse"]) == xxh128sum(tmp, [b"sparse"])


def test_many_files_more_than_queue_depth(tmp: bytes) -> None:
    names = [b"m%03d" % i for i in range(200)]
    for i, name in enumerate(names):
        write_file(tmp + b"/" + name, rand_bytes(i * 997 % 300_000, i))
    assert hashes(tmp, names, queue_depth=16) == xxh128sum(tmp, names)


def _err(x: bytes | JobError) -> tuple[int | None, str]:
    assert isinstance(x, JobError), x
    return x.errno, x.step.name


def test_missing_file(tmp: bytes) -> None:
    write_file(tmp + b"/here", b"x")
    got = hashes(tmp, [b"here", b"gone"])
    assert got[0] == xxh128sum(tmp, [b"here"])[0]
    assert _err(got[1]) == (errno.ENOENT, "open")


def test_symlink_refused(tmp: bytes) -> None:
    write_file(tmp + b"/target", b"data")
    os.symlink(b"target", tmp + b"/link")
    assert _err(hashes(tmp, [b"link"])[0]) == (errno.ELOOP, "open")


def test_directory_refused(tmp: bytes) -> None:
    os.mkdir(tmp + b"/dir")
    got = hashes(tmp, [b"dir"])
    assert _err(got[0]) == (errno.EISDIR, "type")


def test_unreadable_as_nobody(world: bytes) -> None:
    write_file(world + b"/secret", b"s" * 100, mode=0o000)
    os.chmod(world + b"/secret", 0o000)
    write_file(world + b"/open", b"o" * 100)

    def run() -> list[tuple[int, str] | bytes]:
        out: list[tuple[int, str] | bytes] = []
        for x in hashes(world, [b"secret", b"open"]):
            out.append(x if isinstance(x, bytes) else (x.errno or 0, x.step.name))
        return out

    got = as_user(run)
    assert got[0] == (errno.EACCES, "open")
    assert got[1] == xxh128sum(world, [b"open"])[0]
