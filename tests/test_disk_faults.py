"""Real I/O errors from the kernel: a source whose reads fail, a destination
whose writes fail, one that turns read-only mid-run, and errors that only
write-back sees (docs/faults.md).

The faults come from a disk with bad blocks (tests/support/faultdisk.py: a
FUSE server behind a loop device under ext4), so uringsync meets EIO and
EROFS exactly where it would on a failing disk.  For each: the failure is
reported with path, step and reason, the other files are copied, the exit
code is 23, and no destination file is left looking complete (full size with
wrong content, or the source's mtime on a partial copy).  GNU cp -a runs on
the same faults for comparison; its outcome is asserted too, as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import uringsync
from tests.support.base import KiB, MiB, p, root_only
from tests.support.cli import assert_error_lines, run_cli, run_cp
from tests.support.faultdisk import POISON, FaultDisk, drop_caches, fault_disk
from tests.support.trees import rand_bytes, write_file
from uringsync import walker as walker_mod
from uringsync.options import SyncOptions
from uringsync.syncapi import run_sync

# root; every fault is met by both engines (conftest.engine_name)
pytestmark = [root_only, pytest.mark.usefixtures("engine_name")]

OLD_NS = 1_000_000_000 * 10**9 + 123_456_789  # 2001-09-09: the sources' mtime
EIO_TEXT = b"Input/output error"
EROFS_TEXT = b"Read-only file system"
JOBS = [pytest.param("0", id="j0"), pytest.param(None, id="workers")]


def jobs_args(jobs: str | None) -> list[str]:
    return ["-j", jobs] if jobs is not None else []


def make_tree(root: bytes, files: dict[bytes, bytes]) -> None:
    for rel, data in files.items():
        path = p(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_file(path, data)
        os.utime(path, ns=(OLD_NS, OLD_NS))


def source_files(bad: bytes) -> dict[bytes, bytes]:
    """A few files; ``bad`` (1 MiB) gets the fault, in its middle."""
    files = {
        b"a.txt": b"hello\n",
        b"b.bin": rand_bytes(300 * KiB, "b"),
        b"sub/c.bin": rand_bytes(700 * KiB, "c"),
        b"sub/d.txt": b"",
        b"z.bin": rand_bytes(130 * KiB, "z"),
    }
    files[bad] = rand_bytes(MiB, bad)
    return files


def assert_outcome(
    src: bytes, dst: bytes, files: dict[bytes, bytes], bad: set[bytes], absent_ok: bool = False
) -> None:
    """Every good file is copied (content, size, mode, mtime); a bad one is
    gone, or at least does not look complete.  ``absent_ok``: good files may
    be missing too (a destination that went read-only)."""
    for rel, data in files.items():
        path = p(dst, rel)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            assert rel in bad or absent_ok, f"{rel!r} was not copied"
            continue
        with open(path, "rb") as f:
            got = f.read()
        complete = got == data
        if rel in bad or (absent_ok and not complete):
            assert not (st.st_size == len(data) and not complete), (
                f"{rel!r} is full size with wrong content"
            )
            assert not (st.st_mtime_ns == OLD_NS and not complete), (
                f"{rel!r} is partial but has the source's mtime"
            )
            continue
        assert complete, f"{rel!r}: content differs"
        assert st.st_mtime_ns == OLD_NS, f"{rel!r}: mtime not kept"
        assert st.st_mode == os.stat(p(src, rel)).st_mode


def error_for(err: bytes, path: bytes, words: bytes, reason: bytes) -> bytes:
    """The one stderr line about path; it names the step and the reason."""
    lines = [ln for ln in assert_error_lines(err) if path in ln]
    assert lines, f"no error about {path!r}: {err!r}"
    assert words in lines[0] and lines[0].endswith(reason), lines[0]
    return lines[0]


# -------------------------------------------------------- source faults


@pytest.fixture
def src_disk(tmp_path) -> Iterator[FaultDisk]:  # type: ignore[no-untyped-def]
    with fault_disk(tmp_path / "src") as d:
        yield d


def bad_source(d: FaultDisk, files: dict[bytes, bytes], bad: bytes, off: int) -> bytes:
    """The tree on the fault disk; reads of ``bad``'s block at ``off`` fail."""
    src = p(d.mnt, b"src")
    make_tree(src, files)
    d.fail_reads(p(src, bad), off)
    d.remount()  # nothing of it cached: every read goes to the disk
    drop_caches()
    return src


