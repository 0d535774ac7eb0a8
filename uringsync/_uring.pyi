# Typed stub for the cffi extension built by build_ffi.py from csrc/api.h.
#
# cffi cannot be introspected by mypy.stubtest: tests/test_binding_stub.py
# checks this file against the compiled module instead (every struct's
# fields both ways, every lib function's argument count, every constant).
# A class named UsFooBar describes ``struct us_foo_bar``; its annotated
# attributes are exactly the struct's fields.  Only uringsync/engine.py
# imports this module.
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol, TypeVar, overload

class CData(Protocol):
    """Any cdata (a pointer, an array); ``ffi.NULL`` is one."""

class CharPtr(CData, Protocol):
    """``char *`` / ``char[]``: pointer arithmetic gives another one."""
    def __add__(self, n: int, /) -> CharPtr: ...

class IntArray(CData, Protocol):
    """``int *``, ``int[]``, ``long[]``, ``uint64_t *``."""
    def __getitem__(self, i: int, /) -> int: ...
    def __setitem__(self, i: int, v: int, /) -> None: ...
    def __iter__(self) -> Iterator[int]: ...

class UsStat(CData, Protocol):
    ino: int
    size: int
    blocks: int
    dev_major: int
    dev_minor: int
    rdev_major: int
    rdev_minor: int
    mode: int
    uid: int
    gid: int
    nlink: int
    atime_sec: int
    mtime_sec: int
    ctime_sec: int
    atime_nsec: int
    mtime_nsec: int
    ctime_nsec: int
    type: int

class UsEntry(CData, Protocol):
    name_off: int
    name_len: int
    err: int
    pad: int
    st: UsStat

class EntryArray(CData, Protocol):
    def __getitem__(self, i: int, /) -> UsEntry: ...

class UsScan(CData, Protocol):
    ents: EntryArray
    n: int
    cap: int
    names: CharPtr
    names_len: int
    names_cap: int

class UsPair(CData, Protocol):
    src_fd: int
    dst_fd: int
    src_ret: int
    dst_ret: int
    src: UsScan
    dst: UsScan
    match: IntArray
    diff: IntArray
    dst_matched: IntArray
    picked: IntArray
    npicked: int
    err: int
    sub: SubArray
    nsub: int
    clean_entries: int
    clean_dirs: int

class PairArray(CData, Protocol):
    def __getitem__(self, i: int, /) -> UsPair: ...

class SubArray(CData, Protocol):
    """``struct us_pair **``: per source entry, a pair or NULL."""

    def __getitem__(self, i: int, /) -> PairPtr: ...
    def __setitem__(self, i: int, v: CData, /) -> None: ...

class PairPtr(CData, Protocol):
    def __getitem__(self, i: int, /) -> UsPair: ...

class UsPick(CData, Protocol):
    mask: IntArray
    always: int
    nlink_reg: int
    all: int
    descend: int
    budget: int
    dir_mask: int
    xdev: int
    root_major: int
    root_minor: int
    avoid_major: int
    avoid_minor: int
    avoid_ino: int

class ScanPtrArray(CData, Protocol):
    def __getitem__(self, i: int, /) -> UsScan: ...

class UsJob(CData, Protocol):
    src_dirfd: int
    dst_dirfd: int
    src_name: CharPtr
    dst_name: CharPtr
    st: UsStat
    flags: int
    type: int
    mode_mask: int
    changed: int
    bytes: int
    err: int
    op: int
    path: int
    tries: int
    state: int
    off: int
    len: int
    hash_hi: int
    hash_lo: int
    final_name: CharPtr
    rec_fd: int
    rec_idx: int
    delta_block: int
    matched: int

class JobArray(CData, Protocol):
    def __getitem__(self, i: int, /) -> UsJob: ...

class UsBatch(CData, Protocol):
    jobs: JobArray
    stats: UsStat
    names: CharPtr
    cap: int
    n: int
    names_cap: int
    names_used: int
    copy_range_min: int
    result: int

class UsRing(CData, Protocol):
    """Opaque: only C reads it."""

class UsConfig(CData, Protocol):
    queue_depth: int
    buf_size: int
    nbufs: int
    chunks_per_file: int
    copy_range_min: int
    engine: int
    threads: int

