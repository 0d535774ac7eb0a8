"""Thin, typed layer over the C engine (``uringsync._uring``).

This is the raw binding kept apart from the copy logic: it owns the C memory
(rings, scans, job arrays) and turns C's ``-errno`` returns into ``OSError``.
Nothing here walks trees or prints.  It is the only module that imports
``uringsync._uring`` (typed by ``_uring.pyi``): the rest of the package, and
the tests, reach C through the names here.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from uringsync import steps
from uringsync._uring import ffi, lib
from uringsync.steps import Step

if TYPE_CHECKING:
    from uringsync._uring import (
        CharPtr,
        IntArray,
        JobArray,
        PairPtr,
        UsBatch,
        UsEntry,
        UsJob,
        UsPair,
        UsPick,
        UsRing,
        UsScan,
        UsStat,
    )

    Stat: TypeAlias = UsStat  # cdata 'struct us_stat *' (or a struct us_stat field)
else:
    # The cdata types are Protocols of _uring.pyi only; at run time (where
    # they appear in annotations alone) any cdata fits.
    CharPtr = JobArray = UsBatch = UsEntry = UsJob = UsRing = UsStat = Stat = object
    UsPick = UsScan = UsPair = PairPtr = object

# re-exported: the package and the tests reach C only through this module
__all__ = ["CharPtr", "UsEntry", "UsJob", "UsPick", "UsStat", "ffi", "lib"]

# File types (US_T_*)
T_UNKNOWN: int = lib.US_T_UNKNOWN
T_REG: int = lib.US_T_REG
T_DIR: int = lib.US_T_DIR
T_LNK: int = lib.US_T_LNK
T_FIFO: int = lib.US_T_FIFO
T_CHR: int = lib.US_T_CHR
T_BLK: int = lib.US_T_BLK
T_SOCK: int = lib.US_T_SOCK
T_HARDLINK: int = lib.US_T_HARDLINK
T_RANGE: int = lib.US_T_RANGE
T_HASH: int = lib.US_T_HASH  # a job only: the file's XXH3-128 digest
T_META: int = lib.US_T_META  # a job only: make an existing entry's metadata match
T_UNLINK: int = lib.US_T_UNLINK  # a job only: remove dst (a directory with F_RMDIR)
JOB_QUEUED: int = lib.US_JOB_QUEUED
JOB_STARTED: int = lib.US_JOB_STARTED
JOB_DONE: int = lib.US_JOB_DONE

# What to preserve (US_P_*) and flags
P_OWNER: int = lib.US_P_OWNER
P_MODE: int = lib.US_P_MODE
P_TIMES: int = lib.US_P_TIMES
F_STRICT_OWNER: int = lib.US_F_STRICT_OWNER
F_FOLLOW_SRC: int = lib.US_F_FOLLOW_SRC
P_XATTR: int = lib.US_P_XATTR
P_ACL: int = lib.US_P_ACL
F_SPARSE_AUTO: int = lib.US_F_SPARSE_AUTO
F_SPARSE_ALWAYS: int = lib.US_F_SPARSE_ALWAYS
F_REFLINK_TRY: int = lib.US_F_REFLINK_TRY
F_REFLINK_REQUIRE: int = lib.US_F_REFLINK_REQUIRE
F_CLEAR_ACL: int = lib.US_F_CLEAR_ACL
F_DRY: int = lib.US_F_DRY  # T_META: compare only
F_RMDIR: int = lib.US_F_RMDIR  # T_UNLINK: a directory
F_DEVICE: int = lib.US_F_DEVICE  # T_HASH: read from the device, not the page cache
F_FSYNC: int = lib.US_F_FSYNC  # a file flushed after its metadata, before its close/rename
F_VERIFY: int = lib.US_F_VERIFY  # a file hashed as read, read back from the disk, compared
F_DIGEST: int = lib.US_F_DIGEST  # a file hashed as read (its digest for a manifest)
F_RESUME: int = lib.US_F_RESUME  # T_RANGE: flushed, then recorded for a resume
F_CONTENT: int = lib.US_F_CONTENT  # sync_scan: same-size regular files compared by their data
# cp's rules for a destination name that is taken (csrc/api.h): in place, -f,
# --remove-destination, -n, -u, -b, -l, -s, --attributes-only, -a's links
F_CP_DEST: int = lib.US_F_CP_DEST
F_FORCE: int = lib.US_F_FORCE
F_REMOVE_DST: int = lib.US_F_REMOVE_DST
F_NO_CLOBBER: int = lib.US_F_NO_CLOBBER
F_UPDATE: int = lib.US_F_UPDATE
F_BACKUP_SIMPLE: int = lib.US_F_BACKUP_SIMPLE
F_BACKUP_NUMBERED: int = lib.US_F_BACKUP_NUMBERED
F_SYMLINK_SRC: int = lib.US_F_SYMLINK_SRC  # T_LNK: src_name is the link's value
F_ATTR_ONLY: int = lib.US_F_ATTR_ONLY
F_LINK_EXCL: int = lib.US_F_LINK_EXCL
F_KEEP_LINKS: int = lib.US_F_KEEP_LINKS
F_DELTA: int = lib.US_F_DELTA  # sync --delta: only the differing blocks written
# us_job.path: how a file's data went (a clone shares the source's extents;
# a delta wrote only the blocks that differ)
PATH_CLONE: int = lib.US_PATH_CLONE
PATH_DELTA: int = lib.US_PATH_DELTA
# what a T_META job (or meta_sync_fd) found different
CH_XATTR: int = lib.US_CH_XATTR
CH_ACL: int = lib.US_CH_ACL
CH_SKIPPED: int = lib.US_CH_SKIPPED  # a cp job left the existing entry alone (-n, -u)
CH_BACKUP: int = lib.US_CH_BACKUP  # ... renamed it to its backup name first
CH_REMOVED: int = lib.US_CH_REMOVED  # ... unlinked it first
# what differs between a source entry and its destination twin (sync_match)
D_MISSING: int = lib.US_D_MISSING
D_TYPE: int = lib.US_D_TYPE
D_SIZE: int = lib.US_D_SIZE
D_MTIME: int = lib.US_D_MTIME
D_PERMS: int = lib.US_D_PERMS
D_UID: int = lib.US_D_UID
D_GID: int = lib.US_D_GID
D_RDEV: int = lib.US_D_RDEV
D_TARGET: int = lib.US_D_TARGET
D_XATTR: int = lib.US_D_XATTR
D_ACL: int = lib.US_D_ACL
D_ERR: int = lib.US_D_ERR
D_DATA: int = lib.US_D_DATA  # F_CONTENT: data differ, or left to the walker to hash

# io_uring opcodes probed at ring creation, by name
IORING_OPS: dict[str, int] = {
    name[len("US_IORING_OP_") :]: getattr(lib, name)
    for name in dir(lib)
    if name.startswith("US_IORING_OP_")
}

# Failing step (US_OP_*) -> its row of the step table (uringsync/steps.py)
STEPS: dict[int, Step] = {getattr(lib, st.c_name): st for st in steps.STEPS if st.c_name}
# codes of the steps after the data: the file stays (complete) when one fails
AFTER_DATA: frozenset[int] = frozenset(code for code, st in STEPS.items() if st.after_data)
OP_NONE: int = lib.US_OP_NONE
OP_STOPPED: int = lib.US_OP_STOPPED
OP_RENAME: int = lib.US_OP_RENAME

DEFAULT_QUEUE_DEPTH = 64
# How the steps are issued (--engine): io_uring, or plain syscalls on a pool
# of threads per ring; "auto" is io_uring, or threads where it cannot be set up.
ENGINES: dict[str, int] = {
    "auto": lib.US_ENGINE_AUTO,
    "io_uring": lib.US_ENGINE_URING,
    "threads": lib.US_ENGINE_THREADS,
}
ENGINE_NAMES: dict[int, str] = {lib.US_ENGINE_URING: "io_uring", lib.US_ENGINE_THREADS: "threads"}
# why io_uring_setup fails, by errno: what a user can do about it
URING_WHY: dict[int, str] = {
    errno.EPERM: "seccomp or kernel.io_uring_disabled",
    errno.ENOSYS: "the kernel has no io_uring",
    errno.EINVAL: "the kernel is too old",
    errno.ENOMEM: "RLIMIT_MEMLOCK too low",
}
DEFAULT_BUF_SIZE = 128 * 1024
DEFAULT_CHUNKS_PER_FILE = 4
# Registered buffers beyond one per file in flight: room for this many files
# with all their chunks in flight (a read and a write buffer each).
MULTI_CHUNK_FILES = 4
PACK_FDS_MIN = 64  # room for fds when packing a batch (two per job at most)
# Data path (docs/design.md): io_uring READ/WRITE everywhere, except onto file
# systems where copy_file_range moves no data through the page cache (clones
# or server-side copies): there every regular file uses it.
NEVER = (1 << 64) - 1
OFFLOAD_FS: dict[int, str] = {
    0x9123683E: "btrfs",
    0x58465342: "xfs",
    0x6969: "nfs",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x00C36400: "ceph",
}


def fs_type(fd: int) -> int:
    """statfs f_type of an open fd."""
    magic = ffi.new("uint64_t *")
    check(lib.us_fs_type(fd, magic), "fstatfs")
    return int(magic[0])


def syncfs(fd: int) -> None:
    """Flush the file system holding fd to stable storage (OSError)."""
    check(lib.us_syncfs(fd), "syncfs")


def check(ret: int, what: str, path: bytes | str | None = None) -> int:
    """Raise OSError for a negative errno from C, naming the syscall."""
    if ret < 0:
        err = -ret
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret


def copy_stat(st: Stat) -> Stat:
    """Copy a ``struct us_stat`` out of memory that C may free."""
    out = ffi.new("struct us_stat *")
    ffi.memmove(out, st, ffi.sizeof("struct us_stat"))
    return out


def stat_at(dirfd: int, name: bytes, follow: bool = False) -> Stat:
    st = ffi.new("struct us_stat *")
    check(lib.us_stat_at(dirfd, name, int(follow), st), "statx", name)
    return st


def step_of(op: int, unknown: Step = steps.UNKNOWN_JOB) -> Step:
    """The step table's row of a ``US_OP_*`` code."""
    return STEPS.get(op, unknown)


