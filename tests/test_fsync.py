"""--fsync: the order of the flushes, seen by tracing the syscalls of a small
copy (strace -f -y).  fsync and syncfs are plain syscalls with either engine;
renames are too with the threads engine (io_uring's RENAMEAT is not a
syscall strace sees).  What the disk does when a flush fails is in
tests/test_disk_faults.py (test_fsync_catches_what_writeback_loses)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.base import root_only
from tests.support.compare import assert_same_tree
from tests.support.trees import rand_bytes, write_file

STRACE = shutil.which("strace")
pytestmark = [
    pytest.mark.skipif(STRACE is None, reason="strace (Debian's strace) shows the syscalls"),
    root_only,  # cp -a keeps owners
]
CALL = re.compile(rb"^\d+\s+(fsync|syncfs|renameat2?)\((.*)$")
FD_PATH = re.compile(rb"^\d+<(.*?)>")


def traced(tmp: bytes, code: str) -> list[tuple[bytes, bytes]]:
    """Run ``code`` in python under strace; (call, its first fd's path, or for
    a rename 'FROM -> TO' in the directory) in the order they started."""
    log = tmp + b"/strace.log"
    argv = [STRACE, "-f", "-qq", "-y", "-e", "signal=none", "-o", log]
    argv += ["-e", "trace=fsync,syncfs,renameat,renameat2", sys.executable, "-c", code]
    subprocess.run(argv, check=True, cwd=tmp)
    out = []
    with open(log, "rb") as f:
        for line in f:
            m = CALL.match(line)
            if m is None:
                continue  # "<... resumed>", exits
            call, args = m.group(1), m.group(2)
            fd = FD_PATH.match(args)
            assert fd is not None, line
            if call.startswith(b"rename"):
                names = re.findall(rb'"([^"]*)"', args)
                out.append((b"rename", fd.group(1) + b"/" + names[0] + b" -> " + names[1]))
            else:
                out.append((call, fd.group(1)))
    return out


def tree(src: bytes) -> list[bytes]:
    os.makedirs(src + b"/d/e")
    names = [b"a", b"d/b", b"d/e/c", b"big"]
    for i, n in enumerate(names[:-1]):
        write_file(src + b"/" + n, rand_bytes(1000 + i, n))
    write_file(src + b"/big", rand_bytes(3 << 20, "big"))  # split into ranges below
    os.symlink(b"a", src + b"/lnk")
    os.mkfifo(src + b"/fifo")
    return names


API = "import uringsync; from uringsync.walker import Tuning; "
SPLIT = "_tuning=Tuning(split_min=1 << 20, range_size=1 << 20)"


def test_cp_flushes_every_file_then_the_file_system(tmp: bytes, engine_name: str) -> None:
    src, dst = tmp + b"/src", tmp + b"/dst"
    names = tree(src)
    calls = traced(
        tmp, API + f"uringsync.copy({src!r}, {dst!r}, archive=True, fsync=True, jobs=2, {SPLIT})"
    )
    assert_same_tree(src, dst, atime=False)  # reading src sets its atimes
    fsyncs = [path for call, path in calls if call == b"fsync"]
    assert sorted(fsyncs) == sorted(dst + b"/" + n for n in names)  # each file once, big too
    assert calls[-1] == (b"syncfs", tmp)  # DST's parent: one file system, flushed last
    assert [c for c, _ in calls].count(b"syncfs") == 1
    calls = traced(tmp, API + f"uringsync.copy({src!r}, {dst + b'2'!r}, archive=True)")
    assert calls == [], "flushes without --fsync"


def test_sync_flushes_each_file_before_its_rename(tmp: bytes, engine_name: str) -> None:
    src, dst = tmp + b"/src", tmp + b"/dst"
    names = tree(src)
    os.mkdir(dst)
    calls = traced(
        tmp,
        API + f"uringsync.sync({src + b'/'!r}, {dst!r}, fsync=True, hard_links=True, "
        f"acls=True, xattrs=True, jobs=2)",
    )
    assert_same_tree(src, dst, atime=False)  # reading src sets its atimes
    fsynced = {os.path.basename(path) for call, path in calls if call == b"fsync"}
    temps = {
        n: t
        for t in fsynced
        for n in names
        if t.startswith(b"." + os.path.basename(n) + b".uringsync-")
    }
    assert set(temps) == set(names), fsynced  # every file flushed under its temporary name
    renames = [(i, path) for i, (call, path) in enumerate(calls) if call == b"rename"]
    if engine_name == "threads":  # io_uring's renames are not syscalls
        assert len(renames) == len(names)
        for i, path in renames:
            temp = path.split(b" -> ")[0]
            assert calls.index((b"fsync", temp)) < i, f"{temp!r} renamed before it was flushed"
    assert calls[-1] == (b"syncfs", dst)
