"""The source changing under the copy: files that grow, shrink, are replaced,
vanish or are renamed between the scan and the copy; each case once lost or
mixed data silently, or must be reported as cp reports it.  Races are made
deterministic with the ``scanned`` progress event, which fires after a
directory was listed and stat'ed and before its files are copied."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

import uringsync
from tests.support.base import root_only
from tests.support.compare import assert_same_tree, sha256_file
from tests.support.trees import rand_bytes, set_tree_times, write_file

# ------------------------------------------------------------ helpers


def on_scan(target: Path, action):  # type: ignore[no-untyped-def]
    """A progress callback running ``action`` once, when ``target`` was scanned."""
    done = []

    def cb(ev: uringsync.Event) -> None:
        if ev.kind == "scanned" and ev.src_dir == os.fsencode(target) and not done:
            done.append(1)
            action()

    return cb


# ------------------------------------------------- the source changes


@pytest.mark.parametrize("old_size", [131072, 262144, 102400])
def test_file_that_grew_after_the_scan_is_copied_whole(tmp_path: Path, old_size: int) -> None:
    """A read ending exactly at the scanned size used to end the copy: a file
    whose old size was a multiple of the 128 KiB buffer lost what it gained."""
    src = tmp_path / "src"
    src.mkdir()
    f = src / "f"
    f.write_bytes(b"o" * old_size)

    def grow() -> None:
        with open(f, "ab") as fh:
            fh.write(b"n" * 5000)

    res = uringsync.copy([src], tmp_path / "dst", archive=True, progress=on_scan(src, grow))
    assert res.exit_code == 0, res.errors
    out = tmp_path / "dst" / "f"
    assert out.stat().st_size == old_size + 5000
    assert sha256_file(out) == sha256_file(f)
    assert out.stat().st_mtime_ns == f.stat().st_mtime_ns  # the times of what was copied


def test_sparse_file_that_shrank_is_not_padded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    f = src / "sparse"
    with open(f, "wb") as fh:
        fh.truncate(10 << 20)
        fh.write(b"head")

    res = uringsync.copy(
        [src], tmp_path / "dst", archive=True, progress=on_scan(src, lambda: os.truncate(f, 65536))
    )
    assert res.exit_code == 0, res.errors
    out = tmp_path / "dst" / "sparse"
    assert out.stat().st_size == 65536
    assert sha256_file(out) == sha256_file(f)


def test_file_replaced_after_the_scan_is_skipped_not_mixed(tmp_path: Path) -> None:
    """An editor-style save (rename over) between scan and copy: the copy must
    not be the new content with the old file's times; cp skips it too."""
    src = tmp_path / "src"
    src.mkdir()
    f = src / "f"
    f.write_bytes(b"O" * 131072)
    os.utime(f, (1e9, 1e9))
    (src / "other").write_bytes(b"fine")

    def replace() -> None:
        (src / "f.new").write_bytes(b"N" * 300000)
        os.rename(src / "f.new", f)

    res = uringsync.copy([src], tmp_path / "dst", archive=True, progress=on_scan(src, replace))
    assert res.exit_code == 23
    [err] = res.errors
    assert err.op == "src_changed" and "replaced while being copied" in err.message
    assert err.path == os.fsencode(f)
    assert not (tmp_path / "dst" / "f").exists()
    assert (tmp_path / "dst" / "other").read_bytes() == b"fine"


def test_source_dir_renamed_while_its_hard_link_is_pending(tmp_path: Path) -> None:
    """A hard link into a finished directory re-opens only its destination:
    the source directory renamed meanwhile used to abort the whole copy.
    Whichever of A and B/C is walked first holds the copy.  B/C is renamed
    once both have been listed (directories are listed in groups, so a
    rename before B/C is listed would make it vanish: a different case); the
    padding makes batches flush and directories close in between, so the
    link re-opens its directory by name."""
    src = tmp_path / "src"
    (src / "A").mkdir(parents=True)
    (src / "B" / "C").mkdir(parents=True)
    (src / "A" / "x").write_bytes(b"data")
    os.link(src / "A" / "x", src / "B" / "C" / "y")
    for dn in "DEFGHIJK":  # enough files to flush batches between the two
        (src / "B" / dn).mkdir()
        for i in range(1100):
            (src / "B" / dn / f"f{i}").touch()

    listed: set[bytes] = set()
    want = {os.fsencode(src / "A"), os.fsencode(src / "B" / "C")}

    def rename_when_both_listed(ev: uringsync.Event) -> None:
        if ev.kind != "scanned" or listed >= want:
            return
        listed.add(ev.src_dir)
        if listed >= want:
            os.rename(src / "B" / "C", src / "B" / "Cmoved")

    res = uringsync.copy([src], tmp_path / "dst", archive=True, progress=rename_when_both_listed)
    assert res.exit_code == 0, res.errors[:3]
    dst = tmp_path / "dst"
    [y] = [p for p in (dst / "B" / "C" / "y", dst / "B" / "Cmoved" / "y") if p.exists()]
    assert (dst / "A" / "x").stat().st_ino == y.stat().st_ino
    assert y.read_bytes() == b"data"
    assert sum(len(os.listdir(dst / "B" / dn)) for dn in "DEFGHIJK") == 8800


