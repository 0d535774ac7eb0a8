"""The copy under pressure on its own bookkeeping: a low open-file limit
(directory fds are evicted and re-opened) and more jobs than a batch holds
(names, stats and hard-link groups must outlive a flush)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import uringsync
from tests.support.base import root_only
from tests.support.cli import check_cli, run_cli
from tests.support.compare import assert_same_tree, rsync_clean
from tests.support.trees import rand_bytes, set_tree_times, write_file

# ------------------------------------------------------------- fd limits


def _many_files_tree(root: bytes) -> None:
    os.mkdir(root)
    for d in range(50):
        dp = root + b"/d%02d" % d
        os.mkdir(dp)
        for i in range(40):
            n = (d * 40 + i) * 7 % 9000
            write_file(dp + b"/f%02d" % i, rand_bytes(n, d * 1000 + i), 0o644 if i % 3 else 0o600)
        os.symlink(b"f00", dp + b"/link")
    p = root + b"/chain"
    for lvl in range(40):
        os.mkdir(p)
        write_file(p + b"/at%02d" % lvl, rand_bytes(lvl * 100, lvl))
        p += b"/c%02d" % lvl
    os.mkdir(p)
    write_file(p + b"/bottom", rand_bytes(140_000, "bottom"))
    set_tree_times(root, seed=11, keep_mtime=False)


@root_only
@pytest.mark.parametrize("qd", [None, b"512"])
def test_ulimit_nofile_64(tmp: bytes, qd: bytes | None) -> None:
    src = tmp + b"/src"
    _many_files_tree(src)
    extra = [b"--queue-depth", qd] if qd else []
    rc, _out, err = run_cli(b"cp", b"-a", *extra, src, tmp + b"/dst", nofile=64)
    assert rc == 0, err
    assert err == b""
    assert_same_tree(src, tmp + b"/dst")
    rsync_clean(src, tmp + b"/dst")


@root_only
def test_ulimit_nofile_64_with_existing_copy(tmp: bytes) -> None:
    """A re-run over a complete copy (every open hits EEXIST) within 64 fds."""
    src = tmp + b"/src"
    _many_files_tree(src)
    os.mkdir(tmp + b"/out")
    check_cli(b"cp", b"-a", src, tmp + b"/out")
    rc, _out, err = run_cli(b"cp", b"-a", src, tmp + b"/out", nofile=64)
    assert rc == 0, err
    assert_same_tree(src, tmp + b"/out/src")


# ------------------------------------- full batches and a tight fd limit


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
