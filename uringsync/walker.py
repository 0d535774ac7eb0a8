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

import errno as E
import os
import resource
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uringsync import engine
from uringsync._uring import ffi, lib
from uringsync.engine import Batch, Ring, Scan, Stat

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_META_OPS = frozenset({lib.US_OP_CHOWN, lib.US_OP_CHMOD, lib.US_OP_UTIMES})

# Source-side steps: their errors name the source path, and their ENOENT
# means "vanished while we copied".
_SOURCE_OPS = frozenset({"open", "read", "stat", "readlink", "opendir", "readdir"})


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
    recursive: bool = True
    one_file_system: bool = False
    queue_depth: int = engine.DEFAULT_QUEUE_DEPTH
    batch_size: int = 4096
    progress: Callable[[Event], None] | None = None
    on_error: Callable[[FileError], None] | None = None
    on_verbose: Callable[[str], None] | None = None


@dataclass
class Totals:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    errors: list[FileError] = field(default_factory=list)


class Dir:
    """A source directory being copied, and its destination twin."""

    __slots__ = (
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
        self.jobs = 0  # jobs in the current batch (they pin the fds)
        self.scan: Scan | None = None
        self.scanned = False
        self.skip_contents = False
        self.no_src = False  # the source could not be opened: copy it empty
        self.top = False  # the parents of the command-line paths: never closed here


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
    def __init__(self, ring: Ring, opts: Options) -> None:
        self.ring = ring
        self.opts = opts
        self.totals = Totals()
        self.batch = Batch(opts.batch_size)
        self.owners: list[Dir] = []
        self.pinned = 0  # directories with jobs in the current batch
        self.lru: OrderedDict[Dir, None] = OrderedDict()
        self.max_dirs, inflight = fd_budget()
        ring.set_max_inflight(min(inflight, opts.queue_depth))
        umask = os.umask(0)
        os.umask(umask)
        self.flags = (
            (engine.P_OWNER if opts.preserve_owner else 0)
            | (engine.P_MODE if opts.preserve_mode else 0)
            | (engine.P_TIMES if opts.preserve_times else 0)
            | (engine.F_STRICT_OWNER if os.geteuid() == 0 else 0)
        )
        # Without --preserve=mode, as cp: a new file gets the source's mode less
        # umask and no special bits; a directory keeps only its sticky bit.
        self.mode_mask = 0o7777 if opts.preserve_mode else 0o777 & ~umask
        self.dir_mode_mask = 0o7777 if opts.preserve_mode else 0o1777 & ~umask

    # ---------------------------------------------------------- reporting
    def error(self, path: bytes, op: str, err: int, what: str) -> None:
        if err == E.ENOENT and op in _SOURCE_OPS:
            msg = f"file has vanished: {show(path)}"
        else:
            msg = f"{what}: {os.strerror(err)}"
        fe = FileError(path, op, err, msg)
        self.totals.errors.append(fe)
        if self.opts.on_error:
            self.opts.on_error(fe)

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

    def _fds(self, d: Dir) -> tuple[int, int]:
        """Open fds of a directory, re-opening it (and closed ancestors) by
        name from the nearest open ancestor."""
        chain: list[Dir] = []
        cur: Dir | None = d
        while cur is not None and cur.dst_fd < 0:
            chain.append(cur)
            cur = cur.parent
        for node in reversed(chain):
            parent = node.parent
            assert parent is not None
            self._evict(keep=parent)
            src_fd = -1 if node.no_src else os.open(node.src_name, O_DIR, dir_fd=parent.src_fd)
            try:
                dst_fd = os.open(node.dst_name, O_DIR, dir_fd=parent.dst_fd)
            except OSError:
                if src_fd >= 0:
                    os.close(src_fd)
                raise
            node.src_fd, node.dst_fd = src_fd, dst_fd
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
            self.error(
                parent.src_path,
                "opendir",
                e.errno or E.EIO,
                f"cannot open directory {show(parent.src_path)}",
            )
            return False
        self._evict(keep=parent)
        try:
            src_fd = os.open(d.src_name, O_DIR, dir_fd=psrc)
        except OSError as e:
            self.error(
                d.src_path, "opendir", e.errno or E.EIO, f"cannot open directory {show(d.src_path)}"
            )
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
            self.error(
                d.dst_path, "mkdir", e.errno or E.EIO, f"cannot create directory {show(d.dst_path)}"
            )
            return False
        try:
            dst_fd = os.open(d.dst_name, O_DIR, dir_fd=pdst)
        except OSError as e:
            if src_fd >= 0:
                os.close(src_fd)
            if e.errno in (E.ENOTDIR, E.ELOOP):
                msg = (
                    f"cannot overwrite non-directory {show(d.dst_path)}"
                    f" with directory {show(d.src_path)}"
                )
            else:
                msg = f"cannot open directory {show(d.dst_path)}"
            self.error(d.dst_path, "opendir_dst", e.errno or E.EIO, msg)
            return False
        d.src_fd, d.dst_fd = src_fd, dst_fd
        self.lru[d] = None
        if self.opts.on_verbose:
            self.verbose(d.src_path, d.dst_path)
        return True

    def _finish_dir(self, d: Dir) -> None:
        """All children are done: apply the directory's own metadata, close it,
        and let its parent finish if this was the parent's last child."""
        cur: Dir | None = d
        while cur is not None and cur.scanned and cur.pending == 0 and not cur.top:
            if cur.scan is not None:
                cur.scan.free()
                cur.scan = None
            try:
                _, dst_fd = self._fds(cur)
            except OSError as e:
                self.error(
                    cur.dst_path,
                    "opendir_dst",
                    e.errno or E.EIO,
                    f"cannot open directory {show(cur.dst_path)}",
                )
            else:
                ret, op = engine.set_meta_fd(dst_fd, cur.st, self.flags, self.dir_mode_mask)
                if ret < 0:
                    self.error(cur.dst_path, op, -ret, _meta_what(op, cur.dst_path))
                self.totals.dirs += 1
            self._close(cur)
            parent = cur.parent
            cur = parent
            if cur is not None:
                cur.pending -= 1

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
        while stack:
            if self.pinned >= self.max_dirs // 2:
                self.flush()  # queued jobs hold half the directory budget
            d = stack.pop()
            if not self._create(d):
                self._abandon(d)
                continue
            subdirs = self._visit(d, root_dev)
            stack.extend(reversed(subdirs))
        self.flush()

    def _visit(self, d: Dir, root_dev: tuple[int, int]) -> list[Dir]:
        subdirs: list[Dir] = []
        if d.skip_contents:
            d.scanned = True
            self._finish_dir(d)
            return subdirs
        try:
            sc = self.ring.scan(d.src_fd, d.src_path)
        except OSError as e:
            self.error(
                d.src_path, "readdir", e.errno or E.EIO, f"cannot read directory {show(d.src_path)}"
            )
            d.scanned = True
            self._finish_dir(d)
            return subdirs
        d.scan = sc
        if self.opts.progress:
            self.opts.progress(Event("scanned", src_dir=d.src_path, entries=sc.n))
        one_fs = self.opts.one_file_system
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
            elif t == engine.T_REG or t == engine.T_LNK:
                if self.batch.full:
                    self.flush()
                src_fd, dst_fd = self._fds(d)
                nm = sc.name_ptr(i)
                self.batch.add(
                    src_fd, nm, dst_fd, nm, ffi.addressof(ent, "st"), t, self.flags, self.mode_mask
                )
                self.owners.append(d)
                if d.jobs == 0:
                    self.pinned += 1
                d.jobs += 1
                d.pending += 1
            else:
                path = join(d.src_path, sc.name(i))
                self.error(path, "type", E.EOPNOTSUPP, f"cannot copy special file {show(path)}")
        d.scanned = True
        if d.jobs == 0:
            self._finish_dir(d)
        return subdirs

    def copy_one(
        self, top: Dir, src_name: bytes, dst_name: bytes, st: Stat, follow: bool = False
    ) -> None:
        """A command-line SRC that is a file or a symlink (``follow``: the
        symlink's target, as cp does without -r)."""
        src_c = ffi.new("char[]", src_name)
        dst_c = ffi.new("char[]", dst_name)
        self.batch.keep.extend((src_c, dst_c, st))
        if st.type not in (engine.T_REG, engine.T_LNK):
            path = join(top.src_path, src_name)
            self.error(path, "type", E.EOPNOTSUPP, f"cannot copy special file {show(path)}")
            return
        flags = self.flags | (engine.F_FOLLOW_SRC if follow else 0)
        self.batch.add(top.src_fd, src_c, top.dst_fd, dst_c, st, st.type, flags, self.mode_mask)
        self.owners.append(top)
        top.jobs += 1
        top.pending += 1
        self.flush()

    # ------------------------------------------------------------- flush
    def flush(self) -> None:
        b = self.batch
        if b.n == 0:
            return
        self.ring.run(b)
        t = self.totals
        touched: dict[Dir, None] = {}
        files = nbytes = 0
        for i in range(b.n):
            j = b.jobs[i]
            d = self.owners[i]
            d.jobs -= 1
            d.pending -= 1
            touched[d] = None
            if j.err:
                self._job_error(d, j)
                if j.op not in _META_OPS:
                    continue  # nothing (left) at the destination
            if j.type == engine.T_LNK:
                t.symlinks += 1
            else:
                t.files += 1
                nbytes += j.bytes
            files += 1
            if self.opts.on_verbose:
                name = ffi.string(j.src_name)
                self.verbose(join(d.src_path, name), join(d.dst_path, ffi.string(j.dst_name)))
        t.bytes += nbytes
        b.clear()
        self.owners.clear()
        self.pinned = 0
        for d in touched:
            if d.jobs == 0 and d.scan is not None and d.scanned:
                d.scan.free()
                d.scan = None
            self._finish_dir(d)
        if self.opts.progress:
            self.opts.progress(Event("batch", files=files, bytes=nbytes))

    def _job_error(self, d: Dir, j: Any) -> None:
        op = engine.OPS.get(j.op, "copy")
        err = -j.err
        src = join(d.src_path, ffi.string(j.src_name))
        dst = join(d.dst_path, ffi.string(j.dst_name))
        kind = "symbolic link" if j.type == engine.T_LNK else "regular file"
        what = {
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
            "type": f"cannot copy special file {show(src)}",
        }.get(op) or _meta_what(op, dst)
        self.error(src if op in _SOURCE_OPS else dst, op, err, what)


def _meta_what(op: str, dst: bytes) -> str:
    return {
        "chown": f"failed to preserve ownership for {show(dst)}",
        "chmod": f"preserving permissions for {show(dst)}",
        "utimens": f"preserving times for {show(dst)}",
    }.get(op, f"{op} {show(dst)}")
