"""us_sync_scan going into subdirectories on its own (us_pick.descend): what
it folds away must be unchanged all through, what it hands over must be what
a scan of its own would give, and the walk it saves must see every entry
once.  Checked on real trees: each call's result walked as the sync walker
walks it (a subdirectory's pair taken from its parent, or scanned by a call
of its own), for budgets that stop the descent at every depth."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

import pytest

from tests.support.base import O_DIR, root_only
from tests.support.faultdisk import drop_caches
from tests.support.trees import write_file
from uringsync import engine

T0 = 10**18
XA = engine.P_XATTR | engine.P_ACL
ATTRS = (
    engine.D_PERMS | engine.D_UID | engine.D_GID | engine.D_MTIME | engine.D_XATTR | engine.D_ACL
)
BASE = engine.D_MISSING | engine.D_TYPE | engine.D_ERR
MASKS = {
    engine.T_REG: BASE | ATTRS | engine.D_SIZE,
    engine.T_LNK: BASE | (ATTRS & ~engine.D_PERMS) | engine.D_TARGET,
    engine.T_FIFO: BASE | ATTRS,
}
# (pairs open at once, entries a call): from one pair at a time and a budget
# spent at the first level, to the whole tree in one call
BUDGETS = [(1, 1 << 16), (3, 1 << 16), (64, 1 << 16), (2, 7), (5, 60), (64, 150)]
O_NOFOLLOW_DIR = O_DIR | os.O_NOFOLLOW


def pick(
    descend: int, budget: int, nlink_reg: bool = False, avoid: os.stat_result | None = None
) -> engine.UsPick:
    k = engine.sync_pick(
        MASKS, nlink_reg, False, descend=descend, budget=budget, dir_mask=ATTRS | engine.D_ERR
    )
    if avoid is not None:
        k.avoid_major, k.avoid_minor = os.major(avoid.st_dev), os.minor(avoid.st_dev)
        k.avoid_ino = avoid.st_ino
    return k


def _times(*paths: bytes) -> None:
    for p in paths:
        os.utime(p, ns=(T0, T0), follow_symlinks=False)


def make_tree(root: bytes, depth: int = 4, fan: int = 3, files: int = 4) -> bytes:
    """A source tree: `fan` subdirectories and `files` files (and a symlink
    and a FIFO) in each directory, `depth` levels."""

    def fill(d: bytes, level: int) -> None:
        os.mkdir(d)
        for i in range(files):
            write_file(os.path.join(d, b"f%d" % i), b"x" * i)
        os.symlink(b"f0", os.path.join(d, b"ln"))
        os.mkfifo(os.path.join(d, b"pipe"))
        if level < depth:
            for i in range(fan):
                fill(os.path.join(d, b"d%d" % i), level + 1)

    fill(root, 1)
    for d, dirs, files in os.walk(root, topdown=False):  # times from long ago
        _times(*(os.path.join(d, n) for n in dirs + files), d)
    return root


def copy(src: bytes, dst: bytes) -> bytes:
    subprocess.run([b"cp", b"-a", src, dst], check=True)
    return dst


def count_below(root: bytes) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))


@dataclass
class Walk:
    """What the walker sees: per visited directory (path from the top) its
    picked entries (name -> D_* bits) and unmatched destination names, and
    the entries and directories counted without being looked at."""

    picked: dict[bytes, int] = field(default_factory=dict)
    extra: set[bytes] = field(default_factory=set)
    seen: int = 0
    calls: int = 0
    taken: int = 0
    visited: set[bytes] = field(default_factory=set)


def walk(src: bytes, dst: bytes, k: engine.UsPick, flags: int = XA) -> Walk:
    """The sync walker's walk of src against dst: one call for the top,
    then for each picked subdirectory with a twin its pair from the parent's
    call, or a call of its own."""
    w = Walk()

    def visit(rel: bytes, p: engine.SyncPair) -> None:
        assert rel not in w.visited, "a directory met twice"
        w.visited.add(rel)
        assert isinstance(p.src, engine.Scan) and isinstance(p.dst, engine.Scan)
        w.seen += p.src.n + p.clean_entries
        for x in range(p.npicked):
            i = p.picked[x]
            name = p.src.name(i)
            path = rel + name
            w.picked[path] = p.diff[i]
            ent = p.src.entry(i)
            if ent.st.type != engine.T_DIR:
                continue
            if p.match[i] < 0 or p.dst.entry(p.match[i]).st.type != engine.T_DIR:
                w.seen += count_below(os.path.join(src, path))  # made by the walker
                continue
            sub = p.take_sub(i)
            if sub is not None:
                w.taken += 1
                visit(path + b"/", sub)
            else:
                scan(path + b"/")
        for j in range(p.dst.n):
            if not p.matched[j]:
                w.extra.add(rel + p.dst.name(j))

    def scan(rel: bytes) -> None:
        sfd = os.open(os.path.join(src, rel), O_NOFOLLOW_DIR)
        dfd = os.open(os.path.join(dst, rel), O_NOFOLLOW_DIR)
        try:
            w.calls += 1
            (p,) = engine.sync_scan([(sfd, dfd)], flags, 0, k)
            visit(rel, p)
        finally:
            os.close(sfd)
            os.close(dfd)

    scan(b"")
    return w


def changed(w: Walk, src: bytes) -> dict[bytes, int]:
    """What the walk picked but for directories picked only as the way to
    a change below them: entries that are not directories (in the source)
    and directories with a difference of their own."""
    return {p: v for p, v in w.picked.items() if v or not os.path.isdir(os.path.join(src, p))}


def test_unchanged_tree_folds_away(tmp: bytes) -> None:
    """A copy: nothing picked but what the pick always wants (FIFOs have a
    mask here, so nothing at all); every entry counted once; with room for
    the whole tree, one call and no pair handed over."""
    src = make_tree(tmp + b"/src")
    dst = copy(src, tmp + b"/dst")
    total = count_below(src)
    for descend, budget in BUDGETS:
        w = walk(src, dst, pick(descend, budget))
        assert w.seen == total, (descend, budget)
        assert not w.extra
        assert changed(w, src) == {}, (descend, budget)
        if budget >= total:
            assert w.calls == 1 and w.picked == {} and w.taken == 0, (descend, budget)
    # descend 0: as before, every directory picked and scanned by a call of its own
    w = walk(src, dst, pick(0, 1 << 16))
    assert w.seen == total and w.taken == 0
    assert w.calls == 1 + sum(len(dirs) for _, dirs, _ in os.walk(src))
    assert changed(w, src) == {}


def test_changes_at_every_depth_are_found(tmp: bytes) -> None:
    """Changes two to four levels down, of each kind the walker must see:
    content, a file's and a directory's metadata, an xattr, an entry only in
    the destination, a type change, a symlink in place of a directory (never
    gone into); the same picked entries and extras whatever the budget, and
    each directory with a change of its own is picked, never folded."""
    src = make_tree(tmp + b"/src")
    dst = copy(src, tmp + b"/dst")
    outside = make_tree(tmp + b"/outside", depth=1)
    j = os.path.join
    write_file(j(src, b"d0/d1/f2"), b"yyy")  # size
    _times(j(src, b"d0/d1/f2"))
    os.utime(j(dst, b"d0/d1/f2"), ns=(T0, T0))
    os.chmod(j(dst, b"d1/d1/d0/f1"), 0o600)  # a file's mode
    os.setxattr(j(dst, b"d2/d0/d2/f3"), b"user.k", b"v")  # an xattr only there
    write_file(j(dst, b"d2/d2/d2/stale"), b"e")  # only in the destination
    os.chmod(j(dst, b"d1/d2"), 0o700)  # a directory's own mode
    os.unlink(j(dst, b"d0/d0/d0/f0"))  # missing
    os.rename(j(dst, b"d2/d1/d1"), j(tmp, b"moved"))  # a directory replaced by a
    os.symlink(os.path.join(outside, b""), j(dst, b"d2/d1/d1"))  # symlink to a copy
    os.unlink(j(dst, b"d0/d2/ln"))  # a symlink replaced by a file
    write_file(j(dst, b"d0/d2/ln"), b"f0")
    _times(j(dst, b"d0/d2/ln"))
    want = {
        b"d0/d1/f2": engine.D_SIZE,
        b"d1/d1/d0/f1": engine.D_PERMS,
        b"d2/d0/d2/f3": engine.D_XATTR,
        b"d0/d0/d0/f0": engine.D_MISSING,
        b"d2/d1/d1": engine.D_TYPE,
        b"d0/d2/ln": engine.D_TYPE,
        b"d1/d2": engine.D_PERMS,
        # the directories the changes above were made in: their mtime
        b"d2/d2/d2": engine.D_MTIME,
        b"d0/d0/d0": engine.D_MTIME,
        b"d2/d1": engine.D_MTIME,
        b"d0/d2": engine.D_MTIME,
    }
    total = count_below(src)
    before = {p: os.lstat(os.path.join(outside, p)) for p in os.listdir(outside)}
    for descend, budget in BUDGETS:
        w = walk(src, dst, pick(descend, budget))
        ctx = (descend, budget)
        assert w.seen == total, ctx
        assert w.extra == {b"d2/d2/d2/stale"}, ctx
        assert changed(w, src) == want, ctx
        # a picked directory: changed itself, or the way to a change (or,
        # past the budget, not gone into)
        for p, v in w.picked.items():
            if p not in want and os.path.isdir(os.path.join(src, p)):
                assert v == 0, (p, ctx)
                if budget >= total:
                    assert any(c.startswith(p + b"/") for c in [*want, *w.extra]), (p, ctx)
    assert {p: os.lstat(os.path.join(outside, p)) for p in os.listdir(outside)} == before


def test_hard_links_fold_only_when_whole(tmp: bytes) -> None:
    """With nlink_reg: an inode whose names are all in the tree, each twin
    the same destination inode with as many links, is unchanged (not
    picked); a group split at the destination, or with a name outside the
    tree, is picked, every name of it."""
    src = make_tree(tmp + b"/src", depth=3)
    j = os.path.join
    os.link(j(src, b"d0/d1/f1"), j(src, b"d2/f1-again"))  # whole
    os.link(j(src, b"d1/f2"), j(src, b"d1/d1/f2-again"))  # to be split
    os.link(j(src, b"d2/d2/f3"), j(tmp, b"outside-name"))  # a name outside
    dst = copy(src, tmp + b"/dst")
    os.unlink(j(dst, b"d1/d1/f2-again"))
    subprocess.run([b"cp", b"-a", j(dst, b"d1/f2"), j(dst, b"d1/d1/f2-again")], check=True)
    st = os.lstat(j(src, b"d1/d1"))  # its mtime as before
    os.utime(j(dst, b"d1/d1"), ns=(st.st_atime_ns, st.st_mtime_ns))
    total = count_below(src)
    for descend, budget in BUDGETS:
        w = walk(src, dst, pick(descend, budget, nlink_reg=True))
        ctx = (descend, budget)
        assert w.seen == total, ctx
        got = set(changed(w, src))
        assert {b"d1/f2", b"d1/d1/f2-again", b"d2/d2/f3"} <= got, ctx
        if budget >= total:  # all names in one call: the whole group is known
            assert got == {b"d1/f2", b"d1/d1/f2-again", b"d2/d2/f3"}, ctx
        else:  # names in calls of their own: picked, for the walker to gather
            assert got <= {
                b"d1/f2",
                b"d1/d1/f2-again",
                b"d2/d2/f3",
                b"d0/d1/f1",
                b"d2/f1-again",
            }, ctx
    w = walk(src, dst, pick(64, 1 << 16, nlink_reg=False))
    assert changed(w, src) == {}


def test_never_into_the_avoided_directory(tmp: bytes) -> None:
    """The directory the walker names (DST, met inside SRC) is never gone
    into: it stays picked, with no pair of its own."""
    src = make_tree(tmp + b"/src", depth=3)
    dst = copy(src, tmp + b"/dst")
    inner = os.path.join(src, b"d1/d0")
    sfd, dfd = os.open(src, O_DIR), os.open(dst, O_DIR)
    try:
        k = pick(64, 1 << 16, avoid=os.lstat(inner))
        (p,) = engine.sync_scan([(sfd, dfd)], XA, 0, k)
        assert isinstance(p.src, engine.Scan)
        names = {p.src.name(p.picked[x]): p.picked[x] for x in range(p.npicked)}
        assert set(names) == {b"d1"}
        sub = p.take_sub(names[b"d1"])
        assert sub is not None and isinstance(sub.src, engine.Scan)
        inner_names = {sub.src.name(sub.picked[x]): sub.picked[x] for x in range(sub.npicked)}
        assert set(inner_names) == {b"d0"}
        assert sub.take_sub(inner_names[b"d0"]) is None
        assert p.take_sub(names[b"d1"]) is None  # taken once
    finally:
        os.close(sfd)
        os.close(dfd)


@pytest.mark.parametrize("flags", [0, XA])
def test_handed_pairs_are_the_scans_a_call_makes(tmp: bytes, flags: int) -> None:
    """A pair handed over by the descent matches, entry for entry, what a
    call of its own on that directory gives."""
    src = make_tree(tmp + b"/src")
    dst = copy(src, tmp + b"/dst")
    for rel in (b"d0/d1/d2/f1", b"d2/f0", b"d1/d1/d1/f3"):
        write_file(os.path.join(src, rel), b"changed!")
    sfd, dfd = os.open(src, O_DIR), os.open(dst, O_DIR)
    try:
        (p,) = engine.sync_scan([(sfd, dfd)], flags, 0, pick(64, 1 << 16))
        stack: list[tuple[bytes, engine.SyncPair]] = [(b"", p)]
        checked = 0
        while stack:
            rel, q = stack.pop()
            assert isinstance(q.src, engine.Scan) and isinstance(q.dst, engine.Scan)
            a = os.open(os.path.join(src, rel), O_DIR)
            b_ = os.open(os.path.join(dst, rel), O_DIR)
            try:
                (own,) = engine.sync_scan([(a, b_)], flags, 0, pick(0, 0))
            finally:
                os.close(a)
                os.close(b_)
            assert isinstance(own.src, engine.Scan) and isinstance(own.dst, engine.Scan)
            assert own.src.n == q.src.n and own.dst.n == q.dst.n
            for i in range(q.src.n):
                name = q.src.name(i)
                oi = next(x for x in range(own.src.n) if own.src.name(x) == name)
                assert q.diff[i] == own.diff[oi], (rel, name)
                assert (q.match[i] >= 0) == (own.match[oi] >= 0)
            for x in range(q.npicked):
                i = q.picked[x]
                sub = q.take_sub(i)
                if sub is not None:
                    stack.append((rel + q.src.name(i) + b"/", sub))
            checked += 1
        assert checked >= 4  # the top and the way to each change
    finally:
        os.close(sfd)
        os.close(dfd)


@root_only  # drop_caches
def test_cold_walk_same_as_warm(tmp: bytes) -> None:
    """Read from the disk (caches dropped: the call's own phases find it
    cold and more lanes scan the queue at once), the same walk as cached."""
    src = make_tree(tmp + b"/src", depth=5, fan=3)
    dst = copy(src, tmp + b"/dst")
    for rel in (b"d0/d1/d2/f1", b"d2/f0", b"d1/d1/d1/d1/f3"):
        write_file(os.path.join(src, rel), b"changed!")
    for descend in (2, 64):
        warm = walk(src, dst, pick(descend, 1 << 16))
        drop_caches()
        cold = walk(src, dst, pick(descend, 1 << 16))
        assert (cold.picked, cold.extra, cold.seen) == (warm.picked, warm.extra, warm.seen)
        assert set(changed(cold, src)) == {b"d0/d1/d2/f1", b"d2/f0", b"d1/d1/d1/d1/f3"}
