"""Source/destination pairs for `uringsync sync` against rsync: a tree is a
{relpath: Node} map, built on disk by :func:`build`; :func:`fixed_pair` and the
hypothesis strategy :func:`pairs` give a source and a destination that differ in
every way rsync's comparison notices (content with the same size and mtime,
mtime, size, mode, owner, group, xattrs, ACLs, type, extra and missing entries,
hard-link groups split or joined), and :func:`filter_lists` gives
--exclude/--include lists.  Also: snapshots with ctimes and inode numbers (to
prove nothing was rewritten) and the rsync side of the comparisons."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, replace
from typing import Literal

from hypothesis import strategies as st

from tests.support.base import O_DIR, PathLike, b
from tests.support.compare import Rec

Kind = Literal["file", "dir", "link", "fifo"]
T0 = 1_600_000_000_123_456_789  # a fixed mtime (ns; not a whole second)
SEC = 10**9
RSYNC = shutil.which("rsync")
OTHER_UID = 1234  # owner/group changes (the suite runs as root)
OTHER_GID = 2345


@dataclass(frozen=True)
class Node:
    kind: Kind
    data: bytes = b""  # files
    target: bytes = b""  # symlinks
    mode: int = 0o644  # permission bits
    uid: int = 0
    gid: int = 0
    mtime_ns: int = T0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()  # user.* (files and dirs)
    acl: str | None = None  # a `setfacl -m` spec, e.g. "u:1234:r" (files and dirs)
    group: int | None = None  # hard-link group (files): same number, same inode


Tree = dict[bytes, Node]


def f(data: bytes, **kw: object) -> Node:
    return Node("file", data=data, **kw)  # type: ignore[arg-type]


def d(**kw: object) -> Node:
    kw.setdefault("mode", 0o755)
    return Node("dir", **kw)  # type: ignore[arg-type]


def ln(target: bytes, **kw: object) -> Node:
    kw.setdefault("mode", 0o777)
    return Node("link", target=target, **kw)  # type: ignore[arg-type]


def fifo(**kw: object) -> Node:
    return Node("fifo", **kw)  # type: ignore[arg-type]


def _parent(path: bytes) -> bytes:
    return path.rpartition(b"/")[0]


def check_tree(tree: Tree) -> None:
    """Every entry's parent is a directory of the tree; group members are files."""
    for p, n in tree.items():
        par = _parent(p)
        assert not par or (par in tree and tree[par].kind == "dir"), (p, par)
        assert n.group is None or n.kind == "file", p


def build(root: PathLike, tree: Tree, root_mtime_ns: int = T0, root_mode: int = 0o755) -> bytes:
    """Make `root` (must not exist) holding `tree`.  A hard-link group's members
    share the inode of its first member (in path order): its data and metadata.
    Times are set last, deepest first; the root gets `root_mtime_ns`."""
    root = b(root)
    check_tree(tree)
    os.mkdir(root)
    first: dict[int, bytes] = {}
    # an atime in the future: relatime never bumps it, so reads leave trees equal
    atime = time.time_ns() + 3600 * SEC
    for p in sorted(tree, key=lambda x: (x.count(b"/"), x)):
        n = tree[p]
        full = root + b"/" + p
        if n.kind == "dir":
            os.mkdir(full)
        elif n.kind == "link":
            os.symlink(n.target, full)
        elif n.kind == "fifo":
            os.mkfifo(full)
        elif n.group is not None and n.group in first:
            os.link(root + b"/" + first[n.group], full)
            continue
        else:
            if n.group is not None:
                first[n.group] = p
            with open(full, "wb") as fh:
                fh.write(n.data)
        os.chown(full, n.uid, n.gid, follow_symlinks=False)
        if n.kind != "link":
            os.chmod(full, n.mode)
            for k, v in n.xattrs:
                os.setxattr(full, k, v)
            if n.acl is not None:
                subprocess.run([b"setfacl", b"-m", n.acl.encode(), full], check=True)
    for p in sorted(tree, key=lambda x: (-x.count(b"/"), x), reverse=False):
        n = tree[p]
        if n.kind == "file" and n.group is not None and first[n.group] != p:
            continue
        os.utime(root + b"/" + p, ns=(atime, n.mtime_ns), follow_symlinks=False)
    os.chmod(root, root_mode)
    os.utime(root, ns=(atime, root_mtime_ns))
    return root


# ------------------------------------------------------------------ the fixed pair


