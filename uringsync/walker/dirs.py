"""The directory table: each source directory being copied and its
destination twin, their fds within a budget (least recently used ones are
closed and re-opened from their parent when needed again), their creation,
and their completion (metadata after all children, in cp's order)."""

from __future__ import annotations

import errno as E
import os
import resource
from collections import OrderedDict
from typing import TYPE_CHECKING

from uringsync import engine, steps
from uringsync.engine import Stat

if TYPE_CHECKING:
    from uringsync.walker.errors import Reporting as Below
    from uringsync.walker.sync import SyncDir  # for mypy: the roles after it
else:
    Below = object  # at run time: no base (Walker's MRO, core.py)

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# fd budget (docs/design.md): directories and files in flight use two fds each
FDS_PER_DIR = 2
FDS_PER_FILE = 2
FDS_RESERVED = 4  # opened after the count: pipes, the ring
MIN_SPARE_FDS = 8
MAX_OPEN_DIRS = 512
MIN_OPEN_DIRS = 2
UNLIMITED_FDS = 1 << 20  # what RLIM_INFINITY counts as
NEW_DIR_MODE = 0o700  # until its metadata is applied, after its children


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
        "scanned",
        "skip_contents",
        "src_fd",
        "src_name",
        "src_path",
        "st",
        "sync",
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
        self.scanned = False
        self.skip_contents = False
        self.no_src = False  # the source could not be opened: copy it empty
        self.done = False  # its metadata is applied; only hard links may still use it
        self.acl_default: bool | None = False  # its destination has a default ACL (None: unasked)
        self.top = False  # the parents of the command-line paths: never closed here
        self.sync: SyncDir | None = None  # sync: what it adds (walker/sync.py)


