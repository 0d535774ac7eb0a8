"""The C engine, driven directly through uringsync.engine (no walker)."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
from typing import Any

import pytest

from tests.support.base import O_DIR, MiB, private_uid, root_only
from tests.support.compare import snapshot
from tests.support.system import Dirs, count_fds
from tests.support.trees import rand_bytes, set_tree_times, write_file
from tests.support.users import as_user, in_child
from uringsync import engine
from uringsync.engine import Batch, Ring, ffi, lib

# every test here runs with both engines (conftest.engine_name)
pytestmark = pytest.mark.usefixtures("engine_name")

BOUNDARY_SIZES = [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 131071, 131072, 131073,
                  262143, 262144, 262145, 524288 + 3, MiB + 1, 3 * MiB + 5]  # fmt: skip
ALL_META = engine.P_OWNER | engine.P_TIMES | engine.P_MODE


def add_job(
    batch: Batch,
    d: Dirs,
    name: bytes,
    st: Any = None,
    dst_name: bytes | None = None,
    flags: int = ALL_META,
    mask: int = 0o7777,
) -> int:
    """Queue a job for src/name -> dst/dst_name; the source is lstat'ed now unless st is given."""
    if st is None:
        st = engine.stat_at(d.sfd, name)
    s_c = ffi.new("char[]", name)
    d_c = ffi.new("char[]", dst_name if dst_name is not None else name)
    return batch.add(d.sfd, s_c, d.dfd, d_c, st, int(st.type), flags, mask)


def run_jobs(ring: Ring, d: Dirs, names: list[bytes], **kw: Any) -> tuple[int, Batch]:
    set_tree_times(d.src)  # future atimes: the engine's reads must not change the source
    b = Batch(max(1, len(names)))
    for n in names:
        add_job(b, d, n, **kw)
    failed = ring.run(b)
    return failed, b


def assert_copied(d: Dirs, name: bytes, dst_name: bytes | None = None) -> None:
    s = snapshot(d.src + b"/" + name)[b""]
    t = snapshot(d.dst + b"/" + (dst_name or name))[b""]
    assert s == t, f"{name!r}:\n  src={s}\n  dst={t}"


# ------------------------------------------------------------------ ring


def test_probe_reports_core_ops(engine_name: str) -> None:
    with Ring() as r:
        info = r.info()
        assert info.engine == engine_name
        assert info.uring_err == 0  # asked for by name: no fallback
        assert info.sq_entries > 0  # threads: how many
        assert info.max_inflight == engine.DEFAULT_QUEUE_DEPTH
        assert not r.has_op(255)
        assert not r.has_op(-1)
        if engine_name == "threads":  # no io_uring opcode runs natively
            assert info.nops == 0 and not info.fixed_buffers
            assert not r.has_op("OPENAT")
            return
        for op in ("OPENAT", "READ", "WRITE", "CLOSE", "STATX"):
            assert r.has_op(op), op
        assert r.has_op(engine.IORING_OPS["OPENAT"])
        assert info.nops >= 5


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        Ring(engine="uring")


def test_ring_options_clamped() -> None:
    with Ring(queue_depth=5000, buf_size=1000, chunks_per_file=99) as r:
        info = r.info()
        assert 1 <= info.max_inflight <= 1024
        r.set_max_inflight(0)
        assert r.info().max_inflight == 1
        r.set_max_inflight(10**6)
        assert r.info().max_inflight <= 1024


def test_rings_do_not_leak_fds() -> None:
    before = count_fds()
    for _ in range(30):
        with Ring(queue_depth=8) as r:
            r.info()
    assert count_fds() == before


# ------------------------------------------------------------------ scan