def set_meta_fd(fd: int, st: Stat, flags: int, mode_mask: int) -> tuple[int, str]:
    """Owner, mode, times on an open fd.  Returns (-errno or 0, failing op)."""
    op = ffi.new("int *")
    ret = lib.us_set_meta_fd(fd, st, flags, mode_mask, op)
    return ret, step_of(op[0], steps.UNKNOWN_META).name


def dir_meta(src_fd: int, dst_fd: int, st: Stat, flags: int, mode_mask: int) -> tuple[int, Step]:
    """A directory's owner, mode, xattrs (from src_fd; -1: none) and times.
    Returns (-errno or 0, the failing step)."""
    op = ffi.new("int *")
    ret = lib.us_dir_meta(src_fd, dst_fd, st, flags, mode_mask, op)
    return ret, step_of(op[0], steps.UNKNOWN_META)


def meta_sync_fd(
    src_fd: int, dst_fd: int, st: Stat, flags: int, mode_mask: int
) -> tuple[int, Step, int]:
    """Make an open directory's metadata match (``us_meta_sync_fd``): owner,
    mode, times from st as flags say, xattrs and ACLs compared with src_fd's
    (-1: left alone), nothing written with F_DRY.  Returns (-errno or 0, the
    failing step, CH_* bits of what differed)."""
    op = ffi.new("int *")
    changed = ffi.new("uint32_t *")
    ret = lib.us_meta_sync_fd(src_fd, dst_fd, st, flags, mode_mask, changed, op)
    return ret, step_of(op[0], steps.UNKNOWN_META), int(changed[0])


