"""`uringsync verify`: the oracle is `rsync -naHAXci --delete SRC/ DST/` (the
same -i lines, for every difference), and `xxh128sum -c` for manifests.  The
destination is read from the device: a block changed on the disk under a
stale page cache is caught, where rsync -c (which reads the cache) misses it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import uringsync
from tests.support.base import root_only
from tests.support.cli import check_cli, run_cli
from tests.support.compare import assert_same_tree
from tests.support.faultdisk import extents
from tests.support.synctrees import (
    RSYNC,
    build,
    fixed_pair,
    full_stat,
    outside_dir,
    rsync_check,
    set_diff,
)
from tests.support.system import loop_fs, mount_ramfs, takes_o_direct, umount
from tests.support.trees import rand_bytes, set_tree_times, write_file
from uringsync import manifest

pytestmark = [pytest.mark.skipif(RSYNC is None, reason="rsync is the oracle")]
XXH128SUM = shutil.which("xxh128sum")


def verify(*args: bytes) -> tuple[int, set[bytes], bytes]:
    rc, out, err = run_cli(b"verify", *args)
    assert b"Traceback" not in err, err
    return rc, set(out.splitlines()), err


def same_content(path: bytes, data: bytes) -> None:
    """Rewrite a file with other bytes of the same size, its mtime kept:
    only a comparison of the data can tell."""
    was = os.stat(path)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns))


@root_only  # the fixed pair has other owners
def test_every_difference_as_rsync(tmp: bytes, engine_name: str) -> None:
    src_t, dst_t = fixed_pair(outside_dir(tmp))
    src = build(tmp + b"/src", src_t)
    dst = build(tmp + b"/dst", dst_t)
    before = full_stat(dst)
    rc, ours, err = verify(src, dst)
    assert full_stat(dst) == before, "verify changed DST"
    theirs = rsync_check(src, dst)
    assert b">fc........ samesize" in theirs  # the one only a content check finds
    assert ours == theirs, set_diff("verify's lines differ from rsync -naHAXci's", ours, theirs)
    assert rc == 1
    assert err.endswith(b"%d differences\n" % len(ours)), err


def test_a_copy_verifies_then_a_change_does_not(tmp: bytes, engine_name: str) -> None:
    src = tmp + b"/src"
    os.makedirs(src + b"/d/e")
    write_file(src + b"/big", rand_bytes(3 * 1024 * 1024 + 17, "big"))
    write_file(src + b"/d/small", b"small")
    write_file(src + b"/d/e/empty", b"")
    os.link(src + b"/big", src + b"/d/big-link")
    os.symlink(b"../big", src + b"/d/lnk")
    os.setxattr(src + b"/d/small", b"user.k", b"v")
    check_cli(b"cp", b"-a", src, tmp + b"/dst")
    dst = tmp + b"/dst"
    assert verify(src, dst) == (0, set(), b"")
    same_content(dst + b"/d/small", b"SMALL")
    os.setxattr(dst + b"/d/e/empty", b"user.x", b"1")
    rc, ours, _ = verify(src, dst)
    assert ours == rsync_check(src, dst) == {b">fc........ d/small", b".f........x d/e/empty"}
    assert rc == 1


def test_what_cannot_be_compared(tmp: bytes) -> None:
    """Operands: two directories that exist; nothing is made."""
    os.mkdir(tmp + b"/src")
    write_file(tmp + b"/file", b"f")
    for args in (
        [tmp + b"/src", tmp + b"/missing"],
        [tmp + b"/missing", tmp + b"/src"],
        [tmp + b"/src", tmp + b"/file"],
        [tmp + b"/src"],
    ):
        rc, out, err = verify(*args)
        assert (rc, out) == (1, set()), args
        assert err.startswith(b"uringsync: "), err
    assert not os.path.exists(tmp + b"/missing")
    write_file(tmp + b"/file2", b"f")
    rc, out, err = verify(tmp + b"/file", tmp + b"/file2")  # two directories only
    assert (rc, out) == (1, set()) and b"not a directory" in err


@root_only  # a loop-mounted ext4
def test_the_disk_is_read_not_the_page_cache(tmp: bytes, engine_name: str) -> None:
    """A block of DST's file changed on the disk under its cached pages:
    rsync -c compares the cache and sees nothing; verify reads the device."""
    with loop_fs("ext4", tmp, size="64M") as mnt:
        src, dst = mnt + b"/src", mnt + b"/dst"
        os.mkdir(src)
        data = rand_bytes(3 * 4096 + 100, "disk")  # the tail ends off a block
        write_file(src + b"/f", data)
        write_file(src + b"/g", b"untouched")
        check_cli(b"cp", b"-a", src, dst)
        m = tmp + b"/manifest"
        assert verify(b"--manifest", m, src, dst) == (0, set(), b"")
        os.sync()
        with open(dst + b"/f", "rb") as fh:
            assert fh.read() == data  # cached
        (_logical, physical, _len), *_ = extents(dst + b"/f")
        with open(tmp + b"/ext4.img", "r+b") as img:
            os.pwrite(img.fileno(), bytes([data[5] ^ 0xFF]), physical + 5)
            os.fsync(img.fileno())
        with open(dst + b"/f", "rb") as fh:
            assert fh.read() == data, "the page cache was not stale: the test shows nothing"
        assert rsync_check(src, dst) == set()  # the trap: rsync reads the cache
        rc, ours, _ = verify(src, dst)
        assert (rc, ours) == (1, {b">fc........ f"})
        assert verify(b"--manifest", m, dst) == (1, {b"f: FAILED"}, b"uringsync: 1 difference\n")


@root_only  # mount
def test_a_file_system_without_o_direct(tmp: bytes, engine_name: str) -> None:
    """ramfs refuses O_DIRECT: the file is flushed and uncached instead."""
    mnt = tmp + b"/ram"
    os.mkdir(mnt)
    reason = mount_ramfs(mnt)
    if reason:
        pytest.skip(reason)
    try:
        src = mnt + b"/src"
        os.mkdir(src)
        write_file(src + b"/f", rand_bytes(200_000, "ramfs"))
        check_cli(b"cp", b"-a", src, mnt + b"/dst")
        assert verify(src, mnt + b"/dst") == (0, set(), b"")
        same_content(mnt + b"/dst/f", b"changed")
        rc, ours, _ = verify(src, mnt + b"/dst")
        assert (rc, ours) == (1, {b">fc........ f"})
    finally:
        umount(mnt)


ODD = [b"plain", b"with space", b"back\\slash", b"new\nline", b"\\lead", b"tab\there", b"\xff\xfe"]


@pytest.mark.skipif(XXH128SUM is None, reason="xxh128sum (Debian's xxhash) checks the manifest")
def test_manifest_round_trip(tmp: bytes, engine_name: str) -> None:
    """verify --manifest writes a line per regular file name (hard links'
    every name, escaped names as sha256sum escapes them); xxh128sum -c in DST
    checks it; verify --manifest FILE DST does too, and finds what changed."""
    src = tmp + b"/src"
    os.makedirs(src + b"/sub")
    for i, n in enumerate(ODD):
        write_file(src + b"/sub/" + n, rand_bytes(1000 * i, n))
    os.link(src + b"/sub/plain", src + b"/linked")
    os.symlink(b"sub/plain", src + b"/symlink")
    check_cli(b"cp", b"-a", src, tmp + b"/dst")
    dst, m = tmp + b"/dst", tmp + b"/m"
    assert verify(b"--manifest", m, src, dst) == (0, set(), b"")
    with open(m, "rb") as f:
        text = f.read()
    got = dict(manifest.parse(text))
    assert sorted(got) == sorted([b"linked", *(b"sub/" + n for n in ODD)])
    assert got[b"linked"] == got[b"sub/plain"]
    # xxh128sum's own digests of the plain names; its -c agrees on every plain line
    plain = [p for p in got if b"\\" not in p and b"\n" not in p]
    out = subprocess.run(
        [XXH128SUM, b"--", *plain], cwd=dst, capture_output=True, check=True
    ).stdout
    theirs = {
        line.split(b"  ", 1)[1]: bytes.fromhex(line[:32].decode()) for line in out.splitlines()
    }
    assert theirs == {p: got[p] for p in plain}
    p = subprocess.run([XXH128SUM, b"-c", m], cwd=dst, capture_output=True, check=False)
    for name in plain:
        assert name + b": OK" in p.stdout.splitlines(), p.stdout
    assert b"FAILED" not in p.stdout
    # escaped names: as GNU sha256sum writes them (the same rule, its own digest)
    for path in got:
        ours_line = manifest.line(path, got[path])
        gnu = subprocess.run([b"sha256sum", b"--", path], cwd=dst, capture_output=True).stdout
        assert gnu.startswith(b"\\") == ours_line.startswith(b"\\"), gnu
        assert gnu.split(b"  ", 1)[1] == ours_line.split(b"  ", 1)[1], (gnu, ours_line)
    assert verify(b"--manifest", m, dst) == (0, set(), b"")
    same_content(dst + b"/sub/new\nline", b"N")
    os.unlink(dst + b"/sub/with space")
    rc, ours, err = verify(b"--manifest", m, dst)
    assert ours == {b"\\sub/new\\nline: FAILED", b"sub/with space: FAILED open or read"}
    assert rc == 23 and b"with space" in err


def test_manifest_paths_stay_inside_dst(tmp: bytes) -> None:
    os.mkdir(tmp + b"/dst")
    write_file(tmp + b"/secret", b"s")
    os.symlink(tmp, tmp + b"/dst/up")
    zero = bytes(16)
    with open(tmp + b"/m", "wb") as f:
        for p in (b"../secret", b"/etc/hostname", b"up/secret"):
            f.write(manifest.line(p, zero))
    rc, ours, err = verify(b"--manifest", tmp + b"/m", tmp + b"/dst")
    assert rc == 23
    assert ours == {
        p + b": FAILED open or read" for p in (b"../secret", b"/etc/hostname", b"up/secret")
    }
    assert err.count(b"\n") == 3, err


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.binary(min_size=1, max_size=12).filter(lambda n: b"/" not in n and b"\0" not in n),
        min_size=1,
        max_size=3,
    ),
    st.binary(min_size=16, max_size=16),
)
def test_manifest_lines_read_back(parts: list[bytes], digest: bytes) -> None:
    path = b"/".join(parts)
    text = manifest.line(path, digest)
    assert text.count(b"\n") == 1 and text.endswith(b"\n")
    assert list(manifest.parse(text)) == [(path, digest)]


# ------------------------------------------------- cp/sync --verify, as cp -a


def test_cp_verify_is_cp_a(tmp: bytes, engine_name: str) -> None:
    """--verify changes how the data is read and checked, not the result:
    the same tree as GNU cp -a (holes kept, hard links, xattrs), exit 0."""
    src = tmp + b"/src"
    os.makedirs(src + b"/d")
    write_file(src + b"/big", rand_bytes(3 * 1024 * 1024 + 5, "vbig"))
    write_file(src + b"/d/small", b"small")
    write_file(src + b"/empty", b"")
    with open(src + b"/sparse", "wb") as f:  # holes first, in the middle, at the end
        f.truncate(9 << 20)
        f.seek(2 << 20)
        f.write(rand_bytes(70_000, "s1"))
        f.seek(6 << 20)
        f.write(b"x")
    os.link(src + b"/d/small", src + b"/d/small-link")
    os.symlink(b"big", src + b"/lnk")
    os.setxattr(src + b"/big", b"user.k", b"v")
    set_tree_times(src)  # atimes a read does not bump: both copies see the same
    rc, out, err = run_cli(b"cp", b"-a", b"--verify", src, tmp + b"/us")
    assert (rc, out, err) == (0, b"", b"")
    subprocess.run([b"cp", b"-a", src, tmp + b"/cp"], check=True)
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert os.stat(tmp + b"/us/sparse").st_blocks < 512  # still sparse


def test_verify_through_the_api(tmp: bytes) -> None:
    """In this process (no workers): the engine's own path, for the sanitizer
    build; the result counts the files, nothing fails."""
    src = tmp + b"/src"
    os.makedirs(src)
    for i in range(40):
        write_file(src + b"/f%d" % i, rand_bytes(i * 9000, i))
    res = uringsync.copy(src, tmp + b"/dst", archive=True, verify=True, jobs=0)
    assert (res.exit_code, res.errors, res.files) == (0, [], 40)
    assert rsync_check(src, tmp + b"/dst") == set()


def test_verify_and_reflink_always_are_refused(tmp: bytes) -> None:
    os.mkdir(tmp + b"/src")
    rc, _out, err = run_cli(
        b"cp", b"-a", b"--verify", b"--reflink=always", tmp + b"/src", tmp + b"/d"
    )
    assert rc == 1 and b"--verify" in err, err
    assert not os.path.exists(tmp + b"/d")


@pytest.mark.skipif(XXH128SUM is None, reason="xxh128sum (Debian's xxhash) checks the manifest")
@pytest.mark.parametrize("verify_too", [False, True], ids=["manifest", "manifest+verify"])
def test_cp_manifest(tmp: bytes, engine_name: str, verify_too: bool) -> None:
    """cp --manifest: a line per regular file name copied (every hard link),
    the digest taken as the data passed, paths relative to DST; into an
    existing directory they start with SRC's name, as the copy does."""
    src = tmp + b"/src"
    os.makedirs(src + b"/sub")
    for i, n in enumerate(ODD):
        write_file(src + b"/sub/" + n, rand_bytes(700 * i, n))
    with open(src + b"/sparse", "wb") as f:
        f.truncate(3 << 20)
        f.seek(1 << 20)
        f.write(b"data in the middle")
    os.link(src + b"/sub/plain", src + b"/linked")
    os.symlink(b"sub/plain", src + b"/symlink")
    os.mkdir(tmp + b"/into")
    names = sorted([b"linked", b"sparse", *(b"sub/" + n for n in ODD)])
    extra = [b"--verify"] if verify_too else []
    for dst, prefix in ((tmp + b"/dst", b""), (tmp + b"/into", b"src/")):
        m = dst + b".xxh128"
        rc, out, err = run_cli(b"cp", b"-a", *extra, b"--manifest", m, src, dst)
        assert (rc, out, err) == (0, b"", b"")
        with open(m, "rb") as f:
            got = dict(manifest.parse(f.read()))
        assert sorted(got) == [prefix + n for n in names]
        assert got[prefix + b"linked"] == got[prefix + b"sub/plain"]
        plain = [p for p in got if b"\\" not in p and b"\n" not in p]
        p = subprocess.run([XXH128SUM, b"-c", m], cwd=dst, capture_output=True, check=False)
        assert sorted(ln for ln in p.stdout.splitlines() if ln.endswith(b": OK")) == sorted(
            n + b": OK" for n in plain
        ), p.stdout
        assert verify(b"--manifest", m, dst) == (0, set(), b"")


