"""xattrs of symlinks and special files on kernels without the *xattrat
syscalls (before Linux 6.13; Debian 12 ships 6.1).

The copy runs under a seccomp filter that makes listxattrat, getxattrat,
setxattrat and removexattrat fail with ENOSYS, as an older kernel does.  The
engine then goes through /proc/self/fd/<dirfd>/<name> with the l*xattr calls:
nothing may be lost (the result must be cp -a's), and where even that way is
closed (/proc/self/fd not procfs) the failure must be reported, not dropped.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys

import pytest

from tests.support.base import p, root_only
from tests.support.cli import assert_error_lines, check_cp, run_cli
from tests.support.compare import (
    acl_dump,
    assert_same_dumps,
    assert_same_meta,
    assert_same_tree,
    rsync_clean,
    xattr_dump,
)
from tests.support.sandbox import NEWER_SYSCALLS, run_sandboxed, seccomp_argv
from tests.support.system import mount_ramfs, run_ok, umount
from tests.support.trees import rand_bytes, set_tree_times, write_file

XATTRAT = ("listxattrat", "getxattrat", "setxattrat", "removexattrat")
NO_XATTRAT = {name: errno.ENOSYS for name in XATTRAT}

# Calls each *xattrat syscall on "/" and prints "nr errno" per call.
PROBE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
args = {
    465: (-100, b"/", 0x100, None, 0),
    464: (-100, b"/", 0x100, b"user.none", None, 0),
    463: (-100, b"/", 0x100, b"user.none", None, 0),
    466: (-100, b"/", 0x100, b"user.none"),
}
for nr, a in args.items():
    ctypes.set_errno(0)
    r = libc.syscall(nr, *a)
    print(nr, ctypes.get_errno() if r < 0 else 0)
"""


def probe(rules: dict[str, int] | None) -> dict[int, int]:
    """{syscall number: errno (0: it ran)} for the *xattrat syscalls."""
    argv = [sys.executable, "-c", PROBE]
    if rules is None:
        r = run_ok(*argv)
    else:
        r = run_sandboxed(rules, argv)
        assert r.returncode == 0, r.stderr
    return {int(a): int(e) for a, e in (ln.split() for ln in r.stdout.splitlines())}


def test_filter_makes_xattrat_enosys() -> None:
    """The sandbox really bites: under NO_XATTRAT every *xattrat call answers
    ENOSYS, whatever this kernel has; another errno goes through as given."""
    assert probe(NO_XATTRAT) == {nr: errno.ENOSYS for nr in NEWER_SYSCALLS.values()}
    assert probe({"getxattrat": errno.EPERM})[464] == errno.EPERM
    # without the filter, a 6.13+ kernel runs them (the probe's "/" has no
    # user.none: ENODATA, or EINVAL for the NULL value pointers, not ENOSYS)
    if os.uname().release.split(".")[:2] >= ["6", "13"] and probe(None)[465] == errno.ENOSYS:
        pytest.fail("listxattrat is ENOSYS without the filter on a 6.13+ kernel")


def test_seccomp_argv_any_syscall_and_errno() -> None:
    """The helper is generic: a name libseccomp knows, with any errno."""
    argv = seccomp_argv(
        {"io_uring_setup": errno.EPERM},
        [sys.executable, "-c", "import ctypes, os; l = ctypes.CDLL(None, use_errno=True); "
         "r = l.syscall(425, 1, None); print(r, ctypes.get_errno())"],
    )  # fmt: skip
    out = run_ok(*argv).stdout.split()
    assert out == [b"-1", str(errno.EPERM).encode()], out


def build_tree(src: bytes, specials: bool = True) -> None:
    """Dirs and files with xattrs, symlinks with trusted.*/security.*, and
    (specials) a FIFO and device nodes with trusted.* and a FIFO ACL."""
    os.makedirs(p(src, b"d/sub"))
    write_file(p(src, b"f"), rand_bytes(10_000, "f"))
    os.setxattr(p(src, b"f"), b"user.f", b"file\0value")
    os.setxattr(p(src, b"f"), b"trusted.f", rand_bytes(300, "tf"))
    write_file(p(src, b"d/sub/plain"), b"plain\n", 0o600)
    os.setxattr(p(src, b"d"), b"trusted.dir", b"dir")
    os.setxattr(p(src, b"d/sub"), b"user.sub", b"")
    os.symlink(b"../f", p(src, b"d/link"))
    os.setxattr(p(src, b"d/link"), b"trusted.onlink", b"link\0v", follow_symlinks=False)
    os.setxattr(p(src, b"d/link"), b"trusted.big", rand_bytes(3000, "big"), follow_symlinks=False)
    os.setxattr(p(src, b"d/link"), b"security.lnk", b"sec", follow_symlinks=False)
    os.symlink(b"nowhere", p(src, b"dangling"))
    os.setxattr(p(src, b"dangling"), b"trusted.x", b"", follow_symlinks=False)
    os.symlink(b"f", p(src, b"bare_link"))  # no xattrs
    if specials:
        os.mkfifo(p(src, b"fifo"), 0o640)
        os.setxattr(p(src, b"fifo"), b"trusted.fifo", b"fifo\0")
        run_ok("setfacl", "-m", "u:1234:rw-", p(src, b"fifo"))
        os.mknod(p(src, b"d/null_like"), 0o604 | stat.S_IFCHR, os.makedev(1, 3))
        os.setxattr(p(src, b"d/null_like"), b"trusted.chr", b"c")
        os.mknod(p(src, b"blk"), 0o640 | stat.S_IFBLK, os.makedev(7, 200))
        os.setxattr(p(src, b"blk"), b"security.blk", b"b")
    set_tree_times(src, seed=23)


