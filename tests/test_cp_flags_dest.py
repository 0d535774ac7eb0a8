"""What happens where a destination name is taken, and cp's per-entry
alternatives to copying data (-f, --remove-destination, -n, -u, -b/-S, -l,
-s, --attributes-only), through ``uringsync.copy`` against GNU cp run with
the matching flags on a twin tree (same tree on disk, same inodes kept or
replaced, same messages)."""

from __future__ import annotations

import errno as E
import os
from collections.abc import Callable
from typing import Any

import pytest

import uringsync
from tests.support.base import NOBODY, root_only
from tests.support.cli import run_cp
from tests.support.compare import FIELDS_ALL, assert_same_tree, inode_map, snapshot
from tests.support.system import mount_tmpfs, umount
from tests.support.users import as_user, world_tmpdir

T_OLD = 1_600_000_000_000_000_000
T_SRC = 1_700_000_000_000_000_000
T_NEW = 1_800_000_000_000_000_000
# without -p the copies' times are "now": compare everything else
NO_TIMES = tuple(f for f in FIELDS_ALL if f not in ("mtime_ns", "atime_ns"))
NO_ATIME = tuple(f for f in FIELDS_ALL if f != "atime_ns")

Build = Callable[[bytes], None]


def put(path: bytes, data: bytes, mtime: int = T_OLD, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path) or b".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime, mtime))


def source(tmp: bytes) -> bytes:
    src = tmp + b"/src"
    put(src + b"/a", b"new a\n" * 100, T_SRC)
    put(src + b"/b", b"new b\n", T_SRC, 0o640)
    put(src + b"/sub/c", b"new c\n" * 7, T_SRC)
    put(src + b"/sub/d", b"new d\n", T_SRC)
    os.symlink(b"d", src + b"/sub/ln")
    os.utime(src + b"/sub/ln", ns=(T_SRC, T_SRC), follow_symlinks=False)
    os.mkfifo(src + b"/sub/fifo")
    os.utime(src + b"/sub/fifo", ns=(T_SRC, T_SRC))
    os.utime(src + b"/sub", ns=(T_SRC, T_SRC))
    os.utime(src, ns=(T_SRC, T_SRC))
    return src


def existing(dst: bytes) -> None:
    """A destination that has some of the names: a (with a second link a2,
    mode 0600), sub/c (newer than the source), sub/d (older)."""
    put(dst + b"/a", b"old a\n", T_OLD, 0o600)
    os.link(dst + b"/a", dst + b"/a2")
    put(dst + b"/sub/c", b"old c\n", T_NEW)
    put(dst + b"/sub/d", b"old d\n", T_OLD)


def twins(tmp: bytes, build: Build = existing) -> tuple[bytes, bytes, bytes]:
    """(src, our destination, cp's destination), the two made alike."""
    src = source(tmp)
    ours, theirs = tmp + b"/ours", tmp + b"/theirs"
    for d in (ours, theirs):
        os.mkdir(d)
        build(d)
    return src, ours, theirs


def both(
    src: bytes, ours: bytes, theirs: bytes, cp_flags: list[str], cwd: bytes | None = None, **kw: Any
) -> tuple[uringsync.Result, int, bytes]:
    """uringsync.copy(src, ours, -T, **kw) and `cp -T CP_FLAGS src theirs`."""
    kw.setdefault("recursive", True)
    kw.setdefault("jobs", 0)
    res = uringsync.copy(src, ours, target_is_dir=False, **kw)
    rc, _out, err = run_cp("-T", *cp_flags, src, theirs, cwd=cwd)
    return res, rc, err


class Held(dict[bytes, tuple[int, int]]):
    """Each non-directory under a root: an O_PATH fd holding its inode (so a
    replaced file's inode number cannot be reused by its replacement) and
    that number."""

    def __init__(self, root: bytes) -> None:
        super().__init__()
        for p, st in inode_map(root).items():
            fd = os.open(root + b"/" + p, os.O_PATH | os.O_NOFOLLOW)
            self[p] = (fd, st.st_ino)

    def __del__(self) -> None:
        for fd, _ino in self.values():
            os.close(fd)


def inode_map_held(root: bytes) -> Held:
    return Held(root)