def test_scan_lists_and_stats_every_entry(dirs: Dirs) -> None:
    names = [b"plain", b"\xff\xfe not utf8", b"x" * 255, b"-dash", b"sp ace", b"nl\nname"]
    for i, n in enumerate(names):
        write_file(dirs.src + b"/" + n, rand_bytes(i * 5000, i), 0o600 + i)
    os.mkdir(dirs.src + b"/sub")
    os.symlink(b"plain", dirs.src + b"/lnk")
    os.mkfifo(dirs.src + b"/fifo")
    os.utime(dirs.src + b"/plain", ns=(-5_000_000_001, 7_000_000_000_123_456_789))
    with Ring() as r:
        sc = r.scan(dirs.sfd, dirs.src)
        got = {sc.name(i): sc.entry(i) for i in range(sc.n)}
        assert sorted(got) == sorted(os.listdir(dirs.src))
        for name, ent in got.items():
            st = os.lstat(dirs.src + b"/" + name)
            assert ent.err == 0
            es = ent.st
            assert es.mode == st.st_mode, name
            assert es.size == st.st_size, name
            assert es.ino == st.st_ino
            assert (es.uid, es.gid, es.nlink) == (st.st_uid, st.st_gid, st.st_nlink)
            assert es.mtime_sec * 10**9 + es.mtime_nsec == st.st_mtime_ns, name
            assert es.atime_sec * 10**9 + es.atime_nsec == st.st_atime_ns, name
        types = {n: got[n].st.type for n in (b"plain", b"sub", b"lnk", b"fifo")}
        assert types == {
            b"plain": engine.T_REG,
            b"sub": engine.T_DIR,
            b"lnk": engine.T_LNK,
            b"fifo": engine.T_FIFO,
        }
        sc.free()


def test_scan_many_entries(dirs: Dirs) -> None:
    for i in range(3000):
        write_file(dirs.src + b"/f%05d" % i, b"")
    with Ring(queue_depth=4) as r:
        sc = r.scan(dirs.sfd)
        assert sc.n == 3000
        assert sorted(sc.name(i) for i in range(sc.n)) == sorted(os.listdir(dirs.src))
        assert all(sc.entry(i).err == 0 for i in range(sc.n))


def test_scan_empty_and_rescan(dirs: Dirs) -> None:
    with Ring() as r:
        assert r.scan(dirs.sfd).n == 0
        write_file(dirs.src + b"/late", b"1")
        assert r.scan(dirs.sfd).n == 1  # listed from the start again


def test_scan_bad_fd_raises() -> None:
    with Ring() as r, pytest.raises(OSError) as ei:
        r.scan(987654)
    assert ei.value.errno == errno.EBADF


# --------------------------------------------------------------- copying


@root_only
@pytest.mark.parametrize(
    ("copy_range_min", "chunks", "buf", "want_path"),
    [
        (1 << 62, 4, 128 * 1024, lib.US_PATH_URING),
        (1 << 62, 1, 128 * 1024, lib.US_PATH_URING),
        (1 << 62, 8, 64 * 1024, lib.US_PATH_URING),
        (1, 4, 128 * 1024, lib.US_PATH_COPY_RANGE),
    ],
)
def test_copy_boundary_sizes(
    dirs: Dirs, copy_range_min: int, chunks: int, buf: int, want_path: int
) -> None:
    names = []
    for n in BOUNDARY_SIZES:
        name = b"s%d" % n
        write_file(dirs.src + b"/" + name, rand_bytes(n, n), 0o4751 if n % 2 else 0o640)
        os.chown(dirs.src + b"/" + name, 1000 + n % 7, 2000 + n % 5)
        os.chmod(dirs.src + b"/" + name, 0o4751 if n % 2 else 0o640)
        os.utime(dirs.src + b"/" + name, ns=(4_000_000_000_000_000_000 + n, -(10**18) - n))
        names.append(name)
    with Ring(
        queue_depth=6, buf_size=buf, chunks_per_file=chunks, copy_range_min=copy_range_min
    ) as r:
        failed, b = run_jobs(r, dirs, names, flags=ALL_META | engine.F_STRICT_OWNER)
        assert failed == 0
        for i, name in enumerate(names):
            j = b.jobs[i]
            assert (j.err, j.op) == (0, lib.US_OP_NONE), name
            assert j.bytes == int(name[1:]), name
            if int(name[1:]) > 0:
                assert j.path == want_path, name
            assert_copied(dirs, name)


def test_copy_without_preservation_uses_mask(dirs: Dirs) -> None:
    write_file(dirs.src + b"/f", b"data", 0o4777)
    os.utime(dirs.src + b"/f", ns=(10**9, 10**9))
    with Ring() as r:
        failed, _ = run_jobs(r, dirs, [b"f"], flags=0, mask=0o755)
    assert failed == 0
    st = os.lstat(dirs.dst + b"/f")
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert st.st_mtime_ns != 10**9  # times not preserved