class UsRingInfo(CData, Protocol):
    sq_entries: int
    fixed_buffers: int
    nops: int
    max_inflight: int
    engine: int
    uring_err: int

class CBuffer(Protocol):
    def __bytes__(self) -> bytes: ...

class CType(Protocol):
    kind: str
    cname: str
    args: tuple[CType, ...]
    result: CType
    fields: list[tuple[str, Any]] | None

_T = TypeVar("_T", bound=CData)

class _FFI:
    NULL: CData
    error: type[Exception]
    @overload
    def new(self, cdecl: Literal["struct us_stat *"], init: object = ...) -> UsStat: ...
    @overload
    def new(self, cdecl: Literal["struct us_scan *"], init: object = ...) -> UsScan: ...
    @overload
    def new(self, cdecl: Literal["struct us_scan *[]"], init: object = ...) -> ScanPtrArray: ...
    @overload
    def new(self, cdecl: Literal["struct us_pair[]"], init: object = ...) -> PairArray: ...
    @overload
    def new(self, cdecl: Literal["struct us_pick *"], init: object = ...) -> UsPick: ...
    @overload
    def new(self, cdecl: Literal["struct us_config *"], init: object = ...) -> UsConfig: ...
    @overload
    def new(self, cdecl: Literal["struct us_ring_info *"], init: object = ...) -> UsRingInfo: ...
    @overload
    def new(self, cdecl: Literal["char[]"], init: bytes) -> CharPtr: ...
    @overload
    def new(
        self,
        cdecl: Literal[
            "int *",
            "int[]",
            "int[2]",
            "int[3]",
            "long[]",
            "uint64_t *",
            "uint32_t *",
            "int32_t[]",
            "uint32_t[]",
            "uint8_t[]",
        ],
        init: int | Sequence[int] = ...,
    ) -> IntArray: ...
    def gc(self, cdata: _T, destructor: Callable[[_T], None]) -> _T: ...
    def from_buffer(self, buf: object) -> CData: ...
    def memmove(self, dest: CData, src: CData, n: int) -> None: ...
    def sizeof(self, cdecl: str) -> int: ...
    def buffer(self, cdata: CharPtr | IntArray, size: int) -> CBuffer: ...
    def string(self, cdata: CharPtr) -> bytes: ...
    @overload
    def addressof(self, cdata: UsEntry, field: Literal["st"]) -> UsStat: ...
    @overload
    def addressof(self, cdata: UsPair, field: Literal["src", "dst"]) -> UsScan: ...
    def typeof(self, cdecl: str | object) -> CType: ...
    def list_types(self) -> tuple[list[str], list[str], list[str]]: ...

_Name = bytes | CharPtr

