"""uringsync.copytree / copy2 / copyfile against the standard library's
shutil on the same trees: the same result on disk (names, types, modes,
data, times to the ns, symlink targets, xattrs and ACLs), the same return
value, the same exceptions (FileExistsError, shutil.Error with the same
(src, dst, reason) triples), the same calls of ``ignore``; and CPython's own
tests of shutil.copytree (test.test_shutil.TestCopyTree) run on ours."""

from __future__ import annotations

import io
import os
import pathlib
import shutil
import stat
import subprocess
import unittest
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import uringsync
from tests.support.compare import (
    assert_same_meta,
    assert_same_tree,
    link_groups,
    snapshot,
)
from tests.support.trees import rand_bytes, set_tree_times, write_file
from tests.support.users import as_user, world_tmpdir

# what copy2/copystat keep; the owner is this user's on both sides
FIELDS = ("type", "mode", "uid", "gid", "size", "mtime_ns", "atime_ns", "sha256", "link")


def _setfacl(*args: bytes | str) -> bool:
    try:
        return subprocess.run(["setfacl", *args], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def make_tree(root: bytes) -> bytes:
    """A tree with what copytree meets: modes, nested and odd directories,
    symlinks (relative, absolute, to a directory), hard links, xattrs, an
    ACL, names that are not UTF-8, an empty and a bigger file."""
    src = root + b"/src"
    os.makedirs(src + b"/sub/deeper")
    os.mkdir(src + b"/private", 0o700)
    os.mkdir(src + b"/sticky")
    os.chmod(src + b"/sticky", 0o1777)
    write_file(src + b"/plain", b"plain\n")
    write_file(src + b"/exec", b"#!/bin/sh\n", 0o755)
    write_file(src + b"/secret", b"s", 0o600)
    write_file(src + b"/setuid", b"u", 0o4755)
    write_file(src + b"/empty", b"")
    write_file(src + b"/big", rand_bytes(300_000, "big"))
    write_file(src + b"/caf\xe9 \n name", b"latin-1 and a newline")
    write_file(src + b"/sub/a.tmp", b"tmp")
    write_file(src + b"/sub/deeper/f", b"deep")
    write_file(src + b"/private/p", b"p", 0o640)
    os.link(src + b"/plain", src + b"/sub/hardlink")
    os.symlink(b"plain", src + b"/rel-link")
    os.symlink(src + b"/exec", src + b"/abs-link")
    os.symlink(b"sub", src + b"/dir-link")
    os.setxattr(src + b"/plain", b"user.one", b"1")
    os.setxattr(src + b"/sub", b"user.dir", b"\0binary\xff")
    _setfacl("-m", "u:1234:rw-", os.fsdecode(src + b"/exec"))
    set_tree_times(src, seed=12)
    return src


@pytest.fixture
def tree(tmp: bytes) -> bytes:
    return make_tree(tmp)


def same_result(a: bytes | str, b: bytes | str) -> None:
    assert_same_tree(a, b, fields=FIELDS)
    assert_same_meta(a, b)
    assert link_groups(a) == link_groups(b)


@pytest.mark.parametrize("symlinks", [False, True])
def test_same_tree_as_shutil(tree: bytes, tmp: bytes, symlinks: bool) -> None:
    want = shutil.copytree(tree, tmp + b"/by-shutil", symlinks=symlinks)
    got = uringsync.copytree(tree, tmp + b"/by-uringsync", symlinks=symlinks)
    assert (want, got) == (tmp + b"/by-shutil", tmp + b"/by-uringsync")
    same_result(want, got)
    kind = "lnk" if symlinks else "dir"
    assert snapshot(got)[b"dir-link"].type == kind


@pytest.mark.parametrize("kind", [str, bytes, pathlib.Path])
def test_path_types_and_return_value(tree: bytes, tmp: bytes, kind: Callable[[Any], Any]) -> None:
    """str, bytes and Path in; DST itself back; ignore's arguments typed as shutil types them."""
    calls: dict[str, list[tuple[Any, list[Any]]]] = {"shutil": [], "uringsync": []}

    def recorder(who: str) -> Callable[[Any, list[Any]], list[Any]]:
        def ignore(path: Any, names: list[Any]) -> list[Any]:
            calls[who].append((path, sorted(names)))
            return []

        return ignore

    src = tree if kind is bytes else kind(os.fsdecode(tree))
    for who, fn in (("shutil", shutil.copytree), ("uringsync", uringsync.copytree)):
        dst_b = tmp + b"/" + who.encode() + b"/made/parents"
        dst = dst_b if kind is bytes else kind(os.fsdecode(dst_b))
        assert fn(src, dst, ignore=recorder(who)) is dst
    assert sorted(calls["uringsync"]) == sorted(calls["shutil"])
    assert len(calls["shutil"]) == 7  # ., sub, sub/deeper, private, sticky, dir-link{,/deeper}
    same_result(tmp + b"/shutil/made/parents", tmp + b"/uringsync/made/parents")


def test_ignore_patterns(tree: bytes, tmp: bytes) -> None:
    ignore = shutil.ignore_patterns("*.tmp", "deeper", "caf*", "private")
    src = os.fsdecode(tree)  # str patterns match str names
    shutil.copytree(src, os.fsdecode(tmp + b"/a"), ignore=ignore)
    uringsync.copytree(src, os.fsdecode(tmp + b"/b"), ignore=ignore)
    same_result(tmp + b"/a", tmp + b"/b")
    left = snapshot(tmp + b"/b")
    assert b"sub/a.tmp" not in left and b"sub/deeper" not in left and b"private" not in left
    assert b"sub/hardlink" in left


def test_ignore_gets_bytes_names_for_bytes_src(tree: bytes, tmp: bytes) -> None:
    seen: list[Any] = []

    def ignore(path: Any, names: list[Any]) -> list[Any]:
        seen.append(path)
        assert all(isinstance(n, bytes) for n in names)
        return [n for n in names if n.startswith(b"caf")]

    uringsync.copytree(tree, tmp + b"/b", ignore=ignore)
    assert all(isinstance(p, bytes) for p in seen) and tree in seen
    assert not any(n.startswith(b"caf") for n in os.listdir(tmp + b"/b"))


def test_existing_destination(tree: bytes, tmp: bytes) -> None:
    os.mkdir(tmp + b"/there")
    write_file(tmp + b"/file", b"f")
    for dst in (tmp + b"/there", tmp + b"/file"):
        for fn in (shutil.copytree, uringsync.copytree):
            with pytest.raises(FileExistsError) as ei:
                fn(tree, dst)
            assert ei.value.filename == dst
    assert os.listdir(tmp + b"/there") == []


def test_source_missing_or_not_a_directory(tmp: bytes) -> None:
    write_file(tmp + b"/file", b"f")
    for src, exc in ((tmp + b"/nope", FileNotFoundError), (tmp + b"/file", NotADirectoryError)):
        errors = []
        for fn in (shutil.copytree, uringsync.copytree):
            with pytest.raises(exc) as ei:
                fn(src, tmp + b"/dst")
            errors.append((ei.value.errno, ei.value.filename))
            assert not os.path.lexists(tmp + b"/dst")
        assert errors[0] == errors[1]


def test_dirs_exist_ok_merges(tree: bytes, tmp: bytes) -> None:
    for name in (b"/a", b"/b"):
        os.makedirs(tmp + name + b"/sub/only-in-dst")
        write_file(tmp + name + b"/plain", b"old data, longer than the new\n", 0o666)
        write_file(tmp + name + b"/extra", b"kept")
        set_tree_times(tmp + name, seed=3, keep_mtime=False)
    shutil.copytree(tree, tmp + b"/a", dirs_exist_ok=True)
    uringsync.copytree(tree, tmp + b"/b", dirs_exist_ok=True)
    same_result(tmp + b"/a", tmp + b"/b")
    assert snapshot(tmp + b"/b")[b"extra"].type == "reg"


def test_dangling_symlinks(tree: bytes, tmp: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    os.symlink(b"nowhere", tree + b"/dangling")
    os.symlink(b"../gone", tree + b"/sub/dangling2")
    raised = []
    for fn, dst in ((shutil.copytree, b"/a"), (uringsync.copytree, b"/b")):
        with pytest.raises(shutil.Error) as ei:
            fn(tree, tmp + dst)
        raised.append(sorted(ei.value.args[0]))
    assert [t[0] for t in raised[0]] == [
        tree + b"/dangling",
        tree + b"/dir-link/dangling2",
        tree + b"/sub/dangling2",
    ]
    assert raised[1] == [
        (s, d.replace(tmp + b"/a", tmp + b"/b"), r) for s, d, r in raised[0]
    ]  # the same triples: (src, dst, "[Errno 2] No such file or directory: 'src'")
    same_result(tmp + b"/a", tmp + b"/b")
    # shutil looks a link's target up from the working directory, not from
    # the link's: from SRC, the links at its top resolve alike
    monkeypatch.chdir(tree)
    for fn, dst in ((shutil.copytree, b"/c"), (uringsync.copytree, b"/d")):
        fn(tree, tmp + dst, ignore_dangling_symlinks=True)
    same_result(tmp + b"/c", tmp + b"/d")
    for fn, dst in ((shutil.copytree, b"/e"), (uringsync.copytree, b"/f")):
        fn(tree, tmp + dst, symlinks=True)
    same_result(tmp + b"/e", tmp + b"/f")
    assert os.readlink(tmp + b"/f/dangling") == b"nowhere"


def test_fifo_is_an_error_as_in_shutil(tree: bytes, tmp: bytes) -> None:
    os.mkfifo(tree + b"/sub/pipe")
    os.symlink(b"sub/pipe", tree + b"/to-pipe")
    raised = []
    src = os.fsdecode(tree)
    for fn, dst in ((shutil.copytree, b"/a"), (uringsync.copytree, b"/b")):
        with pytest.raises(shutil.Error) as ei:
            fn(src, os.fsdecode(tmp + dst))
        raised.append(sorted((s, r) for s, _d, r in ei.value.args[0]))
    assert raised[0] == raised[1]
    assert (f"{src}/sub/pipe", f"`{src}/sub/pipe` is a named pipe") in raised[1]
    assert len(raised[1]) == 3  # sub/pipe, dir-link/pipe, to-pipe
    same_result(tmp + b"/a", tmp + b"/b")


@pytest.fixture
def shared() -> Iterator[bytes]:
    with world_tmpdir() as d:
        yield d


def test_unreadable_entries_as_a_user(shared: bytes) -> None:
    """Run as nobody: a file and a directory it cannot read are each one
    (src, dst, reason) triple, the same as shutil's; the rest is copied."""
    src = make_tree(shared)
    for root, dirs, files in os.walk(shared):
        for n in dirs + files:
            os.chown(os.path.join(root, n), 65534, 65534, follow_symlinks=False)
    os.chmod(src + b"/secret", 0)
    os.chmod(src + b"/private", 0)
    os.chmod(shared, 0o777)

    def run(fn: Callable[..., Any], dst: bytes) -> Any:
        def go() -> Any:
            try:
                fn(src, dst)
            except shutil.Error as e:
                return sorted(e.args[0])
            return None

        return as_user(go, 65534, 65534)

    want = run(shutil.copytree, shared + b"/a")
    got = run(uringsync.copytree, shared + b"/b")
    assert [t[0] for t in want] == [src + b"/private", src + b"/secret"]
    assert got == [(s, d.replace(b"/a/", b"/b/"), r) for s, d, r in want]
    assert_same_tree(shared + b"/a", shared + b"/b", fields=FIELDS)


def test_destination_inside_source(tree: bytes, tmp: bytes) -> None:
    """shutil lists SRC before it makes DST: DST's new directories stay out."""
    os.mkdir(tmp + b"/other")
    other = make_tree(tmp + b"/other")
    want = shutil.copytree(tree + b"/sub", tree + b"/sub/v/1.0")
    got = uringsync.copytree(other + b"/sub", other + b"/sub/v/1.0")
    assert_same_tree(tree + b"/sub", other + b"/sub", fields=("type", "mode", "sha256"))
    assert sorted(os.listdir(got)) == sorted(os.listdir(want)) == [b"a.tmp", b"deeper", b"hardlink"]


def test_custom_copy_function_is_called(tree: bytes, tmp: bytes) -> None:
    calls: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
    for fn, key in ((shutil.copytree, "a"), (uringsync.copytree, "b")):
        fn(
            os.fsdecode(tree),
            os.fsdecode(tmp) + "/" + key,
            copy_function=lambda s, d, k=key: calls[k].append((s, d)),  # type: ignore[misc]
            ignore=shutil.ignore_patterns("dir-link"),
        )
    assert len(calls["a"]) == len(calls["b"]) > 5
    for fn in (shutil.copy2, uringsync.copy2):  # the engine's own
        uringsync.copytree(tree, tmp + b"/c" + str(id(fn)).encode(), copy_function=fn)


# -- the single-file helpers ------------------------------------------------


@pytest.fixture(params=["engine", "where-worth-it"])
def engine_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each single-file test twice: every plain file on the engine, then as
    shipped (the engine for sparse files and btrfs/XFS, shutil's own else)."""
    from uringsync import shutilapi

    monkeypatch.setattr(shutilapi, "_ENGINE_ALWAYS", request.param == "engine")
    return str(request.param)


def test_copy2_keeps_holes(tmp: bytes, engine_path: str) -> None:
    """A sparse file goes through the engine: the same data, the holes kept."""
    with open(tmp + b"/sparse", "wb") as f:
        f.truncate(64 << 20)
        f.seek(1 << 20)
        f.write(b"data in the middle")
    os.utime(tmp + b"/sparse", ns=(10**18, 10**18 + 7))
    shutil.copy2(tmp + b"/sparse", tmp + b"/by-shutil")
    assert uringsync.copy2(tmp + b"/sparse", tmp + b"/by-uringsync") == tmp + b"/by-uringsync"
    a, b = snapshot(tmp + b"/by-shutil")[b""], snapshot(tmp + b"/by-uringsync")[b""]
    assert a._replace(atime_ns=0) == b._replace(atime_ns=0)
    assert os.stat(tmp + b"/by-uringsync").st_blocks < os.stat(tmp + b"/by-shutil").st_blocks


def test_copy2_like_shutil(tree: bytes, tmp: bytes, engine_path: str) -> None:
    for name in (b"/a", b"/b"):
        os.mkdir(tmp + name)
    for f in (b"plain", b"exec", b"setuid", b"big", b"caf\xe9 \n name", b"rel-link"):
        assert shutil.copy2(tree + b"/" + f, tmp + b"/a") == tmp + b"/a/" + f
        assert uringsync.copy2(tree + b"/" + f, tmp + b"/b") == tmp + b"/b/" + f
    want = shutil.copy2(tree + b"/plain", tmp + b"/a/renamed", follow_symlinks=False)
    got = uringsync.copy2(tree + b"/plain", tmp + b"/b/renamed", follow_symlinks=False)
    assert (want, got) == (tmp + b"/a/renamed", tmp + b"/b/renamed")
    uringsync.copy2(tree + b"/rel-link", tmp + b"/b/link2", follow_symlinks=False)
    shutil.copy2(tree + b"/rel-link", tmp + b"/a/link2", follow_symlinks=False)
    assert_same_tree(tmp + b"/a", tmp + b"/b", fields=FIELDS, exclude=lambda p: p == b"")
    assert_same_meta(tmp + b"/a", tmp + b"/b")


def test_copyfile_and_copy_like_shutil(tree: bytes, tmp: bytes, engine_path: str) -> None:
    from uringsync import shutilapi

    for name in (b"/a", b"/b"):
        os.mkdir(tmp + name)
    for f in (b"exec", b"secret"):
        shutil.copyfile(tree + b"/" + f, tmp + b"/a/" + f)
        uringsync.copyfile(tree + b"/" + f, tmp + b"/b/" + f)
        shutil.copy(tree + b"/" + f, tmp + b"/a/" + f + b".copy")
        shutilapi.copy(tree + b"/" + f, tmp + b"/b/" + f + b".copy")
    fields = ("type", "mode", "size", "sha256")
    assert_same_tree(tmp + b"/a", tmp + b"/b", fields=fields, exclude=lambda p: p == b"")
    assert stat.S_IMODE(os.stat(tmp + b"/b/exec").st_mode) == 0o644  # copyfile: 0o666 & ~umask


def test_single_file_errors_like_shutil(tree: bytes, tmp: bytes, engine_path: str) -> None:
    os.mkfifo(tree + b"/pipe")
    cases = [
        (tree + b"/nope", tmp + b"/x"),  # FileNotFoundError
        (tree + b"/sub", tmp + b"/x"),  # IsADirectoryError
        (tree + b"/plain", tree + b"/plain"),  # SameFileError
        (tree + b"/plain", tree + b"/sub/hardlink"),  # SameFileError
        (tree + b"/pipe", tmp + b"/x"),  # SpecialFileError
        (tree + b"/plain", tmp + b"/no/dir/x"),  # FileNotFoundError on DST
    ]
    for src, dst in cases:
        for std, ours in ((shutil.copy2, uringsync.copy2), (shutil.copyfile, uringsync.copyfile)):
            with pytest.raises(OSError) as want:
                std(src, dst)
            with pytest.raises(OSError) as got:
                ours(src, dst)
            assert type(got.value) is type(want.value)
            assert str(got.value) == str(want.value)
    assert not os.path.lexists(tmp + b"/x")


# -- CPython's own tests ----------------------------------------------------

try:
    import test.test_shutil as cpython_tests
except ImportError:  # a Python built without its test package
    cpython_tests = None  # type: ignore[assignment]

# those that test how shutil itself is made, not what it does
_INTERNALS = {
    "test_copytree_winerror": "mocks os.chmod and expects copystat's error; "
    "the engine sets modes with fchmod in C, not os.chmod",
}


def _cpython_names(case: str, prefixes: tuple[str, ...]) -> list[str]:
    if cpython_tests is None:
        return []
    loader = unittest.TestLoader()
    return [
        n for n in loader.getTestCaseNames(getattr(cpython_tests, case)) if n.startswith(prefixes)
    ]


def _run_cpython(case: str, name: str) -> None:
    assert cpython_tests is not None
    suite = unittest.TestSuite([getattr(cpython_tests, case)(name)])
    out = io.StringIO()
    res = unittest.TextTestRunner(stream=out, verbosity=2).run(suite)
    assert res.wasSuccessful() and not res.skipped, out.getvalue()


@pytest.mark.skipif(cpython_tests is None, reason="no test.test_shutil in this Python")
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=_INTERNALS[n], strict=True))
        if n in _INTERNALS
        else n
        for n in _cpython_names("TestCopyTree", ("test_",))
    ],
)
def test_cpython_copytree(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """test.test_shutil.TestCopyTree with shutil.copytree = uringsync.copytree."""
    monkeypatch.chdir(tmp_path)  # TESTFN is relative to the working directory
    monkeypatch.setattr(shutil, "copytree", uringsync.copytree)
    _run_cpython("TestCopyTree", name)


@pytest.mark.skipif(cpython_tests is None, reason="no test.test_shutil in this Python")
@pytest.mark.parametrize(
    "name",
    _cpython_names("TestCopy", ("test_copy2", "test_copy_", "test_copyfile", "test_dont_copy")),
)
def test_cpython_copy2(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """test.test_shutil.TestCopy's copy, copy2 and copyfile tests on ours,
    every plain file on the engine."""
    from uringsync import shutilapi

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutilapi, "_ENGINE_ALWAYS", True)
    monkeypatch.setattr(shutil, "copy2", shutilapi.copy2)
    monkeypatch.setattr(shutil, "copy", shutilapi.copy)
    monkeypatch.setattr(shutil, "copyfile", shutilapi.copyfile)
    _run_cpython("TestCopy", name)