def kept(before: Held, root: bytes) -> dict[bytes, bool]:
    """Per name there before: whether it is still the same inode."""
    after = inode_map(root)
    return {p: p in after and after[p].st_ino == ino for p, (_fd, ino) in before.items()}


def same_outcome(ours: bytes, theirs: bytes, fields: tuple[str, ...] = NO_TIMES) -> None:
    assert_same_tree(ours, theirs, fields=fields, exclude=lambda p: p == b"")


# ------------------------------------------------ in place, -f, --remove-destination


@pytest.mark.usefixtures("engine_name")
@pytest.mark.parametrize("archive", [False, True])
def test_existing_files_written_in_place(tmp: bytes, archive: bool) -> None:
    """cp: an existing file is opened O_TRUNC (inode, other links, mode
    kept); cp -a instead replaces a file with more than one link."""
    src, ours, theirs = twins(tmp)
    b_ours, b_theirs = inode_map_held(ours), inode_map_held(theirs)
    res, rc, err = both(src, ours, theirs, ["-a"] if archive else ["-r"], archive=archive)
    assert (res.exit_code, res.errors, rc) == (0, [], 0), err
    same_outcome(ours, theirs, NO_ATIME if archive else NO_TIMES)
    assert kept(b_ours, ours) == kept(b_theirs, theirs)
    assert kept(b_ours, ours)[b"sub/c"]  # in place
    assert kept(b_ours, ours)[b"a"] is (not archive)  # 2 links: -a makes a new file
    if not archive:
        assert os.stat(ours + b"/a").st_mode & 0o7777 == 0o600  # its mode stays
        with open(ours + b"/a2", "rb") as f:
            assert f.read() == b"new a\n" * 100  # the other link sees the copy


def test_symlink_in_dst_is_replaced_not_followed(tmp: bytes) -> None:
    """uringsync's one difference: a symlink met inside DST is never
    written through (cp would write to its target); it is replaced."""
    src = source(tmp)
    dst = tmp + b"/dst"
    os.makedirs(dst + b"/sub")
    put(tmp + b"/outside", b"keep me\n")
    os.symlink(tmp + b"/outside", dst + b"/a")
    res = uringsync.copy(src, dst, recursive=True, target_is_dir=False, jobs=0)
    assert (res.exit_code, res.errors) == (0, [])
    assert not os.path.islink(dst + b"/a")
    with open(tmp + b"/outside", "rb") as f:
        assert f.read() == b"keep me\n"


def test_big_file_existing_goes_in_place(tmp: bytes) -> None:
    """A file big enough to be split into ranges whose destination exists
    is copied as one job, in place."""
    src = tmp + b"/src"
    put(src + b"/big", os.urandom(3 << 20), T_SRC)
    put(src + b"/new", os.urandom(3 << 20), T_SRC)
    dst = tmp + b"/dst"
    put(dst + b"/big", b"old", T_OLD)
    ino = os.stat(dst + b"/big").st_ino
    tuning = uringsync.walker.Tuning(split_min=1 << 20, range_size=1 << 20)
    res = uringsync.copy(src, dst, recursive=True, target_is_dir=False, jobs=2, _tuning=tuning)
    assert (res.exit_code, res.errors) == (0, [])
    assert os.stat(dst + b"/big").st_ino == ino
    assert_same_tree(src, dst, fields=("type", "size", "sha256"), exclude=lambda p: p == b"")


def _protected(dst: bytes) -> None:
    put(dst + b"/a", b"old a\n", T_OLD, 0o444)
    put(dst + b"/sub/c", b"old c\n", T_OLD, 0o444)


def _as_nobody_both(
    flags: list[str], **kw: Any
) -> tuple[Any, int, bytes, dict[bytes, bool], dict[bytes, bool]]:
    with world_tmpdir() as w:

        def run() -> Any:
            src, ours, theirs = twins(w, _protected)
            bo, bt = inode_map_held(ours), inode_map_held(theirs)
            res, rc, err = both(src, ours, theirs, ["-r", *flags], **kw)
            same_outcome(ours, theirs)
            msgs = [e.message for e in res.errors]
            return (res.exit_code, msgs), rc, err, kept(bo, ours), kept(bt, theirs)

        return as_user(run)  # type: ignore[no-any-return]


