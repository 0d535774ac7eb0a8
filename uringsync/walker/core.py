"""The Walker: composes the walker's roles over one shared state.

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

The roles (one module each; they share the walker's attributes, so the
per-file path pays no extra indirection): reporting (errors.py), the
directory table (dirs.py), the hard-link table (links.py), big files
(bigfiles.py), batches and completions (dispatch.py), the visit (visit.py),
and what ``sync`` decides differently (sync.py).

Typing the roles: for mypy alone (``if TYPE_CHECKING``), each role's base is
the role after it in Walker's MRO (sync, visit, bigfiles, links, dispatch, dirs,
errors; sync's is visit), so a role is checked against the real definitions of the roles
after it, and each attribute is declared once, in the last role (in MRO
order) that uses it.  What a role calls of a role before it is declared in
the caller (dispatch.py's three methods); mypy checks those against the
definitions as overrides.  At run time the roles have no bases of their
own, so Walker's MRO is just its class line.  A new role joins the chain at
its place in that line.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from uringsync import engine, filters, options
from uringsync.engine import Batch, Ring
from uringsync.pool import Pool
from uringsync.walker.bigfiles import RANGE, SPLIT_MIN, BigFile, BigFiles
from uringsync.walker.dirs import O_DIR, Dirs, fd_budget
from uringsync.walker.dispatch import Dispatch, Slot
from uringsync.walker.errors import Event, FileError, Reporting, Totals, Trace
from uringsync.walker.links import InodeKey, LinkGroup, Links
from uringsync.walker.sync import Sync
from uringsync.walker.visit import Visit

LOCAL_BATCHES = 2  # without workers: one filling while the other runs
BATCH_SIZE = 512  # jobs per batch


@dataclass(frozen=True)
class Tuning:
    """Internal knobs, not part of the API: tests pass them (``api.copy``'s
    ``_tuning``) to split small files and to watch the walker's path through
    ``on_trace(walker, event)`` (errors.Trace)."""

    split_min: int = SPLIT_MIN  # files this big are split into ranges
    range_size: int = RANGE
    on_trace: Callable[[Walker, Trace], None] | None = None


@dataclass
class Options:
    flags: options.CopyFlags = field(default_factory=lambda: options.copy_flags(True, None))
    recursive: bool = True
    one_file_system: bool = False
    queue_depth: int = engine.DEFAULT_QUEUE_DEPTH
    batch_size: int = BATCH_SIZE
    jobs: int = 0  # worker processes (0: run the batches in this process)
    engine: str = "auto"  # engine.ENGINES: what issues the steps
    direct: int = 0  # O_DIRECT for split big files: 1 source, 2 destination
    progress: Callable[[Event], None] | None = None
    on_error: Callable[[FileError], None] | None = None
    on_verbose: Callable[[str], None] | None = None
    tuning: Tuning = field(default_factory=Tuning)
    # sync (walker/sync.py): its options, filter rules, and where its
    # itemize lines and informational lines (rsync's stdout) go
    sync: options.SyncOptions | None = None
    rules: filters.Rules | None = None
    on_itemize: Callable[[bytes], None] | None = None
    on_info: Callable[[str], None] | None = None
    # a regular file name's XXH3-128 digest: sync -c's files whose data
    # matched (verify --manifest; the path from the transfer root), cp's
    # copies under F_DIGEST (cp --manifest; the destination path)
    on_digest: Callable[[bytes, bytes], None] | None = None
    # sync --manifest: each regular file name of the transfer (its path from
    # the transfer root), as the walk meets it
    on_name: Callable[[bytes], None] | None = None
    # api.copy's ``ignore`` (shutil.copytree's): called once per source
    # directory with its path and the names listed in it; the names it
    # returns are not copied
    ignore: Callable[[bytes, list[bytes]], Iterable[bytes]] | None = None
    # copytree: a FIFO, socket or device node met in the walk is not made
    # in DST but handed here as (source path, destination path)
    on_special: Callable[[bytes, bytes], None] | None = None
    # cp -L: symlinks in the source are followed (scans stat their targets)
    follow_links: bool = False
    # cp: what happens where a destination name is taken, and -l/-s/
    # --attributes-only (engine.F_CP_DEST and the flags after it, csrc/api.h),
    # added to every job; the backup suffix (F_BACKUP_*) each job carries
    dest_flags: int = 0
    backup_suffix: bytes | None = None


class Walker(Sync, Visit, BigFiles, Links, Dispatch, Dirs, Reporting):
    """Walks the source, queues jobs into batches, and hands full batches to
    the worker pool (or runs them itself without one).  It alone owns the
    hard-link table and directory completion, so both stay right with any
    number of workers."""

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
        self.reported = set()
        on_trace = opts.tuning.on_trace
        self.trace = functools.partial(on_trace, self) if on_trace else None
        # batches (dispatch.py)
        self.pool = pool
        self.wake_fd = wake_fd
        self.batches = (
            pool.batches if pool else [Batch(opts.batch_size) for _ in range(LOCAL_BATCHES)]
        )
        self.slots = [Slot() for _ in self.batches]
        self.free = pool.free if pool else list(reversed(range(LOCAL_BATCHES)))
        self.ready = deque()
        self.deferred = deque()
        self.cur = self.free.pop()
        self.batch = self.batches[self.cur]
        self.slot = self.slots[self.cur]
        # directories (dirs.py)
        self.pinned = 0
        self.lru = OrderedDict()
        self.flush_fds = {}
        self.max_dirs, inflight = budget or fd_budget()
        ring.set_max_inflight(min(inflight, opts.queue_depth))
        # cp -L: source directories are opened through symlinks, scans stat targets
        self.o_src_dir = O_DIR & ~os.O_NOFOLLOW if opts.follow_links else O_DIR
        if opts.follow_links:
            ring.set_scan_follow(True)
        # hard links (links.py), big files (bigfiles.py)
        self.inodes: dict[InodeKey, LinkGroup] = {}
        self.link_digests = {}
        self.bigs: dict[BigFile, None] = {}
        self.split_min = opts.tuning.split_min
        self.range_size = opts.tuning.range_size
        # the data path (set_destination)
        self.offload = False  # the destination uses copy_file_range
        self.copy_range_min = engine.NEVER
        self.flags = opts.flags.flags
        self.job_flags = self.flags  # plus the destination's reflink choice
        self.mode_mask = opts.flags.mode_mask
        self.dir_mode_mask = opts.flags.dir_mode_mask
        # sync (sync.py)
        self.so = opts.sync
        self.delta_block = opts.sync.block_size if opts.sync is not None else 0
        self.rules = opts.rules or None
        self.deleted = 0
        self.delete_skipped = 0
        self.io_error = False
        self.after = []
        self._mask_cache = None
        self._pick_cache = None
        self.root_dev = (0, 0)
        self.dst_dirs = set()
        self.made_dst = None
        self.dst_top = None
        self.io_warned = False
        self.meta_fixed = {}

    def set_destination(self, dst_fd: int, copy_range_min: int | None, name: bytes) -> None:
        """Per command-line argument: the data path and reflinks suit the
        destination's file system (docs/design.md); ``name``: ``dst_fd``'s
        path (--fsync flushes its file system at the end)."""
        self.note_written(dst_fd, name)
        path = options.data_path(self.opts.flags, engine.fs_type(dst_fd), copy_range_min)
        self.job_flags = path.job_flags | (engine.F_FOLLOW_SRC if self.opts.follow_links else 0)
        self.job_flags |= self.opts.dest_flags
        copy_range_min = path.copy_range_min
        self.flush()  # the batch so far goes to the previous destination
        self.copy_range_min = copy_range_min
        self.offload = copy_range_min != engine.NEVER
        self.batch.c.copy_range_min = copy_range_min
        self.ring.set_copy_range_min(copy_range_min)

    def abort(self) -> None:
        """After a stop (the workers are gone): remove what was left half
        written.  A worker that stopped cleanly removed its own partial
        files; one that was killed left its started jobs' files behind."""
        self._abort_batches()
        self._abort_bigs()
