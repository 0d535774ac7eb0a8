"""Walk a source tree and feed the engine batches of jobs.

Python owns the walk, the batching and the bookkeeping; the per-file work
(open, data, metadata, close) happens in C, many files at once.

Design points:
* Every open is relative to a directory fd and never follows a symlink in the
  destination (O_NOFOLLOW, O_EXCL), so depth is not limited by PATH_MAX.
* Jobs from many directories share one batch, so even trees with a few files
  per directory keep the queue full.
* A directory's owner, mode and times are applied after all its children are
  done (cp -a's order); it is created 0700 until then.
* Open directory fds are bounded (RLIMIT_NOFILE): least recently used
  directories are closed and re-opened from their parent when needed again.
"""

from __future__ import annotations

import contextlib
import errno as E
import functools
import os
import resource
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uringsync import engine
from uringsync._uring import ffi, lib
from uringsync.engine import Batch, Ring, Scan, Stat
from uringsync.pool import Pool, Worker

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# Steps after the data: the file stays (complete) when one of these fails.
_META_OPS = frozenset(
    {
        lib.US_OP_CHOWN,
        lib.US_OP_CHMOD,
        lib.US_OP_UTIMES,
        lib.US_OP_XATTR_LIST,
        lib.US_OP_XATTR_GET,
        lib.US_OP_XATTR_SET,
    }
)
# Reported once per (step, errno): a destination that refuses xattrs would
# otherwise print one line per file.
_ONCE_OPS = frozenset({"xattr_list", "xattr_get", "xattr_set"})
_COPYABLE = frozenset(
    {engine.T_REG, engine.T_LNK, engine.T_FIFO, engine.T_CHR, engine.T_BLK, engine.T_SOCK}
)
_SPECIALS = frozenset({engine.T_FIFO, engine.T_CHR, engine.T_BLK, engine.T_SOCK})

# Source-side steps: their errors name the source path, and their ENOENT
# means "vanished while we copied".
_SOURCE_OPS = frozenset({"open", "read", "stat", "readlink", "opendir", "readdir", "src_changed"})

