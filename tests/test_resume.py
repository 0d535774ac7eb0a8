"""Resume of big files (sync): a big file split into ranges keeps its
temporary and a record of the ranges that are on disk when its run is
killed (SIGKILL of every process), stopped (SIGINT) or runs out of space;
the next sync of the unchanged source writes only the ranges not recorded,
and starts over when the source changed.

The sync runs in a process of its own (tests/support/resume_run.py: sync -a
with 1 MiB ranges), killed at chosen points: by the test once the record
shows 70 % done, or by strace at a chosen syscall (``-e inject=...:signal=KILL``):
the record's write (the range is written and flushed, not yet recorded),
the first record, the rename into place.  The result is compared with the
source byte for byte and with rsync -a's copy stat for stat."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.base import REPO_DIR, MiB, p, root_only
from tests.support.compare import assert_same_tree
from tests.support.synctrees import temp_names
from tests.support.system import takes_o_direct
from tests.support.trees import rand_bytes, set_tree_times, write_file

STRACE = shutil.which("strace")
RANGE = 1 * MiB
SIZE = 24 * MiB + 12345  # an unaligned tail after the ranges
NRANGES = -(-SIZE // RANGE)


def body_end(dst: bytes, size: int = SIZE) -> int:
    """Where the ranges end: sync writes them O_DIRECT where DST's file
    system takes it, and then the unaligned tail is the finish's, not a
    range's."""
    if not takes_o_direct(os.path.dirname(dst.rstrip(b"/"))):  # beside DST
        return size
    return size - size % 4096


def range_len(k: int, end: int) -> int:
    return min(RANGE, end - k * RANGE)


REC_HEAD = 4096  # csrc/resume.c: the range bytes start here
RUNNER = str(Path(__file__).parent / "support" / "resume_run.py")
pytestmark = root_only  # sync -a keeps owners


def make_src(tmp: bytes) -> bytes:
    src = p(tmp, b"src")
    os.makedirs(p(src, b"d"))
    write_file(p(src, b"d", b"big"), rand_bytes(SIZE, "big"), 0o640)
    write_file(p(src, b"small"), b"small")
    # past mtimes: a directory synced within the second it was changed
    # keeps each tool's own time (rsync leaves a same-second mtime alone)
    set_tree_times(src, keep_mtime=False)
    return src


def past_mtime(path: bytes) -> None:
    """A directory just changed gets a time in the past (see make_src)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, 1_500_000_000 * 10**9))


def names(dst: bytes) -> tuple[bytes, bytes]:
    """The big file's temporary and record."""
    d = p(dst, b"d")
    return p(d, b".big.uringsync-resume"), p(d, b".big.uringsync-record")


def argv(src: bytes, dst: bytes, out: bytes, jobs: int = 2, engine: str = "io_uring") -> list[str]:
    """The runner's command line: sync SRC/ into DST, its result in OUT."""
    args = [src, dst, str(jobs).encode(), engine.encode(), str(RANGE).encode(), out]
    return [sys.executable, RUNNER, *map(os.fsdecode, args)]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO_DIR), e.get("PYTHONPATH", "")])
    return e


def run(
    src: bytes,
    dst: bytes,
    tmp: bytes,
    jobs: int = 2,
    engine: str = "io_uring",
    pre: tuple[str, ...] = (),
) -> dict[str, object] | None:
    """One sync to its end (or its death): its OUT object, None when killed."""
    out = p(tmp, b"out.json")
    if os.path.exists(out):
        os.unlink(out)
    cmd = [*pre, *argv(src, dst, out, jobs, engine)]
    subprocess.run(cmd, env=env(), check=False, capture_output=True)
    if not os.path.exists(out):
        return None
    with open(out) as f:
        res: dict[str, object] = json.load(f)
    return res


def recorded(rec: bytes) -> set[int]:
    with open(rec, "rb") as f:
        f.seek(REC_HEAD)
        done = f.read()
    assert len(done) == NRANGES
    return {k for k, v in enumerate(done) if v}


def written(tmp_file: bytes) -> set[int]:
    """The ranges of the temporary that hold the source's data (random: an
    unwritten range reads as zeros and cannot match)."""
    data = rand_bytes(SIZE, "big")
    with open(tmp_file, "rb") as f:
        have = f.read()
    return {
        k
        for k in range(NRANGES)
        if have[k * RANGE : (k + 1) * RANGE] == data[k * RANGE : (k + 1) * RANGE]
    }