@root_only
def test_write_protected_refused_without_force() -> None:
    (code, msgs), rc, err, k_ours, k_theirs = _as_nobody_both([])
    assert (code, rc) == (23, 1)
    cp_lines = sorted(ln.decode() for ln in err.splitlines())
    ours = sorted(f"cp: {m}" for m in msgs)
    assert [ln.replace("/ours/", "/X/") for ln in ours] == [
        ln.replace("/theirs/", "/X/") for ln in cp_lines
    ]
    assert "cannot create regular file" in ours[0] and "Permission denied" in ours[0]
    assert k_ours == k_theirs


@root_only
def test_write_protected_removed_with_force() -> None:
    (code, msgs), rc, err, k_ours, k_theirs = _as_nobody_both(["-f"], force=True)
    assert (code, msgs, rc) == (0, [], 0), err
    assert k_ours == k_theirs == {b"a": False, b"sub/c": False}


@root_only
def test_write_protected_overwritten_by_root(tmp: bytes) -> None:
    src, ours, theirs = twins(tmp, _protected)
    bo, bt = inode_map_held(ours), inode_map_held(theirs)
    res, rc, err = both(src, ours, theirs, ["-r"])
    assert (res.exit_code, rc) == (0, 0), err
    same_outcome(ours, theirs)
    assert kept(bo, ours) == kept(bt, theirs) == {b"a": True, b"sub/c": True}


@pytest.mark.usefixtures("engine_name")
def test_remove_destination(tmp: bytes) -> None:
    src, ours, theirs = twins(tmp)
    bo, bt = inode_map_held(ours), inode_map_held(theirs)
    res, rc, err = both(src, ours, theirs, ["-r", "--remove-destination"], remove_destination=True)
    assert (res.exit_code, res.errors, rc) == (0, [], 0), err
    same_outcome(ours, theirs)
    assert kept(bo, ours) == kept(bt, theirs)
    assert not any(v for p, v in kept(bo, ours).items() if p != b"a2")


def test_same_file_met_in_dst_is_refused(tmp: bytes) -> None:
    """A hard link of the source met in DST would be truncated with the
    source: cp refuses it ("are the same file"), and so does uringsync."""
    src, ours, theirs = twins(tmp, lambda d: None)
    for d in (ours, theirs):
        os.link(src + b"/b", d + b"/b")
    res, rc, err = both(src, ours, theirs, ["-r"])
    assert (res.exit_code, rc) == (23, 1)
    want = [ln.decode().replace("/theirs/", "/X/") for ln in err.splitlines()]
    assert [f"cp: {e.message}".replace("/ours/", "/X/") for e in res.errors] == want
    with open(src + b"/b", "rb") as f:
        assert f.read() == b"new b\n"


@root_only
def test_failed_in_place_copy_is_left_empty(tmp: bytes) -> None:
    """No space while writing in place: the file is reported and left empty
    (cp leaves it partial), its inode kept."""
    mnt = tmp + b"/small"
    os.mkdir(mnt)
    reason = mount_tmpfs(mnt, "1m")
    if reason:
        pytest.skip(reason)
    try:
        src = tmp + b"/src"
        put(src + b"/f", os.urandom(3 << 20), T_SRC)
        put(mnt + b"/f", b"old\n", T_OLD)
        ino = os.stat(mnt + b"/f").st_ino
        res = uringsync.copy(src + b"/f", mnt + b"/f", jobs=0, archive=True)
        assert res.exit_code == 23
        assert [e.errno for e in res.errors] == [E.ENOSPC]
        st = os.stat(mnt + b"/f")
        assert (st.st_ino, st.st_size) == (ino, 0)
        assert st.st_mtime_ns != T_SRC
    finally:
        umount(mnt)


# ------------------------------------------------------------------ -n, -u