def c_name(name: bytes) -> CharPtr:
    """A name in C memory (kept alive by the returned object)."""
    return ffi.new("char[]", name)


def string(p: CharPtr) -> bytes:
    """The bytes of a NUL-terminated C string (a job's name)."""
    return ffi.string(p)


def big_open(
    src_dirfd: int, name: bytes, dst_dirfd: int, st: Stat, direct: int
) -> tuple[int, tuple[int, int], Step]:
    """Open a big file's source and create its destination (``us_big_open``):
    (1|2 for the ends that got O_DIRECT, or -errno; the two fds; the
    failing step)."""
    fds = ffi.new("int[2]")
    op = ffi.new("int *")
    ret = lib.us_big_open(src_dirfd, name, dst_dirfd, name, st, direct, fds, op)
    return ret, (fds[0], fds[1]), step_of(op[0])


def delta_open(
    src_dirfd: int,
    name: bytes,
    dst_dirfd: int,
    dst_name: bytes,
    final: bytes | None,
    st: Stat,
    direct: int,
) -> tuple[int, tuple[int, int], Step]:
    """sync --delta of a big file (``us_delta_open``): the source opened and
    the destination, ``dst_name`` made a clone of ``final`` (-EOPNOTSUPP
    where it cannot be cloned: copy it whole) or, ``final`` None, opened to
    be written in place; ``direct`` as :func:`big_open`'s.  (1|2 for the
    ends that got O_DIRECT, or -errno; the two fds; the failing step)."""
    fds = ffi.new("int[2]")
    op = ffi.new("int *")
    ret = lib.us_delta_open(
        src_dirfd,
        name,
        dst_dirfd,
        dst_name,
        ffi.NULL if final is None else final,
        st,
        direct,
        fds,
        op,
    )
    return ret, (fds[0], fds[1]), step_of(op[0])