@pytest.mark.parametrize("jobs", JOBS)
def test_source_read_eio_mid_file(src_disk: FaultDisk, tmp: bytes, jobs: str | None) -> None:
    bad = b"sub/bad.bin"
    files = source_files(bad)
    src = bad_source(src_disk, files, bad, 512 * KiB + 8 * KiB)
    dst = p(tmp, b"dst")
    rc, _out, err = run_cli("cp", "-a", *jobs_args(jobs), src, dst)
    assert any(ln.startswith("EIO read") for ln in src_disk.injected())
    assert rc == 23, err
    error_for(err, p(src, bad), b"error reading", EIO_TEXT)
    assert len(assert_error_lines(err)) == 1, err
    assert_outcome(src, dst, files, {bad})
    assert not os.path.exists(p(dst, bad)), "the partial copy was not removed"

    # GNU cp on the same fault: exit 1, the partial file is left (not full
    # size, and without the source's mtime: cp -a sets times only after the data)
    cp_dst = p(tmp, b"cp")
    drop_caches()
    rc, _out, err = run_cp("-a", src, cp_dst)
    assert rc == 1 and b"error reading" in err and EIO_TEXT in err, err
    st = os.stat(p(cp_dst, bad))
    assert st.st_size < MiB and st.st_mtime_ns != OLD_NS
    assert_outcome(src, cp_dst, files, {bad})


def test_verify_reports_a_source_read_error(src_disk: FaultDisk, tmp: bytes) -> None:
    """verify (the scan compares same-size files itself): a read of SRC that
    fails leaves the file to the walker, which reads it again and reports
    the path, the step and the error: exit 23, no difference invented, the
    other files found equal."""
    bad = b"sub/bad.bin"
    files = source_files(bad)
    src = p(src_disk.mnt, b"src")
    make_tree(src, files)
    dst = p(tmp, b"dst")
    rc, _out, err = run_cli("cp", "-a", src, dst)
    assert rc == 0, err
    src_disk.fail_reads(p(src, bad), 512 * KiB)
    src_disk.remount()
    drop_caches()
    rc, out, err = run_cli("verify", src, dst)
    assert any(ln.startswith("EIO read") for ln in src_disk.injected())
    assert rc == 23, err
    error_for(err, p(src, bad), b"read", EIO_TEXT)
    assert len(assert_error_lines(err)) == 1, err
    assert out == b"", out


def split_tuning() -> tuple[dict[bytes, bool], walker_mod.Tuning]:
    """Files of 1 MiB and more split in 256 KiB ranges (the command line
    splits at 64 MiB), and which files were split."""
    split: dict[bytes, bool] = {}

    def on_trace(_w: walker_mod.Walker, ev: walker_mod.Trace) -> None:
        if ev.kind == "big_split":
            split[ev.name] = bool(ev.split)

    return split, walker_mod.Tuning(split_min=MiB, range_size=256 * KiB, on_trace=on_trace)


def assert_one_error(res: uringsync.Result, path: bytes, op: str, reason: str) -> None:
    assert res.exit_code == 23, res.errors
    assert [(e.path, e.op) for e in res.errors] == [(path, op)], res.errors
    assert res.errors[0].message.endswith(reason), res.errors[0]


BIG = 4 * MiB + 3000  # an unaligned tail: with O_DIRECT, copied by the walker at the end