@pytest.mark.usefixtures("engine_name")
@pytest.mark.parametrize(("flag", "kw"), [("-n", {"no_clobber": True}), ("-u", {"update": True})])
def test_no_clobber_and_update(tmp: bytes, flag: str, kw: dict[str, Any]) -> None:
    src, ours, theirs = twins(tmp)
    bo, bt = inode_map_held(ours), inode_map_held(theirs)
    snap = snapshot(ours)
    res, rc, err = both(src, ours, theirs, ["-a", flag], archive=True, **kw)
    assert (res.exit_code, res.errors, rc, err) == (0, [], 0, b"")
    same_outcome(ours, theirs, NO_ATIME)
    assert kept(bo, ours) == kept(bt, theirs)
    after = snapshot(ours)
    assert after[b"sub/c"] == snap[b"sub/c"]  # newer: left alone by both
    assert (after[b"sub/d"].sha256 == snap[b"sub/d"].sha256) is (flag == "-n")
    assert res.files == (1 if flag == "-n" else 3)  # b new; -u: a and sub/d older


# ------------------------------------------------------------------ backups


def _with_numbered(dst: bytes) -> None:
    existing(dst)
    put(dst + b"/sub/d.~1~", b"one\n")
    put(dst + b"/sub/d.~3~", b"three\n")
    put(dst + b"/sub/d.~03~", b"not a version\n")


@pytest.mark.usefixtures("engine_name")
@pytest.mark.parametrize("control", ["simple", "never", "numbered", "t", "existing", "nil", "none"])
def test_backups_named_as_cp_names_them(tmp: bytes, control: str) -> None:
    src, ours, theirs = twins(tmp, _with_numbered)
    res, rc, err = both(
        src, ours, theirs, ["-a", f"--backup={control}"], archive=True, backup=control
    )
    assert (res.exit_code, res.errors, rc) == (0, [], 0), err
    same_outcome(ours, theirs, NO_ATIME)


def test_backup_suffix(tmp: bytes) -> None:
    src, ours, theirs = twins(tmp)
    res, rc, err = both(
        src,
        ours,
        theirs,
        ["-a", "-b", "-S", ".orig"],
        archive=True,
        backup="existing",
        suffix=".orig",
    )
    assert (res.exit_code, res.errors, rc) == (0, [], 0), err
    same_outcome(ours, theirs, NO_ATIME)
    assert os.path.exists(ours + b"/a.orig")


def test_backup_failure_reported(tmp: bytes) -> None:
    src, ours, theirs = twins(tmp)
    for d in (ours, theirs):
        os.mkdir(d + b"/a~")  # in the way of a's backup
    res, rc, err = both(src, ours, theirs, ["-a", "--backup=simple"], archive=True, backup="simple")
    assert (res.exit_code, rc) == (23, 1)
    msgs = [e.message for e in res.errors]
    assert f"cannot backup '{(ours + b'/a').decode()}': Is a directory" in msgs
    assert b"cannot backup" in err


# ------------------------------------------------------------ -l, -s, --attributes-only


@pytest.mark.usefixtures("engine_name")
def test_hard_links_to_the_source(tmp: bytes) -> None:
    src, ours, theirs = twins(tmp, lambda d: None)
    res, rc, err = both(src, ours, theirs, ["-rl"], link=True)
    assert (res.exit_code, res.errors, rc) == (0, [], 0), err
    same_outcome(ours, theirs)
    # both are links to the same source inodes (a symlink's target: -l follows)
    o, t = inode_map(ours), inode_map(theirs)
    assert {p: st.st_ino for p, st in o.items()} == {p: st.st_ino for p, st in t.items()}
    assert o[b"sub/c"].st_ino == os.stat(src + b"/sub/c").st_ino


def test_hard_link_over_existing_needs_force(tmp: bytes) -> None:
    src, ours, theirs = twins(tmp)
    res, rc, err = both(src, ours, theirs, ["-rl"], link=True)
    assert (res.exit_code, rc) == (23, 1)
    want = sorted(ln.decode().replace("/theirs/", "/X/") for ln in err.splitlines())
    got = sorted(f"cp: {e.message}".replace("/ours/", "/X/") for e in res.errors)
    assert got == want
    res, rc, err = both(src, ours, theirs, ["-rlf"], link=True, force=True)
    assert (res.exit_code, res.errors, rc) == (0, [], 0), err
    same_outcome(ours, theirs)
    assert inode_map(ours)[b"a"].st_ino == inode_map(src)[b"a"].st_ino