def outside_dir(w: bytes) -> bytes:
    """A directory outside src and dst that dst symlinks point at."""
    o = w + b"/outside"
    os.mkdir(o)
    with open(o + b"/victim", "wb") as fh:
        fh.write(b"V")
    return o


def fixed_pair(outside: bytes) -> tuple[Tree, Tree]:
    """One source and destination differing in every way the comparison must
    notice.  `outside` is a directory outside both (a dst symlink points at it;
    nothing may be written there).  Returns (src, dst)."""
    src: Tree = {}
    dst: Tree = {}

    def both(p: bytes, s: Node, t: Node | None = None) -> None:
        src[p] = s
        dst[p] = s if t is None else t

    both(b"same", f(b"unchanged"))
    both(b"samesize", f(b"aaaa"), f(b"bbbb"))  # only -c notices
    both(b"mtime", f(b"m"), f(b"m", mtime_ns=T0 + 5 * SEC))
    both(b"older", f(b"new data", mtime_ns=T0 - 5 * SEC), f(b"old data!", mtime_ns=T0))  # -u
    both(b"size", f(b"1"), f(b"22"))
    both(b"mode", f(b"p", mode=0o640), f(b"p", mode=0o600))
    both(b"owner", f(b"o", uid=OTHER_UID), f(b"o"))
    both(b"group", f(b"g"), f(b"g", gid=OTHER_GID))
    both(
        b"xa-changed", f(b"x", xattrs=((b"user.k", b"v1"),)), f(b"x", xattrs=((b"user.k", b"v2"),))
    )
    both(b"xa-added", f(b"x", xattrs=((b"user.new", b"n"),)), f(b"x"))
    both(b"xa-removed", f(b"x"), f(b"x", xattrs=((b"user.old", b"o"),)))
    both(b"acl", f(b"a", acl=f"u:{OTHER_UID}:r"), f(b"a", acl=f"u:{OTHER_UID}:rw"))
    both(b"acl-added", f(b"a", acl=f"g:{OTHER_GID}:r"), f(b"a"))
    both(b"missing", f(b"not in dst"))
    del dst[b"missing"]
    both(b"missing-dir", d())
    src[b"missing-dir/in"] = f(b"in")
    del dst[b"missing-dir"]
    # type changes
    both(b"file2emptydir", f(b"f"), d())
    both(b"file2dir", f(b"f"), d())
    dst[b"file2dir/inside"] = f(b"i")
    dst[b"file2dir/sub"] = d()
    dst[b"file2dir/sub/deep"] = f(b"deep")
    both(b"dir2file", d(), f(b"was a file"))
    src[b"dir2file/child"] = f(b"c")
    both(b"link2file", ln(b"same"), f(b"same"))
    both(b"file2link", f(b"same"), ln(b"same"))
    both(b"linktarget", ln(b"one"), ln(b"two"))
    both(b"fifo2file", fifo(), f(b""))
    both(b"file2fifo", f(b""), fifo())
    both(b"fifo", fifo(mode=0o600), fifo(mode=0o644))
    # a symlink in dst pointing outside it, where src has a directory / a file
    both(b"out-dir", d(), ln(outside))
    src[b"out-dir/victim"] = f(b"must not reach outside")
    both(b"out-file", f(b"must not reach outside"), ln(outside + b"/victim"))
    # extra entries in dst
    dst[b"extra"] = f(b"extra")
    dst[b"extra-dir"] = d()
    dst[b"extra-dir/a"] = f(b"a")
    dst[b"extra-dir/b"] = d()
    dst[b"extra-dir/b/c"] = f(b"c")
    dst[b"extra-link"] = ln(b"dangling")
    dst[b"extra-outside"] = ln(outside)  # deleting it must not touch `outside`
    dst[b"extra.o"] = f(b"object")  # for the filter tests
    # a subdirectory with a bit of everything, and its own mtime/mode change
    both(b"sub", d(mode=0o750), d(mode=0o755, mtime_ns=T0 + SEC))
    both(b"sub/keep.o", f(b"o"), f(b"old o"))
    both(b"sub/x y", f(b"space"))
    dst[b"sub/gone"] = f(b"g")
    # hard links: a group in src split in dst, a pair joined in dst only,
    # a group new in dst
    both(b"h1", f(b"H", group=1), f(b"H"))
    both(b"h2", f(b"H", group=1), f(b"H"))
    both(b"j1", f(b"J"), f(b"J", group=2))
    both(b"j2", f(b"J"), f(b"J", group=2))
    src[b"n1"] = f(b"N", group=3)
    src[b"n2"] = f(b"N", group=3)
    both(b"sub/n3", f(b"N", group=3), f(b"N"))
    for t in (src, dst):
        check_tree(t)
    return src, dst