def big_finish(
    sfd: int, dfd: int, tail_off: int, st: Stat, flags: int, mode_mask: int
) -> tuple[int, Step]:
    """A split file's tail and metadata (``us_big_finish``): (0 or -errno,
    the failing step)."""
    op = ffi.new("int *")
    ret = lib.us_big_finish(sfd, dfd, tail_off, st, flags, mode_mask, op)
    return ret, step_of(op[0])


@dataclass(frozen=True)
class Resumable:
    """A resumable big file opened by :func:`big_resume`."""

    fds: tuple[int, int, int]  # the source, the temporary, the record
    direct: int  # 1|2: the ends that got O_DIRECT
    resumed: bool  # the record matched: ``done`` is what an earlier run copied
    done: bytes  # per range: 1 recorded complete, 0 to copy
    body_end: int  # the ranges cover [0, body_end); big_finish writes the rest


def big_resume(
    src_dirfd: int,
    name: bytes,
    dst_dirfd: int,
    tmp: bytes,
    rec: bytes,
    final: bytes,
    st: Stat,
    direct: int,
    range_size: int,
) -> tuple[Resumable | None, int, Step]:
    """Open a resumable big file (``us_big_resume``): its source ``name``,
    and its temporary and record (for the destination name ``final``),
    resumed when they match the source, else made afresh.  (the file or
    None, 0 or -errno, the failing step)."""
    ndone = int(st.size) // range_size + 1
    done = ffi.new("uint8_t[]", ndone)
    fds = ffi.new("int[3]")
    end = ffi.new("uint64_t *")
    op = ffi.new("int *")
    ret = lib.us_big_resume(
        src_dirfd,
        name,
        dst_dirfd,
        tmp,
        rec,
        final,
        st,
        direct,
        range_size,
        done,
        ndone,
        fds,
        end,
        op,
    )
    if ret < 0:
        return None, ret, step_of(op[0])
    r = Resumable(
        (fds[0], fds[1], fds[2]),
        ret & 3,
        bool(ret & 4),
        bytes(ffi.buffer(done, ndone)),
        int(end[0]),
    )
    return r, 0, steps.NONE_STEP


def big_commit(dst_dirfd: int, tmp: bytes, final: bytes, rec: bytes) -> tuple[int, Step]:
    """A resumable big file, complete and closed, renamed into place and its
    record removed (``us_big_commit``): (0 or -errno, the failing step)."""
    op = ffi.new("int *")
    ret = lib.us_big_commit(dst_dirfd, tmp, final, rec, op)
    return ret, step_of(op[0])


# Stopping (SIGINT/SIGTERM caught in C, see csrc/api.h)
def stop_requested() -> bool:
    return bool(lib.us_stop_flag)  # a read, not a call: the GIL is kept


def clear_stop() -> None:
    lib.us_clear_stop()


def catch_stop(wake_fd: int) -> int:
    """SIGINT and SIGTERM set the stop flag (and write a byte to wake_fd,
    unless it is -1).  Returns 0 or -errno."""
    return lib.us_catch_stop(1, wake_fd)


def release_stop() -> None:
    """The previous SIGINT and SIGTERM handlers back."""
    lib.us_catch_stop(0, -1)


def die_with_parent() -> None:
    """This process gets SIGKILL when its parent dies (PR_SET_PDEATHSIG)."""
    lib.us_die_with_parent()


@dataclass(frozen=True)
class RingInfo:
    sq_entries: int
    fixed_buffers: bool
    nops: int
    max_inflight: int
    engine: str  # "io_uring" or "threads": the one that runs
    uring_err: int  # errno of io_uring's set-up when "auto" fell back to threads, else 0


ENGINE_ENV = "URINGSYNC_ENGINE"


def default_engine() -> str:
    """The engine used when none is given: ``$URINGSYNC_ENGINE``, else "auto"."""
    return os.environ.get(ENGINE_ENV) or "auto"


def uring_unavailable(err: int) -> str:
    """Why io_uring cannot be used, for one line on stderr:
    ``io_uring unavailable (Operation not permitted: seccomp or ...)``."""
    why = URING_WHY.get(err)
    reason = os.strerror(err) + (f": {why}" if why else "")
    return f"io_uring unavailable ({reason})"