def dst_files(dst: bytes) -> dict[bytes, bytes]:
    """Every regular file of DST (path relative to it) and its digest, as
    xxh128sum computes it (Debian's xxhash), read name by name."""
    assert XXH128SUM is not None
    found = {}
    for top, _dirs, files in os.walk(dst):
        for n in files:
            path = os.path.join(top, n)
            if os.path.islink(path):
                continue
            out = subprocess.run([XXH128SUM, b"--", path], capture_output=True, check=True).stdout
            hexpart = out[1:33] if out.startswith(b"\\") else out[:32]
            found[os.path.relpath(path, dst)] = bytes.fromhex(hexpart.decode())
    return found


@pytest.mark.skipif(XXH128SUM is None, reason="xxh128sum (Debian's xxhash) checks the manifest")
def test_sync_manifest(tmp: bytes, engine_name: str) -> None:
    """sync --manifest: a line per regular file name in DST that the
    transfer covers (unchanged, metadata-only, copied, hard-linked names
    alike), its digest xxh128sum's; a catch-up pass writes it whole again,
    with the changed file's new digest; excluded names have none."""
    src, dst, m = tmp + b"/src", tmp + b"/dst", tmp + b"/m"
    os.makedirs(src + b"/sub")
    for i, n in enumerate(ODD):
        write_file(src + b"/sub/" + n, rand_bytes(700 * i + 1, n))
    write_file(src + b"/big", rand_bytes(3 << 20, "big"))
    write_file(src + b"/skip.tmp", b"excluded")
    os.link(src + b"/sub/plain", src + b"/linked")
    os.symlink(b"sub/plain", src + b"/symlink")
    set_tree_times(src, keep_mtime=False)
    names = sorted([b"big", b"linked", *(b"sub/" + n for n in ODD)])
    for step in ("first", "catch-up"):
        if step == "catch-up":
            same_content(src + b"/sub/plain", b"changed, linked")
            os.chmod(src + b"/big", 0o600)  # metadata only
            set_tree_times(src, keep_mtime=False, seed=1)
        args = (b"sync", b"-aH", b"--exclude=*.tmp", b"--manifest", m, src + b"/", dst)
        rc, _out, err = run_cli(*args)
        assert (rc, err) == (0, b"")
        with open(m, "rb") as f:
            got = dict(manifest.parse(f.read()))
        assert sorted(got) == names
        files = dst_files(dst)
        assert {p: files[p] for p in names} == got
        assert verify(b"--manifest", m, dst) == (0, set(), b"")
    assert got[b"linked"] == got[b"sub/plain"]