@root_only
def test_vanished_file(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.makedirs(src + b"/sub")
    for n in (b"a", b"b", b"c", b"d"):
        write_file(src + b"/" + n, rand_bytes(50_000, n))
    write_file(src + b"/sub/x", b"x")
    os.symlink(b"a", src + b"/lnk")
    set_tree_times(src)
    deleted: list[bytes] = []

    def progress(ev: Any) -> None:
        if ev.kind == "scanned" and ev.src_dir == src and not deleted:
            os.unlink(src + b"/c")
            os.unlink(src + b"/lnk")
            deleted.append(b"c")

    dst = tmp + b"/dst"
    res = uringsync.copy([src], dst, archive=True, progress=progress)
    assert deleted, "no 'scanned' event for the source directory"
    assert res.exit_code == 24, res.errors
    assert len(res.errors) == 2, res.errors
    for e in res.errors:
        assert "vanished" in e.message
        assert e.errno == errno.ENOENT
        assert os.path.basename(e.path) in (b"c", b"lnk")
    assert not os.path.lexists(dst + b"/c")
    assert not os.path.lexists(dst + b"/lnk")
    assert_same_tree(src, dst, exclude=lambda p: p == b"")
    assert res.files == 4


@root_only
def test_vanished_directory(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.makedirs(src + b"/gone/inner")
    write_file(src + b"/gone/inner/f", b"f")
    write_file(src + b"/keep", b"k")
    set_tree_times(src)
    deleted = []

    def progress(ev: Any) -> None:
        if ev.kind == "scanned" and ev.src_dir == src and not deleted:
            import shutil

            shutil.rmtree(src + b"/gone")
            deleted.append(1)

    res = uringsync.copy([src], tmp + b"/dst", archive=True, progress=progress)
    assert deleted
    assert res.exit_code == 24, res.errors
    assert res.errors and all("vanished" in e.message for e in res.errors)
    assert os.path.exists(tmp + b"/dst/keep")


@root_only
def test_vanished_exit_code_cli_like(tmp: bytes) -> None:
    """Vanished files are reported through on_error/CLI formatting as one line each."""
    src = tmp + b"/src"
    os.mkdir(src)
    write_file(src + b"/a", b"a")
    write_file(src + b"/b", b"b")
    set_tree_times(src)
    seen: list[Any] = []

    def progress(ev: Any) -> None:
        if ev.kind == "scanned" and ev.src_dir == src and not seen:
            os.unlink(src + b"/b")
            seen.append(ev)

    res = uringsync.copy([src], tmp + b"/dst", archive=True, progress=progress)
    assert res.exit_code == 24
    (e,) = res.errors
    assert isinstance(e, uringsync.FileError)
    assert e.path.endswith(b"/b")
    assert "\n" not in e.message
    assert "'" in e.message


def test_symlink_replaced_by_a_file_after_the_scan(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.symlink("target", src / "l")
    (src / "ok").write_bytes(b"ok")

    def replace() -> None:
        os.unlink(src / "l")
        (src / "l").write_bytes(b"now a file")

    def cb(ev: uringsync.Event) -> None:
        if ev.kind == "scanned" and ev.src_dir == os.fsencode(src):
            replace()

    res = uringsync.copy([src], tmp_path / "dst", archive=True, progress=cb)
    assert res.exit_code == 23
    [e] = res.errors
    assert (e.op, e.errno) == ("readlink", 22)  # EINVAL: not a symlink any more
    assert e.message.startswith(f"cannot read symbolic link '{src}/l'")
    assert not os.path.lexists(tmp_path / "dst" / "l")
    assert (tmp_path / "dst" / "ok").read_bytes() == b"ok"