_SPARE: list[tuple[int, Ring]] = []  # choose_engine(keep=True)'s ring, for ring_for


def choose_engine(
    requested: str, queue_depth: int = DEFAULT_QUEUE_DEPTH, keep: bool = False
) -> tuple[str, int]:
    """Which engine a copy asked for as ``requested`` will run, found by
    setting up a ring of the copy's size (so a low RLIMIT_MEMLOCK that
    refuses its rings refuses this one too): ("io_uring" | "threads", errno
    of io_uring's failure or 0).  Raises OSError when io_uring was asked
    for and cannot be set up.  ``keep``: an io_uring ring is kept for this
    process's next :func:`ring_for` (a copy without workers: one ring set
    up, not two; each costs milliseconds, docs/benchmarks.md "Start-up")."""
    if requested == "threads":
        return "threads", 0
    ring = Ring(queue_depth=queue_depth, engine=requested, threads=1)
    info = ring.info()
    while _SPARE:
        _SPARE.pop()[1].close()
    if keep and info.engine == "io_uring":
        _SPARE.append((queue_depth, ring))
    else:
        ring.close()
    return info.engine, info.uring_err


def ring_for(queue_depth: int, engine: str) -> Ring:
    """The ring a walk runs on: the one choose_engine(keep=True) set up when
    it fits, else a new one."""
    while _SPARE:
        depth, ring = _SPARE.pop()
        if depth == queue_depth and engine == "io_uring":
            return ring
        ring.close()
    return Ring(queue_depth=queue_depth, engine=engine)


class Scan:
    """One directory's entries, with their lstat, in C memory."""

    def __init__(self, sc: UsScan | None = None, owner: object = None) -> None:
        # sc: a scan inside C memory that ``owner`` (kept alive) frees
        self._sc = ffi.gc(ffi.new("struct us_scan *"), lib.us_scan_free) if sc is None else sc
        self._owner = owner
        self.n = 0

    def name_ptr(self, i: int) -> CharPtr:
        return self._sc.names + self._sc.ents[i].name_off

    def name(self, i: int) -> bytes:
        e = self._sc.ents[i]
        return bytes(ffi.buffer(self._sc.names + e.name_off, e.name_len))

    def entry(self, i: int) -> UsEntry:
        return self._sc.ents[i]

    def __iter__(self) -> Iterator[UsEntry]:
        ents = self._sc.ents
        for i in range(self.n):
            yield ents[i]

    def free(self) -> None:
        lib.us_scan_free(self._sc)
        self.n = 0


def sync_match(
    src: Scan, dst: Scan, src_fd: int, dst_fd: int, flags: int, skip_xattr: int
) -> tuple[IntArray, IntArray, IntArray]:
    """One directory's source entries against its destination twin's
    (``us_sync_match``): per source entry the index of its twin (-1: none)
    and the ``D_*`` bits of what differs; per destination entry whether a
    source entry matched it."""
    n, m = max(1, src.n), max(1, dst.n)
    match = ffi.new("int32_t[]", n)
    diff = ffi.new("uint32_t[]", n)
    matched = ffi.new("uint8_t[]", m)
    ret = lib.us_sync_match(
        src._sc, dst._sc, src_fd, dst_fd, flags, skip_xattr, match, diff, matched
    )
    check(ret, "sync_match")
    return match, diff, matched


@dataclass
class SyncPair:
    """One directory pair after ``sync_scan``: the source's scan (or the
    OSError of its listing), the destination's (None: no twin listed), and
    per source entry its twin's index (-1: none) and ``D_*`` bits, per
    destination entry whether one matched it, and the source entries the
    walker must look at (``picked``; the others are unchanged).  With the
    pick's ``descend``: ``clean_entries`` and ``clean_dirs`` below the
    subdirectories found unchanged all through (left out of ``picked``), and
    the scans of changed ones (:meth:`take_sub`)."""

    src: Scan | OSError
    dst: Scan | OSError | None
    match: IntArray
    diff: IntArray
    matched: IntArray
    picked: IntArray
    npicked: int
    owner: object  # the C memory all of the above point into
    c: UsPair
    clean_entries: int = 0
    clean_dirs: int = 0

    def take_sub(self, i: int) -> SyncPair | None:
        """Source entry ``i``'s own pair, when the scan went into it (the
        caller owns it from now on: it is freed with the result)."""
        c = self.c
        if c.sub == ffi.NULL or i >= c.nsub or c.sub[i] == ffi.NULL:
            return None
        ptr = c.sub[i]
        c.sub[i] = ffi.NULL
        owner = _SubPair(ptr)
        return _pair_result(ptr[0], owner, True)