@pytest.mark.parametrize(
    ("direct", "off"),
    [
        pytest.param(False, 2 * MiB + 260 * KiB, id="range"),
        pytest.param(True, 4 * MiB, id="direct-tail"),
    ],
)
def test_source_read_eio_split_big_file(
    src_disk: FaultDisk, tmp: bytes, direct: bool, off: int
) -> None:
    """A big file split into ranges over two workers; the bad block is in
    one range, or in the tail the walker copies after them (O_DIRECT)."""
    bad = b"big.bin"
    files = source_files(b"sub/ok.bin")
    files[bad] = rand_bytes(BIG, "big")
    src = bad_source(src_disk, files, bad, off)
    dst = p(tmp, b"dst")
    split, tuning = split_tuning()
    res = uringsync.copy(src, dst, archive=True, jobs=2, direct=direct, _tuning=tuning)
    assert split.get(bad), f"not split: {split!r}"
    assert res.workers == 2
    assert any(ln.startswith("EIO read") for ln in src_disk.injected())
    assert_one_error(res, p(src, bad), "read", "Input/output error")
    assert_outcome(src, dst, files, {bad})
    assert not os.path.exists(p(dst, bad)), "the partial copy was not removed"


# ------------------------------------------------------ destination faults


def poisoned(n: int, at: int, seed: str) -> bytes:
    """n random bytes with the POISON block at ``at`` (4 KiB aligned)."""
    data = bytearray(rand_bytes(n, seed))
    data[at : at + len(POISON)] = POISON
    return bytes(data)


def dst_files(bad: bytes) -> dict[bytes, bytes]:
    files = source_files(b"sub/fine.bin")
    files[bad] = poisoned(MiB, 512 * KiB, "bad")
    return files


@pytest.mark.parametrize("jobs", JOBS)
def test_destination_write_eio(tmp_path, tmp: bytes, jobs: str | None) -> None:  # type: ignore[no-untyped-def]
    """-o sync: the bad block's write() itself fails."""
    bad = b"sub/bad.bin"
    files = dst_files(bad)
    src = p(tmp, b"src")
    make_tree(src, files)
    with fault_disk(tmp_path / "dst", mount_opts="sync") as d:
        d.fail_writes_of()
        dst = p(d.mnt, b"dst")
        rc, _out, err = run_cli("cp", "-a", *jobs_args(jobs), src, dst)
        assert any(ln.startswith("EIO write") for ln in d.injected())
        assert rc == 23, err
        error_for(err, p(dst, bad), b"error writing", EIO_TEXT)
        assert len(assert_error_lines(err)) == 1, err
        assert not os.path.exists(p(dst, bad)), "the partial copy was not removed"

        # GNU cp: exit 1, and its copy is left, up to the end of the write
        # that failed (whose block never reached the disk)
        cp_dst = p(d.mnt, b"cp")
        rc, _out, err = run_cp("-a", src, cp_dst)
        assert rc == 1 and b"error writing" in err and EIO_TEXT in err, err

        d.clear()
        d.remount()  # what the disk holds, not the page cache
        assert_outcome(src, dst, files, {bad})
        with open(p(cp_dst, bad), "rb") as f:
            cp_data = f.read()
        assert 512 * KiB < len(cp_data) < MiB, len(cp_data)
        assert cp_data != files[bad][: len(cp_data)], "cp's partial copy holds the lost block"
        assert os.stat(p(cp_dst, bad)).st_mtime_ns != OLD_NS


@pytest.mark.parametrize(
    ("direct", "off"),
    [
        pytest.param(False, 2 * MiB, id="range"),
        pytest.param(True, 4 * MiB - 8 * KiB, id="direct"),
    ],
)
def test_destination_write_eio_split_big_file(tmp_path, tmp: bytes, direct: bool, off: int) -> None:  # type: ignore[no-untyped-def]
    bad = b"big.bin"
    files = source_files(b"sub/ok.bin")
    files[bad] = poisoned(BIG, off, "big")
    src = p(tmp, b"src")
    make_tree(src, files)
    with fault_disk(tmp_path / "dst", mount_opts="sync") as d:
        d.fail_writes_of()
        dst = p(d.mnt, b"dst")
        split, tuning = split_tuning()
        res = uringsync.copy(src, dst, archive=True, jobs=2, direct=direct, _tuning=tuning)
        assert split.get(bad), f"not split: {split!r}"
        assert any(ln.startswith("EIO write") for ln in d.injected())
        assert_one_error(res, p(dst, bad), "write", "Input/output error")
        d.clear()
        d.remount()
        assert_outcome(src, dst, files, {bad})
        assert not os.path.exists(p(dst, bad)), "the partial copy was not removed"


