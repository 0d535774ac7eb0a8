"""Thin, typed layer over the C engine (``uringsync._uring``).

This is the raw binding kept apart from the copy logic: it owns the C memory
(rings, scans, job arrays) and turns C's ``-errno`` returns into ``OSError``.
Nothing here walks trees or prints.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from uringsync._uring import ffi, lib

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
JOB_DONE: int = lib.US_JOB_DONE
JOB_STARTED: int = lib.US_JOB_STARTED

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

# io_uring opcodes probed at ring creation, by name
IORING_OPS: dict[str, int] = {
    name[len("US_IORING_OP_") :]: getattr(lib, name)
    for name in dir(lib)
    if name.startswith("US_IORING_OP_")
}

# Failing step (US_OP_*) -> short name used in errors and JSON
OPS: dict[int, str] = {
    lib.US_OP_NONE: "none",
    lib.US_OP_OPEN_SRC: "open",
    lib.US_OP_OPEN_DST: "create",
    lib.US_OP_READ: "read",
    lib.US_OP_WRITE: "write",
    lib.US_OP_COPY_RANGE: "copy_file_range",
    lib.US_OP_CHOWN: "chown",
    lib.US_OP_CHMOD: "chmod",
    lib.US_OP_UTIMES: "utimens",
    lib.US_OP_CLOSE: "close",
    lib.US_OP_READLINK: "readlink",
    lib.US_OP_SYMLINK: "symlink",
    lib.US_OP_UNLINK: "unlink",
    lib.US_OP_STAT: "stat",
    lib.US_OP_TYPE: "type",
    lib.US_OP_SRC_CHANGED: "src_changed",
    lib.US_OP_XATTR_LIST: "xattr_list",
    lib.US_OP_XATTR_GET: "xattr_get",
    lib.US_OP_XATTR_SET: "xattr_set",
    lib.US_OP_MKNOD: "mknod",
    lib.US_OP_LINK: "link",
    lib.US_OP_CLONE: "clone",
    lib.US_OP_SEEK: "seek",
    lib.US_OP_TRUNCATE: "truncate",
    lib.US_OP_STOPPED: "stopped",
}

DEFAULT_QUEUE_DEPTH = 64
DEFAULT_BUF_SIZE = 128 * 1024
DEFAULT_CHUNKS_PER_FILE = 4
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


Stat = Any  # cdata 'struct us_stat *'


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


def set_meta_fd(fd: int, st: Stat, flags: int, mode_mask: int) -> tuple[int, str]:
    """Owner, mode, times on an open fd.  Returns (-errno or 0, failing op)."""
    op = ffi.new("int *")
    ret: int = lib.us_set_meta_fd(fd, st, flags, mode_mask, op)
    return ret, OPS.get(op[0], "meta")


def dir_meta(src_fd: int, dst_fd: int, st: Stat, flags: int, mode_mask: int) -> tuple[int, str]:
    """A directory's owner, mode, xattrs (from src_fd; -1: none) and times."""
    op = ffi.new("int *")
    ret: int = lib.us_dir_meta(src_fd, dst_fd, st, flags, mode_mask, op)
    return ret, OPS.get(op[0], "meta")


@dataclass(frozen=True)
class RingInfo:
    sq_entries: int
    fixed_buffers: bool
    nops: int
    max_inflight: int


class Scan:
    """One directory's entries, with their lstat, in C memory."""

    def __init__(self) -> None:
        self._sc = ffi.gc(ffi.new("struct us_scan *"), lib.us_scan_free)
        self.n = 0

    def name_ptr(self, i: int) -> Any:
        return self._sc.names + self._sc.ents[i].name_off

    def name(self, i: int) -> bytes:
        e = self._sc.ents[i]
        return bytes(ffi.buffer(self._sc.names + e.name_off, e.name_len))

    def entry(self, i: int) -> Any:
        return self._sc.ents[i]

    def __iter__(self) -> Iterator[Any]:
        ents = self._sc.ents
        for i in range(self.n):
            yield ents[i]

    def free(self) -> None:
        lib.us_scan_free(self._sc)
        self.n = 0