def sync_cold() -> bool:
    """Whether the last ``sync_scan`` read the disk."""
    return bool(lib.us_sync_cold_flag)


class _Pairs:
    """A ``struct us_pair[]`` and the C memory its pairs point to, freed
    together when the last SyncPair or Scan of the call is gone."""

    def __init__(self, n: int) -> None:
        self.arr = ffi.new("struct us_pair[]", n)
        self.n = n

    def __del__(self) -> None:
        lib.us_pairs_free(self.arr, self.n)


class _SubPair:
    """A pair taken from its parent's ``sub`` (``SyncPair.take_sub``)."""

    def __init__(self, ptr: PairPtr) -> None:
        self.ptr = ptr

    def __del__(self) -> None:
        lib.us_pair_free(self.ptr)


def _pair_result(p: UsPair, owner: object, has_twin: bool) -> SyncPair:
    if p.err:
        raise OSError(-p.err, f"sync_scan: {os.strerror(-p.err)}")
    src: Scan | OSError
    dst: Scan | OSError | None = None
    if p.src_ret < 0:
        src = OSError(-p.src_ret, f"getdents64: {os.strerror(-p.src_ret)}")
    else:
        src = Scan(ffi.addressof(p, "src"), owner)
        src.n = int(p.src_ret)
    if has_twin:
        if p.dst_ret < 0:
            dst = OSError(-p.dst_ret, f"getdents64: {os.strerror(-p.dst_ret)}")
        else:
            dst = Scan(ffi.addressof(p, "dst"), owner)
            dst.n = int(p.dst_ret)
    return SyncPair(
        src,
        dst,
        p.match,
        p.diff,
        p.dst_matched,
        p.picked,
        int(p.npicked),
        owner,
        p,
        int(p.clean_entries),
        int(p.clean_dirs),
    )


def sync_pick(
    masks: dict[int, int],
    nlink_reg: bool,
    every: bool,
    descend: int = 0,
    budget: int = 0,
    dir_mask: int = 0,
) -> UsPick:
    """The ``struct us_pick`` for ``sync_scan``: per type the ``D_*`` bits
    that make an entry worth a look; a type without a mask is always looked
    at.  ``descend``: pairs the scan may hold open while it goes into
    subdirectories, ``budget`` entries a call (0: it does not); a
    subdirectory with one of ``dir_mask``'s bits is never folded away."""
    k = ffi.new("struct us_pick *")
    for t in range(8):
        if t in masks:
            k.mask[t] = masks[t]
        else:
            k.always |= 1 << t
    k.nlink_reg = int(nlink_reg)
    k.all = int(every)
    k.descend = descend
    k.budget = budget
    k.dir_mask = dir_mask
    return k


def sync_scan(
    fds: list[tuple[int, int]], flags: int, skip_xattr: int, pick: UsPick
) -> list[SyncPair]:
    """``us_sync_scan`` over (source fd, destination fd or -1) pairs: both
    listed, stat'ed, merged and compared in C threads."""
    pairs = SyncPairs(fds)
    pairs.run(flags, skip_xattr, pick)
    return pairs.results()


class SyncPairs:
    """One ``us_sync_scan`` call in three steps, so that a thread of its own
    can make the call (``run``: C, without the GIL, and no Python work
    that would hold it) while the walker's thread makes the Python objects
    (``results``)."""

    def __init__(self, fds: list[tuple[int, int]]) -> None:
        self.owner = owner = _Pairs(len(fds))
        for i, (sfd, dfd) in enumerate(fds):
            owner.arr[i].src_fd = sfd
            owner.arr[i].dst_fd = dfd
        self.ret = 0

    def run(self, flags: int, skip_xattr: int, pick: UsPick) -> None:
        self.ret = lib.us_sync_scan(self.owner.n, self.owner.arr, flags, skip_xattr, pick)

    def results(self) -> list[SyncPair]:
        if self.ret < 0:
            raise OSError(-self.ret, f"sync_scan: {os.strerror(-self.ret)}")
        owner = self.owner
        return [_pair_result(owner.arr[i], owner, owner.arr[i].dst_fd >= 0) for i in range(owner.n)]


