"""Comparing trees: snapshots of every stat field and content hash, uringsync
against GNU cp (copy_both), rsync's itemized changes, getfacl/getfattr dumps,
hard-link groups, data extents."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from tests.support.base import O_DIR, O_NOATIME, PathLike, b
from tests.support.cli import check_cli, check_cp


class Rec(NamedTuple):
    type: str  # "reg", "dir", "lnk", "fifo", "chr", "blk", "sock"
    mode: int  # full st_mode (type + permission bits)
    uid: int
    gid: int
    size: int | None  # None for directories (fs artefact, not copied by cp)
    mtime_ns: int
    atime_ns: int
    sha256: str | None  # regular files
    link: bytes | None  # symlinks
    rdev: int | None  # device nodes


_TYPES = {
    stat.S_IFREG: "reg",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "lnk",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "chr",
    stat.S_IFBLK: "blk",
    stat.S_IFSOCK: "sock",
}


def _hash_at(dirfd: int, name: bytes) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | O_NOATIME, dir_fd=dirfd)
    try:
        h = hashlib.sha256()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _record(dirfd: int, name: bytes, st: os.stat_result) -> Rec:
    t = _TYPES.get(stat.S_IFMT(st.st_mode), "unknown")
    sha = _hash_at(dirfd, name) if t == "reg" else None
    link = os.readlink(name, dir_fd=dirfd) if t == "lnk" else None
    return Rec(
        type=t,
        mode=st.st_mode,
        uid=st.st_uid,
        gid=st.st_gid,
        size=None if t == "dir" else st.st_size,
        mtime_ns=st.st_mtime_ns,
        atime_ns=st.st_atime_ns,
        sha256=sha,
        link=link,
        rdev=st.st_rdev if t in ("chr", "blk") else None,
    )


def snapshot(root: PathLike) -> dict[bytes, Rec]:
    """Map every path under `root` (relative, bytes; b"" is root itself) to a Rec.

    `root` itself is lstat'ed: if it is a symlink or file, the snapshot has a
    single entry b"".
    """
    root = b(root)
    out: dict[bytes, Rec] = {}
    parent, base = os.path.split(root.rstrip(b"/") or b"/")
    pfd = os.open(parent or b".", O_DIR & ~os.O_NOFOLLOW)
    try:
        st = os.stat(base or b".", dir_fd=pfd, follow_symlinks=False)
        out[b""] = _record(pfd, base, st)
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(base or b".", O_DIR, dir_fd=pfd)
            try:
                _walk(fd, b"", out)
            finally:
                os.close(fd)
    finally:
        os.close(pfd)
    return out


def _walk(dirfd: int, rel: bytes, out: dict[bytes, Rec]) -> None:
    names = sorted(os.fsencode(n) for n in os.listdir(dirfd))
    for name in names:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        path = rel + b"/" + name if rel else name
        out[path] = _record(dirfd, name, st)
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, O_DIR, dir_fd=dirfd)
            try:
                _walk(fd, path, out)
            finally:
                os.close(fd)


FIELDS_ALL = (
    "type",
    "mode",
    "uid",
    "gid",
    "size",
    "mtime_ns",
    "atime_ns",
    "sha256",
    "link",
    "rdev",
)


FIELDS_NO_ATIME = tuple(f for f in FIELDS_ALL if f != "atime_ns")


FIELDS_CONTENT = ("type", "size", "sha256", "link", "rdev")


def _fmt(v: Any, field: str) -> str:
    if field == "mode" and isinstance(v, int):
        return oct(v)
    return repr(v)


def diff_snapshots(
    a: dict[bytes, Rec], b_: dict[bytes, Rec], fields: tuple[str, ...] = FIELDS_ALL, limit: int = 40
) -> list[str]:
    lines: list[str] = []
    only_a = sorted(set(a) - set(b_))
    only_b = sorted(set(b_) - set(a))
    for p in only_a:
        lines.append(f"only in A: {p!r} ({a[p].type})")
    for p in only_b:
        lines.append(f"only in B: {p!r} ({b_[p].type})")
    for p in sorted(set(a) & set(b_)):
        ra, rb = a[p], b_[p]
        for f in fields:
            va, vb = getattr(ra, f), getattr(rb, f)
            if va != vb:
                lines.append(f"{p!r}: {f}: A={_fmt(va, f)} B={_fmt(vb, f)}")
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more differences"]
    return lines


def assert_same_tree(
    a: PathLike | dict[bytes, Rec],
    b_: PathLike | dict[bytes, Rec],
    atime: bool = True,
    fields: tuple[str, ...] | None = None,
    exclude: Callable[[bytes], bool] | None = None,
) -> None:
    """Assert two trees (paths or snapshots) are identical, with a readable diff."""
    sa = a if isinstance(a, dict) else snapshot(a)
    sb = b_ if isinstance(b_, dict) else snapshot(b_)
    if exclude is not None:
        sa = {k: v for k, v in sa.items() if not exclude(k)}
        sb = {k: v for k, v in sb.items() if not exclude(k)}
    if fields is None:
        fields = FIELDS_ALL if atime else FIELDS_NO_ATIME
    d = diff_snapshots(sa, sb, fields)
    if d:
        na = a if not isinstance(a, dict) else "A"
        nb = b_ if not isinstance(b_, dict) else "B"
        pytest.fail(f"trees differ (A={na!r}, B={nb!r}):\n  " + "\n  ".join(d), pytrace=False)


def rsync_itemize(src: PathLike, dst: PathLike) -> bytes:
    p = subprocess.run(
        [
            b"rsync",
            b"-naHAXc",
            b"--itemize-changes",
            b(src).rstrip(b"/") + b"/",
            b(dst).rstrip(b"/") + b"/",
        ],
        capture_output=True,
        check=False,
    )
    assert p.returncode == 0, f"rsync failed ({p.returncode}): {p.stderr!r}"
    return p.stdout


def rsync_clean(src: PathLike, dst: PathLike) -> None:
    """The acceptance check: rsync finds nothing to change from src to dst."""
    out = rsync_itemize(src, dst)
    assert out == b"", "rsync -naHAXc --itemize-changes reports differences:\n" + out.decode(
        "utf-8", "backslashreplace"
    )


def _dump_blocks(out: bytes, root: bytes) -> dict[bytes, list[bytes]]:
    """Parse getfacl/getfattr output into {relpath: lines}, relpath with the
    root replaced by "ROOT" so dumps of two trees compare line for line."""
    blocks: dict[bytes, list[bytes]] = {}
    cur: list[bytes] | None = None
    root = root.rstrip(b"/")
    for ln in out.splitlines():
        if ln.startswith(b"# file: "):
            p = ln[len(b"# file: ") :]
            # getfacl/getfattr escape odd bytes in names (octal); the root we
            # pass is plain, so its escaped form is itself
            if p == root:
                rel = b"ROOT"
            elif p.startswith(root + b"/"):
                rel = b"ROOT" + p[len(root) :]
            else:
                rel = p
            cur = blocks.setdefault(rel, [])
        elif ln.strip() and cur is not None:
            cur.append(ln)
    return blocks


def acl_dump(root: PathLike) -> dict[bytes, list[bytes]]:
    """`getfacl -R --absolute-names -P ROOT`, per path (root replaced)."""
    r = b(root).rstrip(b"/")
    p = subprocess.run(
        [b"getfacl", b"-R", b"--absolute-names", b"-P", r], capture_output=True, check=False
    )
    assert p.returncode == 0, f"getfacl failed ({p.returncode}): {p.stderr!r}"
    return _dump_blocks(p.stdout, r)


def xattr_dump(root: PathLike) -> dict[bytes, list[bytes]]:
    """`getfattr -R -d -m - -e hex -h ROOT`, per path (root replaced)."""
    r = b(root).rstrip(b"/")
    p = subprocess.run(
        [b"getfattr", b"-R", b"--absolute-names", b"-d", b"-m", b"-", b"-e", b"hex", b"-h", r],
        capture_output=True,
        check=False,
    )
    assert p.returncode == 0, f"getfattr failed ({p.returncode}): {p.stderr!r}"
    return _dump_blocks(p.stdout, r)


def diff_dumps(
    a: dict[bytes, list[bytes]], b_: dict[bytes, list[bytes]], limit: int = 30
) -> list[str]:
    lines: list[str] = []
    for p in sorted(set(a) | set(b_)):
        la, lb = a.get(p), b_.get(p)
        if la == lb:
            continue
        if la is None or lb is None:
            lines.append(f"{p!r}: only in {'B' if la is None else 'A'}")
            continue
        for x in la:
            if x not in lb:
                lines.append(f"{p!r}: only in A: {x[:120]!r}")
        for x in lb:
            if x not in la:
                lines.append(f"{p!r}: only in B: {x[:120]!r}")
        if sorted(la) == sorted(lb):
            lines.append(f"{p!r}: same lines, different order")
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


def assert_same_dumps(
    a: dict[bytes, list[bytes]], b_: dict[bytes, list[bytes]], what: str = "dump"
) -> None:
    d = diff_dumps(a, b_)
    if d:
        pytest.fail(f"{what} differs (A vs B):\n  " + "\n  ".join(d), pytrace=False)


def assert_same_meta(*roots: PathLike) -> None:
    """getfacl and getfattr dumps of all `roots` are identical (first is A)."""
    acls = [acl_dump(r) for r in roots]
    xattrs = [xattr_dump(r) for r in roots]
    for r, a, x in zip(roots[1:], acls[1:], xattrs[1:], strict=True):
        assert_same_dumps(acls[0], a, f"getfacl ({b(roots[0])!r} vs {b(r)!r})")
        assert_same_dumps(xattrs[0], x, f"getfattr ({b(roots[0])!r} vs {b(r)!r})")


def inode_map(root: PathLike) -> dict[bytes, os.stat_result]:
    """relpath -> lstat for every non-directory under root (walked with fds)."""
    out: dict[bytes, os.stat_result] = {}

    def walk(fd: int, rel: bytes) -> None:
        for name in sorted(os.fsencode(n) for n in os.listdir(fd)):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            path = rel + b"/" + name if rel else name
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, O_DIR, dir_fd=fd)
                try:
                    walk(sub, path)
                finally:
                    os.close(sub)
            else:
                out[path] = st

    fd = os.open(b(root), O_DIR)
    try:
        walk(fd, b"")
    finally:
        os.close(fd)
    return out


def link_groups(root: PathLike) -> set[frozenset[bytes]]:
    """The hard-link groups (names sharing an inode, 2 or more) under root."""
    by_ino: dict[tuple[int, int], list[bytes]] = {}
    for p, st in inode_map(root).items():
        by_ino.setdefault((st.st_dev, st.st_ino), []).append(p)
    return {frozenset(v) for v in by_ino.values() if len(v) > 1}


def assert_same_links(src: PathLike, dst: PathLike) -> None:
    """dst has exactly src's hard-link groups, and every name's st_nlink
    in dst equals its group's size (1 for the others), as in src."""
    ga, gb = link_groups(src), link_groups(dst)
    if ga != gb:
        fmt = lambda gs: sorted(sorted(g) for g in gs)  # noqa: E731
        pytest.fail(
            f"hard-link groups differ:\n  src only: {fmt(ga - gb)!r}\n  dst only: {fmt(gb - ga)!r}",
            pytrace=False,
        )
    ma, mb = inode_map(src), inode_map(dst)
    bad = [
        f"{p!r}: nlink src={ma[p].st_nlink} dst={mb[p].st_nlink}"
        for p in sorted(set(ma) & set(mb))
        if ma[p].st_nlink != mb[p].st_nlink
    ]
    assert not bad, "st_nlink differs:\n  " + "\n  ".join(bad[:30])


def data_map(path: PathLike) -> list[tuple[int, int]]:
    """The (start, end) data extents of a file, by SEEK_DATA/SEEK_HOLE."""
    fd = os.open(b(path), os.O_RDONLY | os.O_CLOEXEC | O_NOATIME)
    try:
        size = os.fstat(fd).st_size
        out: list[tuple[int, int]] = []
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == 6:  # ENXIO: only a hole up to EOF
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
        return out
    finally:
        os.close(fd)


def sha256_file(path: PathLike) -> str:
    """The SHA-256 of a file's content, hex."""
    with open(b(path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def copy_both(
    srcs: list[bytes],
    d_us: bytes,
    d_cp: bytes,
    *flags: bytes,
    cwd: bytes | None = None,
) -> tuple[bytes, bytes]:
    """`uringsync cp FLAGS SRCS D_US` and `cp FLAGS SRCS D_CP`; both must succeed.

    FLAGS are the options given to both, `-a` when none are given.  Returns
    uringsync's (stdout, stderr).
    """
    flags = flags or (b"-a",)
    out = check_cli(b"cp", *flags, *srcs, d_us, cwd=cwd)
    check_cp(*flags, *srcs, d_cp, cwd=cwd)
    return out