def link_xattrs(path: bytes) -> dict[bytes, bytes]:
    return {
        os.fsencode(k): os.getxattr(path, k, follow_symlinks=False)
        for k in os.listxattr(path, follow_symlinks=False)
    }


@root_only
@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM], ids=["ENOSYS", "EPERM"])
def test_symlink_and_special_xattrs_without_xattrat(tmp: bytes, err: int) -> None:
    """ENOSYS: a kernel before 6.13; EPERM: a seccomp profile older than the
    syscalls (older Docker answers unknown syscalls so)."""
    src, us, cp = tmp + b"/src", tmp + b"/us", tmp + b"/cp"
    os.mkdir(src)
    build_tree(src)
    # sanity: the source has what the test is about
    dump = xattr_dump(src)
    assert any(b"trusted.onlink" in ln for ln in dump[b"ROOT/d/link"])
    assert any(b"trusted.fifo" in ln for ln in dump[b"ROOT/fifo"])
    assert any(b"user:1234:rw-" in ln for ln in acl_dump(src)[b"ROOT/fifo"])

    rules = {name: err for name in XATTRAT}
    rc, out, stderr = run_cli(b"cp", b"-a", src, us, wrap=lambda a: seccomp_argv(rules, a))
    assert (rc, stderr) == (0, b""), (rc, out, stderr)
    check_cp(b"-a", src, cp)
    assert_same_tree(cp, us)
    assert_same_tree(src, us)
    assert_same_meta(src, cp, us)
    for rel in (b"d/link", b"dangling", b"bare_link", b"fifo", b"d/null_like", b"blk"):
        assert link_xattrs(p(us, rel)) == link_xattrs(p(src, rel)), rel
    assert link_xattrs(p(us, b"d/link"))[b"trusted.onlink"] == b"link\0v"
    rsync_clean(src, us)


@root_only
def test_fallback_refusals_match_xattrat(tmp: bytes) -> None:
    """A destination that refuses xattrs (ramfs): with the fallback the same
    exit code and the same messages as with *xattrat (on an older kernel both
    runs take the fallback and this only checks the run is steady)."""
    src, mnt = tmp + b"/src", tmp + b"/mnt"
    os.mkdir(src)
    os.mkdir(mnt)
    build_tree(src, specials=False)
    why = mount_ramfs(mnt)
    if why:
        print("SKIP:", why)
        pytest.skip(why)
    try:
        runs = []
        for name, wrap in (("plain", None), ("fallback", NO_XATTRAT)):
            dst = mnt + b"/" + name.encode()
            w = None if wrap is None else (lambda a, r=wrap: seccomp_argv(r, a))
            rc, _out, err = run_cli(b"cp", b"-a", b"-j", b"0", src, dst, wrap=w)
            lines = assert_error_lines(err)
            runs.append((rc, sorted(re.sub(rb"'[^']*'", b"PATH", ln) for ln in lines)))
            assert_same_tree(src, dst)
        assert runs[0] == runs[1], runs
        assert runs[0][0] == 23, runs
    finally:
        umount(mnt)


@root_only
def test_no_way_left_is_reported(tmp: bytes) -> None:
    """No *xattrat and /proc/self/fd masked (a tmpfs over it, in a mount
    namespace of its own): the symlink's xattrs cannot be reached without
    following it.  That is reported (path, step, reason; exit 23), and
    everything else is copied as cp -a copies it."""
    src, us, cp = tmp + b"/src", tmp + b"/us", tmp + b"/cp"
    os.mkdir(src)
    build_tree(src, specials=False)
    os.unlink(p(src, b"dangling"))
    os.unlink(p(src, b"bare_link"))  # d/link is the one symlink
    set_tree_times(src, seed=29)
    # -j 0: no worker processes, so the masked /proc/<pid>/fd is the copier's
    mask = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /proc/$$/fd && exec "$@"', "sh"]
    rc, _out, err = run_cli(
        b"cp", b"-a", b"-j", b"0", src, us,
        wrap=lambda a: seccomp_argv(NO_XATTRAT, [*mask, *a]),
    )  # fmt: skip
    lines = assert_error_lines(err, 1)
    assert rc == 23, (rc, err)
    assert b"cannot list extended attributes for" in lines[0], lines
    assert p(us, b"d/link") in lines[0], lines
    assert os.strerror(errno.ENOSYS).encode() in lines[0], lines
    # the link itself is there, with its target, owner and times; no xattrs
    assert link_xattrs(p(us, b"d/link")) == {}
    check_cp(b"-a", src, cp)
    assert_same_tree(cp, us)
    # every other xattr made it
    dump_cp, dump_us = xattr_dump(cp), xattr_dump(us)
    assert dump_us.pop(b"ROOT/d/link", None) is None
    assert b"ROOT/d/link" in dump_cp
    del dump_cp[b"ROOT/d/link"]
    assert_same_dumps(dump_cp, dump_us, "getfattr (cp vs uringsync, but d/link)")