@pytest.mark.parametrize("jobs", JOBS)
def test_fsync_catches_what_writeback_loses(tmp_path, tmp: bytes, jobs: str | None) -> None:  # type: ignore[no-untyped-def]
    """Mounted without -o sync, write() only fills the page cache and the
    disk refuses the block at writeback.  Without --fsync the copy ends
    with 0 and the block is lost later; with it, the file is flushed before
    it is complete: reported (step fsync) and removed, the rest kept; the
    syncfs at the end reports the file system's lost write too."""
    bad = b"sub/bad.bin"
    files = dst_files(bad)
    src = p(tmp, b"src")
    make_tree(src, files)
    with fault_disk(tmp_path / "dst") as d:
        d.fail_writes_of()
        rc, _out, err = run_cli("cp", "-a", *jobs_args(jobs), src, p(d.mnt, b"plain"))
        assert rc == 0, err  # the loss is not seen: nothing flushed
        dst = p(d.mnt, b"dst")
        rc, _out, err = run_cli("cp", "-a", "--fsync", *jobs_args(jobs), src, dst)
        assert rc == 23, err
        error_for(err, p(dst, bad), b"cannot flush", EIO_TEXT)
        # and the file system's flush at the end says it lost a write since
        lines = assert_error_lines(err)
        assert len(lines) == 2 and b"cannot flush the file system of" in lines[1], err
        assert not os.path.exists(p(dst, bad)), "the unflushed copy was left"
        d.clear()
        d.remount()  # what the disk holds, not the page cache
        assert_outcome(src, dst, files, {bad})


@pytest.mark.parametrize("jobs", JOBS)
def test_verify_catches_a_disk_that_corrupts_writes(tmp_path, tmp: bytes, jobs: str | None) -> None:  # type: ignore[no-untyped-def]
    """The disk flips a byte of any block holding the poison mark and says
    the write went well.  cp -a: exit 0 and a corrupt copy.  cp -a --verify:
    the data read back from the disk differs from what was read: reported
    (step verify), the file removed, the rest copied."""
    bad = b"sub/bad.bin"
    files = dst_files(bad)
    src = p(tmp, b"src")
    make_tree(src, files)
    with fault_disk(tmp_path / "dst") as d:
        d.corrupt_writes_of()
        plain = p(d.mnt, b"plain")
        rc, _out, err = run_cli("cp", "-a", *jobs_args(jobs), src, plain)
        assert rc == 0, err
        dst = p(d.mnt, b"dst")
        rc, _out, err = run_cli("cp", "-a", "--verify", *jobs_args(jobs), src, dst)
        os.sync()  # the plain copy's pages reach the disk too, before the faults go
        assert sum(ln.startswith("CORRUPT") for ln in d.injected()) >= 2
        assert rc == 23, err
        (line,) = assert_error_lines(err)
        assert p(dst, bad) in line and b"read back from the disk differs" in line, line
        assert not os.path.exists(p(dst, bad)), "the copy that differs was left"
        d.clear()
        d.remount()  # what the disk holds, not the page cache
        assert_outcome(src, dst, files, {bad})
        with open(p(plain, bad), "rb") as f:
            assert f.read() != files[bad], "the disk did not corrupt the plain copy"


