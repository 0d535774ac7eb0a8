"""us_sync_match: one directory's two listings matched by name, and what
differs between each source entry and its destination twin, on real files
(stat, symlink values, xattrs and ACLs read from the disk)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.base import O_DIR
from tests.support.trees import write_file
from uringsync import engine
from uringsync.engine import Ring

XA = engine.P_XATTR | engine.P_ACL


def match(src: bytes, dst: bytes, flags: int = XA) -> dict[bytes, tuple[bytes | None, int]]:
    """name -> (its twin's name or None, D_* bits); plus the unmatched
    destination names under the key b"/unmatched" (as the twin)."""
    sfd, dfd = os.open(src, O_DIR), os.open(dst, O_DIR)
    try:
        with Ring() as ring:
            sc, dsc = ring.scan_many([sfd, dfd])
            assert not isinstance(sc, OSError) and not isinstance(dsc, OSError)
            m, diff, matched = engine.sync_match(sc, dsc, sfd, dfd, flags, 0)
            out: dict[bytes, tuple[bytes | None, int]] = {}
            for i in range(sc.n):
                twin = dsc.name(m[i]) if m[i] >= 0 else None
                out[sc.name(i)] = (twin, diff[i])
            left = b",".join(sorted(dsc.name(j) for j in range(dsc.n) if not matched[j]))
            out[b"/unmatched"] = (left, 0)
            return out
    finally:
        os.close(sfd)
        os.close(dfd)


def pair(tmp: bytes) -> tuple[bytes, bytes]:
    src, dst = os.path.join(tmp, b"src"), os.path.join(tmp, b"dst")
    os.mkdir(src)
    os.mkdir(dst)
    return src, dst


def twin(src: bytes, dst: bytes, name: bytes, data: bytes = b"x") -> None:
    """The same file on both sides, times and mode included."""
    for d in (src, dst):
        write_file(os.path.join(d, name), data)
        os.chmod(os.path.join(d, name), 0o644)
        os.utime(os.path.join(d, name), ns=(10**18, 10**18))


def test_names_matched_in_any_order(tmp: bytes) -> None:
    src, dst = pair(tmp)
    names = [b"b", b"a", b"\xff\xfe", b"z" * 200, b"m"]
    for n in names:
        twin(src, dst, n)
    write_file(os.path.join(src, b"new"), b"n")
    write_file(os.path.join(dst, b"extra"), b"e")
    write_file(os.path.join(dst, b"extra2"), b"e")
    got = match(src, dst)
    for n in names:
        assert got[n] == (n, 0), n
    assert got[b"new"] == (None, engine.D_MISSING)
    assert got[b"/unmatched"] == (b"extra,extra2", 0)


def test_each_difference_is_its_own_bit(tmp: bytes) -> None:
    src, dst = pair(tmp)
    for n in (b"size", b"mtime", b"perms", b"uid", b"gid", b"same"):
        twin(src, dst, n)
    write_file(os.path.join(dst, b"size"), b"xx")
    os.utime(os.path.join(dst, b"size"), ns=(10**18, 10**18))
    os.utime(os.path.join(dst, b"mtime"), ns=(10**18, 10**18 + 10**9))
    os.chmod(os.path.join(dst, b"perms"), 0o600)
    os.chown(os.path.join(dst, b"uid"), 65534, -1)
    os.chown(os.path.join(dst, b"gid"), -1, 65534)
    write_file(os.path.join(src, b"type"), b"f")
    os.mkdir(os.path.join(dst, b"type"))
    got = match(src, dst)
    assert got[b"size"][1] == engine.D_SIZE
    assert got[b"mtime"][1] == engine.D_MTIME
    assert got[b"perms"][1] == engine.D_PERMS
    assert got[b"uid"][1] == engine.D_UID
    assert got[b"gid"][1] == engine.D_GID
    assert got[b"same"][1] == 0
    assert got[b"type"][1] == engine.D_TYPE


def test_nanoseconds_alone_are_no_difference(tmp: bytes) -> None:
    """rsync's quick check compares whole seconds."""
    src, dst = pair(tmp)
    twin(src, dst, b"f")
    os.utime(os.path.join(dst, b"f"), ns=(10**18, 10**18 + 5))
    assert match(src, dst)[b"f"][1] == 0


def test_symlink_values_and_devices(tmp: bytes) -> None:
    src, dst = pair(tmp)
    for d, target in ((src, b"a"), (dst, b"a")):
        os.symlink(target, os.path.join(d, b"same"))
    os.symlink(b"a", os.path.join(src, b"moved"))
    os.symlink(b"b", os.path.join(dst, b"moved"))
    os.mknod(os.path.join(src, b"dev"), 0o600 | 0o020000, os.makedev(1, 3))
    os.mknod(os.path.join(dst, b"dev"), 0o600 | 0o020000, os.makedev(1, 5))
    got = match(src, dst)
    mask = ~(engine.D_MTIME | engine.D_PERMS)  # made a moment apart
    assert got[b"same"][1] & mask == 0
    assert got[b"moved"][1] & mask == engine.D_TARGET
    assert got[b"dev"][1] & mask == engine.D_RDEV


def test_xattrs_and_acls_only_when_asked(tmp: bytes) -> None:
    src, dst = pair(tmp)
    for n in (b"x", b"xextra", b"acl", b"plain"):
        twin(src, dst, n)
    os.setxattr(os.path.join(src, b"x"), b"user.k", b"1")
    os.setxattr(os.path.join(dst, b"x"), b"user.k", b"2")
    os.setxattr(os.path.join(dst, b"xextra"), b"user.only", b"1")
    subprocess.run([b"setfacl", b"-m", b"u:nobody:r", os.path.join(src, b"acl")], check=True)
    got = match(src, dst)
    assert got[b"x"][1] == engine.D_XATTR
    assert got[b"xextra"][1] == engine.D_XATTR
    assert got[b"acl"][1] & engine.D_ACL
    assert got[b"plain"][1] == 0
    assert match(src, dst, engine.P_XATTR)[b"acl"][1] & engine.D_ACL == 0
    assert all(v == 0 for k, (_, v) in match(src, dst, 0).items() if k != b"/unmatched")


def test_many_entries_compared_in_threads(tmp: bytes) -> None:
    """Enough entries for several comparing threads: every bit still lands
    on its own entry."""
    src, dst = pair(tmp)
    n = 700
    for i in range(n):
        twin(src, dst, b"f%04d" % i)
        if i % 7 == 0:
            os.setxattr(os.path.join(dst, b"f%04d" % i), b"user.d", b"%d" % i)
        if i % 11 == 0:
            os.symlink(b"t", os.path.join(src, b"l%04d" % i))
            os.symlink(b"t" if i % 2 else b"u", os.path.join(dst, b"l%04d" % i))
    got = match(src, dst)
    for i in range(n):
        assert got[b"f%04d" % i][1] == (engine.D_XATTR if i % 7 == 0 else 0), i
        if i % 11 == 0:
            bits = got[b"l%04d" % i][1] & engine.D_TARGET
            assert bits == (0 if i % 2 else engine.D_TARGET), i


@pytest.mark.parametrize("empty", ["src", "dst", "both"])
def test_empty_sides(tmp: bytes, empty: str) -> None:
    src, dst = pair(tmp)
    if empty != "src":
        write_file(os.path.join(src, b"a"), b"a")
    if empty != "dst":
        write_file(os.path.join(dst, b"b"), b"b")
    got = match(src, dst)
    if empty != "src":
        assert got[b"a"] == (None, engine.D_MISSING)
    assert got[b"/unmatched"] == ((b"b" if empty != "dst" else b""), 0)
