"""What cp -a keeps beyond bytes and stat fields: hard links, special files,
extended attributes and POSIX ACLs, holes, reflinks.

Every test checks the trees on disk against GNU cp's copy and the source
(snapshot, getfacl/getfattr dumps, link groups, block counts) and with
`rsync -naHAXc --itemize-changes`.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess

import pytest

from tests.support.base import BLOCK, NEG_MTIME, ROOT, Y2200_MTIME, MiB, p, root_only
from tests.support.cli import assert_error_lines, check_cli, check_cp, run_cli, run_cp, stderr_lines
from tests.support.compare import (
    FIELDS_NO_ATIME,
    acl_dump,
    assert_same_links,
    assert_same_meta,
    assert_same_tree,
    copy_both,
    data_map,
    link_groups,
    rsync_clean,
    snapshot,
)
from tests.support.system import loop_fs, mount_ramfs, mount_tmpfs, run_ok, umount
from tests.support.trees import make_socket, make_sparse, rand_bytes, set_tree_times, write_file
from tests.support.users import api_copy, as_user

# every test here runs with both engines (conftest.engine_name)
pytestmark = pytest.mark.usefixtures("engine_name")

# ------------------------------------------------------------ hard links


def build_links_tree(src: bytes) -> int:
    """Hard-link groups in one dir, across dirs, deep vs top; returns extra names."""
    os.makedirs(p(src, b"a/b/c/d/e"))
    os.mkdir(p(src, b"other"))
    extra = 0
    # pair in one directory
    write_file(p(src, b"one"), rand_bytes(70_000, "one"))
    os.link(p(src, b"one"), p(src, b"one.link"))
    extra += 1
    # deep down and at the top level
    write_file(p(src, b"a/b/c/d/e/deep"), rand_bytes(300_000, "deep"), 0o640)
    os.link(p(src, b"a/b/c/d/e/deep"), p(src, b"top_of_deep"))
    extra += 1
    # group of four across directories, odd owner and mode
    write_file(p(src, b"other/four"), rand_bytes(5 * MiB + 3, "four"), 0o604)
    os.chown(p(src, b"other/four"), 1234, 5678)
    for dst in (b"a/four2", b"a/b/four3", b"four4"):
        os.link(p(src, b"other/four"), p(src, dst))
        extra += 1
    # an empty file linked, and a file linked whose name sorts first elsewhere
    write_file(p(src, b"a/b/empty"), b"")
    os.link(p(src, b"a/b/empty"), p(src, b"other/empty"))
    extra += 1
    write_file(p(src, b"zzz"), rand_bytes(4097, "zzz"), 0o755)
    os.link(p(src, b"zzz"), p(src, b"a/aaa"))
    extra += 1
    # singles, for contrast
    write_file(p(src, b"single"), b"single\n")
    write_file(p(src, b"a/b/c/single"), rand_bytes(200_000, "s2"))
    set_tree_times(src, {b"a/b/c": NEG_MTIME, b"other/four": Y2200_MTIME}, seed=3)
    return extra


@root_only
def test_hardlinks_match_cp(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    build_links_tree(src)
    before = snapshot(src)
    copy_both([src], tmp + b"/us", tmp + b"/cp")
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(before, tmp + b"/us")
    assert_same_links(src, tmp + b"/cp")
    assert_same_links(src, tmp + b"/us")
    rsync_clean(src, tmp + b"/us")


@root_only
def test_hardlinks_api_counts(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    extra = build_links_tree(src)
    res = api_copy([src], tmp + b"/us")
    assert res.exit_code == 0, res.errors
    assert res.errors == []
    assert res.links == extra, f"Result.links={res.links}, extra names={extra}"
    assert_same_links(src, tmp + b"/us")
    assert_same_tree(src, tmp + b"/us")
    # one copy of the data per inode: the group of four is one inode in dst
    sts = {os.stat(p(tmp, b"us", n)).st_ino for n in (b"other/four", b"a/four2", b"four4")}
    assert len(sts) == 1


@root_only
def test_hardlinks_across_src_arguments(tmp: bytes) -> None:
    """Links between files given in different SRC arguments of one run."""
    s1, s2 = tmp + b"/s1", tmp + b"/s2"
    os.makedirs(s1 + b"/sub/deeper")
    os.mkdir(s2)
    write_file(s1 + b"/a", rand_bytes(150_000, "a"))
    os.link(s1 + b"/a", s2 + b"/b")
    write_file(s1 + b"/sub/deeper/y", rand_bytes(10, "y"), 0o600)
    os.link(s1 + b"/sub/deeper/y", tmp + b"/lone")
    write_file(s2 + b"/c", b"c")
    os.link(s2 + b"/c", s2 + b"/c2")
    for d in (s1, s2):
        set_tree_times(d, seed=5)
    set_tree_times(tmp + b"/lone", seed=6)
    srcs = [s1, s2, tmp + b"/lone"]
    for d in (b"/us", b"/cp", b"/api"):
        os.mkdir(tmp + d)
    copy_both(srcs, tmp + b"/us", tmp + b"/cp")
    want = {
        frozenset({b"s1/a", b"s2/b"}),
        frozenset({b"s1/sub/deeper/y", b"lone"}),
        frozenset({b"s2/c", b"s2/c2"}),
    }
    assert link_groups(tmp + b"/cp") == want  # sanity: that is what cp does
    assert link_groups(tmp + b"/us") == want
    top = lambda k: k == b""  # noqa: E731  (DST existed: its own times are not copied)
    assert_same_tree(tmp + b"/cp", tmp + b"/us", exclude=top)
    for n in (b"s1/a", b"s2/b", b"lone", b"s2/c"):
        assert os.stat(p(tmp, b"us", n)).st_nlink == 2, n
    res = api_copy(srcs, tmp + b"/api")
    assert res.exit_code == 0, res.errors
    assert res.links == 3
    assert link_groups(tmp + b"/api") == want
    assert_same_tree(tmp + b"/cp", tmp + b"/api", exclude=top)


@root_only
def test_hardlink_whose_first_name_fails_gets_data_via_next(tmp: bytes) -> None:
    """Five names per inode; in group gI every name but nI is blocked in DST by
    a planted directory.  Whatever order the names are met in, some groups meet
    blocked names first: the one free name must still get the data."""
    src, dst = tmp + b"/src", tmp + b"/dst"
    os.makedirs(dst + b"/src")
    names = [b"n%d" % i for i in range(5)]
    for g in range(5):
        gd = p(src, b"g%d" % g)
        os.makedirs(gd)
        write_file(p(gd, names[0]), rand_bytes(100_000 + g, g), 0o640)
        for n in names[1:]:
            os.link(p(gd, names[0]), p(gd, n))
        for i, n in enumerate(names):
            if i != g:
                os.makedirs(p(dst, b"src", b"g%d" % g, n, b"planted"))
    set_tree_times(src, seed=9)
    before = snapshot(src)
    rc, _out, err = run_cli(b"cp", b"-a", src, dst)
    assert rc == 23, err
    lines = assert_error_lines(err)
    assert len(lines) == 20, lines  # one per blocked name
    for g in range(5):
        free = b"g%d/%s" % (g, names[g])
        got = os.lstat(p(dst, b"src", free))
        assert stat.S_ISREG(got.st_mode), free
        assert got.st_nlink == 1, free
        want = before[free]
        snap = snapshot(p(dst, b"src", free))[b""]
        for f in FIELDS_NO_ATIME:
            assert getattr(snap, f) == getattr(want, f), (free, f)
        for i, n in enumerate(names):
            if i != g:
                assert os.path.isdir(p(dst, b"src", b"g%d" % g, n, b"planted"))


@root_only
def test_hard_links_preserved(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.makedirs(src + b"/sub")
    write_file(src + b"/f", rand_bytes(150_000, "hl"))
    os.link(src + b"/f", src + b"/f_link")
    os.link(src + b"/f", src + b"/sub/f_link2")
    write_file(src + b"/g", b"other")
    os.link(src + b"/g", src + b"/sub/g_link")
    set_tree_times(src)
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([src], d_us, d_cp)
    assert_same_tree(d_cp, d_us)
    st = [os.stat(d_us + p) for p in (b"/f", b"/f_link", b"/sub/f_link2")]
    assert len({s.st_ino for s in st}) == 1, "hard links not preserved (cp -a keeps them)"
    assert st[0].st_nlink == 3
    assert os.stat(d_us + b"/g").st_ino == os.stat(d_us + b"/sub/g_link").st_ino
    rsync_clean(src, d_us)


# --------------------------------------------------------- special files


def build_specials(src: bytes, devices: bool = True) -> int:
    """FIFOs, sockets (and device nodes); returns how many special files."""
    os.makedirs(p(src, b"sub"))
    n = 0
    for rel, mode in ((b"fifo", 0o640), (b"sub/fifo604", 0o604), (b"fifo_odd", 0o1600)):
        os.mkfifo(p(src, rel))
        os.chmod(p(src, rel), mode)
        n += 1
    make_socket(p(src, b"sock"))
    os.chmod(p(src, b"sock"), 0o751)
    make_socket(p(src, b"sub/sock2"))
    n += 2
    if devices:
        os.mknod(p(src, b"null_like"), 0o604 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(p(src, b"sub/loop200"), 0o640 | stat.S_IFBLK, os.makedev(7, 200))
        os.mknod(p(src, b"bigdev"), 0o600 | stat.S_IFCHR, os.makedev(259, 1048575))
        n += 3
        for rel in (b"null_like", b"sub/loop200", b"fifo", b"sock"):
            os.chown(p(src, rel), 1234, 5678)
        os.chmod(p(src, b"null_like"), 0o604)
        os.chmod(p(src, b"fifo"), 0o640)
        os.chmod(p(src, b"sock"), 0o751)
    write_file(p(src, b"plain"), b"plain\n")
    set_tree_times(
        src,
        {b"fifo": NEG_MTIME, b"null_like": Y2200_MTIME, b"sub/sock2": 1_000_000_000_123_456_789},
        seed=11,
    )
    return n


@root_only
def test_special_files_match_cp(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    build_specials(src)
    before = snapshot(src)
    assert {r.type for r in before.values()} >= {"fifo", "sock", "chr", "blk"}
    copy_both([src], tmp + b"/us", tmp + b"/cp")
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(before, tmp + b"/us")
    us = snapshot(tmp + b"/us")
    assert os.major(us[b"sub/loop200"].rdev) == 7 and os.minor(us[b"sub/loop200"].rdev) == 200
    assert os.major(us[b"bigdev"].rdev) == 259 and os.minor(us[b"bigdev"].rdev) == 1048575
    assert (us[b"null_like"].uid, us[b"null_like"].gid) == (1234, 5678)
    rsync_clean(src, tmp + b"/us")


@root_only
def test_special_files_api_counts(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    n = build_specials(src)
    res = api_copy([src], tmp + b"/us")
    assert res.exit_code == 0, res.errors
    assert res.specials == n
    assert res.files == 1
    assert_same_tree(src, tmp + b"/us")


@root_only
def test_special_file_as_src_argument(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    build_specials(src)
    for rel in (b"fifo", b"null_like", b"sock", b"sub/loop200"):
        name = os.path.basename(rel)
        copy_both([p(src, rel)], p(tmp, b"us_" + name), p(tmp, b"cp_" + name))
        assert_same_tree(p(tmp, b"cp_" + name), p(tmp, b"us_" + name))
        assert_same_tree(p(src, rel), p(tmp, b"us_" + name))


def test_special_files_unprivileged(world: bytes) -> None:
    """FIFOs and sockets as a user who cannot make devices or chown."""

    def body() -> None:
        src = world + b"/src"
        os.mkdir(src)
        n = build_specials(src, devices=False)
        import uringsync

        res = uringsync.copy([src], world + b"/us", archive=True)
        assert res.exit_code == 0, res.errors
        assert res.specials == n
        check_cp(b"-a", src, world + b"/cp")
        assert_same_tree(world + b"/cp", world + b"/us")
        assert_same_tree(src, world + b"/us")

    as_user(body) if ROOT else body()


@root_only
def test_special_files(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    os.mkfifo(src + b"/fifo", 0o640)
    os.mknod(src + b"/null_like", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(src + b"/blk", 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    write_file(src + b"/reg", b"r")
    set_tree_times(src)
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([src], d_us, d_cp)
    assert_same_tree(d_cp, d_us)
    assert_same_tree(src, d_us)
    rsync_clean(src, d_us)


# ------------------------------------------------- xattrs and POSIX ACLs


def try_setxattr(path: bytes, name: bytes, value: bytes, follow: bool = True) -> bool:
    try:
        os.setxattr(path, name, value, follow_symlinks=follow)
        return True
    except OSError as e:
        print(f"note: setxattr {name!r} on {path!r}: {e}")
        return False


def build_xattr_tree(src: bytes, big: bool, privileged: bool = True) -> None:
    """Files, dirs and symlinks with user.*/trusted.*/security.* xattrs and ACLs.

    big: also values of 4 KiB and ~60 KiB (not on ext4: one 4 KiB block)."""
    os.makedirs(p(src, b"d/sub"))
    os.mkdir(p(src, b"defacl"))
    write_file(p(src, b"bin"), rand_bytes(5000, "bin"))
    os.setxattr(p(src, b"bin"), b"user.nul", b"\0a\0\0b\0")
    os.setxattr(p(src, b"bin"), b"user.allbytes", bytes(range(256)))
    os.setxattr(p(src, b"bin"), b"user.empty", b"")
    os.setxattr(p(src, b"bin"), b"user.mid", rand_bytes(3000, "mid"))
    write_file(p(src, b"many"), b"many\n", 0o600)
    for i in range(50):
        os.setxattr(p(src, b"many"), b"user.name%02d" % i, b"v\0%d" % i)
    if big:
        write_file(p(src, b"big"), rand_bytes(300_000, "big"))
        os.setxattr(p(src, b"big"), b"user.4k", rand_bytes(4096, "4k"))
        os.setxattr(p(src, b"big"), b"user.60k", rand_bytes(60_000, "60k"))
        os.setxattr(p(src, b"d"), b"user.dir60k", rand_bytes(60_000, "d60k"))
    os.setxattr(p(src, b"d"), b"user.dir", b"dir\0value")
    os.setxattr(p(src, b"d/sub"), b"user.sub", b"")
    write_file(p(src, b"d/sub/plain"), b"no xattrs\n")
    os.symlink(b"../bin", p(src, b"d/link"))
    os.symlink(b"dangling", p(src, b"d/dangling"))
    if privileged:
        os.setxattr(p(src, b"bin"), b"trusted.t", b"\0trusted\0")
        os.setxattr(p(src, b"d"), b"trusted.dir", rand_bytes(100, "td"))
        os.setxattr(p(src, b"d/link"), b"trusted.onlink", b"link\0v", follow_symlinks=False)
        os.setxattr(p(src, b"d/dangling"), b"trusted.x", b"", follow_symlinks=False)
        try_setxattr(p(src, b"bin"), b"security.foo", b"sec\0val")
        try_setxattr(p(src, b"d"), b"security.foo", b"secdir")
        try_setxattr(p(src, b"d/link"), b"security.foo", b"seclink", follow=False)
    # user.* is not allowed on symlinks by Linux: make sure the tree says so
    with pytest.raises(OSError):
        os.setxattr(p(src, b"d/link"), b"user.x", b"v", follow_symlinks=False)

    # POSIX ACLs: access ACLs on files and dirs, default ACLs on dirs
    write_file(p(src, b"acl_file"), b"acl\n", 0o640)
    run_ok("setfacl", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", p(src, b"acl_file"))
    write_file(p(src, b"acl_masked"), b"masked\n")
    run_ok("setfacl", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", p(src, b"acl_masked"))
    os.chmod(p(src, b"acl_masked"), 0o604)  # mask becomes ---
    run_ok("setfacl", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", p(src, b"d"))
    write_file(p(src, b"defacl/before"), b"made before the default ACL\n")
    run_ok("setfacl", "-d", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", p(src, b"defacl"))
    run_ok("setfacl", "-m", "u:4321:r-x", p(src, b"defacl"))
    write_file(p(src, b"defacl/inherited"), b"inherits the default ACL\n")
    os.mkdir(p(src, b"defacl/subdir"))  # inherits default and access ACLs
    write_file(p(src, b"defacl/stripped"), b"inherited, then removed\n")
    run_ok("setfacl", "-b", p(src, b"defacl/stripped"))
    os.mkdir(p(src, b"defacl/only_default"))
    run_ok("setfacl", "-k", "-b", p(src, b"defacl/only_default"))
    run_ok("setfacl", "-d", "-m", "u:99:r--", p(src, b"defacl/only_default"))
    if privileged:
        os.chown(p(src, b"acl_file"), 1234, 5678)
        os.setxattr(p(src, b"acl_file"), b"trusted.with_acl", b"both")
    # read-only file and directory with xattrs (a plain user needs write
    # permission to set user.*: cp sets them before the mode)
    write_file(p(src, b"ro_file"), b"read-only\n")
    os.setxattr(p(src, b"ro_file"), b"user.ro", b"r\0o")
    os.chmod(p(src, b"ro_file"), 0o444)
    os.mkdir(p(src, b"ro_dir"))
    write_file(p(src, b"ro_dir/inside"), b"inside\n")
    os.setxattr(p(src, b"ro_dir"), b"user.rodir", b"d\0")
    run_ok("setfacl", "-m", "u:1234:r-x", p(src, b"ro_dir"))
    os.chmod(p(src, b"ro_dir"), 0o555)
    set_tree_times(src, {b"d": NEG_MTIME, b"defacl": Y2200_MTIME}, seed=13)


def check_xattr_copies(src: bytes, us: bytes, cp: bytes) -> None:
    dump = acl_dump(src)
    # sanity: the source really has what the test is about
    assert any(b"default:user:1234:rwx" in ln for ln in dump[b"ROOT/defacl"])
    assert any(b"user:1234:rwx" in ln for ln in dump[b"ROOT/acl_file"])
    assert_same_meta(src, cp, us)
    assert_same_tree(cp, us)
    assert_same_tree(src, us)
    rsync_clean(src, us)


@root_only
def test_xattrs_and_acls_ext4(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    build_xattr_tree(src, big=False)
    copy_both([src], tmp + b"/us", tmp + b"/cp")
    check_xattr_copies(src, tmp + b"/us", tmp + b"/cp")


@root_only
def test_xattrs_and_acls_big_values_tmpfs(tmp: bytes) -> None:
    """Values of 4 KiB and 60 KiB need a file system that takes them (tmpfs)."""
    mnt = tmp + b"/mnt"
    os.mkdir(mnt)
    why = mount_tmpfs(mnt, "256m")
    if why:
        print("SKIP:", why)
        pytest.skip(why)
    try:
        src = mnt + b"/src"
        os.mkdir(src)
        build_xattr_tree(src, big=True)
        copy_both([src], mnt + b"/us", mnt + b"/cp")
        check_xattr_copies(src, mnt + b"/us", mnt + b"/cp")
    finally:
        umount(mnt)


def test_xattrs_and_acls_unprivileged(world: bytes) -> None:
    def body() -> None:
        src = world + b"/src"
        os.mkdir(src)
        build_xattr_tree(src, big=False, privileged=False)
        import uringsync

        res = uringsync.copy([src], world + b"/us", archive=True)
        assert res.exit_code == 0, res.errors
        check_cp(b"-a", src, world + b"/cp")
        check_xattr_copies(src, world + b"/us", world + b"/cp")

    as_user(body) if ROOT else body()


@root_only
def test_xattrs_refused_by_destination(tmp: bytes) -> None:
    """ramfs has no xattrs at all: the data is copied, the failure is reported
    once (not once per file), and the exit code is 23."""
    src, mnt = tmp + b"/src", tmp + b"/mnt"
    os.makedirs(src + b"/d")
    os.mkdir(mnt)
    for i in range(30):
        f = p(src, b"d" if i % 2 else b"", b"f%02d" % i)
        write_file(f, rand_bytes(1000 * i, i))
        os.setxattr(f, b"user.k", b"value\0%d" % i)
        os.setxattr(f, b"user.k2", b"v2")
    os.setxattr(src + b"/d", b"user.dirattr", b"dv")
    set_tree_times(src, seed=17)
    why = mount_ramfs(mnt)
    if why:
        print("SKIP:", why)
        pytest.skip(why)
    try:
        probe = mnt + b"/probe"
        write_file(probe, b"")
        try:
            os.setxattr(probe, b"user.probe", b"x")
            pytest.skip("ramfs took a user.* xattr on this kernel")
        except OSError:
            pass
        os.unlink(probe)
        rc, _out, err = run_cli(b"cp", b"-a", src, mnt + b"/us")
        check_cp(b"-a", src, mnt + b"/cp")  # cp -a ignores ENOTSUP quietly
        assert_same_tree(mnt + b"/cp", mnt + b"/us")
        assert_same_tree(src, mnt + b"/us")
        assert rc == 23, (rc, err)
        lines = assert_error_lines(err)
        assert lines, "no warning about the extended attributes"
        assert len(lines) <= 2, "one warning per kind of failure, not per file:\n" + err.decode(
            errors="replace"
        )
        assert len(set(lines)) == len(lines), lines
        for ln in lines:
            low = ln.lower()
            assert b"extended attribute" in low or b"xattr" in low, ln
    finally:
        umount(mnt)


def _have_xattr_tools() -> bool:
    return shutil.which("setfattr") is not None and shutil.which("setfacl") is not None


@root_only
@pytest.mark.skipif(not _have_xattr_tools(), reason="setfattr/setfacl not installed")
def test_xattrs_and_acls_preserved(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.makedirs(src + b"/d")
    write_file(src + b"/f", b"with xattrs")
    os.setxattr(src + b"/f", b"user.test", b"value\x00\xff")
    os.setxattr(src + b"/d", b"user.dirattr", b"v")
    subprocess.run([b"setfacl", b"-m", b"u:1234:rw", src + b"/f"], check=True)
    subprocess.run([b"setfacl", b"-d", b"-m", b"g:5678:rx", src + b"/d"], check=True)
    set_tree_times(src)
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([src], d_us, d_cp)
    assert os.getxattr(d_us + b"/f", b"user.test") == b"value\x00\xff"
    assert os.getxattr(d_us + b"/d", b"user.dirattr") == b"v"
    for rel in (b"/f", b"/d"):
        assert sorted(os.listxattr(d_us + rel)) == sorted(os.listxattr(d_cp + rel))
        for a in os.listxattr(d_cp + rel):
            assert os.getxattr(d_us + rel, a) == os.getxattr(d_cp + rel, a), (rel, a)
    assert_same_tree(d_cp, d_us)
    rsync_clean(src, d_us)


# ------------------------------------------------------------ sparse files

SPARSE_FILES = {
    # name: (segments, size)
    b"mid_hole": ([(0, 1), (101 * MiB, 1)], 102 * MiB),
    b"all_hole": ([], 50 * MiB),
    b"end_hole": ([(0, 2)], 40 * MiB),
    b"start_hole": ([(30 * MiB, 1)], 31 * MiB),
    b"start_hole_odd_end": ([(20 * MiB, 1)], 21 * MiB + 12345),
    b"many_holes": ([(i * 2 * MiB, 1) for i in range(8)], 16 * MiB),
}


def build_sparse(src: bytes) -> None:
    os.mkdir(src)
    for name, (segs, size) in SPARSE_FILES.items():
        make_sparse(
            p(src, name),
            [(off, rand_bytes(n * MiB, name + b"%d" % off)) for off, n in segs],
            size,
        )
    write_file(p(src, b"dense_zeros"), bytes(4 * MiB))  # written zeros: not sparse
    write_file(p(src, b"dense"), rand_bytes(3 * MiB + 5, "dense"))
    set_tree_times(src, seed=19)


def blocks(path: bytes) -> int:
    return os.lstat(path).st_blocks


@pytest.mark.parametrize("flags", [(), (b"--sparse=auto",)], ids=["default", "auto"])
def test_sparse_auto_keeps_holes(tmp: bytes, flags: tuple[bytes, ...]) -> None:
    src = tmp + b"/src"
    build_sparse(src)
    for name in SPARSE_FILES:  # sanity: the source is sparse
        st = os.stat(p(src, name))
        assert st.st_blocks * 512 < st.st_size, name
    copy_both([src], tmp + b"/us", tmp + b"/cp", b"-a", *flags)
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(src, tmp + b"/us")
    for name in [*SPARSE_FILES, b"dense_zeros", b"dense"]:
        s, u, c = (blocks(p(d, name)) for d in (src, tmp + b"/us", tmp + b"/cp"))
        assert u <= s + BLOCK, f"{name!r}: st_blocks src={s} us={u} cp={c}: holes not kept"
        assert abs(u - c) <= BLOCK, f"{name!r}: st_blocks src={s} us={u} cp={c}"
    for name in SPARSE_FILES:
        assert data_map(p(tmp, b"us", name)) == data_map(p(src, name)), name
    # written zeros stay written under auto, as with cp
    assert blocks(p(tmp, b"us/dense_zeros")) * 512 >= 4 * MiB
    rsync_clean(src, tmp + b"/us")


def test_sparse_always_makes_holes_from_zeros(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    write_file(p(src, b"zeros8m"), bytes(8 * MiB))
    data = rand_bytes(MiB, "head") + bytes(4 * MiB) + rand_bytes(MiB, "tail")
    write_file(p(src, b"mixed"), data)
    write_file(p(src, b"zeros_odd"), bytes(3 * MiB + 1234))
    make_sparse(p(src, b"sparse"), [(0, rand_bytes(MiB, "s"))], 20 * MiB)
    set_tree_times(src, seed=23)
    assert blocks(p(src, b"zeros8m")) * 512 >= 8 * MiB  # sanity: really written
    copy_both([src], tmp + b"/us", tmp + b"/cp", b"-a", b"--sparse=always")
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(src, tmp + b"/us")
    us = tmp + b"/us"
    assert blocks(p(us, b"zeros8m")) * 512 <= 64 * 1024, blocks(p(us, b"zeros8m"))
    assert blocks(p(us, b"zeros_odd")) * 512 <= 64 * 1024, blocks(p(us, b"zeros_odd"))
    assert blocks(p(us, b"mixed")) * 512 <= 2 * MiB + 64 * 1024, blocks(p(us, b"mixed"))
    assert blocks(p(us, b"sparse")) * 512 <= MiB + 64 * 1024
    for name in (b"zeros8m", b"mixed", b"zeros_odd", b"sparse"):
        u, c = blocks(p(us, name)), blocks(p(tmp, b"cp", name))
        assert u <= c + BLOCK, f"{name!r}: st_blocks us={u} cp --sparse=always={c}"
    rsync_clean(src, us)


def test_sparse_never_allocates_everything(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    make_sparse(p(src, b"holey"), [(0, rand_bytes(MiB, "a")), (21 * MiB, rand_bytes(MiB, "b"))],
                22 * MiB)  # fmt: skip
    make_sparse(p(src, b"all_hole"), [], 10 * MiB + 7)
    make_sparse(p(src, b"start_hole"), [(5 * MiB, rand_bytes(4096, "c"))], 6 * MiB)
    set_tree_times(src, seed=29)
    copy_both([src], tmp + b"/us", tmp + b"/cp", b"-a", b"--sparse=never")
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(src, tmp + b"/us")
    for name in (b"holey", b"all_hole", b"start_hole"):
        st = os.stat(p(tmp, b"us", name))
        assert st.st_blocks * 512 >= st.st_size, (name, st.st_blocks, st.st_size)
        assert data_map(p(tmp, b"us", name)) == [(0, st.st_size)], name
    # the Python API takes the same choice
    res = api_copy([src], tmp + b"/api", sparse="never")
    assert res.exit_code == 0, res.errors
    assert_same_tree(src, tmp + b"/api")
    st = os.stat(p(tmp, b"api/holey"))
    assert st.st_blocks * 512 >= st.st_size
    res = api_copy([src], tmp + b"/api_auto", sparse="auto", reflink="auto")
    assert res.exit_code == 0, res.errors
    assert blocks(p(tmp, b"api_auto/holey")) <= blocks(p(src, b"holey")) + BLOCK


@pytest.mark.parametrize("opt", [b"--sparse=bogus", b"--reflink=bogus", b"--sparse="])
def test_bad_sparse_or_reflink_value(tmp: bytes, opt: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    write_file(src + b"/f", b"f")
    rc, _out, err = run_cli(b"cp", b"-a", opt, src, tmp + b"/dst")
    assert rc == 1, (rc, err)
    assert b"Traceback" not in err
    assert stderr_lines(err), "no message for a bad option value"
    assert not os.path.lexists(tmp + b"/dst")


# ---------------------------------------------------------------- reflinks


def build_plain(src: bytes) -> list[bytes]:
    os.makedirs(src + b"/sub")
    names = [b"alpha.dat", b"sub/beta.dat", b"sub/gamma.dat"]
    for i, n in enumerate(names):
        write_file(p(src, n), rand_bytes(10_000 * (i + 1) + 1, n))
    os.symlink(b"alpha.dat", src + b"/link")
    set_tree_times(src, seed=31)
    return names


def test_reflink_always_fails_per_file_on_ext4(tmp: bytes) -> None:
    src = tmp + b"/src"
    names = build_plain(src)
    fs = subprocess.run(["stat", "-f", "-c", "%T", src], capture_output=True, text=True).stdout
    if fs.strip() not in ("ext2/ext3", "ext4"):
        pytest.skip(f"test dir is on {fs.strip()}, not ext4")
    rc_cp, _o, err_cp = run_cp(b"-a", b"--reflink=always", src, tmp + b"/cp")
    assert rc_cp != 0 and b"failed to clone" in err_cp  # sanity: cp can't clone here
    rc, _out, err = run_cli(b"cp", b"-a", b"--reflink=always", src, tmp + b"/us")
    assert rc == 23, (rc, err)
    lines = assert_error_lines(err, n=len(names))
    for n in names:
        mine = [ln for ln in lines if n in ln]
        assert len(mine) == 1, (n, lines)
    # directories and the symlink are copied; no file is left looking complete
    us = tmp + b"/us"
    assert os.path.isdir(us + b"/sub")
    assert os.readlink(us + b"/link") == b"alpha.dat"
    for n in names:
        assert not os.path.lexists(p(us, n)), f"{n!r} left in the destination"


@pytest.mark.parametrize("mode", [b"auto", b"never"])
def test_reflink_auto_never_copy_normally_on_ext4(tmp: bytes, mode: bytes) -> None:
    src = tmp + b"/src"
    build_plain(src)
    copy_both([src], tmp + b"/us", tmp + b"/cp", b"-a", b"--reflink=" + mode)
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(src, tmp + b"/us")
    rsync_clean(src, tmp + b"/us")


def shared_extents(path: bytes) -> tuple[int, int]:
    """(extents flagged shared, all extents) by `filefrag -v`."""
    out = run_ok("filefrag", "-v", path).stdout.decode(errors="replace")
    rows = [ln for ln in out.splitlines() if ln.strip()[:1].isdigit() and ":" in ln]
    return sum("shared" in ln for ln in rows), len(rows)


def free_bytes(mnt: bytes) -> int:
    os.sync()
    v = os.statvfs(mnt)
    return v.f_bfree * v.f_frsize


@root_only
@pytest.mark.parametrize("fstype", ["xfs", "btrfs"])
def test_reflink_on_cow_fs(tmp: bytes, fstype: str) -> None:
    if shutil.which("filefrag") is None:
        print("SKIP: filefrag (e2fsprogs) is not installed")
        pytest.skip("filefrag (e2fsprogs) is not installed")
    with loop_fs(fstype, tmp) as mnt:
        src = mnt + b"/src"
        os.mkdir(src)
        write_file(src + b"/big", random.Random(1).randbytes(64 * MiB))
        write_file(src + b"/small", rand_bytes(12345, "small"), 0o600)
        os.symlink(b"big", src + b"/link")
        set_tree_times(src, seed=37)
        free0 = free_bytes(mnt)
        check_cli(b"cp", b"-a", b"--reflink=always", src, mnt + b"/always")
        free1 = free_bytes(mnt)
        assert_same_tree(src, mnt + b"/always")
        sh, n = shared_extents(mnt + b"/always/big")
        assert n and sh == n, f"--reflink=always: {sh} of {n} extents shared"
        assert free0 - free1 < 16 * MiB, f"--reflink=always used {(free0 - free1) >> 20} MiB"

        check_cli(b"cp", b"-a", b"--reflink=auto", src, mnt + b"/auto")
        free2 = free_bytes(mnt)
        assert_same_tree(src, mnt + b"/auto")
        sh, n = shared_extents(mnt + b"/auto/big")
        assert n and sh == n, f"--reflink=auto: {sh} of {n} extents shared"
        assert free1 - free2 < 16 * MiB, f"--reflink=auto used {(free1 - free2) >> 20} MiB"

        check_cli(b"cp", b"-a", b"--reflink=never", src, mnt + b"/never")
        free3 = free_bytes(mnt)
        check_cp(b"-a", b"--reflink=never", src, mnt + b"/cp_never")
        assert_same_tree(mnt + b"/cp_never", mnt + b"/never")
        assert_same_tree(src, mnt + b"/never")
        sh, n = shared_extents(mnt + b"/never/big")
        assert n and sh == 0, f"--reflink=never: {sh} of {n} extents shared"
        assert free2 - free3 >= 60 * MiB, f"--reflink=never used {(free2 - free3) >> 20} MiB"
        rsync_clean(src, mnt + b"/never")
        rsync_clean(src, mnt + b"/always")


@root_only
def test_acls_not_inherited_from_destination_default_acl(tmp: bytes) -> None:
    """DST has a default ACL; the source has no ACLs (and one with its own):
    the copies keep the source's ACLs exactly, as cp -a does, instead of
    inheriting DST's default ACL."""
    src = tmp + b"/src"
    os.makedirs(src + b"/d")
    write_file(src + b"/f", b"f\n", 0o640)
    write_file(src + b"/d/g", b"g\n", 0o600)
    write_file(src + b"/withacl", b"acl\n")
    run_ok("setfacl", "-m", "u:99:r--", src + b"/withacl")
    os.mkfifo(src + b"/fifo")
    set_tree_times(src, seed=43)
    for d in (b"/us", b"/cp"):
        os.mkdir(tmp + d)
        run_ok("setfacl", "-d", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", tmp + d)
    copy_both([src], tmp + b"/us", tmp + b"/cp")
    assert_same_meta(src, tmp + b"/cp/src", tmp + b"/us/src")
    assert_same_tree(tmp + b"/cp/src", tmp + b"/us/src")
    rsync_clean(src, tmp + b"/us/src")