@root_only
def test_symlink_job(dirs: Dirs) -> None:
    target = b"../some/where\xff" + b"t" * 300
    os.symlink(target, dirs.src + b"/lnk")
    os.lchown(dirs.src + b"/lnk", 321, 654)
    os.utime(dirs.src + b"/lnk", ns=(5 * 10**18, 123_456_789), follow_symlinks=False)
    with Ring() as r:
        failed, b = run_jobs(r, dirs, [b"lnk"], flags=ALL_META | engine.F_STRICT_OWNER)
    assert failed == 0
    assert b.jobs[0].err == 0
    assert os.readlink(dirs.dst + b"/lnk") == target
    assert_copied(dirs, b"lnk")


def test_source_vanished_after_scan(dirs: Dirs) -> None:
    write_file(dirs.src + b"/gone", rand_bytes(10_000, 1))
    write_file(dirs.src + b"/stays", rand_bytes(10_000, 2))
    set_tree_times(dirs.src)
    with Ring() as r:
        sc = r.scan(dirs.sfd)
        os.unlink(dirs.src + b"/gone")
        b = Batch(sc.n)
        for i in range(sc.n):
            e = sc.entry(i)
            b.add(
                dirs.sfd,
                sc.name_ptr(i),
                dirs.dfd,
                sc.name_ptr(i),
                ffi.addressof(e, "st"),
                e.st.type,
                ALL_META,
                0o7777,
            )
        failed = r.run(b)
        res = {sc.name(i): (b.jobs[i].err, b.jobs[i].op) for i in range(sc.n)}
    assert failed == 1
    assert res[b"gone"] == (-errno.ENOENT, lib.US_OP_OPEN_SRC)
    assert res[b"stays"] == (0, lib.US_OP_NONE)
    assert os.listdir(dirs.dst) == [b"stays"]


def test_fifo_in_place_of_scanned_file_does_not_block(dirs: Dirs) -> None:
    """A FIFO put where a regular file was scanned: the open must not wait
    for a writer (forever), the job fails as a type change."""
    write_file(dirs.src + b"/f", b"data")

    def run() -> tuple[int, int, int]:
        signal.alarm(20)  # a blocked open ends this child, not the suite
        with Ring() as r:
            sc = r.scan(dirs.sfd)
            os.unlink(dirs.src + b"/f")
            os.mkfifo(dirs.src + b"/f")
            b = Batch(1)
            e = sc.entry(0)
            b.add(dirs.sfd, sc.name_ptr(0), dirs.dfd, sc.name_ptr(0), ffi.addressof(e, "st"),
                  e.st.type, ALL_META, 0o7777)  # fmt: skip
            failed = r.run(b)
        signal.alarm(0)
        return failed, b.jobs[0].err, b.jobs[0].op

    failed, err, op = in_child(run)
    assert failed == 1 and err < 0, (failed, err, op)
    assert not os.path.lexists(dirs.dst + b"/f")


def test_symlink_vanished(dirs: Dirs) -> None:
    os.symlink(b"t", dirs.src + b"/lnk")
    st = engine.stat_at(dirs.sfd, b"lnk")
    os.unlink(dirs.src + b"/lnk")
    with Ring() as r:
        b = Batch(1)
        add_job(b, dirs, b"lnk", st=st)
        assert r.run(b) == 1
    assert (b.jobs[0].err, b.jobs[0].op) == (-errno.ENOENT, lib.US_OP_READLINK)
    assert os.listdir(dirs.dst) == []


def test_eexist_destination_replaced(dirs: Dirs, tmp: bytes) -> None:
    victim = tmp + b"/victim"
    write_file(victim, b"victim data", 0o600)
    names = {
        b"over_file": None,
        b"over_link": victim,
        b"over_dangling": b"nowhere",
        b"over_fifo": "fifo",
    }
    for n in names:
        write_file(dirs.src + b"/" + n, rand_bytes(200_000, n))
    write_file(dirs.dst + b"/over_file", rand_bytes(500_000, "old"), 0o444)
    os.symlink(victim, dirs.dst + b"/over_link")
    os.symlink(b"nowhere", dirs.dst + b"/over_dangling")
    os.mkfifo(dirs.dst + b"/over_fifo")
    os.symlink(b"lnk_target", dirs.src + b"/lnk")
    write_file(dirs.dst + b"/lnk", b"a file where a link goes")
    with Ring() as r:
        failed, b = run_jobs(r, dirs, [*names, b"lnk"])
    assert failed == 0, [(b.jobs[i].err, b.jobs[i].op) for i in range(b.n)]
    for n in [*names, b"lnk"]:
        assert_copied(dirs, n)
    with open(victim, "rb") as f:
        assert f.read() == b"victim data"
    assert not os.path.exists(dirs.dst + b"/nowhere")