@pytest.mark.parametrize("jobs", JOBS)
def test_sync_verify_keeps_the_old_file(tmp_path, tmp: bytes, jobs: str | None) -> None:  # type: ignore[no-untyped-def]
    """sync --verify: a new version that reads back wrong is never renamed
    into place; the old file stays and no temporary is left."""
    bad = b"sub/bad.bin"
    files = dst_files(bad)
    src = p(tmp, b"src")
    make_tree(src, {**files, bad: b"old version"})
    with fault_disk(tmp_path / "dst") as d:
        dst = p(d.mnt, b"dst")
        rc, _out, err = run_cli("sync", "-a", src + b"/", dst)
        assert rc == 0, err
        make_tree(src, files)  # bad.bin's new version holds the poison
        d.corrupt_writes_of()
        rc, _out, err = run_cli("sync", "-a", "--verify", *jobs_args(jobs), src + b"/", dst)
        assert rc == 23, err
        (line,) = assert_error_lines(err)
        assert b"read back from the disk differs" in line, line
        assert sorted(os.listdir(p(dst, b"sub"))) == sorted(
            os.path.basename(n) for n in files if n.startswith(b"sub/")
        )
        with open(p(dst, bad), "rb") as f:
            assert f.read() == b"old version"


@pytest.mark.parametrize("tool", ["cp", "sync"])
def test_verify_per_range_of_a_split_big_file(tmp_path, tmp: bytes, tool: str) -> None:  # type: ignore[no-untyped-def]
    """--verify on a big file split into ranges: each range is hashed as it
    passes and read back from the disk on its own.  The range the disk
    corrupts fails the file: cp removes it; sync keeps its temporary and the
    record of the ranges that did verify, and the next sync (the disk good
    again) writes only the range that failed."""
    bad = b"big.bin"
    files = source_files(b"sub/ok.bin")
    files[bad] = poisoned(BIG, 2 * MiB + 256 * KiB, "big")  # the 10th of 17 ranges
    src = p(tmp, b"src")
    make_tree(src, files)
    with fault_disk(tmp_path / "dst") as d:
        d.corrupt_writes_of()
        dst = p(d.mnt, b"dst")
        split, base = split_tuning()
        written: list[int] = []

        def on_trace(w: walker_mod.Walker, ev: walker_mod.Trace) -> None:
            assert base.on_trace is not None
            base.on_trace(w, ev)
            if ev.kind == "range_done":
                written.append(ev.bytes)

        tuning = walker_mod.Tuning(base.split_min, base.range_size, on_trace)
        so = SyncOptions(perms=True, times=True, owner=True, group=True, verify=True)
        if tool == "cp":
            res = uringsync.copy(src, dst, archive=True, jobs=2, verify=True, _tuning=tuning)
            assert split.get(bad), f"not split: {split!r}"
        else:
            res = run_sync([src + b"/"], dst, so, jobs=2, _tuning=tuning)
        assert any(ln.startswith("CORRUPT") for ln in d.injected())
        assert res.exit_code == 23, res.errors
        assert [(e.path, e.op) for e in res.errors] == [(p(dst, bad), "verify")], res.errors
        assert "read back from the disk differs" in res.errors[0].message
        assert not os.path.exists(p(dst, bad)), "the copy that differs was left"
        d.clear()
        if tool == "sync":
            assert os.path.exists(p(dst, b".big.bin.uringsync-record"))
            written.clear()
            res = run_sync([src + b"/"], dst, so, jobs=2, _tuning=tuning)
            assert res.exit_code == 0, res.errors
            assert written == [256 * KiB], "only the range that failed is written again"
        d.remount()  # what the disk holds, not the page cache
        assert_outcome(src, dst, files, {bad} if tool == "cp" else set())