# ------------------------------------------------------------------ hypothesis

NAMES = [b"a", b"b", b"c", b"sub", b"x.o", b"y.txt", b"z z", b"deep", b".hid", b"q"]
MUTATIONS = {
    "file": [
        "same", "same", "missing", "content", "mtime", "size", "mode", "owner", "group",
        "xattr", "xattr_added", "xattr_removed", "acl", "to_dir", "to_full_dir", "to_link",
        "to_fifo",
    ],
    "dir": ["same", "same", "same", "missing", "mtime", "mode", "owner", "xattr", "acl",
            "to_file", "to_link"],
    "link": ["same", "missing", "target", "to_file", "to_dir", "owner"],
    "fifo": ["same", "missing", "mode", "to_file", "mtime"],
}  # fmt: skip


@st.composite
def nodes(draw: st.DrawFn, kind: Kind) -> Node:
    mode = draw(st.sampled_from([0o644, 0o600, 0o755, 0o640] if kind != "dir" else [0o755, 0o700]))
    mt = T0 + draw(st.integers(-3, 3)) * SEC
    if kind == "file":
        data = draw(st.sampled_from([b"", b"x", b"hello", b"0123456789" * 500]))
        xa = draw(st.sampled_from([(), ((b"user.a", b"1"),)]))
        return f(data, mode=mode, mtime_ns=mt, xattrs=xa)
    if kind == "dir":
        return d(mode=mode, mtime_ns=mt)
    if kind == "link":
        return ln(draw(st.sampled_from([b"a", b"../a", b"nowhere", b"sub/b"])), mtime_ns=mt)
    return fifo(mode=mode, mtime_ns=mt)


def _mutate(draw: st.DrawFn, n: Node, outside: bytes) -> tuple[str, Node | None, Tree]:
    """(what, the dst node or None, extra entries below it (relative))."""
    m = draw(st.sampled_from(MUTATIONS[n.kind]))
    extra: Tree = {}
    if m == "same":
        return m, replace(n, group=None), extra
    if m == "missing":
        return m, None, extra
    n = replace(n, group=None)
    if m == "content":  # same size, same mtime
        data = bytes(reversed(n.data)) if len(set(n.data)) > 1 else b"#" * len(n.data)
        return m, replace(n, data=data if data != n.data else n.data + b"!"), extra
    if m == "mtime":
        return m, replace(n, mtime_ns=n.mtime_ns + 10 * SEC), extra
    if m == "size":
        return m, replace(n, data=n.data + b"+"), extra
    if m == "mode":
        return m, replace(n, mode=n.mode ^ 0o070), extra
    if m == "owner":
        return m, replace(n, uid=OTHER_UID), extra
    if m == "group":
        return m, replace(n, gid=OTHER_GID), extra
    if m == "xattr":
        return m, replace(n, xattrs=((b"user.a", b"other"),)), extra
    if m == "xattr_added":
        return m, replace(n, xattrs=(*n.xattrs, (b"user.extra", b"e"))), extra
    if m == "xattr_removed":
        return m, replace(n, xattrs=()), extra
    if m == "acl":
        return m, replace(n, acl=f"u:{OTHER_UID}:rw"), extra
    if m == "target":
        return m, replace(n, target=n.target + b"2"), extra
    if m == "to_dir":
        return m, d(), extra
    if m == "to_full_dir":
        extra = {b"in": f(b"in"), b"d": d(), b"d/deeper": f(b"x")}
        return m, d(), extra
    if m == "to_file":
        return m, f(b"was something else"), extra
    if m == "to_link":
        return m, ln(draw(st.sampled_from([b"elsewhere", outside]))), extra
    if m == "to_fifo":
        return m, fifo(), extra
    raise AssertionError(m)