class Batch:
    """A fixed-capacity batch of jobs in one block of shared memory
    (``struct us_batch``): jobs, copies of their stats and their names.

    The block is an anonymous MAP_SHARED mapping, so worker processes forked
    after it was made see it at the same address: the walker fills it, a
    worker runs it and writes each job's result in place."""

    NAME_RESERVE = 1024  # room for two NAME_MAX names: checked by ``full``
    NAME_BYTES_PER_JOB = 96  # default room for names: most are far shorter

    def __init__(self, capacity: int, names_cap: int | None = None) -> None:
        names_cap = names_cap or capacity * self.NAME_BYTES_PER_JOB + self.NAME_RESERVE
        size = lib.us_batch_size(capacity, names_cap)
        self._mem = mmap.mmap(-1, size)
        self._buf = ffi.from_buffer(self._mem)
        self.c: UsBatch = lib.us_batch_init(self._buf, capacity, names_cap)
        self.jobs: JobArray = self.c.jobs

    @property
    def n(self) -> int:
        return int(self.c.n)

    def add(
        self,
        src_dirfd: int,
        src_name: bytes | CharPtr,
        dst_dirfd: int,
        dst_name: bytes | CharPtr,
        st: Stat,
        ftype: int,
        flags: int,
        mode_mask: int,
    ) -> int:
        """Append a job (names and stat are copied in); returns its index."""
        i = lib.us_batch_add(
            self.c, src_dirfd, src_name, dst_dirfd, dst_name, st, ftype, flags, mode_mask
        )
        return check(i, "batch")

    def set_final(self, idx: int, name: bytes) -> None:
        """Job ``idx`` (a T_REG copy) is made under its dst name, then renamed
        over ``name`` in the same directory (``us_batch_set_final``)."""
        check(lib.us_batch_set_final(self.c, idx, name), "batch", name)

    @property
    def full(self) -> bool:
        c = self.c
        return bool(c.n >= c.cap or c.names_used + self.NAME_RESERVE > c.names_cap)

    def clear(self) -> None:
        self.c.n = 0
        self.c.names_used = 0
        self.c.result = 0

    def pack_fds(self) -> list[int]:
        """Turn the jobs' fds into indices (``us_batch_pack_fds``); returns
        the distinct fds, in order of first use, to send along."""
        cap = max(PACK_FDS_MIN, 2 * self.n)  # two per job at most
        fds = ffi.new("int[]", cap)
        n = check(lib.us_batch_pack_fds(self.c, fds, cap), "pack fds")
        return [fds[i] for i in range(n)]

    def bind_fds(self, fds: list[int]) -> int:
        """Indices back to the fds received (``us_batch_bind_fds``): 0 or -errno."""
        arr = ffi.new("int[]", fds) if fds else ffi.NULL
        return lib.us_batch_bind_fds(self.c, arr, len(fds))


class JobError(OSError):
    """A job's failure: errno, message and name as OSError, plus its step."""

    def __init__(self, err: int, step: Step, name: bytes) -> None:
        super().__init__(err, f"{step.name}: {os.strerror(err)}", name)
        self.step = step


def digest(job: UsJob) -> bytes:
    """A US_T_HASH job's XXH3-128 digest, 16 bytes in canonical order (as
    ``xxh128sum`` prints them: the high half first, big-endian)."""
    return int(job.hash_hi).to_bytes(8, "big") + int(job.hash_lo).to_bytes(8, "big")


def hash_files(
    ring: Ring, dirfd: int | list[int], names: list[bytes], flags: int = 0
) -> list[bytes | JobError]:
    """The XXH3-128 digests of files in ``dirfd`` (or each in its own, a
    list as long as ``names``), never following a symlink, read through the
    ring's engine, up to its queue depth of files at once (``flags``:
    F_DEVICE reads past the page cache): a 16-byte digest each, or the
    JobError of its failing step."""
    if not names:
        return []
    fds = [dirfd] * len(names) if isinstance(dirfd, int) else dirfd
    batch = Batch(len(names), sum(len(n) + 1 for n in names) + Batch.NAME_RESERVE)
    st = ffi.new("struct us_stat *")
    for fd, name in zip(fds, names, strict=True):
        batch.add(fd, name, -1, name, st, T_HASH, flags, 0)
    ring.run(batch)
    out: list[bytes | JobError] = []
    for i, name in enumerate(names):
        j = batch.jobs[i]
        out.append(JobError(-j.err, step_of(j.op), name) if j.err else digest(j))
    return out