class Batch:
    """A fixed-capacity batch of jobs in one block of shared memory
    (``struct us_batch``): jobs, copies of their stats and their names.

    The block is an anonymous MAP_SHARED mapping, so worker processes forked
    after it was made see it at the same address: the walker fills it, a
    worker runs it and writes each job's result in place."""

    NAME_RESERVE = 1024  # room for two NAME_MAX names: checked by ``full``

    def __init__(self, capacity: int, names_cap: int | None = None) -> None:
        names_cap = names_cap or capacity * 96 + self.NAME_RESERVE
        size = lib.us_batch_size(capacity, names_cap)
        self._mem = mmap.mmap(-1, size)
        self._buf = ffi.from_buffer(self._mem)
        self.c: Any = lib.us_batch_init(self._buf, capacity, names_cap)
        self.jobs: Any = self.c.jobs
        self.capacity = capacity

    @property
    def n(self) -> int:
        return int(self.c.n)

    def add(
        self,
        src_dirfd: int,
        src_name: Any,
        dst_dirfd: int,
        dst_name: Any,
        st: Stat,
        ftype: int,
        flags: int,
        mode_mask: int,
    ) -> int:
        """Append a job (names and stat are copied in); returns its index."""
        i: int = lib.us_batch_add(
            self.c, src_dirfd, src_name, dst_dirfd, dst_name, st, ftype, flags, mode_mask
        )
        return check(i, "batch")

    @property
    def full(self) -> bool:
        c = self.c
        return bool(c.n >= c.cap or c.names_used + self.NAME_RESERVE > c.names_cap)

    def clear(self) -> None:
        self.c.n = 0
        self.c.names_used = 0
        self.c.result = 0


class Ring:
    """An io_uring with registered buffers and the per-file state machines."""

    def __init__(
        self,
        queue_depth: int = DEFAULT_QUEUE_DEPTH,
        buf_size: int = DEFAULT_BUF_SIZE,
        chunks_per_file: int = DEFAULT_CHUNKS_PER_FILE,
        copy_range_min: int = NEVER,
    ) -> None:
        cfg = ffi.new(
            "struct us_config *",
            {
                "queue_depth": queue_depth,
                "buf_size": buf_size,
                "nbufs": queue_depth + 2 * chunks_per_file * 4,
                "chunks_per_file": chunks_per_file,
                "copy_range_min": copy_range_min,
            },
        )
        err = ffi.new("int *")
        ring = lib.us_ring_new(cfg, err)
        if ring == ffi.NULL:
            check(err[0], "io_uring_queue_init")
        self._ring: Any = ring

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
        lib.us_ring_get_info(self._ring, info)
        return RingInfo(
            int(info.sq_entries), bool(info.fixed_buffers), int(info.nops), int(info.max_inflight)
        )

    def has_op(self, opcode: int | str) -> bool:
        """Whether the kernel has this io_uring opcode (number or name)."""
        if isinstance(opcode, str):
            opcode = IORING_OPS[opcode]
        return bool(lib.us_ring_has_op(self._ring, opcode))

    def set_copy_range_min(self, n: int) -> None:
        lib.us_ring_set_copy_range_min(self._ring, n)

    def set_max_inflight(self, n: int) -> None:
        lib.us_ring_set_max_inflight(self._ring, n)

    def scan(self, dirfd: int, path: bytes | None = None) -> Scan:
        sc = Scan()
        sc.n = check(lib.us_scan_dir(self._ring, dirfd, sc._sc), "getdents64", path)
        return sc

    def scan_many(self, dirfds: list[int]) -> list[Scan | OSError]:
        """Several directories at once (``us_scan_dirs``): a Scan each, or
        the OSError of its listing."""
        n = len(dirfds)
        scans = [Scan() for _ in range(n)]
        ptrs = ffi.new("struct us_scan *[]", [sc._sc for sc in scans])
        rets = ffi.new("long[]", n)
        check(lib.us_scan_dirs(self._ring, n, dirfds, ptrs, rets), "io_uring_enter")
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
        ret: int = lib.us_run(self._ring, batch.jobs, batch.n)
        batch.c.result = ret
        return check(ret, "io_uring_enter")
