"""us_sync_scan (engine.sync_scan): several directory pairs listed, stat'ed,
merged and compared in the process's pool of threads, checked against the
per-directory us_sync_match on the same real files, and the entries it
picks for the walker checked against what each entry is."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from tests.support.base import O_DIR
from tests.support.trees import write_file
from uringsync import engine
from uringsync.engine import Ring

T0 = 10**18  # the times every twin gets, ns
XA = engine.P_XATTR | engine.P_ACL
D_ALL = (
    engine.D_MISSING
    | engine.D_TYPE
    | engine.D_SIZE
    | engine.D_MTIME
    | engine.D_PERMS
    | engine.D_UID
    | engine.D_GID
    | engine.D_RDEV
    | engine.D_TARGET
    | engine.D_XATTR
    | engine.D_ACL
    | engine.D_ERR
)

# Each kind of entry: its source type and what differs at its destination
# twin (D_XATTR only counts with P_XATTR, see Kind.diff).
KINDS: dict[str, tuple[int, int]] = {
    "same": (engine.T_REG, 0),
    "size": (engine.T_REG, engine.D_SIZE),
    "mtime": (engine.T_REG, engine.D_MTIME),
    "perms": (engine.T_REG, engine.D_PERMS),
    "uid": (engine.T_REG, engine.D_UID),
    "sizemtime": (engine.T_REG, engine.D_SIZE | engine.D_MTIME),
    "missing": (engine.T_REG, engine.D_MISSING),
    "f2d": (engine.T_REG, engine.D_TYPE),
    "l2f": (engine.T_LNK, engine.D_TYPE),
    "lsame": (engine.T_LNK, 0),
    "ltarget": (engine.T_LNK, engine.D_TARGET),
    "xval": (engine.T_REG, engine.D_XATTR),
    "xdst": (engine.T_REG, engine.D_XATTR),
    "xsame": (engine.T_REG, 0),
    "xmtime": (engine.T_REG, engine.D_XATTR | engine.D_MTIME),
    "dir": (engine.T_DIR, 0),
    "xdir": (engine.T_DIR, engine.D_XATTR),  # a directory's xattrs: compared too
    "fifo": (engine.T_FIFO, 0),
    "dev": (engine.T_CHR, engine.D_RDEV),
    "hard": (engine.T_REG, 0),  # two links in the source, one in the destination
}


def expected_diff(kind: str, flags: int, skip_xattr: int = 0) -> int:
    d = KINDS[kind][1]
    if not flags & engine.P_XATTR or d & skip_xattr & ~engine.D_XATTR:
        d &= ~engine.D_XATTR
    return d


@dataclass
class Tree:
    """One generated pair of directories: the kind of each source name, and
    the names only the destination has."""

    src: bytes
    dst: bytes
    kinds: dict[bytes, str] = field(default_factory=dict)
    extra: set[bytes] = field(default_factory=set)


def _times(*paths: bytes) -> None:
    for p in paths:
        os.utime(p, ns=(T0, T0), follow_symlinks=False)


def make_tree(root: bytes, tag: str, n: int, acl: bool = False) -> Tree:
    """A source and destination directory under root with n source entries
    (the kinds in turn) and n // 10 destination-only ones."""
    src, dst = (
        os.path.join(root, b"src-" + tag.encode()),
        os.path.join(root, b"dst-" + tag.encode()),
    )
    links = os.path.join(root, b"links-" + tag.encode())
    for d in (src, dst, links):
        os.mkdir(d)
    t = Tree(src, dst)
    kinds = list(KINDS)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        name = b"%s-%04d" % (kind.encode(), i)
        s, d = os.path.join(src, name), os.path.join(dst, name)
        t.kinds[name] = kind
        if kind in ("dir", "xdir", "fifo", "dev", "l2f", "lsame", "ltarget"):
            if kind in ("dir", "xdir"):
                os.mkdir(s)
                os.mkdir(d)
                if kind == "xdir":
                    os.setxattr(s, b"user.k", b"1")
                    os.setxattr(d, b"user.k", b"2")
            elif kind == "fifo":
                os.mkfifo(s)
                os.mkfifo(d)
            elif kind == "dev":
                os.mknod(s, 0o600 | 0o020000, os.makedev(1, 3))
                os.mknod(d, 0o600 | 0o020000, os.makedev(1, 5))
            else:
                os.symlink(b"target", s)
                if kind == "l2f":
                    write_file(d, b"target")
                else:
                    os.symlink(b"other" if kind == "ltarget" else b"target", d)
            _times(s, d)
            continue
        write_file(s, b"x")
        if kind == "missing":
            _times(s)
            continue
        if kind == "f2d":
            os.mkdir(d)
            _times(s, d)
            continue
        write_file(d, b"xy" if kind in ("size", "sizemtime") else b"x")
        if kind == "perms":
            os.chmod(d, 0o600)
        if kind == "uid":
            os.chown(d, 65534, -1)
        if kind in ("xval", "xsame", "xmtime"):
            os.setxattr(s, b"user.k", b"1")
            os.setxattr(d, b"user.k", b"2" if kind != "xsame" else b"1")
        if kind == "xdst":
            os.setxattr(d, b"user.only", b"1")
        if kind == "hard":
            os.link(s, os.path.join(links, name))
        _times(s, d)
        if kind in ("mtime", "sizemtime", "xmtime"):
            os.utime(d, ns=(T0, T0 + 7 * 10**9))
    for j in range(n // 10):
        name = b"extra-%04d" % j
        write_file(os.path.join(dst, name), b"e")
        t.extra.add(name)
    if acl:  # an access ACL on a file, a default ACL on a directory
        for name, opt in ((b"acl", b"-m"), (b"acldir", b"-dm")):
            s, d = os.path.join(src, name), os.path.join(dst, name)
            for x in (s, d):
                if name == b"acl":
                    write_file(x, b"a")
                else:
                    os.mkdir(x)
            subprocess.run([b"setfacl", opt, b"u:nobody:r", s], check=True)
            _times(s, d)
            t.kinds[name] = "acl"
    return t


Result = tuple[dict[bytes, tuple[bytes | None, int]], set[bytes]]


def by_name(sc: engine.Scan, dsc: engine.Scan | None, match, diff, matched) -> Result:  # type: ignore[no-untyped-def]
    """name -> (its twin's name or None, D_* bits), and the unmatched
    destination names."""
    out: dict[bytes, tuple[bytes | None, int]] = {}
    for i in range(sc.n):
        name = sc.name(i)
        assert name not in out
        if match[i] >= 0:
            assert dsc is not None and 0 <= match[i] < dsc.n
            twin = dsc.name(match[i])
            assert twin == name
        else:
            twin = None
        out[name] = (twin, diff[i])
    left = {dsc.name(j) for j in range(dsc.n) if not matched[j]} if dsc is not None else set()
    return out, left


def reference(sfd: int, dfd: int, flags: int, skip_xattr: int = 0) -> Result:
    """The same pair through Ring.scan_many and us_sync_match."""
    with Ring() as ring:
        sc, dsc = ring.scan_many([sfd, dfd])
        assert not isinstance(sc, OSError) and not isinstance(dsc, OSError)
        return by_name(sc, dsc, *engine.sync_match(sc, dsc, sfd, dfd, flags, skip_xattr))


def of_pair(p: engine.SyncPair) -> Result:
    assert not isinstance(p.src, OSError) and not isinstance(p.dst, OSError)
    return by_name(p.src, p.dst, p.match, p.diff, p.matched)


def picked_names(p: engine.SyncPair) -> list[bytes]:
    assert not isinstance(p.src, OSError)
    idx = [p.picked[k] for k in range(p.npicked)]
    assert idx == sorted(set(idx)), "picked: ascending, no repeats"
    assert all(0 <= i < p.src.n for i in idx)
    return [p.src.name(i) for i in idx]


@contextmanager
def opened(trees: list[Tree]) -> Iterator[list[tuple[int, int]]]:
    fds: list[tuple[int, int]] = []
    try:
        for t in trees:
            fds.append((os.open(t.src, O_DIR), os.open(t.dst, O_DIR)))
        yield fds
    finally:
        for a, b in fds:
            os.close(a)
            os.close(b)


def every_type() -> engine.UsPick:
    """A pick with a mask for every type (nothing is picked for its type)."""
    return engine.sync_pick(dict.fromkeys(range(8), D_ALL), False, False)


SIZES = [0, 3, 40, 257, 700]  # 257 and 700: many 32-entry chunks


@pytest.mark.parametrize(
    ("flags", "skip_xattr"),
    [(0, 0), (engine.P_XATTR, 0), (XA, 0), (engine.P_XATTR, engine.D_MTIME)],
    ids=["plain", "xattr", "xattr+acl", "xattr-skip-mtime"],
)
def test_same_as_sync_match(tmp: bytes, flags: int, skip_xattr: int) -> None:
    trees = [make_tree(tmp, str(i), n, acl=(i == 2)) for i, n in enumerate(SIZES)]
    with opened(trees) as fds:
        got = engine.sync_scan(fds, flags, skip_xattr, every_type())
        assert len(got) == len(trees)
        for t, (sfd, dfd), p in zip(trees, fds, got, strict=True):
            assert isinstance(p.src, engine.Scan) and isinstance(p.dst, engine.Scan)
            assert p.src.n == len(t.kinds)
            assert p.dst.n == len(t.kinds) - sum(k == "missing" for k in t.kinds.values()) + len(
                t.extra
            )
            mine = of_pair(p)
            assert mine == reference(sfd, dfd, flags, skip_xattr)
            diffs, left = mine
            assert left == t.extra
            for name, kind in t.kinds.items():
                twin, d = diffs[name]
                assert twin == (None if kind == "missing" else name), name
                if kind == "acl":
                    assert bool(d & engine.D_ACL) == bool(flags & engine.P_ACL), name
                    assert d & ~engine.D_ACL == 0, name
                else:
                    assert d == expected_diff(kind, flags, skip_xattr), (name, hex(d))


def test_pick(tmp: bytes) -> None:
    """Regular files ignore D_MTIME; FIFOs and devices have no mask and are
    always picked; with nlink_reg hard-linked files are picked too; with
    every, everything."""
    trees = [make_tree(tmp, "a", 300), make_tree(tmp, "b", 25)]
    masks = {
        engine.T_REG: D_ALL & ~engine.D_MTIME,
        engine.T_DIR: engine.D_MISSING | engine.D_TYPE,
        engine.T_LNK: D_ALL,
    }
    always = {engine.T_FIFO, engine.T_CHR}

    def want(t: Tree, flags: int, nlink_reg: bool) -> list[bytes]:
        out = []
        for name, kind in t.kinds.items():
            typ = KINDS[kind][0]
            d = expected_diff(kind, flags)
            if (
                typ in always
                or d & masks[typ]
                or (nlink_reg and typ == engine.T_REG and kind == "hard")
            ):
                out.append(name)
        return sorted(out)

    with opened(trees) as fds:
        for flags in (0, engine.P_XATTR):
            for nlink_reg in (False, True):
                got = engine.sync_scan(fds, flags, 0, engine.sync_pick(masks, nlink_reg, False))
                for t, p in zip(trees, got, strict=True):
                    names = picked_names(p)
                    assert sorted(names) == want(t, flags, nlink_reg), (flags, nlink_reg)
                    if flags == 0:
                        kinds = {t.kinds[n] for n in names}
                        assert "mtime" not in kinds and "sizemtime" in kinds
                        assert ("hard" in kinds) == nlink_reg
                        assert "fifo" in kinds and "dev" in kinds and "same" not in kinds
            got = engine.sync_scan(fds, flags, 0, engine.sync_pick(masks, False, True))
            for p in got:
                assert isinstance(p.src, engine.Scan)
                assert [p.picked[k] for k in range(p.npicked)] == list(range(p.src.n))
        # no mask for any type: all of them picked, without `every`
        got = engine.sync_scan(fds, 0, 0, engine.sync_pick({}, False, False))
        for t, p in zip(trees, got, strict=True):
            assert sorted(picked_names(p)) == sorted(t.kinds)
        # a mask for every type and nothing different: nothing picked
        got = engine.sync_scan(fds, 0, 0, every_type())
        for t, p in zip(trees, got, strict=True):
            assert sorted(picked_names(p)) == sorted(
                n for n, k in t.kinds.items() if expected_diff(k, 0)
            )


def test_no_twin(tmp: bytes) -> None:
    """dst_fd -1: the source listed alone, every entry missing; the pairs
    beside it are matched as usual."""
    trees = [make_tree(tmp, "a", 250), make_tree(tmp, "b", 30)]
    with opened(trees) as fds:
        calls = [[(fds[0][0], -1)], [(fds[0][0], -1), fds[1]], [fds[1], (fds[0][0], -1)]]
        for call in calls:
            got = engine.sync_scan(call, engine.P_XATTR, 0, every_type())
            for (sfd, dfd), p in zip(call, got, strict=True):
                if dfd >= 0:
                    assert of_pair(p) == reference(sfd, dfd, engine.P_XATTR)
                    continue
                assert p.dst is None
                assert isinstance(p.src, engine.Scan) and p.src.n == len(trees[0].kinds)
                assert {p.src.name(i) for i in range(p.src.n)} == set(trees[0].kinds)
                for i in range(p.src.n):
                    assert p.match[i] == -1 and p.diff[i] == engine.D_MISSING
                assert p.npicked == p.src.n  # D_MISSING is in every mask


@pytest.mark.parametrize("side", ["src", "dst"])
def test_unreadable_directory(tmp: bytes, side: str) -> None:
    """A directory that cannot be listed (an O_PATH fd: EBADF; one removed
    since it was opened: ENOENT) is that pair's OSError; the other pairs
    of the call are whole."""
    trees = [make_tree(tmp, "a", 260), make_tree(tmp, "b", 20)]
    t0 = trees[0]
    t0_missing = sum(k == "missing" for k in t0.kinds.values())
    gone = os.path.join(tmp, b"gone")
    os.mkdir(gone)
    with opened(trees) as fds:
        path_fd = os.open(trees[0].src, os.O_PATH | os.O_DIRECTORY)
        gone_fd = os.open(gone, O_DIR)
        os.rmdir(gone)
        # the other side of the bad pair: its own fd (two pairs of a call
        # never share one: each listing seeks it to 0 and reads it through)
        spare = os.open(trees[0].dst if side == "src" else trees[1].src, O_DIR)
        try:
            bad = [(path_fd, errno.EBADF), (gone_fd, errno.ENOENT)]
            for bfd, err in bad:
                if side == "src":
                    call = [fds[0], (bfd, spare), fds[1]]
                else:
                    call = [fds[0], (spare, bfd), fds[1]]
                got = engine.sync_scan(call, engine.P_XATTR, 0, every_type())
                for k, ((sfd, dfd), p) in enumerate(zip(call, got, strict=True)):
                    if sfd == bfd:
                        assert isinstance(p.src, OSError) and p.src.errno == err, k
                        assert p.npicked == 0
                        assert isinstance(p.dst, engine.Scan)  # listed all the same
                        assert p.dst.n == len(t0.kinds) - t0_missing + len(t0.extra)
                    elif dfd == bfd:
                        assert isinstance(p.dst, OSError) and p.dst.errno == err
                        assert isinstance(p.src, engine.Scan) and p.src.n == len(trees[1].kinds)
                        for i in range(p.src.n):
                            assert p.match[i] == -1 and p.diff[i] == engine.D_MISSING
                    else:
                        assert of_pair(p) == reference(sfd, dfd, engine.P_XATTR), k
            # and a source alone that cannot be listed
            (p,) = engine.sync_scan([(path_fd, -1)], 0, 0, every_type())
            assert isinstance(p.src, OSError) and p.src.errno == errno.EBADF and p.dst is None
        finally:
            os.close(path_fd)
            os.close(gone_fd)
            os.close(spare)


def _summary(fds: list[tuple[int, int]], flags: int = engine.P_XATTR) -> list[Result]:
    return [of_pair(p) for p in engine.sync_scan(fds, flags, 0, every_type())]


ASAN_FORK = pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="make asan: GCC's libasan keeps its allocator's locks across a fork, so a child "
    "forked while another thread allocates can hang in malloc",
)