def test_directory_in_the_way_is_error(dirs: Dirs) -> None:
    write_file(dirs.src + b"/f", b"data")
    os.symlink(b"x", dirs.src + b"/l")
    for n in (b"f", b"l"):
        os.mkdir(dirs.dst + b"/" + n)
        write_file(dirs.dst + b"/" + n + b"/inside", b"keep")
    with Ring() as r:
        failed, b = run_jobs(r, dirs, [b"f", b"l"])
    assert failed == 2
    for i in range(2):
        assert b.jobs[i].err == -errno.EISDIR
        assert b.jobs[i].op == lib.US_OP_OPEN_DST
    for n in (b"f", b"l"):
        with open(dirs.dst + b"/" + n + b"/inside", "rb") as f:
            assert f.read() == b"keep"


def test_fifo_job_recreates_the_fifo(dirs: Dirs) -> None:
    os.mkfifo(dirs.src + b"/fifo", 0o640)
    os.chown(dirs.src + b"/fifo", 1234, 5678)
    with Ring() as r:
        failed, b = run_jobs(r, dirs, [b"fifo"])
    assert failed == 0
    assert b.jobs[0].err == 0
    assert_copied(dirs, b"fifo")


def test_unknown_type_job_rejected(dirs: Dirs) -> None:
    write_file(dirs.src + b"/f", b"x")
    st = engine.stat_at(dirs.sfd, b"f")
    st.type = engine.T_UNKNOWN
    with Ring() as r:
        b = Batch(1)
        add_job(b, dirs, b"f", st=st)
        failed = r.run(b)
    assert failed == 1
    assert (b.jobs[0].err, b.jobs[0].op) == (-errno.EOPNOTSUPP, lib.US_OP_TYPE)
    assert os.listdir(dirs.dst) == []


def test_no_fd_leak_across_batches(dirs: Dirs) -> None:
    for i in range(40):
        write_file(dirs.src + b"/f%02d" % i, rand_bytes(i * 3001, i))
    os.symlink(b"f00", dirs.src + b"/lnk")
    os.mkdir(dirs.dst + b"/f39")  # EISDIR every time
    set_tree_times(dirs.src)
    before = count_fds()
    with Ring(queue_depth=16) as r:
        during = count_fds()
        for rnd in range(30):
            b = Batch(64)
            for i in range(40):
                add_job(b, dirs, b"f%02d" % i)
            add_job(b, dirs, b"lnk")
            # a source that does not exist (stat taken from another file)
            add_job(b, dirs, b"missing%d" % rnd, st=engine.stat_at(dirs.sfd, b"f01"))
            failed = r.run(b)
            assert failed == 2, rnd
            assert count_fds() == during, f"fds leaked in round {rnd}"
    assert count_fds() == before
    for i in range(39):
        assert_copied(dirs, b"f%02d" % i)


# ----------------------------------------- failures that need process limits


def _emfile_child(src: bytes, dst: bytes, n: int) -> tuple[int, int, list[int]]:
    d = Dirs.__new__(Dirs)
    d.src, d.dst = src, dst
    d.sfd, d.dfd = os.open(src, O_DIR), os.open(dst, O_DIR)
    with Ring(queue_depth=128) as r:
        # 2 fds per file in flight: far fewer than 128 files fit
        used = count_fds()
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 20, used + 20))
        b = Batch(n)
        for i in range(n):
            add_job(b, d, b"f%03d" % i)
        failed = r.run(b)
        errs = sorted({(b.jobs[i].err, b.jobs[i].op) for i in range(n)})
        return failed, r.info().max_inflight, errs