def has_default_acl(fd: int) -> bool:
    """Whether entries made in this directory inherit ACLs."""
    try:
        os.getxattr(fd, "system.posix_acl_default")
    except OSError:
        return False
    return True


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
    limit = UNLIMITED_FDS if soft == resource.RLIM_INFINITY else soft
    in_use = len(os.listdir("/proc/self/fd")) + FDS_RESERVED
    spare = max(MIN_SPARE_FDS, limit - in_use)
    dirs = max(MIN_OPEN_DIRS, min(MAX_OPEN_DIRS, spare // (2 * FDS_PER_DIR)))  # half the spare
    inflight = max(1, (spare - FDS_PER_DIR * dirs) // FDS_PER_FILE)
    return dirs, inflight


class Dirs(Below):
    """The walker's directory role: open directories (``lru``, at most
    ``max_dirs``), pinned ones (``jobs`` > 0: used by unsent batches, never
    evicted), creation and completion."""

    lru: OrderedDict[Dir, None]
    max_dirs: int
    o_src_dir: int  # how source directories are opened (O_NOFOLLOW unless cp -L)
    pinned: int  # directories pinned by batches not yet sent
    flags: int
    dir_mode_mask: int
    flush_fds: dict[int, tuple[int, bytes]]  # --fsync: st_dev -> (a dup'd fd, a path) in it

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

    def close(self) -> None:
        """Close every directory still open."""
        for d in list(self.lru):
            self._close(d)
        for fd, _path in self.flush_fds.values():
            os.close(fd)
        self.flush_fds.clear()

    def note_written(self, fd: int, path: bytes) -> None:
        """--fsync: remember the file system of ``fd``, a directory written
        in, to flush it once at the end (flush_to_disk)."""
        if self.flags & engine.F_FSYNC:
            dev = os.fstat(fd).st_dev
            if dev not in self.flush_fds:
                self.flush_fds[dev] = (os.dup(fd), path)

    def flush_to_disk(self) -> None:
        """--fsync, when everything is written: each file system written in
        flushed (syncfs) once, after the last of its entries: the
        directories' entries and metadata, and what no job flushed itself."""
        for fd, path in self.flush_fds.values():
            try:
                engine.syncfs(fd)
            except OSError as e:
                self.dir_error(path, steps.SYNCFS, e)

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
                node.dst_fd = self._open_dst(node, parent)
            if need_src and node.src_fd < 0 and not node.no_src:
                node.src_fd = os.open(node.src_name, self.o_src_dir, dir_fd=parent.src_fd)
            self.lru[node] = None
        if not d.top:
            self.lru.move_to_end(d)
        return d.src_fd, d.dst_fd

    def _open_dst(self, node: Dir, parent: Dir) -> int:
        """Re-open a destination directory that was closed (sync -n
        overrides it for one that does not exist)."""
        fd = os.open(node.dst_name, O_DIR, dir_fd=parent.dst_fd)
        self.note_written(fd, node.dst_path)
        return fd

    def _hold(self, d: Dir) -> None:
        """Keep ``d`` open (not evicted) until _release."""
        if d.jobs == 0:
            self.pinned += 1
        d.jobs += 1

    def _release(self, d: Dir) -> None:
        d.jobs -= 1
        if d.jobs == 0:
            self.pinned -= 1

    def _create(self, d: Dir) -> bool:
        """First visit: open the source, make the destination (0700 until its
        metadata is applied), open it without following a symlink."""
        parent = d.parent
        assert parent is not None
        try:
            psrc, pdst = self._fds(parent)
        except OSError as e:
            self.dir_error(parent.src_path, steps.OPENDIR, e)
            return False
        self._evict(keep=parent)
        try:
            src_fd = os.open(d.src_name, self.o_src_dir, dir_fd=psrc)
        except OSError as e:
            self.dir_error(d.src_path, steps.OPENDIR, e)
            if e.errno == E.ENOENT:
                return False
            # As cp does: the directory is still made, empty, with its metadata.
            d.no_src = d.skip_contents = True
            src_fd = -1
        made = False  # cp -v names only the directories it makes
        try:
            if not self._twin_is_dir(d):
                os.mkdir(d.dst_name, NEW_DIR_MODE, dir_fd=pdst)
                made = True
        except FileExistsError:
            pass
        except OSError as e:
            if src_fd >= 0:
                os.close(src_fd)
            self.dir_error(d.dst_path, steps.MKDIR, e)
            return False
        try:
            dst_fd = os.open(d.dst_name, O_DIR, dir_fd=pdst)
        except OSError as e:
            if src_fd >= 0:
                os.close(src_fd)
            if e.errno in (E.ENOTDIR, E.ELOOP):  # a file or symlink is in the way
                msg = steps.OPENDIR_DST.what(d.src_path, d.dst_path, e.errno)
                self.error(d.dst_path, steps.OPENDIR_DST, e.errno, msg)
            else:
                self.dir_error(d.dst_path, steps.OPENDIR_DST, e)
            return False
        d.src_fd, d.dst_fd = src_fd, dst_fd
        self.note_written(dst_fd, d.dst_path)
        d.acl_default = None  # asked when an entry is made in it
        self.lru[d] = None
        if self.opts.on_verbose and made:
            self.verbose(d.src_path, d.dst_path)
        return True

    def _twin_is_dir(self, d: Dir) -> bool:
        """The destination is known to be a directory already (sync's scan
        saw it): no mkdir to try."""
        return False

    def inherits_acl(self, d: Dir) -> bool:
        """Whether entries made in ``d``'s destination inherit a default
        ACL (asked once, when first needed: only with -A)."""
        if not self.opts.flags.acl:
            return False
        if d.acl_default is None:
            fd = d.dst_fd if d.dst_fd >= 0 else self._fds(d)[1]
            d.acl_default = has_default_acl(fd)
        return d.acl_default

    def _finish_dir(self, d: Dir) -> None:
        """All children are done: apply the directory's own metadata, close it,
        and let its parent finish if this was the parent's last child."""
        cur: Dir | None = d
        while cur is not None and cur.scanned and cur.pending == 0 and not cur.top and not cur.done:
            cur.done = True
            try:
                _, dst_fd = self._fds(cur, need_src=self._dir_needs_src())
            except OSError as e:
                self.dir_error(cur.dst_path, steps.OPENDIR_DST, e)
            else:
                self._dir_meta(cur, dst_fd)
                self.totals.dirs += 1
            if cur.jobs == 0:  # hard links queued into it still need it open
                self._close(cur)
            parent = cur.parent
            cur = parent
            if cur is not None:
                cur.pending -= 1

    def _dir_meta(self, d: Dir, dst_fd: int) -> None:
        """A directory's own metadata, after its children (cp's order)."""
        assert d.st is not None  # only the command-line parents have none
        ret, step = engine.dir_meta(d.src_fd, dst_fd, d.st, self.flags, self.dir_mode_mask)
        if ret < 0:
            self.error(d.dst_path, step, -ret, step.what(d.dst_path, d.dst_path))

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