class _Lib:
    # file types (US_T_*)
    US_ENGINE_AUTO: int
    US_ENGINE_URING: int
    US_ENGINE_THREADS: int
    US_T_UNKNOWN: int
    US_T_REG: int
    US_T_DIR: int
    US_T_LNK: int
    US_T_FIFO: int
    US_T_CHR: int
    US_T_BLK: int
    US_T_SOCK: int
    US_T_HARDLINK: int
    US_T_RANGE: int
    US_T_HASH: int
    US_T_META: int
    US_T_UNLINK: int
    # what to preserve, and flags (us_job.flags)
    US_P_OWNER: int
    US_P_MODE: int
    US_P_TIMES: int
    US_F_STRICT_OWNER: int
    US_F_FOLLOW_SRC: int
    US_P_XATTR: int
    US_P_ACL: int
    US_F_SPARSE_AUTO: int
    US_F_SPARSE_ALWAYS: int
    US_F_REFLINK_TRY: int
    US_F_REFLINK_REQUIRE: int
    US_F_CLEAR_ACL: int
    US_F_DRY: int
    US_F_RMDIR: int
    US_F_DEVICE: int
    US_F_FSYNC: int
    US_F_VERIFY: int
    US_F_DIGEST: int
    US_F_RESUME: int
    US_F_CONTENT: int
    US_F_CP_DEST: int
    US_F_FORCE: int
    US_F_REMOVE_DST: int
    US_F_NO_CLOBBER: int
    US_F_UPDATE: int
    US_F_BACKUP_SIMPLE: int
    US_F_BACKUP_NUMBERED: int
    US_F_SYMLINK_SRC: int
    US_F_ATTR_ONLY: int
    US_F_LINK_EXCL: int
    US_F_KEEP_LINKS: int
    US_F_DELTA: int
    US_CONTENT_MAX: int
    # what a US_T_META job found different (us_job.changed)
    US_CH_XATTR: int
    US_CH_ACL: int
    US_CH_SKIPPED: int
    US_CH_BACKUP: int
    US_CH_REMOVED: int
    # what differs between a source entry and its destination twin (us_sync_match)
    US_D_MISSING: int
    US_D_TYPE: int
    US_D_SIZE: int
    US_D_MTIME: int
    US_D_PERMS: int
    US_D_UID: int
    US_D_GID: int
    US_D_RDEV: int
    US_D_TARGET: int
    US_D_XATTR: int
    US_D_ACL: int
    US_D_ERR: int
    US_D_DATA: int
    # the step that failed (us_job.op): uringsync/steps.py describes each
    US_OP_NONE: int
    US_OP_OPEN_SRC: int
    US_OP_OPEN_DST: int
    US_OP_READ: int
    US_OP_WRITE: int
    US_OP_COPY_RANGE: int
    US_OP_CHOWN: int
    US_OP_CHMOD: int
    US_OP_UTIMES: int
    US_OP_CLOSE: int
    US_OP_READLINK: int
    US_OP_SYMLINK: int
    US_OP_UNLINK: int
    US_OP_STAT: int
    US_OP_TYPE: int
    US_OP_SRC_CHANGED: int
    US_OP_XATTR_LIST: int
    US_OP_XATTR_GET: int
    US_OP_XATTR_SET: int
    US_OP_MKNOD: int
    US_OP_LINK: int
    US_OP_CLONE: int
    US_OP_SEEK: int
    US_OP_TRUNCATE: int
    US_OP_STOPPED: int
    US_OP_RENAME: int
    US_OP_FSYNC: int
    US_OP_VERIFY: int
    US_OP_RECORD: int
    US_OP_BACKUP: int
    US_OP_LINK_TO: int
    US_OP_SYMLINK_TO: int
    US_OP_SAME_FILE: int
    # how far a job got (us_job.state)
    US_JOB_QUEUED: int
    US_JOB_STARTED: int
    US_JOB_DONE: int
    # data path chosen for a file (us_job.path)
    US_PATH_NONE: int
    US_PATH_URING: int
    US_PATH_COPY_RANGE: int
    US_PATH_CLONE: int
    US_PATH_DELTA: int
    # io_uring opcodes probed at ring creation
    US_IORING_OP_READ_FIXED: int
    US_IORING_OP_WRITE_FIXED: int
    US_IORING_OP_FALLOCATE: int
    US_IORING_OP_OPENAT: int
    US_IORING_OP_CLOSE: int
    US_IORING_OP_STATX: int
    US_IORING_OP_READ: int
    US_IORING_OP_WRITE: int
    US_IORING_OP_FADVISE: int
    US_IORING_OP_SPLICE: int
    US_IORING_OP_RENAMEAT: int
    US_IORING_OP_UNLINKAT: int
    US_IORING_OP_MKDIRAT: int
    US_IORING_OP_SYMLINKAT: int
    US_IORING_OP_LINKAT: int
    US_IORING_OP_FSETXATTR: int
    US_IORING_OP_FGETXATTR: int

    def us_ring_new(self, cfg: UsConfig, err: IntArray, /) -> UsRing: ...
    def us_ring_free(self, r: UsRing, /) -> None: ...
    def us_ring_get_info(self, r: UsRing, info: UsRingInfo, /) -> None: ...
    def us_ring_has_op(self, r: UsRing, op: int, /) -> int: ...
    def us_ring_forget_op(self, r: UsRing, op: int, /) -> None: ...
    def us_ring_set_scan_follow(self, r: UsRing, follow: int, /) -> None: ...
    def us_ring_set_copy_range_min(self, r: UsRing, n: int, /) -> None: ...
    def us_fs_type(self, fd: int, magic: IntArray, /) -> int: ...
    def us_syncfs(self, fd: int, /) -> int: ...
    def us_ring_set_max_inflight(self, r: UsRing, n: int, /) -> None: ...
    def us_scan_dir(self, r: UsRing, dirfd: int, sc: UsScan, /) -> int: ...
    def us_scan_dirs(
        self,
        r: UsRing,
        n: int,
        dirfds: Sequence[int],
        scans: ScanPtrArray,
        rets: IntArray,
        /,
    ) -> int: ...
    def us_scan_free(self, sc: UsScan, /) -> None: ...
    def us_stat_at(self, dirfd: int, name: _Name, follow: int, st: UsStat, /) -> int: ...
    def us_run(self, r: UsRing, jobs: JobArray, n: int, /) -> int: ...
    def us_set_meta_fd(
        self, fd: int, st: UsStat, flags: int, mode_mask: int, op: IntArray, /
    ) -> int: ...
    def us_dir_meta(
        self, src_fd: int, dst_fd: int, st: UsStat, flags: int, mode_mask: int, op: IntArray, /
    ) -> int: ...
    def us_sync_match(
        self,
        src: UsScan,
        dst: UsScan,
        src_dirfd: int,
        dst_dirfd: int,
        flags: int,
        skip_xattr: int,
        match: IntArray,
        diff: IntArray,
        dst_matched: IntArray,
        /,
    ) -> int: ...
    def us_sync_scan(
        self, n: int, pairs: PairArray, flags: int, skip_xattr: int, pick: UsPick, /
    ) -> int: ...
    def us_pairs_free(self, pairs: PairArray, n: int, /) -> None: ...
    def us_pair_free(self, pair: PairPtr, /) -> None: ...
    def us_meta_sync_fd(
        self,
        src_fd: int,
        dst_fd: int,
        st: UsStat,
        flags: int,
        mode_mask: int,
        changed: IntArray,
        op: IntArray,
        /,
    ) -> int: ...
    def us_delta_open(
        self,
        src_dirfd: int,
        src_name: _Name,
        dst_dirfd: int,
        dst_name: _Name,
        final_name: _Name | CData,
        st: UsStat,
        direct: int,
        fds: IntArray,
        op: IntArray,
        /,
    ) -> int: ...
    def us_big_open(
        self,
        src_dirfd: int,
        src_name: _Name,
        dst_dirfd: int,
        dst_name: _Name,
        st: UsStat,
        direct: int,
        fds: IntArray,
        op: IntArray,
        /,
    ) -> int: ...
    def us_big_finish(
        self,
        sfd: int,
        dfd: int,
        tail_off: int,
        st: UsStat,
        flags: int,
        mode_mask: int,
        op: IntArray,
        /,
    ) -> int: ...
    def us_big_resume(
        self,
        src_dirfd: int,
        src_name: _Name,
        dst_dirfd: int,
        tmp: _Name,
        rec: _Name,
        name: _Name,
        st: UsStat,
        direct: int,
        range_size: int,
        done: IntArray,
        ndone: int,
        fds: IntArray,
        body_end: IntArray,
        op: IntArray,
        /,
    ) -> int: ...
    def us_big_commit(
        self, dst_dirfd: int, tmp: _Name, final: _Name, rec: _Name, op: IntArray, /
    ) -> int: ...
    def us_batch_size(self, cap: int, names_cap: int, /) -> int: ...
    def us_batch_init(self, mem: CData, cap: int, names_cap: int, /) -> UsBatch: ...
    def us_batch_add(
        self,
        b: UsBatch,
        src_dirfd: int,
        src_name: _Name,
        dst_dirfd: int,
        dst_name: _Name,
        st: UsStat,
        type: int,
        flags: int,
        mode_mask: int,
        /,
    ) -> int: ...
    def us_batch_set_final(self, b: UsBatch, idx: int, name: _Name, /) -> int: ...
    def us_batch_pack_fds(self, b: UsBatch, fds: IntArray, max: int, /) -> int: ...
    def us_batch_bind_fds(self, b: UsBatch, fds: IntArray | CData, n: int, /) -> int: ...
    def us_catch_stop(self, on: int, wake_fd: int, /) -> int: ...
    def us_stop_requested(self) -> int: ...
    us_stop_flag: int
    us_sync_cold_flag: int
    def us_clear_stop(self) -> None: ...
    def us_die_with_parent(self) -> int: ...

ffi: _FFI
lib: _Lib