@root_only
def test_emfile_requeues_jobs(dirs: Dirs) -> None:
    n = 300
    for i in range(n):
        write_file(dirs.src + b"/f%03d" % i, rand_bytes(i * 100, i))
    set_tree_times(dirs.src)
    failed, max_inflight, errs = in_child(lambda: _emfile_child(dirs.src, dirs.dst, n))
    assert (failed, errs) == (0, [(0, lib.US_OP_NONE)]), f"jobs failed with (err, op): {errs!r}"
    assert max_inflight < 128
    for i in range(n):
        assert_copied(dirs, b"f%03d" % i)


def _fsize_child(
    src: bytes, dst: bytes, names: list[bytes], copy_range_min: int
) -> list[tuple[int, int, int]]:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    d = Dirs.__new__(Dirs)
    d.src, d.dst = src, dst
    d.sfd, d.dfd = os.open(src, O_DIR), os.open(dst, O_DIR)
    with Ring(queue_depth=4, copy_range_min=copy_range_min) as r:
        _, b = run_jobs(r, d, names)
        return [(b.jobs[i].err, b.jobs[i].op, b.jobs[i].bytes) for i in range(len(names))]


@root_only
@pytest.mark.parametrize("copy_range_min", [1 << 62, 1])
def test_write_failure_part_way_leaves_no_file(dirs: Dirs, copy_range_min: int) -> None:
    sizes = [100_000, 299_999, 300_001, 1_000_000, 5 * MiB]
    names = [b"f%d" % n for n in sizes]
    for n, name in zip(sizes, names, strict=True):
        write_file(dirs.src + b"/" + name, rand_bytes(n, n))
    set_tree_times(dirs.src)
    res = in_child(lambda: _fsize_child(dirs.src, dirs.dst, names, copy_range_min))
    want_op = lib.US_OP_WRITE if copy_range_min > 1 else lib.US_OP_COPY_RANGE
    for n, name, (err, op, nbytes) in zip(sizes, names, res, strict=True):
        if n <= 300_000:
            assert (err, op) == (0, lib.US_OP_NONE), name
            assert nbytes == n
            assert_copied(dirs, name)
        else:
            assert err == -errno.EFBIG, (name, err)
            assert op == want_op, (name, op)
            assert not os.path.lexists(dirs.dst + b"/" + name), f"partial {name!r} left behind"


# -------------------------------------------------------------- metadata


@root_only
def test_set_meta_fd_order_keeps_setuid(tmp: bytes) -> None:
    """Owner first, then mode: chown would clear a set-id bit set before it."""
    write_file(tmp + b"/model", b"", 0o6755)
    os.chown(tmp + b"/model", 1234, 5678)
    os.chmod(tmp + b"/model", 0o6755)
    os.utime(tmp + b"/model", ns=(3 * 10**18 + 1, -(10**17) - 3))
    dfd = os.open(tmp, O_DIR)
    st = engine.stat_at(dfd, b"model")
    os.close(dfd)
    write_file(tmp + b"/t", b"", 0o600)
    fd = os.open(tmp + b"/t", os.O_RDONLY)
    try:
        ret, op = engine.set_meta_fd(
            fd, st, engine.P_OWNER | engine.P_TIMES | engine.F_STRICT_OWNER, 0o7777
        )
    finally:
        os.close(fd)
    assert (ret, op) == (0, "none")
    a, b_ = os.lstat(tmp + b"/model"), os.lstat(tmp + b"/t")
    assert (b_.st_mode, b_.st_uid, b_.st_gid, b_.st_mtime_ns, b_.st_atime_ns) == (
        a.st_mode,
        a.st_uid,
        a.st_gid,
        a.st_mtime_ns,
        a.st_atime_ns,
    )


def test_set_meta_fd_bad_fd() -> None:
    st = ffi.new("struct us_stat *")
    ret, op = engine.set_meta_fd(
        999_999, st, engine.P_OWNER | engine.P_TIMES | engine.F_STRICT_OWNER, 0o777
    )
    assert ret == -errno.EBADF
    assert op == "chown"


# ---------------------------------------------- io_uring ops an old kernel lacks