@ASAN_FORK  # the pool's helpers may still be leaving the last phase (hung once in CI's ASan run)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads (3.12+)
def test_fork_child_has_its_own_pool(tmp: bytes) -> None:
    """The parent's pool threads are not in a forked child: the child's
    sync_scan makes its own (a deadlock would fail on the alarm)."""
    trees = [make_tree(tmp, str(i), n) for i, n in enumerate((600, 90, 5))]
    with opened(trees) as fds:
        before = _summary(fds)  # the pool's threads are made here
        assert before == [reference(s, d, engine.P_XATTR) for s, d in fds]
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = 3
            try:
                signal.alarm(30)
                ok = all(_summary(fds) == before for _ in range(3))
                # and a grandchild, forked from a child that made a pool
                gpid = os.fork()
                if gpid == 0:
                    signal.alarm(30)
                    os._exit(0 if _summary(fds) == before else 1)
                _, st = os.waitpid(gpid, 0)
                ok = ok and os.waitstatus_to_exitcode(st) == 0
                code = 0 if ok else 1
            finally:
                os._exit(code)
        _, st = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(st) == 0
        assert _summary(fds) == before  # the parent's pool still works


def test_many_calls_in_a_row(tmp: bytes) -> None:
    """300 calls, each handing its phases to the pool's threads: every one
    gives the same answer."""
    trees = [make_tree(tmp, str(i), n) for i, n in enumerate((70, 40, 1, 0, 33))]
    with opened(trees) as fds:
        assert engine.sync_scan([], engine.P_XATTR, 0, every_type()) == []
        first = _summary(fds)
        picks = [every_type(), engine.sync_pick({}, True, False)]
        for k in range(300):
            call = fds[k % len(fds) :] + fds[: k % len(fds)]  # another order each time
            got = engine.sync_scan(call, engine.P_XATTR, 0, picks[k % 2])
            assert [of_pair(p) for p in got] == first[k % len(fds) :] + first[: k % len(fds)], k
            if k % 2:
                for p in got:
                    assert isinstance(p.src, engine.Scan) and p.npicked == p.src.n