def test_sync_manifest_of_one_file_and_refusals(tmp: bytes) -> None:
    """``sync FILE NEWNAME --manifest M``: one line, NEWNAME's; -n is
    refused, since nothing would be in DST to list."""
    write_file(tmp + b"/f", b"one file")
    m = tmp + b"/m"
    assert run_cli(b"sync", b"-a", b"--manifest", m, tmp + b"/f", tmp + b"/g")[::2] == (0, b"")
    with open(m, "rb") as f:
        assert [p for p, _ in manifest.parse(f.read())] == [b"g"]
    rc, _out, err = run_cli(b"sync", b"-an", b"--manifest", m, tmp + b"/f", tmp + b"/h")
    assert rc == 1 and b"--manifest" in err and not os.path.exists(tmp + b"/h")


@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "direct"])
def test_verify_of_split_big_files(tmp: bytes, engine_name: str, direct: bool) -> None:
    """A big file split into ranges under --verify: each range read back and
    compared on its own (with O_DIRECT, the unaligned tail in the finish);
    cp and sync leave rsync -a's copy (sync: O_DIRECT whatever ``direct``)."""
    from uringsync.options import SyncOptions
    from uringsync.syncapi import run_sync
    from uringsync.walker import Trace, Tuning, Walker

    src = tmp + b"/src"
    os.makedirs(src)
    write_file(src + b"/big", rand_bytes(5 * (1 << 20) + 3000, "big"))
    write_file(src + b"/small", b"small")
    set_tree_times(src, keep_mtime=False)
    seen: list[str] = []

    def trace(_w: Walker, t: Trace) -> None:
        if t.kind in ("big_split", "big_resume", "range_done"):
            seen.append(t.kind)

    tuning = Tuning(split_min=1 << 20, range_size=1 << 20, on_trace=trace)
    res = uringsync.copy(
        src, tmp + b"/cp", archive=True, jobs=2, verify=True, direct=direct, _tuning=tuning
    )
    assert res.exit_code == 0, res.errors
    # O_DIRECT: the ranges end on a block, the 3000 bytes after are the tail
    assert "big_split" in seen and seen.count("range_done") == (5 if direct else 6)
    seen.clear()
    so = SyncOptions(perms=True, times=True, owner=True, group=True, verify=True)
    res = run_sync([src + b"/"], tmp + b"/sync", so, jobs=2, _tuning=tuning)
    assert res.exit_code == 0, res.errors
    # sync writes a big file's ranges O_DIRECT where the file system takes it:
    # then the 3000 bytes after the last block are the tail, not a range
    ranges = 5 if takes_o_direct(tmp) else 6
    assert "big_resume" in seen and seen.count("range_done") == ranges
    subprocess.run([b"rsync", b"-a", src + b"/", tmp + b"/ref"], check=True)
    assert_same_tree(tmp + b"/ref", tmp + b"/sync", atime=False)
    assert_same_tree(tmp + b"/ref", tmp + b"/cp", atime=False)