@root_only
@pytest.mark.parametrize("missing", ["SYMLINKAT", "LINKAT", "FGETXATTR"])
def test_missing_opcode_runs_as_plain_syscall(dirs: Dirs, missing: str) -> None:
    """A kernel whose probe lacks an opcode (SYMLINKAT and LINKAT before 5.15,
    F*XATTR before 5.19): the step runs as the plain syscall, same result."""
    write_file(dirs.src + b"/f", rand_bytes(70_000, "f"), 0o640)
    os.setxattr(dirs.src + b"/f", b"user.a", b"1" * 300)
    os.setxattr(dirs.src + b"/f", b"trusted.b", b"")
    os.symlink(b"f", dirs.src + b"/lnk")
    with Ring(engine="io_uring") as r:
        r.forget_op(missing)
        if missing == "FGETXATTR":
            r.forget_op("FSETXATTR")
        assert not r.has_op(missing)
        failed, _b = run_jobs(r, dirs, [b"f", b"lnk"], flags=ALL_META | engine.P_XATTR)
        assert failed == 0
        # a hard link to the copy, made by the LINKAT step
        b = Batch(1)
        st = engine.stat_at(dirs.dfd, b"f")
        b.add(dirs.dfd, b"f", dirs.dfd, b"f2", st, engine.T_HARDLINK, 0, 0o7777)
        assert r.run(b) == 0
    assert_copied(dirs, b"f")
    assert_copied(dirs, b"lnk")
    assert os.readlink(dirs.dst + b"/lnk") == b"f"
    for k in (b"user.a", b"trusted.b"):
        assert os.getxattr(dirs.dst + b"/f", k) == os.getxattr(dirs.src + b"/f", k)
    assert os.stat(dirs.dst + b"/f2").st_ino == os.stat(dirs.dst + b"/f").st_ino


@root_only
def test_a_user_pins_at_most_a_quarter_of_memlock() -> None:
    """Without CAP_IPC_LOCK the kernel charges every ring and pinned buffer
    of a uid, over all its processes, to RLIMIT_MEMLOCK, and charges a
    registration page by page before giving up: buffers are registered only
    when they take at most a quarter of the limit, so that one ring's attempt
    never leaves another of the user's rings (the walker's, a worker's) no
    room to be set up (seen as ENOMEM in CI before)."""
    limit = 8 * MiB

    def rings() -> list[bool]:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))
        out = []
        # 12, 48 and 96 buffers of 128 KiB: 1.5, 6 and 12 MiB; 6 would fit, but
        # would leave the user's other rings 2 MiB
        for qd, chunks in ((4, 1), (16, 4), (64, 4)):
            with Ring(queue_depth=qd, chunks_per_file=chunks, engine="io_uring") as r:
                out.append(r.info().fixed_buffers)
        return out

    uid = private_uid()
    assert as_user(rings, uid, uid) == [True, False, False]


@root_only
@pytest.mark.parametrize("limit", [0, 1 * MiB])
def test_low_memlock(world: bytes, limit: int) -> None:
    """An unprivileged user (no CAP_IPC_LOCK) with a low RLIMIT_MEMLOCK:
    with none at all, io_uring_setup itself fails (ENOMEM) and auto copies
    with threads; with 1 MiB the ring is made but its buffers cannot be
    registered (pinned), so plain READ/WRITE run on them.  Same copy."""
    src, dst = world + b"/src", world + b"/dst"
    os.mkdir(src)
    os.mkdir(dst)
    write_file(src + b"/f", rand_bytes(300_000, "memlock"), 0o644)
    uid = private_uid()
    for path in (src, dst, src + b"/f"):
        os.chown(path, uid, uid)

    def copy() -> tuple[int, str, int, bool, int]:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))
        forced = 0
        try:
            Ring(engine="io_uring").close()
        except OSError as e:
            forced = e.errno or 0
        d = Dirs(world)
        try:
            with Ring(engine="auto") as r:
                info = r.info()
                failed, _b = run_jobs(r, d, [b"f"], flags=engine.P_TIMES | engine.P_MODE)
        finally:
            d.close()
        return forced, info.engine, info.uring_err, info.fixed_buffers, failed

    forced, name, uring_err, fixed, failed = as_user(copy, uid, uid)
    if limit == 0:
        assert (forced, name, uring_err) == (errno.ENOMEM, "threads", errno.ENOMEM)
    else:
        assert (forced, name, uring_err) == (0, "io_uring", 0)
        assert not fixed  # the limit really bit
    assert failed == 0
    with open(src + b"/f", "rb") as a, open(dst + b"/f", "rb") as b_:
        assert a.read() == b_.read()