def test_calls_from_several_threads(tmp: bytes) -> None:
    """Calls made at once from several Python threads (the walker's scan
    threads, or two uringsync.sync run in threads: cffi lets go of the
    GIL) share the pool, each with its own answer."""
    trees = [make_tree(tmp, str(i), n) for i, n in enumerate((300, 40, 100, 5))]
    with opened(trees) as fds:
        first = [_summary([f]) for f in fds]
    bad: list[object] = []

    def work(k: int) -> None:
        # its own fds: a listing seeks its fd, which two calls must not share
        with opened(trees) as mine:
            for j in range(100):
                i = (k + j) % len(mine)
                try:
                    if _summary([mine[i]]) != first[i]:
                        bad.append((k, j))
                except Exception as e:  # reported below
                    bad.append((k, j, e))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert bad == []


@ASAN_FORK
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads (3.12+)
def test_fork_while_other_threads_scan(tmp: bytes) -> None:
    """Forks while other threads are inside sync_scan (and so at times hold
    the pool's lock): each child's own call answers, within an alarm."""
    trees = [make_tree(tmp, str(i), n) for i, n in enumerate((40, 6, 3, 1))]
    with opened(trees) as fds:
        before = _summary(fds)
    stop = threading.Event()
    bad: list[object] = []

    def loop() -> None:
        with opened(trees) as mine:
            while not stop.is_set():
                try:
                    if _summary(mine) != before:
                        bad.append("differs")
                except Exception as e:  # reported below
                    bad.append(e)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    codes: dict[int, int] = {}
    try:
        for _ in range(300):
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the child)
                code = 3
                try:
                    signal.alarm(10)
                    with opened(trees) as mine:
                        code = 0 if _summary(mine) == before else 1
                finally:
                    os._exit(code)
            _, st = os.waitpid(pid, 0)
            c = os.waitstatus_to_exitcode(st)
            codes[c] = codes.get(c, 0) + 1
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert codes == {0: 300}  # -14: a child hung (SIGALRM)
    assert bad == []