@pytest.mark.parametrize("side", ["source", "destination"])
def test_eio_through_copy_file_range(tmp_path, side: str) -> None:  # type: ignore[no-untyped-def]
    """The in-kernel copy (copy_range_min=0; source and destination on one
    ext4, as copy_file_range wants) meets the bad block."""
    bad = b"sub/bad.bin"
    files = dst_files(bad)
    with fault_disk(tmp_path / "disk") as d:
        src, dst = p(d.mnt, b"src"), p(d.mnt, b"dst")
        if side == "source":
            bad_source(d, files, bad, 600 * KiB)
            kind = "EIO read"
        else:
            make_tree(src, files)
            d.remount("sync")  # the tree is written; now write() fails itself
            d.fail_writes_of()
            kind = "EIO write"
        res = uringsync.copy(src, dst, archive=True, jobs=0, copy_range_min=0)
        assert any(ln.startswith(kind) for ln in d.injected())
        # one step for both ends: reported with the destination, both named
        assert_one_error(res, p(dst, bad), "copy_file_range", "Input/output error")
        assert p(src, bad).decode() in res.errors[0].message
        d.clear()
        d.remount()
        assert_outcome(src, dst, files, {bad})
        assert not os.path.exists(p(dst, bad)), "the partial copy was not removed"


@pytest.mark.parametrize("jobs", [0, 2])
def test_destination_goes_read_only(tmp_path, tmp: bytes, jobs: int) -> None:  # type: ignore[no-untyped-def]
    """errors=remount-ro, and an ext4 error while the copy runs: from the
    moment the second of four directories is listed, every write fails."""
    files = {
        b"d%d/f%02d" % (i, k): rand_bytes(20 * KiB + k * 777, f"{i}-{k}")
        for i in range(4)
        for k in range(12)
    }
    src = p(tmp, b"src")
    make_tree(src, files)
    with fault_disk(tmp_path / "dst", mount_opts="errors=remount-ro") as d:
        dst = p(d.mnt, b"dst")
        fired: list[bytes] = []

        def progress(ev: uringsync.Event) -> None:
            if ev.kind == "scanned" and ev.src_dir.endswith(b"/d1") and not fired:
                with open(d.sysfs() + "/trigger_fs_error", "w") as f:
                    f.write("1\n")
                fired.append(ev.src_dir)

        res = uringsync.copy(src, dst, archive=True, jobs=jobs, progress=progress)
        assert fired
        assert res.exit_code == 23
        assert res.errors and all(e.errno == 30 for e in res.errors), res.errors
        assert all(e.message.endswith("Read-only file system") for e in res.errors)
        failed = {e.path for e in res.errors}
        # every file of the directories listed after the error failed, or
        # was never reached (its directory could not be made)
        for rel in files:
            if rel.startswith((b"d1/", b"d2/", b"d3/")):
                assert not os.path.exists(p(dst, rel))
        assert any(path.startswith(p(dst, b"d1")) for path in failed), failed
        d.remount("ro")
        assert_outcome(src, dst, files, set(), absent_ok=True)


# ----------------------------------------------------- write-back errors


@pytest.mark.parametrize("tool", ["uringsync", "cp"])
def test_writeback_error_goes_unseen(tmp_path, tmp: bytes, tool: str) -> None:  # type: ignore[no-untyped-def]
    """Without -o sync a bad block fails only at write-back, after close:
    neither cp -a nor uringsync (no fsync yet) sees it; both exit 0 and
    leave a file that looks complete but is not (docs/faults.md)."""
    bad = b"bad.bin"
    files = dst_files(bad)
    src = p(tmp, b"src")
    make_tree(src, files)
    with fault_disk(tmp_path / "dst") as d:
        d.fail_writes_of()
        dst = p(d.mnt, b"dst")
        if tool == "cp":
            rc, _out, err = run_cp("-a", src, dst)
        else:
            rc, _out, err = run_cli("cp", "-a", src, dst)
        assert rc == 0 and err == b"", err
        os.sync()  # write-back: now the disk refuses the block
        assert any(ln.startswith("EIO write") for ln in d.injected())
        d.clear()
        d.remount()
        st = os.stat(p(dst, bad))
        with open(p(dst, bad), "rb") as f:
            data = f.read()
        assert st.st_size == MiB and st.st_mtime_ns == OLD_NS
        assert data != files[bad], "expected the lost block (this is what --fsync is for)"
        files.pop(bad)
        assert_outcome(src, dst, files, set())
