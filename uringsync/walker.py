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
    batch_size: int = 4096
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
        self.jobs = 0  # jobs in the current batch (they pin the fds)
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
    def __init__(self, ring: Ring, opts: Options) -> None:
        self.ring = ring
        self.opts = opts
        self.totals = Totals()
        self.batch = Batch(opts.batch_size)
        self.owners: list[Dir] = []
        self.groups: list[LinkGroup | None] = []  # per job: its hard-link group
        self.extra: list[Dir | None] = []  # per job: a second directory it uses
        self.pinned = 0  # directories with jobs in the current batch
        self.inodes: dict[tuple[int, int, int], LinkGroup] = {}
        self.reported: set[tuple[str, int]] = set()
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
        elif op == "src_changed":
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
        while stack:
            if self.pinned >= self.max_dirs // 2:
                self.flush()  # queued jobs hold half the directory budget
            d = stack.pop()
            if not self._create(d):
                self._abandon(d)
                continue
            subdirs = self._visit(d, root_dev)
            stack.extend(reversed(subdirs))

    def _visit(self, d: Dir, root_dev: tuple[int, int]) -> list[Dir]:
        subdirs: list[Dir] = []
        if d.skip_contents:
            d.scanned = True
            self._finish_dir(d)
            return subdirs
        try:
            sc = self.ring.scan(d.src_fd, d.src_path)
        except OSError as e:
            self.dir_error(d.src_path, "readdir", e, verb="read")
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
            elif t in _COPYABLE:
                group = None
                if st.nlink > 1 and self.opts.preserve_links:
                    group = self._group_for(d, sc.name(i), ffi.addressof(ent, "st"))
                    if group is None:
                        continue  # a later name of a copied inode: linked, not copied
                nm = sc.name_ptr(i)
                d.pending += 1
                self._queue(d, nm, nm, ffi.addressof(ent, "st"), t, self.job_flags, group)
            else:
                path = join(d.src_path, sc.name(i))
                self.error(path, "type", E.EOPNOTSUPP, f"cannot copy {show(path)}: unknown type")
        d.scanned = True
        if d.jobs == 0:
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
        src_c = ffi.new("char[]", src_name)
        dst_c = ffi.new("char[]", dst_name)
        flags = self.job_flags | (engine.F_FOLLOW_SRC if follow else 0)
        top.pending += 1
        self._queue(top, src_c, dst_c, st, st.type, flags, group, keep=(src_c, dst_c, st))

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
        dst_c = ffi.new("char[]", name)
        self._queue(
            d,
            g.name_c,
            dst_c,
            g.st,
            engine.T_HARDLINK,
            self.job_flags,
            None,
            g.dir,
            keep=(g.name_c, dst_c, g.st),
        )
        if g.seen >= g.nlink and not g.waiting:
            self.inodes.pop(g.key, None)  # every name is met: forget the inode

    def _group_done(self, g: LinkGroup, ok: bool) -> None:
        """The group's copy finished: link the waiting names to it, or copy
        the next waiting name if it failed."""
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
            name_c = ffi.new("char[]", name)
            self._queue(d, name_c, name_c, g.st, g.st.type, self.job_flags, g, keep=(name_c, g.st))

    # ------------------------------------------------------------- queue
    def _pin(self, d: Dir) -> None:
        if d.jobs == 0:
            self.pinned += 1
        d.jobs += 1

    def _unpin(self, d: Dir) -> None:
        d.jobs -= 1
        if d.jobs == 0:
            self.pinned -= 1

    def _queue(
        self,
        d: Dir,
        src_c: Any,
        dst_c: Any,
        st: Stat,
        ftype: int,
        flags: int,
        group: LinkGroup | None,
        link_to: Dir | None = None,
        keep: tuple[object, ...] = (),
    ) -> None:
        """Add a job for an entry of ``d`` (whose ``pending`` already counts
        it).  A hard link's source is the copy in ``link_to``.  ``keep``: the
        C memory the job points to, held until the batch has run."""
        while self.batch.full:
            self.flush()  # empties batch.keep: only add to it after this
        # pinned first, so opening one cannot evict the other
        self._pin(d)
        if link_to is not None:
            self._pin(link_to)
        try:
            src_fd, dst_fd = self._fds(d, need_src=link_to is None)
            if link_to is not None:
                src_fd = self._fds(link_to, need_src=False)[1]
        except OSError as e:
            self._unpin(d)
            if link_to is not None:
                self._unpin(link_to)
            bad = d.src_path if link_to is None else d.dst_path
            self.dir_error(bad, "opendir", e)
            d.pending -= 1
            if group is not None:
                self._group_done(group, ok=False)
            self._finish_dir(d)
            return
        self.batch.keep.extend(keep)
        if d.acl_default and self.opts.preserve_acl:
            flags |= engine.F_CLEAR_ACL  # remove what the entry inherits
        self.batch.add(src_fd, src_c, dst_fd, dst_c, st, ftype, flags, self.mode_mask)
        self.owners.append(d)
        self.groups.append(group)
        self.extra.append(link_to)

    def drain(self) -> None:
        """Run everything queued, including hard links queued by the runs."""
        while self.batch.n:
            self.flush()

    def close(self) -> None:
        for d in list(self.lru):
            self._close(d)

    # ------------------------------------------------------------- flush
    def flush(self) -> None:
        b = self.batch
        if b.n == 0:
            return
        self.ring.run(b)
        t = self.totals
        touched: dict[Dir, None] = {}
        finished: list[tuple[LinkGroup, bool]] = []
        files = nbytes = 0
        for i in range(b.n):
            j = b.jobs[i]
            d = self.owners[i]
            d.jobs -= 1
            d.pending -= 1
            touched[d] = None
            other = self.extra[i]
            if other is not None:
                other.jobs -= 1
                touched[other] = None
            ok = not j.err or j.op in _META_OPS  # the data is at the destination
            if j.err:
                self._job_error(d, j)
            group = self.groups[i]
            if group is not None:
                finished.append((group, ok))
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
        self.owners.clear()
        self.groups.clear()
        self.extra.clear()
        self.pinned = 0
        for group, ok in finished:
            self._group_done(group, ok)
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
            "type": f"cannot copy {show(src)}",
            "src_changed": f"skipping {show(src)}, as it was replaced while being copied",
            "mknod": f"cannot create special file {show(dst)}",
            "link": f"cannot create hard link {show(dst)}",
            "clone": f"failed to clone {show(dst)} from {show(src)}",
            "seek": f"cannot find the holes of {show(src)}",
            "truncate": f"cannot set the size of {show(dst)}",
        }.get(op) or _meta_what(op, dst)
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