def _content_pair(tmp: bytes) -> tuple[bytes, bytes, dict[bytes, int]]:
    """Twins for F_CONTENT, each name with the bits it must get: equal data
    (a tail off a block, several reads' worth), other data of one size (in
    the last byte of several reads), and what the scan leaves to the walker
    unread (D_DATA with other bits, more than one link, over the limit)."""
    src, dst = tmp + b"/csrc", tmp + b"/cdst"
    os.makedirs(src)
    os.makedirs(dst)
    many = 600_000  # over CONTENT_BUF: read in three
    files: dict[bytes, tuple[bytes, bytes, int]] = {
        b"eq": (b"x" * 4196, b"x" * 4196, 0),
        b"eq-blocks": (b"y" * 8192, b"y" * 8192, 0),
        b"eq-many": (b"z" * many, b"z" * many, 0),
        b"empty": (b"", b"", 0),
        b"ne": (b"a" * 4196, b"a" * 4195 + b"b", engine.D_DATA),
        b"ne-many": (b"c" * many, b"c" * (many - 1) + b"d", engine.D_DATA),
        b"size": (b"short", b"longer", engine.D_SIZE),
        b"eq-mtime": (b"m" * 100, b"m" * 100, engine.D_MTIME | engine.D_DATA),
        b"eq-perms": (b"p" * 100, b"p" * 100, engine.D_PERMS | engine.D_DATA),
        b"eq-linked": (b"l" * 100, b"l" * 100, engine.D_DATA),
        b"eq-over": (b"o" * (engine.lib.US_CONTENT_MAX + 1),) * 2 + (engine.D_DATA,),
    }
    for name, (a, b, _) in files.items():
        write_file(src + b"/" + name, a)
        write_file(dst + b"/" + name, b)
    os.link(src + b"/eq-linked", src + b"/linked-twin")
    write_file(dst + b"/linked-twin", b"l" * 100)
    os.chmod(dst + b"/eq-perms", 0o600)
    for side in (src, dst):
        for name in os.listdir(side):
            os.utime(side + b"/" + name, ns=(T0, T0))
    os.utime(dst + b"/eq-mtime", ns=(T0, T0 + 10**9))
    want = {name: d for name, (_, _, d) in files.items()}
    want[b"linked-twin"] = engine.D_DATA
    return src, dst, want


@pytest.mark.parametrize("device", [False, True], ids=["cache", "device"])
def test_content(tmp: bytes, device: bool) -> None:
    """F_CONTENT (sync -c, verify): same-size regular twins compared by their
    data inside the scan, read from the device with F_DEVICE; without it,
    no D_DATA at all.  What it cannot decide cheaply is D_DATA unread."""
    src, dst, want = _content_pair(tmp)
    flags = engine.F_CONTENT | (engine.F_DEVICE if device else 0)
    masks = {engine.T_REG: D_ALL | engine.D_DATA}
    with opened([Tree(src, dst, {})]) as fds:
        for fl in (flags, 0):
            (p,) = engine.sync_scan(fds, fl, 0, engine.sync_pick(masks, False, False))
            diffs, _ = of_pair(p)
            got = {name: d for name, (_, d) in diffs.items()}
            expect = want if fl else {n: d & ~engine.D_DATA for n, d in want.items()}
            assert got == expect, fl
            assert sorted(picked_names(p)) == sorted(n for n, d in expect.items() if d)