def test_big_pairs_are_hashed_by_two_workers(tmp: bytes) -> None:
    """-c on a big pair (split_min and up): each side's digest is a batch of
    its own, so two workers hash the two sides at once; the lines are
    rsync's all the same."""
    from uringsync import engine
    from uringsync.options import SyncOptions
    from uringsync.syncapi import run_sync
    from uringsync.walker import Trace, Tuning, Walker

    src, dst = tmp + b"/src", tmp + b"/dst"
    os.makedirs(src)
    size = 2 * (1 << 20) + 5
    for name in (b"same", b"other", b"small"):
        write_file(src + b"/" + name, rand_bytes(size if name != b"small" else 5000, name.decode()))
    set_tree_times(src, keep_mtime=False)
    subprocess.run([b"rsync", b"-aHAX", src + b"/", dst + b"/"], check=True)
    same_content(dst + b"/other", b"\0" * 16)
    sent: list[tuple[int, list[bytes]]] = []

    def trace(_w: Walker, t: Trace) -> None:
        if t.kind == "batch_sent" and t.jobs:
            sent.append((t.worker, [n for typ, n, _ in t.jobs if typ == engine.T_HASH]))

    so = SyncOptions(
        perms=True, times=True, owner=True, group=True, dry_run=True, checksum=True, itemize=1
    )
    lines: list[bytes] = []
    res = run_sync(
        [src + b"/"],
        dst,
        so,
        jobs=2,
        on_itemize=lines.append,
        _tuning=Tuning(split_min=1 << 20, range_size=1 << 20, on_trace=trace),
    )
    assert res.exit_code == 0, res.errors
    assert set(lines) == {b">fc........ other"} == rsync_check(src, dst) - {b".d..t...... ./"}
    for name in (b"other",):  # "same" the scan found equal: it never reached the walker
        batches = [(w, names) for w, names in sent if name in names]
        assert len(batches) == 2 and all(names == [name] for _, names in batches), sent
        assert {w for w, _ in batches} == {0, 1}, "both digests went to one worker"