@pytest.mark.usefixtures("engine_name")
def test_symbolic_links_to_the_source(tmp: bytes) -> None:
    src, ours, theirs = twins(tmp, lambda d: None)
    res, rc, err = both(src, ours, theirs, ["-rs"], symbolic_link=True)
    assert (res.exit_code, res.errors, rc) == (0, [], 0), err
    same_outcome(ours, theirs, ("type", "link"))
    assert os.readlink(ours + b"/sub/c") == src + b"/sub/c"


def test_relative_symbolic_links_only_in_cwd(tmp: bytes) -> None:
    source(tmp)
    os.mkdir(tmp + b"/ours")
    os.mkdir(tmp + b"/theirs")

    def run() -> Any:
        os.chdir(tmp)
        res = uringsync.copy(b"src/a", b"ours/", symbolic_link=True, jobs=0)
        here = uringsync.copy(b"src/b", b"b", symbolic_link=True, jobs=0)
        return [e.message for e in res.errors], res.exit_code, here.exit_code

    msgs, code, here = as_user(run, 0, 0)  # a child: chdir is the process's
    rc, _out, err = run_cp("-s", "src/a", "theirs/", cwd=tmp)
    assert (code, rc, here) == (23, 1, 0)
    assert [f"cp: {m}".replace("ours", "X") for m in msgs] == [
        ln.decode().replace("theirs", "X") for ln in err.splitlines()
    ]
    assert os.readlink(tmp + b"/b") == b"src/b"


@pytest.mark.usefixtures("engine_name")
def test_attributes_only(tmp: bytes) -> None:
    src, ours, theirs = twins(tmp)
    bo, bt = inode_map_held(ours), inode_map_held(theirs)
    res, rc, err = both(
        src, ours, theirs, ["-a", "--attributes-only"], archive=True, attributes_only=True
    )
    assert (res.exit_code, res.errors, rc) == (0, [], 0), err
    same_outcome(ours, theirs, NO_ATIME)
    assert kept(bo, ours) == kept(bt, theirs)
    assert os.path.getsize(ours + b"/b") == 0
    with open(ours + b"/sub/d", "rb") as f:
        assert f.read() == b"old d\n"  # not truncated


@pytest.mark.parametrize(
    ("flags", "kw"),
    [
        (["-a"], {"archive": True}),
        (["-r", "--remove-destination"], {"remove_destination": True}),
        (["-a", "--backup=numbered"], {"archive": True, "backup": "numbered"}),
        (["-a", "-b", "-S", ".bak"], {"archive": True, "backup": "existing", "suffix": ".bak"}),
        (["-rl", "-f"], {"link": True, "force": True}),
    ],
)
def test_verbose_lines_as_cp(
    tmp: bytes, monkeypatch: pytest.MonkeyPatch, flags: list[str], kw: dict[str, Any]
) -> None:
    """-v: cp's lines, "removed 'x'" and "(backup: 'x~')" included."""
    twins(tmp, _with_numbered)
    monkeypatch.chdir(tmp)  # relative names in the lines
    lines: list[str] = []
    kw.setdefault("recursive", True)
    res = uringsync.copy(
        b"src", b"ours", target_is_dir=False, jobs=0, verbose=True, on_verbose=lines.append, **kw
    )
    rc, out, err = run_cp("-T", "-v", *flags, "src", "theirs", cwd=tmp)
    assert (res.exit_code, rc) == (0, 0), err
    assert sorted(ln.replace("ours", "X") for ln in lines) == sorted(
        ln.decode().replace("theirs", "X") for ln in out.splitlines()
    )


def test_sync_unchanged_by_cp_flags(tmp: bytes) -> None:
    """sync keeps rsync's temporary-and-rename: a changed file is a new inode."""
    src = source(tmp)
    dst = tmp + b"/dst"
    assert run_cp("-a", src, dst)[0] == 0
    put(dst + b"/a", b"old\n")
    ino = os.stat(dst + b"/a").st_ino
    r = uringsync.sync(src + b"/", dst, archive=True)
    assert r.exit_code == 0
    assert os.stat(dst + b"/a").st_ino != ino
    assert NOBODY  # (imported for the as-nobody tests)
