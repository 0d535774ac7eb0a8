"""Shared helpers for the uringsync test suite.

Everything here works on bytes paths and walks trees with directory fds, so
trees deeper than PATH_MAX and names that are not UTF-8 are handled.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import random
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

ROOT = os.geteuid() == 0
NOBODY = 65534

root_only = pytest.mark.skipif(not ROOT, reason="needs root")

PathLike = str | bytes | os.PathLike


def b(p: PathLike) -> bytes:
    return os.fsencode(p)


# --------------------------------------------------------------- snapshot


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

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Reading content for the hash must not touch atimes (O_NOATIME: owner or root only).
O_NOATIME = getattr(os, "O_NOATIME", 0) if ROOT else 0


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


# ----------------------------------------------------------- tree building


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


# --------------------------------------------------------------- processes


def run_cli(
    *args: PathLike,
    cwd: PathLike | None = None,
    preexec_fn: Callable[[], None] | None = None,
    nofile: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 240,
    module: str = "uringsync",
) -> tuple[int, bytes, bytes]:
    """Run `python -m uringsync ARGS...`; bytes args are passed through as is."""

    def pre() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        if preexec_fn is not None:
            preexec_fn()

    argv: list[bytes] = [b(sys.executable), b"-m", module.encode(), *[b(a) for a in args]]
    e = dict(os.environ)
    e.pop("PYTHONWARNINGS", None)
    if env:
        e.update(env)
    p = subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        preexec_fn=pre if (nofile is not None or preexec_fn is not None) else None,
        env=e,
        timeout=timeout,
        check=False,
    )
    return p.returncode, p.stdout, p.stderr


def run_cp(*args: PathLike, cwd: PathLike | None = None) -> tuple[int, bytes, bytes]:
    p = subprocess.run(["cp", *[b(a) for a in args]], cwd=cwd, capture_output=True, check=False)
    return p.returncode, p.stdout, p.stderr


def check_cp(*args: PathLike, cwd: PathLike | None = None) -> None:
    rc, _out, err = run_cp(*args, cwd=cwd)
    assert rc == 0, f"cp {args!r} failed: {err!r}"


def check_cli(*args: PathLike, **kw: Any) -> tuple[bytes, bytes]:
    rc, out, err = run_cli(*args, **kw)
    assert rc == 0, f"uringsync {args!r} exited {rc}: stdout={out!r} stderr={err!r}"
    assert b"Traceback" not in err, err
    return out, err


class ChildError(Exception):
    """An exception raised in an as_user child that could not be pickled."""


_warmed = False


def _warm_imports() -> None:
    """Import, before forking, everything the child may need.

    The interpreter's library lives under /root (mode 700), so a module that is
    first imported in the child (as nobody) cannot be read: do it here.
    """
    global _warmed
    if _warmed:
        return
    import traceback  # noqa: F401

    import uringsync

    with contextlib.suppress(ImportError):
        from typer.testing import CliRunner

        import uringsync.cli

        # runs the lazy imports of typer/click (help option, formatting, ...)
        CliRunner().invoke(uringsync.cli.app, ["cp", "--help"])
        CliRunner().invoke(uringsync.cli.app, ["cp", "--bogus-option"])
    _warmed = True


def as_user(fn: Callable[[], Any], uid: int = NOBODY, gid: int = NOBODY) -> Any:
    """Run fn() in a forked child as uid/gid (default nobody); return its result.

    No exec: the child uses the modules already imported in this process
    (/root is mode 700, so a fresh interpreter as nobody could not start).
    The child's exception is re-raised here.
    """

    def become() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return in_child(fn, setup=become)


def in_child(fn: Callable[[], Any], setup: Callable[[], None] | None = None) -> Any:
    """Run setup() then fn() in a forked child; return fn's (picklable) result
    or re-raise its exception.  For tests that change process-wide state
    (rlimits, signals, credentials)."""
    _warm_imports()
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            try:
                if setup is not None:
                    setup()
                res: tuple[str, Any] = ("ok", fn())
            except BaseException as e:
                import traceback

                tb = traceback.format_exc()
                try:
                    pickle.dumps(e)
                    res = ("err", (e, tb))
                except Exception:
                    res = ("err", (ChildError(f"{type(e).__name__}: {e}"), tb))
            try:
                data = pickle.dumps(res)
            except Exception as e:
                data = pickle.dumps(("err", (ChildError(f"unpicklable result: {e!r}"), "")))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise ChildError(f"child died without a result (wait status {status})")
    kind, val = pickle.loads(data)
    if kind == "ok":
        return val
    exc, tb = val
    raise exc from ChildError("in the child process:\n" + tb)


@contextlib.contextmanager
def world_tmpdir() -> Iterator[bytes]:
    """A 0777 directory under /tmp (pytest's tmp_path is 0700: nobody can't enter)."""
    d = tempfile.mkdtemp(dir="/tmp", prefix="uringsync-test-").encode()
    os.chmod(d, 0o777)
    try:
        yield d
    finally:
        _force_rmtree(d)


def _force_rmtree(d: bytes) -> None:
    def onexc(func: Any, path: Any, exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        with contextlib.suppress(OSError):
            func(path)

    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(d, onexc=onexc) if sys.version_info >= (3, 12) else shutil.rmtree(
            d, onerror=onexc
        )


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


# ------------------------------------------------------------------ mounts


def mount_tmpfs(path: PathLike, size: str | None = None) -> str | None:
    """Mount a tmpfs at path; return None on success, else the reason."""
    opts = ["-o", f"size={size}"] if size else []
    p = subprocess.run(
        ["mount", "-t", "tmpfs", *opts, "tmpfs", b(path)], capture_output=True, check=False
    )
    if p.returncode != 0:
        return f"mount -t tmpfs failed: {p.stderr.decode(errors='replace').strip()}"
    return None


def umount(path: PathLike) -> None:
    subprocess.run(["umount", "-l", b(path)], capture_output=True, check=False)


# ------------------------------------------------------------------ stderr


def stderr_lines(err: bytes) -> list[bytes]:
    return [ln for ln in err.splitlines() if ln.strip()]


def assert_error_lines(err: bytes, n: int | None = None) -> list[bytes]:
    """Every stderr line is a `uringsync: ...` message; no traceback."""
    assert b"Traceback" not in err, "python traceback on stderr:\n" + err.decode(errors="replace")
    lines = stderr_lines(err)
    for ln in lines:
        assert ln.startswith(b"uringsync: "), f"stderr line not a uringsync message: {ln!r}"
    if n is not None:
        assert len(lines) == n, f"expected {n} stderr line(s), got {len(lines)}: {err!r}"
    return lines


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ------------------------------------------- xattrs, ACLs, links, holes
# (added for test_preserve.py / test_torture.py)


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


def run_ok(*cmd: PathLike) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([b(c) for c in cmd], capture_output=True, check=False)
    assert p.returncode == 0, f"{cmd!r} failed ({p.returncode}): {p.stderr!r}"
    return p


@contextlib.contextmanager
def loop_fs(fstype: str, image_dir: PathLike, size: str = "600M") -> Iterator[bytes]:
    """Make a `fstype` file system in an image file and mount it (loop).

    Skips the test, with the reason printed, if mkfs is missing or mounting
    fails.  Always unmounts and detaches the loop device afterwards.
    """
    mkfs = {
        "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
        "btrfs": ["mkfs.btrfs", "-q", "-f"],
        "ext2": ["mkfs.ext2", "-q", "-F"],
        "ext4": ["mkfs.ext4", "-q", "-F"],
    }[fstype]
    if shutil.which(mkfs[0]) is None:
        reason = f"{mkfs[0]} is not installed (apt-get install {fstype}progs)"
        print("SKIP:", reason)
        pytest.skip(reason)
    d = b(image_dir)
    img = os.path.join(d, fstype.encode() + b".img")
    mnt = os.path.join(d, fstype.encode() + b"-mnt")
    os.makedirs(mnt, exist_ok=True)
    subprocess.run([b"truncate", b"-s", size.encode(), img], check=True)
    p = subprocess.run([*[m.encode() for m in mkfs], img], capture_output=True, check=False)
    if p.returncode != 0:
        reason = f"{mkfs[0]} failed: {p.stderr.decode(errors='replace').strip()}"
        print("SKIP:", reason)
        pytest.skip(reason)
    mount = [b"mount", b"-t", fstype.encode(), b"-o", b"loop", img, mnt]
    p = subprocess.run(mount, capture_output=True, check=False)
    if p.returncode != 0:
        os.unlink(img)
        reason = f"mount -t {fstype} -o loop failed: {p.stderr.decode(errors='replace').strip()}"
        print("SKIP:", reason)
        pytest.skip(reason)
    try:
        yield mnt
    finally:
        if subprocess.run([b"umount", mnt], capture_output=True, check=False).returncode:
            subprocess.run([b"umount", b"-l", mnt], capture_output=True, check=False)
        # mount -o loop sets autoclear; detach only what is still on our image
        loops = subprocess.run(
            [b"losetup", b"-j", img], capture_output=True, check=False
        ).stdout.splitlines()
        for ln in loops:
            dev = ln.split(b":", 1)[0]
            subprocess.run([b"losetup", b"-d", dev], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            os.unlink(img)


def mount_ramfs(path: PathLike) -> str | None:
    """Mount a ramfs (no xattrs at all) at path; None on success, else the reason."""
    p = subprocess.run(
        ["mount", "-t", "ramfs", "ramfs", b(path)], capture_output=True, check=False
    )
    if p.returncode != 0:
        return f"mount -t ramfs failed: {p.stderr.decode(errors='replace').strip()}"
    return None
