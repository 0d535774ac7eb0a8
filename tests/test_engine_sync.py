"""The engine's pieces for ``sync``, driven through uringsync.engine: copies
made under a temporary name and renamed into place (final_name), T_META
jobs and meta_sync_fd (make an existing entry's metadata match), T_UNLINK."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
from typing import Any

import pytest

from tests.support.base import NOBODY, O_DIR, root_only
from tests.support.system import Dirs
from tests.support.trees import write_file
from tests.support.users import as_user, in_child
from uringsync import engine
from uringsync.engine import Batch, Ring

# every test here runs with both engines (conftest.engine_name)
pytestmark = pytest.mark.usefixtures("engine_name")

ALL_META = engine.P_OWNER | engine.P_MODE | engine.P_TIMES
ALL = ALL_META | engine.P_XATTR | engine.P_ACL
ACCESS = "system.posix_acl_access"
DEFAULT = "system.posix_acl_default"
T1 = (1_000_000_000, 1_100_000_000_123_456_789)  # atime, mtime (ns)


def run(d: Dirs, jobs: list[tuple[Any, ...]], **ring_kw: Any) -> Batch:
    """Run jobs (src_name, dst_name, type, flags[, final_name]) src/ -> dst/;
    src_name None: an unused source (fd -1)."""
    b = Batch(max(1, len(jobs)))
    for src_name, dst_name, ftype, flags, *final in jobs:
        if src_name is None:
            st = engine.ffi.new("struct us_stat *")
            i = b.add(-1, dst_name, d.dfd, dst_name, st, ftype, flags, 0)
        else:
            st = engine.stat_at(d.sfd, src_name)
            t = int(st.type) if ftype is None else ftype
            i = b.add(d.sfd, src_name, d.dfd, dst_name, st, t, flags, 0o7777)
        if final:
            b.set_final(i, final[0])
    forget = ring_kw.pop("forget", ())
    with Ring(queue_depth=4, **ring_kw) as ring:
        for op in forget:
            ring.forget_op(op)
        ring.run(b)
    return b


def result(b: Batch, i: int = 0) -> tuple[int, str]:
    j = b.jobs[i]
    return -int(j.err), engine.step_of(int(j.op)).name


def read(p: bytes) -> bytes:
    with open(p, "rb") as f:
        return f.read()


def xattrs(p: bytes) -> dict[str, bytes]:
    return {
        k: os.getxattr(p, k, follow_symlinks=False) for k in os.listxattr(p, follow_symlinks=False)
    }


def setfacl(*args: bytes | str) -> None:
    subprocess.run(["setfacl", *args], check=True)


def meta_of(p: bytes) -> tuple[int, int, int, int, int]:
    s = os.lstat(p)
    return s.st_mode, s.st_uid, s.st_gid, s.st_atime_ns, s.st_mtime_ns


# ------------------------------------------------- copy, then rename into place


@pytest.mark.parametrize("forget", [(), ("RENAMEAT",)])
def test_rename_into_place(dirs: Dirs, forget: tuple[str, ...]) -> None:
    write_file(dirs.s(b"f"), b"hello" * 1000, mode=0o640)
    os.utime(dirs.s(b"f"), ns=T1)
    b = run(dirs, [(b"f", b".f.tmp", None, ALL_META, b"f")], forget=forget)
    assert result(b) == (0, "none")
    assert not os.path.lexists(dirs.d(b".f.tmp"))
    assert read(dirs.d(b"f")) == b"hello" * 1000
    s = os.lstat(dirs.d(b"f"))
    assert stat.S_IMODE(s.st_mode) == 0o640
    assert s.st_mtime_ns == T1[1]
    assert b.jobs[0].bytes == 5000


def test_final_name_unset_by_add(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"x")
    b = run(dirs, [(b"f", b"f", None, ALL_META)])
    assert b.jobs[0].final_name == engine.ffi.NULL
    assert result(b) == (0, "none")


def test_rename_over_file_and_symlink(dirs: Dirs) -> None:
    write_file(dirs.s(b"a"), b"new a")
    write_file(dirs.s(b"b"), b"new b")
    write_file(dirs.d(b"a"), b"old a, longer than the new one")
    write_file(dirs.d(b"victim"), b"untouched", mode=0o600)
    os.symlink(b"victim", dirs.d(b"b"))
    b = run(dirs, [(b"a", b".a.t", None, ALL_META, b"a"), (b"b", b".b.t", None, ALL_META, b"b")])
    assert result(b, 0) == result(b, 1) == (0, "none")
    assert read(dirs.d(b"a")) == b"new a"
    assert stat.S_ISREG(os.lstat(dirs.d(b"b")).st_mode)  # replaced, not followed
    assert read(dirs.d(b"b")) == b"new b"
    assert read(dirs.d(b"victim")) == b"untouched"
    assert sorted(os.listdir(dirs.dst)) == [b"a", b"b", b"victim"]


def test_rename_onto_directory_fails(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"data")
    os.mkdir(dirs.d(b"f"))
    write_file(dirs.d(b"f") + b"/inside", b"keep")
    b = run(dirs, [(b"f", b".f.t", None, ALL_META, b"f")])
    err, step = result(b)
    assert step == "rename" and err in (errno.EISDIR, errno.ENOTEMPTY)
    assert b.jobs[0].bytes == 0
    assert sorted(os.listdir(dirs.dst)) == [b"f"]
    assert os.listdir(dirs.d(b"f")) == [b"inside"]


def test_data_failure_leaves_neither(dirs: Dirs) -> None:
    write_file(dirs.s(b"big"), b"x" * 300_000)
    write_file(dirs.s(b"old"), b"y" * 300_000)
    write_file(dirs.d(b"old"), b"the old copy stays")

    def limit() -> None:  # writes past 64 KiB fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))

    def go() -> list[tuple[int, str]]:
        b = run(dirs, [(b"big", b".big.t", None, ALL_META, b"big"),
                       (b"old", b".old.t", None, ALL_META, b"old")])  # fmt: skip
        return [result(b, 0), result(b, 1)]

    assert in_child(go, limit) == [(errno.EFBIG, "write")] * 2
    assert sorted(os.listdir(dirs.dst)) == [b"old"]
    assert read(dirs.d(b"old")) == b"the old copy stays"


def test_source_missing_leaves_neither(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"x")
    st = engine.stat_at(dirs.sfd, b"f")
    os.unlink(dirs.s(b"f"))
    b = Batch(1)
    b.set_final(b.add(dirs.sfd, b"f", dirs.dfd, b".f.t", st, engine.T_REG, 0, 0o7777), b"f")
    with Ring(queue_depth=2) as ring:
        ring.run(b)
    assert result(b) == (errno.ENOENT, "open")
    assert os.listdir(dirs.dst) == []


@root_only
def test_metadata_failure_unlinks_temp(world: bytes) -> None:
    """A temp whose metadata failed does not replace the final name (cp's
    job keeps such a file; sync's must not)."""
    os.chmod(world, 0o777)
    write_file(world + b"/f", b"data", mode=0o644)  # root's: nobody cannot give it to root

    def go() -> tuple[tuple[int, str], list[bytes]]:
        fd = os.open(world, O_DIR)
        try:
            st = engine.stat_at(fd, b"f")
            b = Batch(1)
            flags = ALL_META | engine.F_STRICT_OWNER
            b.set_final(b.add(fd, b"f", fd, b".f.t", st, engine.T_REG, flags, 0o7777), b"g")
            with Ring(queue_depth=2) as ring:
                ring.run(b)
            return result(b), sorted(os.listdir(world))
        finally:
            os.close(fd)

    res, names = as_user(go)
    assert res == (errno.EPERM, "chown")
    assert names == [b"f"]


def test_set_final_limits() -> None:
    b = Batch(1, names_cap=16)
    st = engine.ffi.new("struct us_stat *")
    with pytest.raises(OSError) as e:
        b.set_final(0, b"x")  # no such job
    assert e.value.errno == errno.EINVAL
    b.add(-1, b"abc", 3, b"abc", st, engine.T_UNLINK, 0, 0)
    with pytest.raises(OSError) as e:
        b.set_final(0, b"a-name-too-long-for-the-rest")
    assert e.value.errno == errno.ENOSPC
    b.set_final(0, b"fin")
    assert engine.string(b.jobs[0].final_name) == b"fin"


def test_pack_and_bind_keep_minus_one() -> None:
    b = Batch(2)
    st = engine.ffi.new("struct us_stat *")
    b.add(-1, b"a", 7, b"a", st, engine.T_UNLINK, 0, 0)
    b.add(9, b"b", 7, b"b", st, engine.T_REG, 0, 0)
    b.set_final(1, b"c")
    assert b.pack_fds() == [7, 9]
    assert (b.jobs[0].src_dirfd, b.jobs[0].dst_dirfd) == (-1, 0)
    assert b.bind_fds([70, 90]) == 0
    assert (b.jobs[0].src_dirfd, b.jobs[0].dst_dirfd, b.jobs[1].src_dirfd) == (-1, 70, 90)
    assert engine.string(b.jobs[1].final_name) == b"c"


# ------------------------------------------------------------------- T_META


def test_meta_owner_mode_times(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"src", mode=0o640)
    os.chown(dirs.s(b"f"), 1234, 5678)
    os.utime(dirs.s(b"f"), ns=T1)
    write_file(dirs.d(b"f"), b"dst keeps its data", mode=0o600)
    b = run(dirs, [(b"f", b"f", engine.T_META, ALL_META)])
    assert result(b) == (0, "none") and b.jobs[0].changed == 0
    assert meta_of(dirs.d(b"f")) == meta_of(dirs.s(b"f"))
    assert read(dirs.d(b"f")) == b"dst keeps its data"


def test_meta_only_what_flags_say(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"src", mode=0o640)
    os.utime(dirs.s(b"f"), ns=T1)
    write_file(dirs.d(b"f"), b"dst", mode=0o600)
    before = os.lstat(dirs.d(b"f"))
    b = run(dirs, [(b"f", b"f", engine.T_META, engine.P_MODE)])
    assert result(b) == (0, "none")
    after = os.lstat(dirs.d(b"f"))
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert after.st_mtime_ns == before.st_mtime_ns


def test_meta_xattrs_set_and_removed(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"s")
    write_file(dirs.d(b"f"), b"d")
    os.setxattr(dirs.s(b"f"), "user.a", b"1")
    os.setxattr(dirs.s(b"f"), "user.b", b"2" * 2000)
    os.setxattr(dirs.d(b"f"), "user.a", b"other")
    os.setxattr(dirs.d(b"f"), "user.c", b"extra")
    b = run(dirs, [(b"f", b"f", engine.T_META, engine.P_XATTR)])
    assert result(b) == (0, "none")
    assert b.jobs[0].changed == engine.CH_XATTR
    assert xattrs(dirs.d(b"f")) == {"user.a": b"1", "user.b": b"2" * 2000}
    b = run(dirs, [(b"f", b"f", engine.T_META, engine.P_XATTR)])
    assert b.jobs[0].changed == 0


def test_meta_xattrs_removed_when_source_has_none(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"s")
    write_file(dirs.d(b"f"), b"d")
    os.setxattr(dirs.d(b"f"), "user.c", b"extra")
    b = run(dirs, [(b"f", b"f", engine.T_META, engine.P_XATTR)])
    assert b.jobs[0].changed == engine.CH_XATTR
    assert xattrs(dirs.d(b"f")) == {}


def test_meta_xattr_leaves_acls_to_acl_flag(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"s")
    write_file(dirs.d(b"f"), b"d")
    setfacl("-m", "u:nobody:r", dirs.d(b"f"))
    b = run(dirs, [(b"f", b"f", engine.T_META, engine.P_XATTR)])
    assert b.jobs[0].changed == 0
    assert ACCESS in xattrs(dirs.d(b"f"))


def test_meta_acl_added_and_removed(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"s", mode=0o640)
    write_file(dirs.d(b"f"), b"d", mode=0o640)
    setfacl("-m", "u:nobody:r", dirs.s(b"f"))
    b = run(dirs, [(b"f", b"f", engine.T_META, engine.P_MODE | engine.P_ACL)])
    assert result(b) == (0, "none")
    assert b.jobs[0].changed == engine.CH_ACL
    assert os.getxattr(dirs.d(b"f"), ACCESS) == os.getxattr(dirs.s(b"f"), ACCESS)
    assert os.lstat(dirs.d(b"f")).st_mode == os.lstat(dirs.s(b"f")).st_mode
    setfacl("-b", dirs.s(b"f"))
    b = run(dirs, [(b"f", b"f", engine.T_META, engine.P_MODE | engine.P_ACL)])
    assert b.jobs[0].changed == engine.CH_ACL
    assert ACCESS not in xattrs(dirs.d(b"f"))
    assert os.lstat(dirs.d(b"f")).st_mode == os.lstat(dirs.s(b"f")).st_mode


def test_meta_directory_default_acl(dirs: Dirs) -> None:
    os.mkdir(dirs.s(b"d"), 0o750)
    os.mkdir(dirs.d(b"d"), 0o700)
    setfacl("-d", "-m", "u:nobody:rx", dirs.s(b"d"))
    os.setxattr(dirs.d(b"d"), "user.gone", b"x")
    b = run(dirs, [(b"d", b"d", engine.T_META, ALL)])
    assert result(b) == (0, "none")
    assert b.jobs[0].changed == engine.CH_XATTR | engine.CH_ACL
    assert xattrs(dirs.d(b"d")) == xattrs(dirs.s(b"d"))
    assert stat.S_IMODE(os.lstat(dirs.d(b"d")).st_mode) == 0o750


def test_meta_symlink_never_followed(dirs: Dirs) -> None:
    os.symlink(b"whatever", dirs.s(b"l"))
    os.chown(dirs.s(b"l"), 1234, 5678, follow_symlinks=False)
    os.utime(dirs.s(b"l"), ns=T1, follow_symlinks=False)
    write_file(dirs.d(b"victim"), b"v", mode=0o600)
    os.setxattr(dirs.d(b"victim"), "user.keep", b"k")
    setfacl("-m", "u:nobody:r", dirs.d(b"victim"))
    os.symlink(b"victim", dirs.d(b"l"))
    before = meta_of(dirs.d(b"victim")), xattrs(dirs.d(b"victim"))
    b = run(dirs, [(b"l", b"l", engine.T_META, ALL)])
    assert result(b) == (0, "none")
    assert (meta_of(dirs.d(b"victim")), xattrs(dirs.d(b"victim"))) == before
    s = os.lstat(dirs.d(b"l"))
    assert (s.st_uid, s.st_gid, s.st_mtime_ns) == (1234, 5678, T1[1])


def test_meta_fifo_does_not_block(dirs: Dirs) -> None:
    os.mkfifo(dirs.s(b"p"), 0o640)
    os.utime(dirs.s(b"p"), ns=T1)
    os.setxattr(dirs.s(b"p"), "trusted.k", b"v")
    os.mkfifo(dirs.d(b"p"), 0o600)
    old = signal.alarm(20)  # a blocking open would hang here
    try:
        b = run(dirs, [(b"p", b"p", engine.T_META, ALL)])
    finally:
        signal.alarm(old)
    assert result(b) == (0, "none")
    assert meta_of(dirs.d(b"p")) == meta_of(dirs.s(b"p"))
    assert xattrs(dirs.d(b"p")) == {"trusted.k": b"v"}


def test_meta_dry_changes_nothing(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"s", mode=0o644)
    os.setxattr(dirs.s(b"f"), "user.a", b"1")
    setfacl("-m", "u:nobody:r", dirs.s(b"f"))
    os.utime(dirs.s(b"f"), ns=T1)
    write_file(dirs.d(b"f"), b"d", mode=0o600)
    before = meta_of(dirs.d(b"f")), xattrs(dirs.d(b"f"))
    b = run(dirs, [(b"f", b"f", engine.T_META, ALL | engine.F_DRY)])
    assert result(b) == (0, "none")
    assert b.jobs[0].changed == engine.CH_XATTR | engine.CH_ACL
    assert (meta_of(dirs.d(b"f")), xattrs(dirs.d(b"f"))) == before


def test_meta_wrong_type_or_missing(dirs: Dirs) -> None:
    write_file(dirs.s(b"f"), b"s")
    os.symlink(b"f", dirs.s(b"l"))
    os.mkdir(dirs.d(b"f"))
    write_file(dirs.d(b"l"), b"a file where the source has a symlink")
    write_file(dirs.s(b"gone"), b"s")
    b = run(
        dirs,
        [
            (b"f", b"f", engine.T_META, ALL),
            (b"l", b"l", engine.T_META, ALL),
            (b"gone", b"gone", engine.T_META, ALL),
        ],
    )
    assert result(b, 0) == (errno.EISDIR, "type")
    assert result(b, 1) == (errno.EINVAL, "type")
    assert result(b, 2) == (errno.ENOENT, "create")


@root_only
def test_meta_mode_on_0000_file_as_owner(world: bytes) -> None:
    write_file(world + b"/s", b"s", mode=0o644)
    write_file(world + b"/d", b"d", mode=0o644)
    os.chmod(world + b"/d", 0)
    os.utime(world + b"/s", ns=T1)
    for n in (b"s", b"d"):
        os.chown(world + b"/" + n, NOBODY, NOBODY)

    def go() -> tuple[int, str]:
        fd = os.open(world, O_DIR)
        try:
            st = engine.stat_at(fd, b"s")
            b = Batch(1)
            b.add(fd, b"s", fd, b"d", st, engine.T_META, ALL_META, 0o7777)
            with Ring(queue_depth=2) as ring:
                ring.run(b)
            return result(b)
        finally:
            os.close(fd)

    assert as_user(go) == (0, "none")
    s = os.lstat(world + b"/d")
    assert (stat.S_IMODE(s.st_mode), s.st_mtime_ns) == (0o644, T1[1])


def test_meta_sync_fd(dirs: Dirs) -> None:
    os.mkdir(dirs.s(b"d"), 0o751)
    os.mkdir(dirs.d(b"d"), 0o700)
    os.setxattr(dirs.s(b"d"), "user.k", b"v")
    setfacl("-d", "-m", "u:nobody:rx", dirs.s(b"d"))
    os.setxattr(dirs.d(b"d"), "user.extra", b"x")
    os.utime(dirs.s(b"d"), ns=T1)
    sfd, dfd = os.open(dirs.s(b"d"), O_DIR), os.open(dirs.d(b"d"), O_DIR)
    try:
        st = engine.stat_at(dirs.sfd, b"d")
        dry = engine.meta_sync_fd(sfd, dfd, st, ALL | engine.F_DRY, 0o7777)
        assert dry[0] == 0 and dry[2] == engine.CH_XATTR | engine.CH_ACL
        assert xattrs(dirs.d(b"d")) == {"user.extra": b"x"}
        ret, step, changed = engine.meta_sync_fd(sfd, dfd, st, ALL, 0o7777)
        assert (ret, step.name, changed) == (0, "none", engine.CH_XATTR | engine.CH_ACL)
        assert xattrs(dirs.d(b"d")) == xattrs(dirs.s(b"d"))
        assert meta_of(dirs.d(b"d"))[0] == meta_of(dirs.s(b"d"))[0]
        assert os.lstat(dirs.d(b"d")).st_mtime_ns == T1[1]
        # no source fd: xattrs and ACLs are left alone
        os.setxattr(dirs.d(b"d"), "user.extra", b"x")
        assert engine.meta_sync_fd(-1, dfd, st, ALL, 0o7777)[::2] == (0, 0)
        assert "user.extra" in xattrs(dirs.d(b"d"))
    finally:
        os.close(sfd)
        os.close(dfd)


# ----------------------------------------------------------------- T_UNLINK


@pytest.mark.parametrize("forget", [(), ("UNLINKAT",)])
def test_unlink(dirs: Dirs, forget: tuple[str, ...]) -> None:
    write_file(dirs.d(b"f"), b"x")
    write_file(dirs.d(b"target"), b"t")
    os.symlink(b"target", dirs.d(b"l"))
    os.mkdir(dirs.d(b"empty"))
    os.mkdir(dirs.d(b"full"))
    write_file(dirs.d(b"full") + b"/x", b"x")
    b = run(
        dirs,
        [
            (None, b"f", engine.T_UNLINK, 0),
            (None, b"l", engine.T_UNLINK, 0),
            (None, b"empty", engine.T_UNLINK, engine.F_RMDIR),
            (None, b"full", engine.T_UNLINK, engine.F_RMDIR),
            (None, b"missing", engine.T_UNLINK, 0),
        ],
        forget=forget,
    )
    assert [result(b, i) for i in range(5)] == [
        (0, "none"),
        (0, "none"),
        (0, "none"),
        (errno.ENOTEMPTY, "unlink"),
        (errno.ENOENT, "unlink"),
    ]
    assert sorted(os.listdir(dirs.dst)) == [b"full", b"target"]
    assert os.listdir(dirs.d(b"full")) == [b"x"]


def test_unlink_directory_without_rmdir_fails(dirs: Dirs) -> None:
    os.mkdir(dirs.d(b"d"))
    b = run(dirs, [(None, b"d", engine.T_UNLINK, 0)])
    assert result(b) == (errno.EISDIR, "unlink")
    assert os.path.isdir(dirs.d(b"d"))