def killed_at(src: bytes, dst: bytes, tmp: bytes, share: float, sig: int = signal.SIGKILL) -> int:
    """Start a sync and send ``sig`` to all its processes once ``share`` of
    the ranges are recorded; returns its exit status."""
    _, rec = names(dst)
    out = p(tmp, b"out.json")
    proc = subprocess.Popen(
        argv(src, dst, out), env=env(), start_new_session=True, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if len(recorded(rec)) >= share * NRANGES:
                    break
            except (FileNotFoundError, AssertionError):  # not made yet / header only
                pass
            assert proc.poll() is None, "the sync ended before it could be interrupted"
            time.sleep(0.001)
        os.killpg(proc.pid, sig)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def reference(src: bytes, tmp: bytes) -> bytes:
    ref = p(tmp, b"ref")
    subprocess.run(["rsync", "-a", src + b"/", ref], check=True)
    return ref


def check_done(src: bytes, dst: bytes, tmp: bytes) -> None:
    """DST is what rsync -a makes of SRC, and no temporary is left."""
    assert temp_names(dst) == []
    assert_same_tree(reference(src, tmp), dst, atime=False)
    with open(p(dst, b"d", b"big"), "rb") as f:
        assert f.read() == rand_bytes(SIZE, "big")


def resumed_run(src: bytes, dst: bytes, tmp: bytes, before: set[int], jobs: int = 2) -> None:
    """The next sync takes the record up and writes exactly the ranges it
    did not have."""
    res = run(src, dst, tmp, jobs)
    assert res is not None
    assert res["exit"] == 0, res
    assert res["resumed"] is True
    todo = set(range(NRANGES)) - before
    end = body_end(dst)
    assert res["range_bytes"] == sum(range_len(k, end) for k in todo)
    check_done(src, dst, tmp)


# ------------------------------------------------------------------ kill -9


@pytest.mark.parametrize("engine", ["io_uring", "threads"])
def test_killed_at_70_percent_writes_only_the_rest(tmp: bytes, engine: str) -> None:
    src, dst = make_src(tmp), p(tmp, b"dst")
    status = killed_at(src, dst, tmp, 0.7)
    assert status == -signal.SIGKILL
    tmp_file, rec = names(dst)
    done = recorded(rec)
    assert len(done) >= 0.7 * NRANGES
    # every recorded range is on disk; what was written beyond the record
    # is at most the range each of the 2 workers had in hand
    on_disk = written(tmp_file)
    assert done <= on_disk
    assert len(on_disk - done) <= 2
    workers = 2
    res = run(src, dst, tmp, workers, engine)
    assert res is not None and res["exit"] == 0, res
    assert res["resumed"] is True
    end = body_end(dst)
    rest = end - sum(range_len(k, end) for k in on_disk)
    assert int(res["range_bytes"]) <= rest + workers * RANGE  # type: ignore[call-overload]
    assert int(res["range_bytes"]) == end - sum(  # type: ignore[call-overload]
        range_len(k, end) for k in done
    )
    assert any("resuming" in line for line in res["info"])  # type: ignore[attr-defined]
    check_done(src, dst, tmp)


strace_only = pytest.mark.skipif(
    STRACE is None, reason="strace (Debian's strace) kills at a syscall"
)


def strace_kill(call: str, when: str) -> tuple[str, ...]:
    """strace in front of a command: SIGKILL to the process making the
    ``when``-th ``call`` (counted per process; "N+": that one and later)."""
    assert STRACE is not None
    return (STRACE, "-f", "-qq", "-o", "/dev/null", "-e", f"inject={call}:signal=KILL:when={when}")


@strace_only
def test_killed_between_a_range_write_and_its_record(tmp: bytes) -> None:
    """The one worker is killed as it records its third range: that range
    is on disk, flushed, and not recorded; the walker, left alone, goes on
    with the ranges itself until it is killed at its own third record."""
    src, dst = make_src(tmp), p(tmp, b"dst")
    assert run(src, dst, tmp, 1, pre=strace_kill("pwritev2", "3+")) is None
    tmp_file, rec = names(dst)
    done = recorded(rec)
    assert 2 <= len(done) < NRANGES
    assert written(tmp_file) - done, "a range written but not recorded"
    resumed_run(src, dst, tmp, done)


@strace_only
def test_killed_before_any_range_is_recorded(tmp: bytes) -> None:
    src, dst = make_src(tmp), p(tmp, b"dst")
    assert run(src, dst, tmp, 1, pre=strace_kill("pwritev2", "1+")) is None
    _, rec = names(dst)
    assert recorded(rec) == set()
    resumed_run(src, dst, tmp, set())


@strace_only
def test_killed_before_the_rename_into_place(tmp: bytes) -> None:
    """Every range recorded, the file not yet renamed: the next run writes
    no range, only the tail and the metadata."""
    src, dst = make_src(tmp), p(tmp, b"dst")
    assert run(src, dst, tmp, 2, pre=strace_kill("renameat,renameat2", "1+")) is None
    _, rec = names(dst)
    assert recorded(rec) == set(range(NRANGES))
    assert not os.path.exists(p(dst, b"d", b"big"))
    resumed_run(src, dst, tmp, set(range(NRANGES)))


# ------------------------------------------------------- SIGINT, full disk


def test_stopped_by_sigint_keeps_the_ranges_done(tmp: bytes) -> None:
    src, dst = make_src(tmp), p(tmp, b"dst")
    killed_at(src, dst, tmp, 0.3, signal.SIGINT)
    with open(p(tmp, b"out.json")) as f:
        res = json.load(f)
    assert res["exit"] == 20
    assert any("keeping the partial copy of" in line for line in res["info"])
    assert not os.path.exists(p(dst, b"d", b"big"))
    _, rec = names(dst)
    done = recorded(rec)
    assert done
    resumed_run(src, dst, tmp, done)


@pytest.fixture
def small_fs(tmp: bytes) -> object:
    """A tmpfs too small for the big file (real ENOSPC), unmounted after."""
    mnt = p(tmp, b"mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


def test_a_full_disk_keeps_the_ranges_done(tmp: bytes, small_fs: bytes) -> None:
    src, dst = make_src(tmp), p(small_fs, b"dst")
    res = run(src, dst, tmp)
    assert res is not None
    assert res["exit"] == 23
    errs = res["errors"]
    assert isinstance(errs, list)
    assert [e[:2] for e in errs] == [["write", 28]]  # ENOSPC, once, for the big file
    assert errs[0][2] == os.fsdecode(p(dst, b"d", b"big"))
    assert any("keeping the partial copy of" in line for line in res["info"])  # type: ignore[attr-defined]
    _, rec = names(dst)
    done = recorded(rec)
    assert 0 < len(done) < NRANGES
    subprocess.run(["mount", "-o", "remount,size=80m", small_fs], check=True)
    resumed_run(src, dst, tmp, done)


# ------------------------------------------------- a changed source, names


@pytest.mark.parametrize("change", ["mtime", "ctime", "size"])
def test_a_changed_source_starts_over(tmp: bytes, change: str) -> None:
    src, dst = make_src(tmp), p(tmp, b"dst")
    killed_at(src, dst, tmp, 0.5)
    big = p(src, b"d", b"big")
    st = os.stat(big)
    if change == "mtime":
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    elif change == "ctime":
        os.chmod(big, 0o600)
        os.chmod(big, st.st_mode & 0o7777)  # all as before but the ctime
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        with open(big, "r+b") as f:
            f.truncate(SIZE - 1)
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = run(src, dst, tmp)
    assert res is not None and res["exit"] == 0, res
    assert res["resumed"] is False
    size = os.stat(big).st_size
    assert res["range_bytes"] == body_end(dst, size)
    assert temp_names(dst) == []
    assert_same_tree(reference(src, tmp), dst, atime=False)


def test_a_record_of_another_file_is_not_taken_up(tmp: bytes) -> None:
    """A record and temporary whose header names another source are removed
    and the copy starts over (here: a record made for a file since replaced
    by another of the same name, size and times)."""
    src, dst = make_src(tmp), p(tmp, b"dst")
    killed_at(src, dst, tmp, 0.5)
    big = p(src, b"d", b"big")
    st = os.stat(big)
    os.rename(big, big + b".old")
    shutil.copyfile(big + b".old", big)
    os.unlink(big + b".old")
    os.chmod(big, st.st_mode & 0o7777)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(big).st_ino != st.st_ino
    past_mtime(p(src, b"d"))
    res = run(src, dst, tmp)
    assert res is not None and res["exit"] == 0 and res["resumed"] is False, res
    assert res["range_bytes"] == body_end(dst)
    check_done(src, dst, tmp)


def test_a_symlink_planted_as_the_record_is_not_followed(tmp: bytes) -> None:
    src, dst = make_src(tmp), p(tmp, b"dst")
    outside = p(tmp, b"outside")
    write_file(outside, b"keep me")
    os.makedirs(p(dst, b"d"))
    tmp_file, rec = names(dst)
    os.symlink(outside, rec)
    os.symlink(outside, tmp_file)
    res = run(src, dst, tmp)
    assert res is not None and res["exit"] == 0, res
    with open(outside, "rb") as f:
        assert f.read() == b"keep me"
    check_done(src, dst, tmp)


def test_names_no_copy_takes_up_are_removed(tmp: bytes) -> None:
    """An interrupted copy's temporary and record go with the next sync of
    their directory when the file is not copied again (here: it is gone from
    the source), as rsync's stale temporaries do; -n leaves them."""
    src, dst = make_src(tmp), p(tmp, b"dst")
    killed_at(src, dst, tmp, 0.5)
    os.unlink(p(src, b"d", b"big"))
    past_mtime(p(src, b"d"))
    tmp_file, rec = names(dst)
    subprocess.run(
        [sys.executable, "-m", "uringsync", "sync", "-an", src + b"/", dst], env=env(), check=True
    )
    assert os.path.exists(tmp_file) and os.path.exists(rec)
    res = run(src, dst, tmp)
    assert res is not None and res["exit"] == 0, res
    assert temp_names(dst) == []
    assert_same_tree(reference(src, tmp), dst, atime=False)