# Big files: at least SPLIT_MIN bytes are copied as RANGE-byte ranges by
# several workers at once (docs/benchmarks.md has the measurements).
SPLIT_MIN = 64 << 20
RANGE = 32 << 20
MAX_BIG_OPEN = 4  # big files open at once (two fds each)
RANGES_PER_BATCH = 8
SCAN_GROUP = 16  # directories listed and stat'ed together
EARLY_FLUSH = 64  # an idle worker gets a batch as soon as it has this many jobs
MAX_TRIES = 2  # runs of a job whose worker died


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the copy stopped, partial files removed."""


def show(path: bytes) -> str:
    """A path for a message: bytes that are not UTF-8 become \\xNN escapes."""
    return "'" + path.decode("utf-8", "backslashreplace") + "'"


@dataclass(frozen=True)
class FileError:
    """One per-file failure: the path, the step that failed and errno."""

    path: bytes
    op: str
    errno: int
    message: str

    @property
    def vanished(self) -> bool:
        return self.errno == E.ENOENT and self.op in _SOURCE_OPS


@dataclass(frozen=True)
class Event:
    """Progress: ``scanned`` after a source directory was listed and stat'ed
    (before its files are copied); ``batch`` after a batch of jobs finished."""

    kind: str
    src_dir: bytes = b""
    entries: int = 0
    files: int = 0
    bytes: int = 0


@dataclass
class Options:
    preserve_owner: bool = True
    preserve_mode: bool = True
    preserve_times: bool = True
    preserve_xattr: bool = True
    preserve_acl: bool = True
    preserve_links: bool = True
    recursive: bool = True
    one_file_system: bool = False
    sparse: str = "auto"  # auto | always | never
    reflink: str = "auto"  # auto | always | never
    queue_depth: int = engine.DEFAULT_QUEUE_DEPTH
    batch_size: int = 512
    jobs: int = 0  # worker processes (0: run the batches in this process)
    direct: int = 0  # O_DIRECT for split big files: 1 source, 2 destination
    progress: Callable[[Event], None] | None = None
    on_error: Callable[[FileError], None] | None = None
    on_verbose: Callable[[str], None] | None = None


@dataclass
class Totals:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    links: int = 0  # hard links made (names after the first of an inode)
    specials: int = 0
    bytes: int = 0
    errors: list[FileError] = field(default_factory=list)


class Dir:
    """A source directory being copied, and its destination twin."""

    __slots__ = (
        "acl_default",
        "done",
        "dst_fd",
        "dst_name",
        "dst_path",
        "jobs",
        "no_src",
        "parent",
        "pending",
        "scan",
        "scanned",
        "skip_contents",
        "src_fd",
        "src_name",
        "src_path",
        "st",
        "top",
    )

    def __init__(
        self,
        parent: Dir | None,
        src_name: bytes,
        dst_name: bytes,
        src_path: bytes,
        dst_path: bytes,
        st: Stat | None,
    ) -> None:
        self.parent = parent
        self.src_name = src_name
        self.dst_name = dst_name
        self.src_path = src_path
        self.dst_path = dst_path
        self.st = st
        self.src_fd = -1
        self.dst_fd = -1
        self.pending = 0  # jobs and subdirectories not finished yet
        self.jobs = 0  # batches not yet sent that use its fds (they pin them)
        self.scan: Scan | None = None
        self.scanned = False
        self.skip_contents = False
        self.no_src = False  # the source could not be opened: copy it empty
        self.done = False  # its metadata is applied; only hard links may still use it
        self.acl_default = False  # the destination has a default ACL (new entries inherit)
        self.top = False  # the parents of the command-line paths: never closed here


class LinkGroup:
    """The names met so far of one multiply-linked source inode.  The first
    name is copied; the others become hard links to that copy once it is
    complete (they wait meanwhile).  If the copy fails, the next name is
    copied instead, so the data is written once per inode."""

    __slots__ = ("dir", "key", "name_c", "nlink", "seen", "st", "state", "waiting")
    QUEUED, DONE, FAILED = range(3)

    def __init__(self, key: tuple[int, int, int], d: Dir, name: bytes, st: Stat) -> None:
        self.key = key
        self.dir = d
        self.name_c = ffi.new("char[]", name)
        self.st = st
        self.nlink = int(st.nlink)
        self.seen = 1
        self.state = LinkGroup.QUEUED
        self.waiting: list[tuple[Dir, bytes]] = []


class BigFile:
    """A big regular file copied as ranges by several workers: the walker
    holds both ends open until the last range is in."""

    __slots__ = ("body_end", "bytes", "d", "err", "fds", "flags", "left", "name", "st")

    def __init__(self, d: Dir, name: bytes, st: Stat, fds: tuple[int, int], flags: int) -> None:
        self.d = d
        self.name = name
        self.st = st
        self.fds = fds
        self.flags = flags
        self.left = 0
        self.bytes = 0
        self.body_end = 0  # ranges cover [0, body_end); us_big_finish the rest
        self.err: tuple[int, int] | None = None  # (US_OP_*, errno) of the first failure


class Slot:
    """The walker's side of one batch: per job, the directory it belongs
    to, its hard-link group, a second directory (a hard link's target) or
    the big file (a range), and how often it ran; the directories whose fds
    it uses until it is sent."""

    __slots__ = ("aux", "dirs", "groups", "owners", "tries")

    def __init__(self) -> None:
        self.owners: list[Dir] = []
        self.groups: list[LinkGroup | None] = []
        self.aux: list[Dir | BigFile | None] = []
        self.tries: list[int] = []
        self.dirs: dict[Dir, None] = {}

    def clear(self) -> None:
        self.owners.clear()
        self.groups.clear()
        self.aux.clear()
        self.tries.clear()
        self.dirs.clear()


def has_default_acl(fd: int) -> bool:
    """Whether entries made in this directory inherit ACLs."""
    try:
        os.getxattr(fd, "system.posix_acl_default")
    except OSError:
        return False
    return True


def join(a: bytes, b: bytes) -> bytes:
    """Display path of ``b`` inside ``a`` (paths are only for messages)."""
    if not a:
        return b
    return a + b if a.endswith(b"/") else a + b"/" + b


def fd_budget() -> tuple[int, int]:
    """How many directories may stay open, and how many files in flight,
    within RLIMIT_NOFILE (raised to the hard limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    limit = 1 << 20 if soft == resource.RLIM_INFINITY else soft
    in_use = len(os.listdir("/proc/self/fd")) + 4
    spare = max(8, limit - in_use)
    dirs = max(2, min(512, spare // 4))  # two fds each
    inflight = max(1, (spare - 2 * dirs) // 2)  # two fds each
    return dirs, inflight


class Walker:
    """Walks the source, queues jobs into batches, and hands full batches to
    the worker pool (or runs them itself without one).  It alone owns the
    hard-link table and directory completion, so both stay right with any
    number of workers.

    Completions may not queue jobs (a full batch would have to wait for
    completions inside a completion): what they would queue goes to
    ``deferred``, run at the walk's safe points."""

    def __init__(
        self,
        ring: Ring,
        opts: Options,
        pool: Pool | None = None,
        budget: tuple[int, int] | None = None,
        wake_fd: int = -1,
    ) -> None:
        self.ring = ring
        self.opts = opts
        self.totals = Totals()
        self.pool = pool
        self.wake_fd = wake_fd
        self.batches = pool.batches if pool else [Batch(opts.batch_size) for _ in range(2)]
        self.slots = [Slot() for _ in self.batches]
        self.free = pool.free if pool else [1, 0]
        self.ready: deque[int] = deque()  # sealed, waiting for a worker
        self.deferred: deque[Callable[[], None]] = deque()
        self.bigs: dict[BigFile, None] = {}
        self.cur = self.free.pop()
        self.batch = self.batches[self.cur]
        self.slot = self.slots[self.cur]
        self.pinned = 0  # directories pinned by batches not yet sent
        self.inodes: dict[tuple[int, int, int], LinkGroup] = {}
        self.reported: set[tuple[str, int]] = set()
        self.lru: OrderedDict[Dir, None] = OrderedDict()
        self.max_dirs, inflight = budget or fd_budget()
        self.offload = False  # the destination uses copy_file_range
        self.copy_range_min = engine.NEVER
        ring.set_max_inflight(min(inflight, opts.queue_depth))
        umask = os.umask(0)
        os.umask(umask)
        self.flags = (
            (engine.P_OWNER if opts.preserve_owner else 0)
            | (engine.P_MODE if opts.preserve_mode else 0)
            | (engine.P_TIMES if opts.preserve_times else 0)
            | (engine.F_STRICT_OWNER if os.geteuid() == 0 else 0)
            | (engine.P_XATTR if opts.preserve_xattr else 0)
            | (engine.P_ACL if opts.preserve_acl else 0)
            | {"auto": engine.F_SPARSE_AUTO, "always": engine.F_SPARSE_ALWAYS, "never": 0}[
                opts.sparse
            ]
        )
        self.job_flags = self.flags  # plus the destination's reflink choice
        # Without --preserve=mode, as cp: a new file gets the source's mode less
        # umask and no special bits; a directory keeps only its sticky bit.
        self.mode_mask = 0o7777 if opts.preserve_mode else 0o777 & ~umask
        self.dir_mode_mask = 0o7777 if opts.preserve_mode else 0o1777 & ~umask

    # ---------------------------------------------------------- reporting
    def error(self, path: bytes, op: str, err: int, what: str) -> None:
        if err == E.ENOENT and op in _SOURCE_OPS:
            msg = f"file has vanished: {show(path)}"
        elif op in ("src_changed", "worker"):
            msg = what  # the reason is in the words; ESTALE's text would mislead
        else:
            msg = f"{what}: {os.strerror(err)}"
        fe = FileError(path, op, err, msg)
        self.totals.errors.append(fe)
        if op in _ONCE_OPS:
            if (op, err) in self.reported:
                return
            self.reported.add((op, err))
            fe = FileError(path, op, err, msg + " (reported once for all files)")
        if self.opts.on_error:
            self.opts.on_error(fe)

    def set_destination(self, dst_fd: int, copy_range_min: int | None) -> None:
        """Per command-line argument: the data path and reflinks suit the
        destination's file system (docs/design.md)."""
        fs = engine.fs_type(dst_fd)
        clones = engine.OFFLOAD_FS.get(fs) in ("btrfs", "xfs")
        reflink = self.opts.reflink
        self.job_flags = self.flags
        if reflink == "always":
            self.job_flags |= engine.F_REFLINK_REQUIRE
        elif reflink == "auto" and clones:
            self.job_flags |= engine.F_REFLINK_TRY
        if copy_range_min is None:
            # copy_file_range clones on btrfs/xfs: not with --reflink=never
            offload = fs in engine.OFFLOAD_FS and not (clones and reflink == "never")
            copy_range_min = 0 if offload else engine.NEVER
        self.flush()  # the batch so far goes to the previous destination
        self.copy_range_min = copy_range_min
        self.offload = copy_range_min != engine.NEVER
        self.batch.c.copy_range_min = copy_range_min
        self.ring.set_copy_range_min(copy_range_min)

    def dir_error(self, path: bytes, op: str, e: OSError, verb: str = "open") -> None:
        """A step on a directory failed: 'cannot <verb> directory 'path': reason'."""
        self.error(path, op, e.errno or E.EIO, f"cannot {verb} directory {show(path)}")

    def verbose(self, src: bytes, dst: bytes) -> None:
        if self.opts.on_verbose:
            self.opts.on_verbose(f"{show(src)} -> {show(dst)}")

    # -------------------------------------------------------- directories
    def _evict(self, keep: Dir | None) -> None:
        """Make room for one more open directory.  Never flushes (callers
        hold fds across it); the walk loop flushes before too many
        directories are pinned by queued jobs, so a victim is there."""
        while len(self.lru) >= self.max_dirs:
            victim = next((d for d in self.lru if d.jobs == 0 and d is not keep), None)
            if victim is None:
                return  # briefly over budget; EMFILE handling covers the rest
            self._close(victim)

    def _close(self, d: Dir) -> None:
        self.lru.pop(d, None)
        for fd in (d.src_fd, d.dst_fd):
            if fd >= 0:
                os.close(fd)
        d.src_fd = d.dst_fd = -1

    def _fds(self, d: Dir, need_src: bool = True) -> tuple[int, int]:
        """Open fds of a directory, re-opening it (and closed ancestors) by
        name from the nearest open ancestor.  With ``need_src`` False only
        the destination side is needed (a hard link's target, a finished
        directory): a source renamed meanwhile does not matter then."""

        if d.dst_fd >= 0 and (d.src_fd >= 0 or d.no_src or not need_src):
            if not d.top:  # the common case, once per queued file: stay cheap
                self.lru.move_to_end(d)
            return d.src_fd, d.dst_fd

        def is_open(n: Dir) -> bool:
            return n.dst_fd >= 0 and (not need_src or n.src_fd >= 0 or n.no_src)

        chain: list[Dir] = []
        cur: Dir | None = d
        while cur is not None and not is_open(cur):
            chain.append(cur)
            cur = cur.parent
        for node in reversed(chain):
            parent = node.parent
            assert parent is not None
            self._evict(keep=parent)
            if node.dst_fd < 0:
                node.dst_fd = os.open(node.dst_name, O_DIR, dir_fd=parent.dst_fd)
            if need_src and node.src_fd < 0 and not node.no_src:
                node.src_fd = os.open(node.src_name, O_DIR, dir_fd=parent.src_fd)
            self.lru[node] = None
        if not d.top:
            self.lru.move_to_end(d)
        return d.src_fd, d.dst_fd

    def _create(self, d: Dir) -> bool:
        """First visit: open the source, make the destination (0700 until its
        metadata is applied), open it without following a symlink."""
        parent = d.parent
        assert parent is not None
        try:
            psrc, pdst = self._fds(parent)
        except OSError as e:
            self.dir_error(parent.src_path, "opendir", e)
            return False
        self._evict(keep=parent)
        try:
            src_fd = os.open(d.src_name, O_DIR, dir_fd=psrc)
        except OSError as e:
            self.dir_error(d.src_path, "opendir", e)
            if e.errno == E.ENOENT:
                return False
            # As cp does: the directory is still made, empty, with its metadata.
            d.no_src = d.skip_contents = True
            src_fd = -1
        try:
            os.mkdir(d.dst_name, 0o700, dir_fd=pdst)
        except FileExistsError:
            pass
        except OSError as e:
            if src_fd >= 0:
                os.close(src_fd)
            self.dir_error(d.dst_path, "mkdir", e, verb="create")
            return False
        try:
            dst_fd = os.open(d.dst_name, O_DIR, dir_fd=pdst)
        except OSError as e:
            if src_fd >= 0:
                os.close(src_fd)
            if e.errno in (E.ENOTDIR, E.ELOOP):  # a file or symlink is in the way
                msg = (
                    f"cannot overwrite non-directory {show(d.dst_path)}"
                    f" with directory {show(d.src_path)}"
                )
                self.error(d.dst_path, "opendir_dst", e.errno, msg)
            else:
                self.dir_error(d.dst_path, "opendir_dst", e)
            return False
        d.src_fd, d.dst_fd = src_fd, dst_fd
        d.acl_default = has_default_acl(dst_fd)
        self.lru[d] = None
        if self.opts.on_verbose:
            self.verbose(d.src_path, d.dst_path)
        return True

    def _finish_dir(self, d: Dir) -> None:
        """All children are done: apply the directory's own metadata, close it,
        and let its parent finish if this was the parent's last child."""
        cur: Dir | None = d
        while cur is not None and cur.scanned and cur.pending == 0 and not cur.top and not cur.done:
            cur.done = True
            if cur.scan is not None:
                cur.scan.free()
                cur.scan = None
            try:
                _, dst_fd = self._fds(cur, need_src=self._dir_needs_src())
            except OSError as e:
                self.dir_error(cur.dst_path, "opendir_dst", e)
            else:
                ret, op = engine.dir_meta(
                    cur.src_fd, dst_fd, cur.st, self.flags, self.dir_mode_mask
                )
                if ret < 0:
                    self.error(cur.dst_path, op, -ret, _meta_what(op, cur.dst_path))
                self.totals.dirs += 1
            if cur.jobs == 0:  # hard links queued into it still need it open
                self._close(cur)
            parent = cur.parent
            cur = parent
            if cur is not None:
                cur.pending -= 1

    def _dir_needs_src(self) -> bool:
        """A directory's metadata reads its source only to copy xattrs."""
        return bool(self.flags & (engine.P_XATTR | engine.P_ACL))

    def _abandon(self, d: Dir) -> None:
        """A directory that could not be opened or created: nothing below it."""
        d.scanned = True
        parent = d.parent
        if parent is not None:
            parent.pending -= 1
            self._finish_dir(parent)

    # -------------------------------------------------------------- walk
    def copy_dir(self, top: Dir, root: Dir) -> None:
        """Copy the directory ``root`` (a child of the pseudo-directory ``top``
        that holds the command-line parents' fds)."""
        top.pending += 1
        stack = [root]
        assert root.st is not None
        root_dev = (root.st.dev_major, root.st.dev_minor)
        per_scan = max(1, min(SCAN_GROUP, self.max_dirs // 4))
        while stack:
            self._safe_point()
            if self.pinned >= self.max_dirs // 2:
                self.flush()  # unsent jobs hold half the directory budget
            # Several directories are listed and stat'ed at once (in
            # parallel when cold); they stay open meanwhile.
            group: list[Dir] = []
            while stack and len(group) < per_scan:
                d = stack.pop()
                if not self._create(d):
                    self._abandon(d)
                    continue
                self._hold(d)
                group.append(d)
            todo = [d for d in group if not d.skip_contents]
            try:
                found = self.ring.scan_many([d.src_fd for d in todo]) if todo else []
            except OSError:
                if lib.us_stop_requested():
                    raise Stopped from None
                raise
            scans: dict[Dir, Scan | OSError] = dict(zip(todo, found, strict=True))
            for d in group:
                self._release(d)
                subdirs = self._visit(d, root_dev, scans.get(d))
                stack.extend(reversed(subdirs))

    def _hold(self, d: Dir) -> None:
        """Keep ``d`` open (not evicted) until _release."""
        if d.jobs == 0:
            self.pinned += 1
        d.jobs += 1

    def _release(self, d: Dir) -> None:
        d.jobs -= 1
        if d.jobs == 0:
            self.pinned -= 1

    def _safe_point(self) -> None:
        """Between directories: notice a stop, take in finished batches, run
        what completions deferred, and feed an idle worker."""
        if lib.us_stop_requested():
            raise Stopped
        if self.pool is not None:
            self._wait(timeout=0)
        self._run_deferred()
        if self.pool is not None and self.batch.n >= EARLY_FLUSH and self.pool.idle():
            self.flush()

    def _run_deferred(self) -> None:
        while self.deferred:
            self.deferred.popleft()()

    def _visit(self, d: Dir, root_dev: tuple[int, int], sc: Scan | OSError | None) -> list[Dir]:
        subdirs: list[Dir] = []
        if d.skip_contents or sc is None:
            d.scanned = True
            self._finish_dir(d)
            return subdirs
        if isinstance(sc, OSError):
            self.dir_error(d.src_path, "readdir", sc, verb="read")
            d.scanned = True
            self._finish_dir(d)
            return subdirs
        one_fs = self.opts.one_file_system
        split = self._can_split()
        total = 0
        for i, ent in enumerate(sc):
            if ent.err:
                path = join(d.src_path, sc.name(i))
                self.error(path, "stat", -ent.err, f"cannot stat {show(path)}")
                continue
            st = ent.st
            t = st.type
            if t == engine.T_DIR:
                name = sc.name(i)
                child = Dir(
                    d,
                    name,
                    name,
                    join(d.src_path, name),
                    join(d.dst_path, name),
                    engine.copy_stat(ffi.addressof(ent, "st")),
                )
                child.skip_contents = one_fs and (st.dev_major, st.dev_minor) != root_dev
                d.pending += 1
                subdirs.append(child)
            elif t in _COPYABLE:
                group = None
                if t == engine.T_REG:
                    total += st.size
                if st.nlink > 1 and self.opts.preserve_links:
                    group = self._group_for(d, sc.name(i), ffi.addressof(ent, "st"))
                    if group is None:
                        continue  # a later name of a copied inode: linked, not copied
                elif (
                    split
                    and t == engine.T_REG
                    and st.size >= SPLIT_MIN
                    and st.blocks * 512 >= st.size
                    and self._queue_big(d, sc.name(i), ffi.addressof(ent, "st"))
                ):
                    continue
                nm = sc.name_ptr(i)
                d.pending += 1
                self._queue(d, nm, nm, ffi.addressof(ent, "st"), t, self.job_flags, group)
            else:
                path = join(d.src_path, sc.name(i))
                self.error(path, "type", E.EOPNOTSUPP, f"cannot copy {show(path)}: unknown type")
        d.scanned = True
        if self.opts.progress:
            self.opts.progress(Event("scanned", src_dir=d.src_path, entries=sc.n, bytes=total))
        sc.free()  # the batches hold copies of the names and stats
        self._finish_dir(d)
        return subdirs

    def copy_one(
        self, top: Dir, src_name: bytes, dst_name: bytes, st: Stat, follow: bool = False
    ) -> None:
        """A command-line SRC that is a file or a symlink (``follow``: the
        symlink's target, as cp does without -r)."""
        if st.type not in _COPYABLE:
            path = join(top.src_path, src_name)
            self.error(path, "type", E.EOPNOTSUPP, f"cannot copy {show(path)}: unknown type")
            return
        group = None
        if st.nlink > 1 and self.opts.preserve_links and not follow:
            group = self._group_for(top, dst_name, st, src_name=src_name)
            if group is None:
                return
        flags = self.job_flags | (engine.F_FOLLOW_SRC if follow else 0)
        top.pending += 1
        self._queue(top, src_name, dst_name, st, st.type, flags, group)

    # --------------------------------------------------------- big files
    def _can_split(self) -> bool:
        """Big files go in ranges to several workers, unless the data path
        would not read and write them (clones, copy_file_range offload) or
        holes must be made of zero runs."""
        return (
            self.pool is not None
            and self.pool.alive() > 1
            and not self.offload
            and not self.job_flags & (engine.F_REFLINK_TRY | engine.F_REFLINK_REQUIRE)
            and self.opts.sparse != "always"
            and len(self.bigs) < MAX_BIG_OPEN
        )

    def _queue_big(self, d: Dir, name: bytes, st_ptr: Stat) -> bool:
        """Open a big file's two ends and queue its ranges.  False: copy it
        as one job instead (something is in the way at the destination)."""
        st = engine.copy_stat(st_ptr)
        fds = ffi.new("int[2]")
        op = ffi.new("int *")
        src_fd, dst_fd = self._fds(d)
        ret = lib.us_big_open(src_fd, name, dst_fd, name, st, self.opts.direct, fds, op)
        if ret == -E.EEXIST or ret == -E.EMFILE:
            return False  # the one-job path replaces what is there / waits for fds
        if ret < 0:
            self._report(d, name, name, op[0], -ret, engine.T_REG)
            return True
        flags = self.job_flags
        if d.acl_default and self.opts.preserve_acl:
            flags |= engine.F_CLEAR_ACL
        big = BigFile(d, name, st, (fds[0], fds[1]), flags)
        size = int(st.size)
        big.body_end = size & ~4095 if ret & 2 else size  # O_DIRECT writes whole blocks
        self.bigs[big] = None
        d.pending += 1
        offs = list(range(0, big.body_end, RANGE))
        big.left = len(offs)
        if not offs:
            self._big_done(big)
            return True
        workers = self.pool.alive() if self.pool else 1
        per_batch = max(1, min(RANGES_PER_BATCH, -(-len(offs) // (2 * workers))))
        self.flush()  # ranges start a batch of their own, to spread over workers
        for k, off in enumerate(offs):
            self._queue_range(big, off, min(RANGE, big.body_end - off))
            if (k + 1) % per_batch == 0:
                self.flush()
        self.flush()
        return True

    def _queue_range(self, big: BigFile, off: int, length: int, tries: int = 0) -> None:
        while self.batch.full:
            self.flush()
        i = self.batch.add(
            big.fds[0], big.name, big.fds[1], big.name, big.st, engine.T_RANGE, big.flags, 0
        )
        j = self.batch.jobs[i]
        j.off = off
        j.len = length
        sl = self.slot
        sl.owners.append(big.d)
        sl.groups.append(None)
        sl.aux.append(big)
        sl.tries.append(tries)

    def _range_done(self, big: BigFile, j: Any) -> None:
        if j.err and big.err is None:
            big.err = (int(j.op), -int(j.err))
        big.bytes += int(j.bytes)
        big.left -= 1
        if big.left == 0:
            self._big_done(big)

    def _big_done(self, big: BigFile) -> None:
        """Every range is in: the tail, the metadata, close; or, after a
        failure, remove the partial copy."""
        self.bigs.pop(big, None)
        d = big.d
        sfd, dfd = big.fds
        err = big.err
        if err is None and big.bytes != big.body_end:
            err = (lib.US_OP_SRC_CHANGED, E.ESTALE)  # it shrank while being copied
        meta_err: tuple[int, int] | None = None
        if err is None:
            op = ffi.new("int *")
            ret = lib.us_big_finish(sfd, dfd, big.body_end, big.st, big.flags, self.mode_mask, op)
            if ret < 0:
                if op[0] in _META_OPS:
                    meta_err = (op[0], -ret)
                else:
                    err = (op[0], -ret)
        os.close(sfd)
        try:
            os.close(dfd)
        except OSError as e:
            err = err or (lib.US_OP_CLOSE, e.errno or E.EIO)
        if err is not None:
            with contextlib.suppress(OSError):
                os.unlink(big.name, dir_fd=self._fds(d, need_src=False)[1])
            self._report(d, big.name, big.name, err[0], err[1], engine.T_REG)
        else:
            if meta_err is not None:
                self._report(d, big.name, big.name, meta_err[0], meta_err[1], engine.T_REG)
            self.totals.files += 1
            self.totals.bytes += int(big.st.size)
            if self.opts.on_verbose:
                self.verbose(join(d.src_path, big.name), join(d.dst_path, big.name))
        d.pending -= 1
        self._finish_dir(d)

    # -------------------------------------------------------- hard links
    def _group_for(
        self, d: Dir, name: bytes, st: Stat, src_name: bytes | None = None
    ) -> LinkGroup | None:
        """The hard-link group of a multiply-linked entry.  Returns the group
        when this name must be copied (the first, or the next after a failed
        copy); None when it is (or will be) linked to the copy."""
        key = (int(st.dev_major), int(st.dev_minor), int(st.ino))
        g = self.inodes.get(key)
        if g is None:
            g = LinkGroup(key, d, name, engine.copy_stat(st))
            self.inodes[key] = g
            return g
        g.seen += 1
        if g.state == LinkGroup.FAILED:
            g.dir, g.name_c, g.state = d, ffi.new("char[]", name), LinkGroup.QUEUED
            return g
        d.pending += 1
        if g.state == LinkGroup.DONE:
            self._queue_link(g, d, name)
        else:
            g.waiting.append((d, name))
        return None

    def _queue_link(self, g: LinkGroup, d: Dir, name: bytes) -> None:
        self._queue(d, g.name_c, name, g.st, engine.T_HARDLINK, self.job_flags, None, g.dir)
        if g.seen >= g.nlink and not g.waiting:
            self.inodes.pop(g.key, None)  # every name is met: forget the inode

    def _group_done(self, g: LinkGroup, ok: bool) -> None:
        """The group's copy finished: link the waiting names to it, or copy
        the next waiting name if it failed.  Queues: only at safe points."""
        if ok:
            g.state = LinkGroup.DONE
            waiting, g.waiting = g.waiting, []
            for d, name in waiting:
                self._queue_link(g, d, name)
            if g.seen >= g.nlink:
                self.inodes.pop(g.key, None)
            return
        g.state = LinkGroup.FAILED
        if g.waiting:
            d, name = g.waiting.pop(0)
            g.dir, g.name_c, g.state = d, ffi.new("char[]", name), LinkGroup.QUEUED
            self._queue(d, name, name, g.st, g.st.type, self.job_flags, g)

    # ------------------------------------------------------------- queue
    def _pin(self, d: Dir) -> None:
        """The current batch uses ``d``'s fds: keep them open until it is sent."""
        dirs = self.slot.dirs
        if d not in dirs:
            dirs[d] = None
            if d.jobs == 0:
                self.pinned += 1
            d.jobs += 1

    def _unpin(self, idx: int) -> None:
        dirs = self.slots[idx].dirs
        for d in dirs:
            d.jobs -= 1
            if d.jobs == 0:
                self.pinned -= 1
        dirs.clear()

    def _queue(
        self,
        d: Dir,
        src_name: Any,
        dst_name: Any,
        st: Stat,
        ftype: int,
        flags: int,
        group: LinkGroup | None,
        link_to: Dir | None = None,
        tries: int = 0,
    ) -> None:
        """Add a job for an entry of ``d`` (whose ``pending`` already counts
        it).  A hard link's source is the copy in ``link_to``.  Names are
        bytes or C strings; the batch keeps copies."""
        while self.batch.full:
            self.flush()
        if self.pinned >= self.max_dirs - 2 and self.batch.n:
            self.flush()  # hard links pin their targets too: stay in the fd budget
        # pinned first, so opening one cannot evict the other
        self._pin(d)
        if link_to is not None:
            self._pin(link_to)
        try:
            src_fd, dst_fd = self._fds(d, need_src=link_to is None)
            if link_to is not None:
                src_fd = self._fds(link_to, need_src=False)[1]
        except OSError as e:
            bad = d.src_path if link_to is None else d.dst_path
            self.dir_error(bad, "opendir", e)
            d.pending -= 1
            if group is not None:
                self.deferred.append(lambda: self._group_done(group, False))
            self._finish_dir(d)
            return
        if d.acl_default and self.opts.preserve_acl:
            flags |= engine.F_CLEAR_ACL  # remove what the entry inherits
        self.batch.add(src_fd, src_name, dst_fd, dst_name, st, ftype, flags, self.mode_mask)
        sl = self.slot
        sl.owners.append(d)
        sl.groups.append(group)
        sl.aux.append(link_to)
        sl.tries.append(tries)

    def drain(self) -> None:
        """Run everything queued, including what the runs queue (hard
        links), until nothing is left anywhere."""
        while True:
            if lib.us_stop_requested():
                raise Stopped
            self._run_deferred()
            if self.batch.n:
                self.flush()
            elif self.pool is not None and any(w.held for w in self.pool.workers):
                self._wait(timeout=None)
            elif not self.deferred:
                return

    def abort(self) -> None:
        """After a stop (the workers are gone): remove what was left half
        written.  A worker that stopped cleanly removed its own partial
        files; one that was killed left its started jobs' files behind."""
        held = [idx for w in self.pool.workers for idx in w.held] if self.pool else []
        for idx in held:
            self._remove_partial(idx)
        for big in list(self.bigs):
            for fd in big.fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(big.name, dir_fd=self._fds(big.d, False)[1])
        self.bigs.clear()

    def _remove_partial(self, idx: int) -> None:
        """A worker was killed holding batch ``idx``: the files it had
        started may be partial (it could not unlink them itself)."""
        b, sl = self.batches[idx], self.slots[idx]
        for i in range(b.n):
            j = b.jobs[i]
            if j.type == engine.T_REG and j.state == engine.JOB_STARTED:
                with contextlib.suppress(OSError):
                    os.unlink(ffi.string(j.dst_name), dir_fd=self._fds(sl.owners[i], False)[1])
                j.state = lib.US_JOB_QUEUED  # nothing of it is left

    def close(self) -> None:
        for d in list(self.lru):
            self._close(d)

    # ------------------------------------------------------------- flush
    def flush(self) -> None:
        """Seal the current batch and send it (waiting for a worker to have
        room if none has: that is the bound on memory), then start another."""
        if self.batch.n == 0:
            return
        self.ready.append(self.cur)
        self._send_ready()
        while self.ready or not self.free:
            self._wait(timeout=None)
            self._send_ready()
        self.cur = self.free.pop()
        self.batch = self.batches[self.cur]
        self.slot = self.slots[self.cur]
        self.batch.clear()
        self.slot.clear()
        self.batch.c.copy_range_min = self.copy_range_min

    def _send_ready(self) -> None:
        pool = self.pool
        while self.ready and (pool is None or pool.can_send()):
            idx = self.ready.popleft()
            if pool is None:
                self._run_here(idx)
            else:
                pool.send(idx)  # the worker gets its own copies of the fds
                self._unpin(idx)

    def _run_here(self, idx: int) -> None:
        """No workers (or none left): run the batch on the walker's ring."""
        b = self.batches[idx]
        self.ring.set_copy_range_min(int(b.c.copy_range_min))
        try:
            self.ring.run(b)
        except OSError:
            if lib.us_stop_requested():
                raise Stopped from None
            raise
        finally:
            self._unpin(idx)
        self._complete(idx)

    def _wait(self, timeout: float | None) -> None:
        """Take in finished batches (and notice dead workers and stops)."""
        pool = self.pool
        if pool is None:
            return
        done, died = pool.wait(self.wake_fd, timeout)
        if lib.us_stop_requested():
            raise Stopped
        for idx in done:
            self._complete(idx)
        for w in died:
            self._worker_died(pool, w)

    def _worker_died(self, pool: Pool, w: Worker) -> None:
        status = next((how for who, how in pool.dead if who is w), "died")
        held = list(w.held)
        w.held.clear()
        unfinished = sum(
            1
            for idx in held
            for i in range(self.batches[idx].n)
            if self.batches[idx].jobs[i].state != engine.JOB_DONE
        )
        self.error(
            b"",
            "worker",
            E.ECHILD,
            f"worker {w.index} (pid {w.pid}, cpu {w.cpu}) {status}; "
            f"{unfinished} of its files are copied again",
        )
        if pool.alive() == 0:
            self.pool = None  # none left: the walker runs the rest itself
        for idx in held:
            self._remove_partial(idx)
        for idx in held:
            self._complete(idx)

    def _complete(self, idx: int) -> None:
        """A batch is back: count, report, and finish what it completes.
        Jobs it did not finish (a worker died or stopped) are queued again."""
        b = self.batches[idx]
        sl = self.slots[idx]
        t = self.totals
        touched: dict[Dir, None] = {}
        files = nbytes = range_bytes = 0
        for i in range(b.n):
            j = b.jobs[i]
            d = sl.owners[i]
            aux = sl.aux[i]
            group = sl.groups[i]
            if j.state != engine.JOB_DONE or (
                j.op == lib.US_OP_STOPPED and not lib.us_stop_requested()
            ):  # its worker died or was stopped alone: run it again
                self._again(d, j, group, aux, sl.tries[i] + 1)
                continue
            if isinstance(aux, BigFile):
                self._range_done(aux, j)  # counted when the whole file is in
                range_bytes += int(j.bytes)
                continue
            d.pending -= 1
            touched[d] = None
            ok = not j.err or j.op in _META_OPS  # the data is at the destination
            if j.err:
                self._job_error(d, j)
            if group is not None:
                self.deferred.append(functools.partial(self._group_done, group, ok))
            if not ok:
                continue
            jt = j.type
            if jt == engine.T_LNK:
                t.symlinks += 1
            elif jt == engine.T_HARDLINK:
                t.links += 1
            elif jt in _SPECIALS:
                t.specials += 1
            else:
                t.files += 1
                nbytes += j.bytes
            files += 1
            if self.opts.on_verbose:
                src_name = j.dst_name if jt == engine.T_HARDLINK else j.src_name
                self.verbose(
                    join(d.src_path, ffi.string(src_name)),
                    join(d.dst_path, ffi.string(j.dst_name)),
                )
        t.bytes += nbytes
        b.clear()
        sl.clear()
        self.free.append(idx)
        for d in touched:
            self._finish_dir(d)
        if self.opts.progress:
            self.opts.progress(Event("batch", files=files, bytes=nbytes + range_bytes))

    def _again(
        self, d: Dir, j: Any, group: LinkGroup | None, aux: Dir | BigFile | None, tries: int
    ) -> None:
        """Queue a job again (at a safe point) whose worker died before it
        finished; after MAX_TRIES it fails."""
        src = ffi.string(j.src_name)
        dst = ffi.string(j.dst_name)
        st = engine.copy_stat(j.st)
        ftype, flags = int(j.type), int(j.flags)
        if tries >= MAX_TRIES and self.pool is not None:  # (the walker itself never dies)
            j.err, j.op = -E.ECHILD, lib.US_OP_NONE
            if isinstance(aux, BigFile):
                self._range_done(aux, j)
                return
            path = join(d.dst_path, dst)
            self.error(path, "worker", E.ECHILD, f"{show(path)} not copied: its workers died")
            d.pending -= 1
            if group is not None:
                self.deferred.append(lambda: self._group_done(group, False))
            self._finish_dir(d)
            return
        if isinstance(aux, BigFile):
            off, length = int(j.off), int(j.len)
            self.deferred.append(lambda: self._queue_range(aux, off, length, tries))
            return
        self.deferred.append(lambda: self._queue(d, src, dst, st, ftype, flags, group, aux, tries))

    def _job_error(self, d: Dir, j: Any) -> None:
        self._report(
            d, ffi.string(j.src_name), ffi.string(j.dst_name), int(j.op), -int(j.err), int(j.type)
        )

    def _report(
        self,
        d: Dir,
        src_name: bytes,
        dst_name: bytes,
        op_code: int,
        err: int,
        ftype: int,
        what: str | None = None,
    ) -> None:
        """A job's failure: 'what happened to which path: reason'."""
        op = engine.OPS.get(op_code, "copy")
        src = join(d.src_path, src_name)
        dst = join(d.dst_path, dst_name)
        kind = "symbolic link" if ftype == engine.T_LNK else "regular file"
        what = (
            what
            or {
                "open": f"cannot open {show(src)} for reading",
                "create": (
                    f"cannot overwrite directory {show(dst)} with non-directory"
                    if err == E.EISDIR
                    else f"cannot create {kind} {show(dst)}"
                ),
                "read": f"error reading {show(src)}",
                "write": f"error writing {show(dst)}",
                "copy_file_range": f"error copying {show(src)} to {show(dst)}",
                "close": f"failed to close {show(dst)}",
                "readlink": f"cannot read symbolic link {show(src)}",
                "symlink": f"cannot create symbolic link {show(dst)}",
                "unlink": f"cannot remove {show(dst)}",
                "type": f"cannot copy {show(src)}",
                "src_changed": f"skipping {show(src)}, as it was replaced while being copied",
                "mknod": f"cannot create special file {show(dst)}",
                "link": f"cannot create hard link {show(dst)}",
                "clone": f"failed to clone {show(dst)} from {show(src)}",
                "seek": f"cannot find the holes of {show(src)}",
                "truncate": f"cannot set the size of {show(dst)}",
                "stopped": f"stopped while copying {show(src)}",
                "stat": f"cannot stat {show(src)}",
            }.get(op)
            or _meta_what(op, dst)
        )
        self.error(src if op in _SOURCE_OPS else dst, op, err, what)


def _meta_what(op: str, dst: bytes) -> str:
    return {
        "chown": f"failed to preserve ownership for {show(dst)}",
        "chmod": f"preserving permissions for {show(dst)}",
        "utimens": f"preserving times for {show(dst)}",
        "xattr_list": f"cannot list extended attributes for {show(dst)}",
        "xattr_get": f"cannot read extended attributes for {show(dst)}",
        "xattr_set": f"setting extended attributes for {show(dst)}",
    }.get(op, f"{op} {show(dst)}")
