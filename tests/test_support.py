"""The comparison machinery itself: it must notice every kind of difference."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.support.base import NOBODY, root_only
from tests.support.cli import check_cp
from tests.support.compare import assert_same_tree, rsync_itemize, snapshot
from tests.support.trees import rand_bytes, set_tree_times, write_file
from tests.support.users import as_user


def _tree(root: bytes) -> None:
    os.makedirs(root + b"/d\xff")
    write_file(root + b"/f", rand_bytes(5000, 1))
    write_file(root + b"/d\xff/g", b"g")
    os.symlink(b"f", root + b"/l")
    set_tree_times(root, keep_mtime=False)


def _flip_byte(p: bytes) -> None:
    with open(p, "r+b") as f:
        c = f.read(1)
        f.seek(0)
        f.write(bytes([c[0] ^ 1]))


def _content(d: bytes) -> None:
    st = os.lstat(d + b"/f")
    _flip_byte(d + b"/f")  # same size; times put back
    os.utime(d + b"/f", ns=(st.st_atime_ns, st.st_mtime_ns))


def _relink(d: bytes) -> None:
    os.unlink(d + b"/l")
    os.symlink(b"g", d + b"/l")


def _retype(d: bytes) -> None:
    os.unlink(d + b"/l")
    write_file(d + b"/l", b"f")


def _mtime(d: bytes) -> None:
    st = os.lstat(d + b"/d\xff/g")
    os.utime(d + b"/d\xff/g", ns=(st.st_atime_ns, st.st_mtime_ns + 1))


def _atime(d: bytes) -> None:
    st = os.lstat(d + b"/f")
    os.utime(d + b"/f", ns=(st.st_atime_ns - 1, st.st_mtime_ns))


MUTATIONS: dict[str, Callable[[bytes], object]] = {
    "content": _content,
    "mtime_ns": _mtime,
    "atime_ns": _atime,
    "mode": lambda d: os.chmod(d + b"/f", 0o600),
    "owner": lambda d: os.chown(d + b"/d\xff/g", 1, 1),
    "link": _relink,
    "extra": lambda d: write_file(d + b"/d\xff/new", b""),
    "missing": lambda d: os.unlink(d + b"/d\xff/g"),
    "type": _retype,
}


@root_only
@pytest.mark.parametrize("what", sorted(MUTATIONS))
def test_assert_same_tree_detects(tmp: bytes, what: str) -> None:
    src, dst = tmp + b"/src", tmp + b"/dst"
    _tree(src)
    check_cp(b"-a", src, dst)
    assert_same_tree(src, dst)
    before = snapshot(dst)
    MUTATIONS[what](dst)
    with pytest.raises(pytest.fail.Exception):
        assert_same_tree(before, dst)


@root_only
def test_rsync_check_detects_content_change(tmp: bytes) -> None:
    src, dst = tmp + b"/src", tmp + b"/dst"
    _tree(src)
    check_cp(b"-a", src, dst)
    assert rsync_itemize(src, dst) == b""
    _content(dst)  # same size, same times: only -c sees it
    assert b"f" in rsync_itemize(src, dst)


def test_snapshot_reads_do_not_change_source_atimes(tmp: bytes) -> None:
    _tree(tmp + b"/src")
    a = snapshot(tmp + b"/src")
    b_ = snapshot(tmp + b"/src")
    assert a == b_


@root_only
def test_as_user_runs_as_nobody_and_reraises(world: bytes) -> None:
    assert as_user(lambda: (os.getuid(), os.getgid(), os.getgroups())) == (NOBODY, NOBODY, [])
    with pytest.raises(PermissionError):
        as_user(lambda: os.listdir("/root"))