class Ring:
    """The per-file state machines, their buffers, and the backend that
    issues their steps: an io_uring with registered buffers, or a pool of
    threads making plain syscalls (``engine``: "auto", "io_uring", "threads",
    None for :func:`default_engine`; ``threads``: how many, 0 for the default)."""

    def __init__(
        self,
        queue_depth: int = DEFAULT_QUEUE_DEPTH,
        buf_size: int = DEFAULT_BUF_SIZE,
        chunks_per_file: int = DEFAULT_CHUNKS_PER_FILE,
        copy_range_min: int = NEVER,
        engine: str | None = None,
        threads: int = 0,
    ) -> None:
        engine = engine or default_engine()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        cfg = ffi.new(
            "struct us_config *",
            {
                "queue_depth": queue_depth,
                "buf_size": buf_size,
                "nbufs": queue_depth + 2 * chunks_per_file * MULTI_CHUNK_FILES,
                "chunks_per_file": chunks_per_file,
                "copy_range_min": copy_range_min,
                "engine": ENGINES[engine],
                "threads": threads,
            },
        )
        err = ffi.new("int *")
        ring = lib.us_ring_new(cfg, err)
        if ring == ffi.NULL:
            # "io_uring_queue_init" only when io_uring itself refused
            check(err[0], "io_uring_queue_init" if engine == "io_uring" else "ring set-up")
        self._ring: UsRing | None = ring
        # what a failure of the whole ring is named after
        self._wait_call = "io_uring_enter" if self.info().engine == "io_uring" else "thread wait"

    def close(self) -> None:
        if self._ring is not None:
            lib.us_ring_free(self._ring)
            self._ring = None

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> RingInfo:
        info = ffi.new("struct us_ring_info *")
        lib.us_ring_get_info(self.ptr, info)
        return RingInfo(
            int(info.sq_entries),
            bool(info.fixed_buffers),
            int(info.nops),
            int(info.max_inflight),
            ENGINE_NAMES[int(info.engine)],
            -int(info.uring_err),
        )

    def has_op(self, opcode: int | str) -> bool:
        """Whether the kernel has this io_uring opcode (number or name)."""
        if isinstance(opcode, str):
            opcode = IORING_OPS[opcode]
        return bool(lib.us_ring_has_op(self.ptr, opcode))

    def forget_op(self, opcode: str) -> None:
        """Run this io_uring opcode's step as a plain syscall from now on, as
        on a kernel without it (tests: SYMLINKAT, LINKAT, FGETXATTR, FSETXATTR)."""
        lib.us_ring_forget_op(self.ptr, IORING_OPS[opcode])

    def set_scan_follow(self, follow: bool) -> None:
        """Scans stat a symlink entry's target, not the link (cp -L)."""
        lib.us_ring_set_scan_follow(self.ptr, int(follow))

    def set_copy_range_min(self, n: int) -> None:
        lib.us_ring_set_copy_range_min(self.ptr, n)

    def set_max_inflight(self, n: int) -> None:
        lib.us_ring_set_max_inflight(self.ptr, n)

    def scan(self, dirfd: int, path: bytes | None = None) -> Scan:
        sc = Scan()
        sc.n = check(lib.us_scan_dir(self.ptr, dirfd, sc._sc), "getdents64", path)
        return sc

    def scan_many(self, dirfds: list[int]) -> list[Scan | OSError]:
        """Several directories at once (``us_scan_dirs``): a Scan each, or
        the OSError of its listing."""
        n = len(dirfds)
        scans = [Scan() for _ in range(n)]
        ptrs = ffi.new("struct us_scan *[]", [sc._sc for sc in scans])
        rets = ffi.new("long[]", n)
        check(lib.us_scan_dirs(self.ptr, n, dirfds, ptrs, rets), self._wait_call)
        out: list[Scan | OSError] = []
        for sc, ret in zip(scans, rets, strict=True):
            if ret < 0:
                out.append(OSError(-ret, f"getdents64: {os.strerror(-ret)}"))
                sc.free()
            else:
                sc.n = int(ret)
                out.append(sc)
        return out

    def run(self, batch: Batch) -> int:
        """Copy every job in the batch; returns how many failed."""
        return check(self.run_raw(batch), self._wait_call)

    def run_raw(self, batch: Batch) -> int:
        """``us_run`` of the batch on this ring, its result also left in the
        batch: how many jobs failed, or -errno when the ring failed."""
        ret = lib.us_run(self.ptr, batch.jobs, batch.n)
        batch.c.result = ret
        return ret

    @property
    def ptr(self) -> UsRing:
        if self._ring is None:
            raise ValueError("the ring is closed")
        return self._ring