@st.composite
def pairs(draw: st.DrawFn, outside: bytes, max_entries: int = 25) -> tuple[Tree, Tree]:
    """(src, dst): a random source of at most `max_entries` entries and a dst
    made from it by a mutation per entry, extra entries and link changes."""
    src: Tree = {}
    dirs = [b""]
    for _ in range(draw(st.integers(1, max_entries // 2))):
        parent = draw(st.sampled_from(dirs))
        path = (parent + b"/" if parent else b"") + draw(st.sampled_from(NAMES))
        if path in src or path.count(b"/") > 2:
            continue
        kind = draw(st.sampled_from(["file", "file", "file", "dir", "dir", "link", "fifo"]))
        src[path] = draw(nodes(kind))
        if kind == "dir":
            dirs.append(path)
    files = sorted(p for p, n in src.items() if n.kind == "file")
    # hard-link groups in src: members take the group's first member's attributes
    if len(files) >= 2 and draw(st.booleans()):
        members = draw(st.lists(st.sampled_from(files), min_size=2, max_size=4, unique=True))
        for p in members:
            src[p] = replace(src[min(members)], group=1)
    dst: Tree = {}
    for p in sorted(src, key=lambda x: (x.count(b"/"), x)):
        par = _parent(p)
        if par and (par not in dst or dst[par].kind != "dir"):
            continue
        _what, n, extra = _mutate(draw, src[p], outside)
        if n is None:
            continue
        dst[p] = n
        for q, e in extra.items():
            dst[p + b"/" + q] = e
    # hard links in dst: keep some of src's group (split the rest), join others
    src_group = [
        p for p in files if src[p].group is not None and dst.get(p) == replace(src[p], group=None)
    ]
    keep = (
        draw(st.lists(st.sampled_from(src_group), max_size=len(src_group), unique=True))
        if src_group
        else []
    )
    if len(keep) >= 2:
        for p in keep:
            dst[p] = replace(dst[min(keep)], group=1)
    dfiles = sorted(p for p, n in dst.items() if n.kind == "file" and n.group is None)
    if len(dfiles) >= 2 and draw(st.booleans()):
        joined = draw(st.lists(st.sampled_from(dfiles), min_size=2, max_size=3, unique=True))
        for p in joined:
            dst[p] = replace(dst[min(joined)], group=2)
    # extra entries in dst
    ddirs = [b""] + [p for p, n in dst.items() if n.kind == "dir"]
    for _ in range(draw(st.integers(0, 4))):
        parent = draw(st.sampled_from(ddirs))
        path = (parent + b"/" if parent else b"") + draw(
            st.sampled_from([b"extra", b"old.o", b"zz", b"a"])
        )
        if path in dst:
            continue
        kind = draw(st.sampled_from(["file", "dir", "link", "outside"]))
        if kind == "outside":
            dst[path] = ln(outside)
        elif kind == "dir":
            dst[path] = d()
            dst[path + b"/inner"] = f(b"inner")
        else:
            dst[path] = draw(nodes(kind))  # type: ignore[arg-type]
    return src, dst


PATTERNS = [
    "*.o", "x.o", "a", "/a", "sub", "sub/", "/sub/", "/sub/**", "**/a", "s?b", "?",
    "*", "deep/", "sub/*", "**.o", "z z", ".hid", "extra", "/extra*", "y.*", "sub/**/a",
]  # fmt: skip


def filter_lists(max_size: int = 3) -> st.SearchStrategy[list[tuple[str, str]]]:
    """[("--exclude"|"--include", pattern), ...]: rsync's first match wins."""
    rule = st.tuples(
        st.sampled_from(["--exclude", "--exclude", "--include"]), st.sampled_from(PATTERNS)
    )
    return st.lists(rule, max_size=max_size)


def filter_argv(rules: list[tuple[str, str]]) -> list[bytes]:
    return [f"{o}={p}".encode() for o, p in rules]


# ------------------------------------------------------------------ checks


def full_stat(root: PathLike) -> dict[bytes, tuple[int, ...]]:
    """relpath -> (ino, mode, uid, gid, size, mtime_ns, ctime_ns, nlink) for every
    entry (root included): a re-run that rewrites nothing leaves this unchanged."""
    root = b(root)
    out: dict[bytes, tuple[int, ...]] = {}

    def rec(rel: bytes, st_: os.stat_result) -> None:
        out[rel] = (st_.st_ino, st_.st_mode, st_.st_uid, st_.st_gid, st_.st_size,
                    st_.st_mtime_ns, st_.st_ctime_ns, st_.st_nlink)  # fmt: skip

    def walk(fd: int, rel: bytes) -> None:
        for name in sorted(os.fsencode(n) for n in os.listdir(fd)):
            s = os.stat(name, dir_fd=fd, follow_symlinks=False)
            path = rel + b"/" + name if rel else name
            rec(path, s)
            if stat.S_ISDIR(s.st_mode):
                sub = os.open(name, O_DIR, dir_fd=fd)
                try:
                    walk(sub, path)
                finally:
                    os.close(sub)

    rec(b"", os.lstat(root))
    fd = os.open(root, O_DIR)
    try:
        walk(fd, b"")
    finally:
        os.close(fd)
    return out


def temp_names(root: PathLike) -> list[bytes]:
    """Paths under root whose name is a uringsync temporary (.NAME.uringsync-XXXXXX)."""
    found = []
    for top, dirs, files in os.walk(b(root)):
        for n in dirs + files:
            if n.startswith(b".") and b".uringsync-" in n:
                found.append(os.path.join(top, n))
    return found


def rsync(*args: PathLike, cwd: PathLike | None = None) -> tuple[int, bytes, bytes]:
    assert RSYNC is not None
    p = subprocess.run([RSYNC, *[b(a) for a in args]], capture_output=True, cwd=cwd, check=False)
    return p.returncode, p.stdout, p.stderr


def rsync_check(src: PathLike, dst: PathLike) -> set[bytes]:
    """The lines of `rsync -naHAXc --delete -i SRC/ DST/` (the acceptance check)."""
    rc, out, err = rsync(
        b"-naHAXc", b"--delete", b"-i", b(src).rstrip(b"/") + b"/", b(dst).rstrip(b"/") + b"/"
    )
    assert rc == 0, f"rsync -naHAXc failed ({rc}): {err!r}"
    return set(out.splitlines())


def show(lines: set[bytes] | list[bytes]) -> str:
    return "\n    ".join(ln.decode("utf-8", "backslashreplace") for ln in sorted(lines)) or "(none)"


def set_diff(what: str, ours: set[bytes], theirs: set[bytes]) -> str:
    return (
        f"{what}:\n  only uringsync:\n    {show(ours - theirs)}\n"
        f"  only rsync:\n    {show(theirs - ours)}"
    )


def copy_tree(a: bytes, b_: bytes) -> None:
    """A faithful copy (cp -a keeps xattrs, ACLs, owners, hard links, times)."""
    subprocess.run([b"cp", b"-a", a, b_], check=True)


def describe(tree: Tree) -> str:
    """One line per entry, for failure messages."""
    out = []
    for p in sorted(tree):
        n = tree[p]
        bits = [n.kind, oct(n.mode), f"mtime=T0{(n.mtime_ns - T0) // SEC:+d}s"]
        if n.kind == "file":
            bits.append(f"data={n.data[:12]!r}{'...' if len(n.data) > 12 else ''}({len(n.data)})")
        if n.kind == "link":
            bits.append(f"-> {n.target!r}")
        if (n.uid, n.gid) != (0, 0):
            bits.append(f"owner={n.uid}:{n.gid}")
        if n.xattrs:
            bits.append(f"xattrs={dict(n.xattrs)!r}")
        if n.acl:
            bits.append(f"acl={n.acl}")
        if n.group is not None:
            bits.append(f"link-group={n.group}")
        out.append(f"    {p.decode(errors='backslashreplace')}: " + " ".join(bits))
    return "\n".join(out)


_ITEM = re.compile(rb"^(\*deleting  |[<>ch.][fdLDS][.+ cstTpoguabnx]{9}) ")


def is_item(line: bytes) -> bool:
    """An rsync -i line (%i %n%L), not one of the notices rsync prints on stdout
    with it ("cannot delete non-empty directory: X", "IO error encountered --
    skipping file deletion", ...)."""
    return _ITEM.match(line) is not None


def split_stdout(out: bytes) -> tuple[set[bytes], list[bytes]]:
    """(the -i lines, the other lines) of rsync's stdout."""
    lines = out.splitlines()
    return {x for x in lines if is_item(x)}, [x for x in lines if not is_item(x)]


def now_touched(snap: dict[bytes, Rec], since_ns: int) -> dict[bytes, Rec]:
    """`snap` with the mtime of entries modified at or after `since_ns` set to 0:
    rsync leaves some directories with the time of its own changes (a directory
    it could not replace keeps the mtime its deletions gave it), which two runs
    cannot reproduce."""
    return {p: r._replace(mtime_ns=0) if r.mtime_ns >= since_ns else r for p, r in snap.items()}
