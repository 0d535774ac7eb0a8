"""The source changing under the copy, and the walker's own bookkeeping under
pressure (full batches, a tight fd limit): each case once lost or mixed data
silently.  Races are made deterministic with the ``scanned`` progress event,
which fires after a directory was listed and stat'ed and before its files
are copied."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import uringsync
from tests.support.compare import sha256_file

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


# ------------------------------------------ the walker's bookkeeping


def test_more_command_line_files_than_a_batch(tmp_path: Path) -> None:
    """Names and stats of queued jobs were freed when a full batch flushed
    inside the queueing call: one file went missing, silently."""
    src = tmp_path / "src"
    src.mkdir()
    names = []
    for i in range(4200):  # the batch holds 4096 jobs
        p = src / f"file_{i:05d}"
        p.write_bytes(b"%d\n" % i * (1 + i % 7))
        os.utime(p, ns=(1_000_000_000 + i, 1_000_000_000 + i))
        names.append(p)
    dst = tmp_path / "dst"
    dst.mkdir()
    res = uringsync.copy(names, dst, archive=True)
    assert res.exit_code == 0, res.errors[:3]
    assert sorted(os.listdir(dst)) == sorted(p.name for p in names)
    for p in names:
        q = dst / p.name
        assert q.read_bytes() == p.read_bytes() and q.stat().st_mtime_ns == p.stat().st_mtime_ns


def test_many_hard_link_groups_across_full_batches(tmp_path: Path) -> None:
    """Link jobs outliving their group (name freed) and queued across flushes."""
    src = tmp_path / "src"
    for d in "abcde":
        (src / d).mkdir(parents=True)
    for i in range(1000):
        first = src / "a" / f"i{i:04d}"
        first.write_bytes(b"%d" % i)
        for d in "bcde":
            os.link(first, src / d / f"i{i:04d}")
    res = uringsync.copy([src], tmp_path / "dst", archive=True)
    assert res.exit_code == 0, res.errors[:3]
    assert res.links == 4000 and res.files == 1000
    for i in range(1000):
        inos = {os.stat(tmp_path / "dst" / d / f"i{i:04d}").st_ino for d in "abcde"}
        assert len(inos) == 1
        assert (tmp_path / "dst" / "e" / f"i{i:04d}").read_bytes() == b"%d" % i
    assert sorted(os.listdir(tmp_path / "dst" / "e")) == sorted(os.listdir(src / "e"))


def test_hard_link_lands_in_its_own_directory_under_a_tight_fd_limit(tmp_path: Path) -> None:
    """Opening the link's target directory could evict the directory the link
    goes into and reuse its fd number: the link landed elsewhere."""
    src = tmp_path / "src"
    (src / "A").mkdir(parents=True)
    (src / "B" / "C").mkdir(parents=True)
    for i in range(30):
        (src / "B" / f"pad{i:02d}").mkdir()
    (src / "A" / "x").write_bytes(b"data")
    os.link(src / "A" / "x", src / "B" / "C" / "y")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (20, 20))

    r = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "-a", str(src), str(tmp_path / "dst")],
        preexec_fn=limit,
        capture_output=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    dst = tmp_path / "dst"
    assert sorted(os.listdir(dst / "A")) == ["x"]
    assert sorted(os.listdir(dst / "B" / "C")) == ["y"]
    assert (dst / "A" / "x").stat().st_ino == (dst / "B" / "C" / "y").stat().st_ino
