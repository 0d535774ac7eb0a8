"""The sync role: ``uringsync sync``, rsync's meaning over the same engine.

A source directory and its destination twin are listed and stat'ed by the
engine's scan together (many directories in flight); their two name lists
are merged per directory, never into a map of the whole tree, so memory
stays flat.  Per name, rsync's decision (generator.c):

* excluded by a filter rule: left alone, and kept at the destination
  (unless ``--delete-excluded``);
* missing at the destination: created (``--existing``: skipped);
* same type, unchanged by the quick check (size and mtime in seconds;
  ``-c``: equal XXH3-128 digests of both sides, hashed by the engine in one
  batch; ``--size-only``; ``-I``: never unchanged): nothing is written, but
  owner, mode, times (``-c``/``--size-only``), xattrs and ACLs that differ
  are fixed by a metadata-only job (``US_T_META``);
* changed: copied by the same job as ``cp``, into ``.NAME.uringsync-XXXXXX``
  in the same directory, metadata applied, then renamed over NAME by the
  worker (``--inplace``: written under NAME directly);
* of another type: replaced (a directory in the way only when it is empty,
  or under ``--delete``);
* only at the destination: deleted with ``--delete`` (per directory, before
  its new entries; ``--delete-after``: at the end), never following a
  symlink; a source directory that could not be read stops all deletion
  from then on, as rsync does.

Every outcome is one itemize line (uringsync/itemize.py) given to
``Options.on_itemize``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno as E
import os
import threading
from collections import deque
from queue import SimpleQueue
from typing import TYPE_CHECKING, TypeAlias, cast

from uringsync import engine, filters, itemize, steps
from uringsync.engine import Scan, Stat, ffi
from uringsync.itemize import Change
from uringsync.options import SyncOptions
from uringsync.walker.bigfiles import SECTOR, Resume
from uringsync.walker.dirs import O_DIR, Dir
from uringsync.walker.errors import Event, Stopped, join, show
from uringsync.walker.links import LinkGroup

if TYPE_CHECKING:
    from uringsync.walker.visit import Visit as Below  # for mypy: the roles after it
else:
    Below = object  # at run time: no base (Walker's MRO, core.py)

TEMP_TAG = b".uringsync-"  # .NAME.uringsync-XXXXXX: a copy not yet renamed into place
TEMP_RAND = 6
# the suffixes of a resumable big file's names (not hex: temp_name never makes them)
RESUME_TMP = b"resume"
RESUME_REC = b"record"
NAME_MAX = 255
_FTYPE: dict[int, itemize.FType] = {
    engine.T_REG: "f",
    engine.T_DIR: "d",
    engine.T_LNK: "L",
    engine.T_CHR: "D",
    engine.T_BLK: "D",
    engine.T_FIFO: "S",
    engine.T_SOCK: "S",
}
_ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# what a deletion came to (rsync's DR_*)
_DR_OK, _DR_FAILED, _DR_AT_LIMIT, _DR_NOT_EMPTY = range(4)
IO_ERROR_MSG = "IO error encountered -- skipping file deletion"
MATCH_FLAGS = engine.P_XATTR | engine.P_ACL  # what sync_scan compares beyond the stat
# How far one sync_scan call goes into subdirectories on its own: pairs open
# at once (at most; a share of the walker's directory fds) and entries listed
DESCEND_PAIRS = 64
DESCEND_BUDGET = 1 << 16


class _TempNames:
    """Suffixes for temporary names: a random start per run, then counted
    in hex (cheaper than drawing six random characters per file; a name
    already taken is only ever one of ours, which the create replaces)."""

    def __init__(self) -> None:
        # 16**6 = 2**24: three random bytes (os.urandom: no secrets/hmac import)
        self.n = int.from_bytes(os.urandom(3), "big")

    def next(self) -> bytes:
        self.n = (self.n + 1) & (16**TEMP_RAND - 1)
        return b"%06x" % self.n


_temp = _TempNames()


def temp_name(name: bytes) -> bytes:
    """``.NAME.uringsync-XXXXXX``, NAME cut to fit NAME_MAX."""
    room = NAME_MAX - 1 - len(TEMP_TAG) - TEMP_RAND
    return b"." + name[:room] + TEMP_TAG + _temp.next()


def resume_names(name: bytes) -> tuple[bytes, bytes]:
    """A resumable big file's temporary, ``.NAME.uringsync-resume``, and its
    record of the ranges done, ``.NAME.uringsync-record`` (fixed names, so
    the next run finds them; the record holds the whole NAME)."""
    room = NAME_MAX - 1 - len(TEMP_TAG) - TEMP_RAND
    base = b"." + name[:room] + TEMP_TAG
    return base + RESUME_TMP, base + RESUME_REC


def is_resume_name(name: bytes) -> bool:
    """A name :func:`resume_names` makes."""
    return name[-TEMP_RAND:] in (RESUME_TMP, RESUME_REC) and is_temp_name(name)


def is_temp_name(name: bytes) -> bool:
    """A name :func:`temp_name` makes (a copy a killed run left behind)."""
    return (
        name.startswith(b".")
        and len(name) > len(TEMP_TAG) + TEMP_RAND + 1
        and name[-TEMP_RAND - len(TEMP_TAG) : -TEMP_RAND] == TEMP_TAG
        and all(c in _ALNUM for c in name[-TEMP_RAND:])
    )


# a name of a multiply-linked source inode: (directory, name, lstat, its
# destination's lstat or None, path from the transfer root, the match's bits)
Member = tuple[Dir, bytes, Stat, "Stat | None", bytes, "int | None"]


_Slot: TypeAlias = "SimpleQueue[BaseException | None]"  # one scan done (or its exception)


class _Scans:
    """``engine.sync_scan`` calls in threads of their own: C lists, stats
    and matches the next groups of directories (without the GIL) while the
    walker's Python works through the last one.  One thread while the data
    is cached; while the disk is read, several groups are in flight at once
    (each call waits on the disk in turn for its listings, its inodes and
    its xattrs), ``COLD_THREADS`` of them (``WARM_THREADS`` while cached,
    which hides the waits between its phases).  Results come back in the order
    the groups went in.  The scan threads do no Python work but the call
    (the walker's thread makes the arguments and the results), so they
    never keep the walker waiting for the GIL."""

    COLD_THREADS = 4
    WARM_THREADS = 2

    def __init__(self, flags: int, pick: engine.UsPick) -> None:
        self.flags, self.pick = flags, pick
        self._todo: SimpleQueue[tuple[engine.SyncPairs, _Slot] | None] = SimpleQueue()
        self._slots: deque[tuple[engine.SyncPairs, _Slot]] = deque()
        self._threads: list[threading.Thread] = []

    def room(self, inflight: int) -> bool:
        """Another group may go in now, ``inflight`` being in (those whose
        scans came with their parents' too: each holds its directories open)."""
        threads = self.COLD_THREADS if engine.sync_cold() else self.WARM_THREADS
        return inflight <= threads

    def _run(self) -> None:
        while (job := self._todo.get()) is not None:
            pairs, slot = job
            try:
                pairs.run(self.flags, 0, self.pick)
                slot.put(None)
            except BaseException as e:  # handed to the walker's thread
                slot.put(e)

    def submit(self, fds: list[tuple[int, int]]) -> None:
        slot: _Slot = SimpleQueue()
        job = (engine.SyncPairs(fds), slot)
        self._slots.append(job)
        if len(self._threads) < min(len(self._slots), self.COLD_THREADS):
            t = threading.Thread(target=self._run, name="uringsync-scan", daemon=True)
            t.start()
            self._threads.append(t)
        self._todo.put(job)

    def result(self) -> list[engine.SyncPair]:
        """The oldest group's scan."""
        pairs, slot = self._slots.popleft()
        e = slot.get()
        if e is not None:
            raise e
        return pairs.results()

    def close(self) -> None:
        while self._slots:
            with contextlib.suppress(BaseException):
                self.result()
        for _ in self._threads:
            self._todo.put(None)
        for t in self._threads:
            t.join()
        self._threads.clear()


class SyncDir:
    """What the sync adds to a directory: its path from the transfer root,
    its destination's lstat before the run (None: new), and whether
    anything in it was created, renamed or deleted (its times are then set
    again after its children)."""

    __slots__ = ("diff", "dst_st", "missing", "modified", "new", "pre", "rel", "resume_left")

    def __init__(self, rel: bytes, dst_st: Stat | None) -> None:
        self.rel = rel  # b"" for the root of a SRC/ transfer, else b"a/b/"
        self.dst_st = dst_st
        self.new = dst_st is None
        self.missing = False  # -n: the destination does not exist (nothing to open)
        self.modified = False
        self.diff: int | None = None  # what the match found different (None: not matched)
        self.pre: engine.SyncPair | None = None  # its scan, made by its parent's
        # resumable big files' names found here: removed with the directory's
        # metadata unless a copy of this run took them up
        self.resume_left: list[bytes] | None = None


class Task:
    """A sync job's follow-up: what its completion means (Dispatch._complete
    calls :meth:`Sync._task_done`)."""

    __slots__ = ("change", "d", "digests", "dst_st", "kind", "left", "name", "pair", "st", "v")

    def __init__(
        self,
        kind: str,
        d: Dir,
        name: bytes,
        st: Stat,
        dst_st: Stat | None = None,
        change: Change | None = None,
    ) -> None:
        self.kind = kind  # "copy", "meta", "hash", "unlink"
        self.d = d
        self.name = name
        self.st = st
        self.dst_st = dst_st
        self.change = change  # printed when the job succeeds
        self.left = 0  # hash: digests still to come
        self.digests: list[bytes | None] = [None, None]
        self.pair: Task | None = None  # "hashdst": the source side's task
        self.v: int | None = None  # hash: what the match found different


# what every copy job's completion means (nothing of its own to remember)
COPY = Task("copy", cast(Dir, None), b"", cast(Stat, None))


def missing_dir_fd() -> int:
    """-n: what stands for a destination directory that does not exist: an
    fd that is no directory, so any ``*at`` call relative to it fails
    (ENOTDIR) instead of reaching anything real."""
    return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)


def _first(item: tuple[bytes, Stat, Stat | None, int]) -> bytes:
    return item[0]


def _rsync_order(m: Member) -> list[tuple[int, bytes]]:
    """Where rsync meets a name: a directory's own files (by name) before
    anything in its subdirectories, the subdirectories one after the other
    (by name), each all through (depth first).  A hard-link group's leader
    is chosen in that order, whatever order the walk met the names in."""
    *dirs, name = m[4].split(b"/")
    return [(1, c) for c in dirs] + [(0, name)]


def _unscanned(d: Dir) -> bool:
    """``d`` has no scan yet (its parent's scan did not go into it)."""
    return d.sync is None or d.sync.pre is None


def _mtime(st: Stat) -> int:
    return int(st.mtime_sec)


class Sync(Below):
    """The walker's sync role."""

    so: SyncOptions | None
    rules: filters.Rules | None
    deleted: int
    io_error: bool
    delete_skipped: int
    after: list[tuple[Dir, bytes, int]]  # --delete-after: (directory, name, type)
    _mask_cache: dict[int, int] | None
    _pick_cache: engine.UsPick | None
    root_dev: tuple[int, int]  # -x: the device of the SRC being synced
    dst_dirs: set[tuple[int, int]]  # (st_dev, st_ino) of the destination's directories
    made_dst: tuple[int, int] | None
    dst_top: tuple[int, int] | None  # DST's (st_dev, st_ino)
    io_warned: bool
    meta_fixed: dict[tuple[int, int, int], tuple[int, int, int, int]]  # see _meta_or_unchanged

    if TYPE_CHECKING:

        def _group_done(self, g: LinkGroup, ok: bool) -> None: ...

    # ------------------------------------------------- overrides of Dirs
    def _open_dst(self, node: Dir, parent: Dir) -> int:
        if node.sync is not None and node.sync.missing:
            return missing_dir_fd()
        return os.open(node.dst_name, O_DIR, dir_fd=parent.dst_fd)

    def _dir_meta(self, d: Dir, dst_fd: int) -> None:
        if self.so is None or d.sync is None:
            assert d.st is not None
            ret, step = engine.dir_meta(d.src_fd, dst_fd, d.st, self.flags, self.dir_mode_mask)
            if ret < 0:
                self.error(d.dst_path, step, -ret, step.what(d.dst_path, d.dst_path))
            return
        self._sync_dir_meta(d, dst_fd)

    # ------------------------------------------------------------ output
    def _item(self, c: Change, count: bool = True) -> None:
        t = self.totals
        if not count:
            pass
        elif c.kind == "create":
            t.created += 1
        elif c.kind == "update":
            t.updated += 1
        elif c.kind == "meta":
            t.meta += 1
        elif c.kind == "hardlink":
            t.created += 1
        on = self.opts.on_itemize
        if on is not None:
            on(itemize.line(c))

    def _unchanged(self, ftype: itemize.FType, path: bytes, target: bytes | None = None) -> None:
        self.totals.unchanged += 1
        so = self.so
        assert so is not None
        if so.itemize > 1 and self.opts.on_itemize is not None:
            self.opts.on_itemize(itemize.unchanged_line(ftype, path, target))

    def _linked_already(self, path: bytes, g: LinkGroup) -> None:
        """A twin already linked to its leader's inode (``hf`` under -ii)."""
        self.totals.unchanged += 1
        if g.digest and self.opts.on_digest is not None:
            self.opts.on_digest(path, g.digest)
        so = self.so
        assert so is not None
        if so.itemize > 1:
            self._item(Change("hardlink", "f", path, existed=True), count=False)

    def _info(self, msg: str) -> None:
        if self.opts.on_info is not None:
            self.opts.on_info(msg)

    # ------------------------------------------------------------ the walk
    def sync_dir(self, top: Dir, root: Dir, rel: bytes, dst_st: Stat | None) -> None:
        """Sync the directory ``root`` (a child of ``top``) into its twin;
        ``rel`` is its path from the transfer root (b"" for SRC/)."""
        root.sync = SyncDir(rel, dst_st)
        assert root.st is not None
        self.root_dev = (int(root.st.dev_major), int(root.st.dev_minor))
        top.pending += 1
        stack = [root]
        per_scan = max(1, min(16, self.max_dirs // (4 * _Scans.COLD_THREADS)))
        pick = self._pick()
        pick.root_major, pick.root_minor = self.root_dev
        scans = _Scans(self.flags & MATCH_FLAGS | self._content_flags(), pick)
        # groups being scanned, in order, and whether they went to a scan
        inflight: deque[tuple[list[Dir], bool]] = deque()
        try:
            while stack or inflight:
                self._safe_point()
                if self.pinned >= self.max_dirs // 2:
                    self.flush()
                if stack and scans.room(len(inflight)):
                    # the next group's scan runs while this thread walks the last one's
                    group = self._open_group(stack, per_scan)
                    todo = [d for d in group if not d.skip_contents and _unscanned(d)]
                    if todo:
                        scans.submit([(d.src_fd, self._twin_fd(d)) for d in todo])
                    inflight.append((group, bool(todo)))
                    continue
                group, submitted = inflight.popleft()
                try:
                    found = scans.result() if submitted else []
                except OSError:
                    if engine.stop_requested():
                        raise Stopped from None
                    raise
                it = iter(found)
                for d in group:
                    self._release(d)
                    pair = None if d.skip_contents else self._pre_scan(d) or next(it)
                    subdirs = self._sync_visit(d, pair)
                    stack.extend(reversed(subdirs))
        finally:
            scans.close()  # never leave a scan reading fds the walk is about to close

    @staticmethod
    def _pre_scan(d: Dir) -> engine.SyncPair | None:
        """``d``'s scan, made by its parent's (taken: freed when visited)."""
        sd = d.sync
        assert sd is not None
        pre, sd.pre = sd.pre, None
        return pre

    def _open_group(self, stack: list[Dir], size: int) -> list[Dir]:
        """Up to ``size`` directories off the stack, opened (and made) and
        held open for their scan."""
        group: list[Dir] = []
        while stack and len(group) < size:
            d = stack.pop()
            if not self._sync_create(d):
                self._abandon(d)
                continue
            self._hold(d)
            group.append(d)
        return group

    @staticmethod
    def _twin_fd(d: Dir) -> int:
        """The destination directory to list beside ``d``'s source: none
        when it is new (made empty, or missing under -n)."""
        sd = d.sync
        assert sd is not None
        return -1 if sd.new or sd.missing else d.dst_fd

    def _sync_create(self, d: Dir) -> bool:
        """Open the source directory and its destination twin, making the
        latter when it is new (-n: never)."""
        sd = d.sync
        assert sd is not None and self.so is not None
        if not sd.new or not self.so.dry_run:
            if not self._create(d):
                return False
            if sd.dst_st is not None:  # its (dev, ino) known from the parent's scan
                st = sd.dst_st
                self.dst_dirs.add((os.makedev(int(st.dev_major), int(st.dev_minor)), int(st.ino)))
            else:
                self.note_dst_dir(d.dst_fd)
            return True
        # -n and a new directory: only the source is opened
        parent = d.parent
        assert parent is not None
        try:
            psrc, _ = self._fds(parent)
            d.src_fd = os.open(d.src_name, O_DIR, dir_fd=psrc)
        except OSError as e:
            self.dir_error(d.src_path, steps.OPENDIR, e)
            if e.errno == E.ENOENT:
                return False
            d.no_src = d.skip_contents = True
        d.dst_fd = missing_dir_fd()
        sd.missing = True
        self.lru[d] = None
        return True

    def _twin_is_dir(self, d: Dir) -> bool:
        sd = d.sync
        return sd is not None and sd.dst_st is not None

    def note_dst_dir(self, fd: int, made: bool = False, top: bool = False) -> None:
        """A destination directory of this run: met again in the source (DST
        inside SRC), it is not walked into; ``made``: DST itself, made by
        this run, which rsync (listing SRC first) never sees at all; ``top``:
        DST (the scan never goes into it either)."""
        st = os.fstat(fd)
        self.dst_dirs.add((st.st_dev, st.st_ino))
        if made:
            self.made_dst = (st.st_dev, st.st_ino)
        if top:
            self.dst_top = (st.st_dev, st.st_ino)

    def _src_unreadable(self, d: Dir) -> None:
        """A source directory could not be listed (or a destination one
        opened): from now on nothing is deleted (rsync's io_error rule); the
        next directory whose deletions are skipped says so, once."""
        self.io_error = True

    def _deletions_skipped(self) -> None:
        if not self.io_warned:
            self.io_warned = True
            self._info(IO_ERROR_MSG)

    def _sync_visit(self, d: Dir, pair: engine.SyncPair | None) -> list[Dir]:
        so = self.so
        assert so is not None
        sd = d.sync
        assert sd is not None
        subdirs: list[Dir] = []
        sc = pair.src if pair is not None else None
        dsc = pair.dst if pair is not None else None
        if d.no_src:
            self._src_unreadable(d)
        if isinstance(sc, OSError):
            self.dir_error(d.src_path, steps.READDIR, sc)
            self._src_unreadable(d)
            sc = None
        if isinstance(dsc, OSError):
            self.dir_error(d.dst_path, steps.READDIR, dsc)
            dsc = None
            d.skip_contents = True  # not knowing what is there, write nothing
        if sc is None or d.skip_contents:
            d.scanned = True
            self._finish_dir(d)
            return subdirs
        assert pair is not None
        rules = self.rules
        rel = sd.rel
        n = sc.n
        ents = sc._sc.ents
        match, diff, matched, picked = pair.match, pair.diff, pair.matched, pair.picked
        # the entries not picked, and all below the subdirectories the scan
        # found unchanged all through
        self.totals.unchanged += n - pair.npicked + pair.clean_entries
        self.totals.dirs += pair.clean_dirs
        # entries where something is to be done (the rest are unchanged)
        work: list[tuple[bytes, Stat, Stat | None, int]] = []
        subnames: list[tuple[bytes, Stat, Stat | None, int, int]] = []
        # a directory this run made: its files are new, each one job (the
        # rest of what _sync_entry decides cannot apply), counted not shown
        fresh = (
            sd.new
            and not sd.missing
            and rules is None
            and self.opts.on_itemize is None
            and not so.dry_run
            and not so.existing
            and not so.inplace
        )
        on_name = self.opts.on_name
        for k in range(pair.npicked):
            i = picked[k]
            ent = ents[i]
            t = ent.st.type
            v = diff[i]
            name = sc.name(i)
            if ent.err:
                path = join(d.src_path, name)
                self.error(path, steps.STAT, -ent.err, steps.STAT.what(path, path))
                continue  # (its twin, matched, is not deleted)
            if (
                on_name is not None
                and t == engine.T_REG
                and (rules is None or not rules.excluded(rel + name, False))
            ):
                on_name(rel + name)
            if fresh and t == engine.T_REG and (ent.st.nlink == 1 or not so.hard_links):
                self.totals.created += 1
                sd.modified = True
                stp = ffi.addressof(ent, "st")
                if ent.st.size >= self.split_min and self._queue_big_sync(d, name, name, stp):
                    continue
                d.pending += 1
                nm = sc.name_ptr(i)
                self._queue(
                    d, nm, temp_name(name), stp, t, self.job_flags, None, None, 0, COPY, name
                )
                continue
            if rules is not None and rules.excluded(rel + name, t == engine.T_DIR):
                is_dir = t == engine.T_DIR
                if dsc is not None and match[i] >= 0:  # its twin: protected, or deleted
                    matched[match[i]] = int(rules.protected(rel + name, is_dir, so.delete_excluded))
                continue
            stp = ffi.addressof(ent, "st")
            dst_st = (
                ffi.addressof(dsc.entry(match[i]), "st")
                if dsc is not None and match[i] >= 0
                else None
            )
            if t == engine.T_DIR:
                subnames.append((name, stp, dst_st, v, i))
            else:
                work.append((name, stp, dst_st, v))
        # deletions first (rsync 3's --delete-during), then the entries
        if dsc is not None:
            deletes = so.delete and (rules is None or rules.deletes_in(rel))  # (files-from)
            if self.io_error and deletes and not so.delete_after:
                self._deletions_skipped()
            gone = [(dsc.name(j), j) for j in range(dsc.n) if not matched[j]]
            if gone:
                self._delete_in(d, dsc, gone)
        if so.hard_links:
            work.sort(key=_first)  # rsync's order: a hard-link group's names as met
        for name, stp, dst_st, v in work:
            self._sync_entry(d, name, stp, dst_st, v)
        subnames.sort()
        for name, stp, dst_st, v, i in subnames:
            child = self._sync_subdir(d, name, stp, dst_st, v)
            if child is not None:
                subdirs.append(child)
                if not child.skip_contents:
                    assert child.sync is not None
                    child.sync.pre = pair.take_sub(i)
        d.scanned = True
        if self.opts.progress:
            entries = n + pair.clean_entries
            self.opts.progress(Event("scanned", src_dir=d.src_path, entries=entries))
        # the jobs hold copies of names and stats; keep the scans until here
        sc.free()
        if dsc is not None:
            dsc.free()
        self._finish_dir(d)
        return subdirs

    def _pick(self) -> engine.UsPick:
        """Which entries ``sync_scan`` hands to Python (``_masks``; every
        one under filters or -ii)."""
        k = self._pick_cache
        if k is None:
            so = self.so
            assert so is not None
            every = self.rules is not None or so.itemize > 1
            masks = self._masks()
            # the scan goes on into subdirectories, and folds away those
            # unchanged all through, unless every entry is looked at anyway
            # (filters, -ii, -c, -I); its pairs' fds come on top of the
            # walker's, as a share of them
            descend = 0
            if not every and engine.T_REG in masks:
                descend = min(DESCEND_PAIRS, self.max_dirs // (4 * _Scans.COLD_THREADS))
            k = self._pick_cache = engine.sync_pick(
                masks,
                so.hard_links,
                every,
                descend=descend,
                budget=DESCEND_BUDGET,
                dir_mask=self._attr_bits() | engine.D_ERR,
            )
            k.xdev = int(self.opts.one_file_system)
            if self.dst_top is not None:
                dev, k.avoid_ino = self.dst_top
                k.avoid_major, k.avoid_minor = os.major(dev), os.minor(dev)
        return k

    def _content_flags(self) -> int:
        """-c: the scan compares the data of same-size regular files itself
        (F_CONTENT), so that files found equal never reach Python; not when
        every file's digest is wanted (a manifest, ``on_digest``) nor with
        -I (every file is looked at)."""
        so = self.so
        assert so is not None
        if not so.checksum or so.ignore_times or so.manifest or self.opts.on_digest is not None:
            return 0
        return engine.F_CONTENT | (engine.F_DEVICE if so.device_reads else 0)

    def _attr_bits(self) -> int:
        """The D_* bits of the metadata the options keep."""
        so = self.so
        assert so is not None
        return (
            (engine.D_PERMS if so.perms else 0)
            | (engine.D_UID if so.owner else 0)
            | (engine.D_GID if so.group else 0)
            | (engine.D_XATTR if so.xattrs else 0)
            | (engine.D_ACL if so.acls else 0)
            | (engine.D_MTIME if so.times else 0)
        )

    def _masks(self) -> dict[int, int]:
        """Per type, the D_* bits that make an entry more than unchanged;
        a type that is never passed over unseen (directories, what -I and
        -c look at, what is skipped with a message) has none."""
        m = self._mask_cache
        if m is not None:
            return m
        so = self.so
        assert so is not None
        base = engine.D_MISSING | engine.D_TYPE | engine.D_ERR
        attrs = self._attr_bits()
        if so.size_only:
            reg = base | attrs | engine.D_SIZE
        else:
            reg = base | attrs | engine.D_SIZE | engine.D_MTIME
        link_attrs = attrs & ~engine.D_PERMS
        special = base | attrs
        m = {
            engine.T_REG: reg,
            engine.T_LNK: base | link_attrs | engine.D_TARGET,
            engine.T_FIFO: special,
            engine.T_SOCK: special,
            engine.T_CHR: special | engine.D_RDEV,
            engine.T_BLK: special | engine.D_RDEV,
        }
        if self._content_flags():  # equal data are found in the scan
            m[engine.T_REG] = base | attrs | engine.D_SIZE | engine.D_DATA
        elif so.checksum or so.ignore_times or so.manifest:
            del m[engine.T_REG]
        if not so.symlinks:
            del m[engine.T_LNK]  # skipped, with a message
        if not so.devices:
            del m[engine.T_CHR], m[engine.T_BLK]
        if not so.specials:
            del m[engine.T_FIFO], m[engine.T_SOCK]
        self._mask_cache = m
        return m

    # -------------------------------------------------------- directories
    def _sync_subdir(
        self, d: Dir, name: bytes, st: Stat, dst_st: Stat | None, v: int = 0
    ) -> Dir | None:
        so = self.so
        assert so is not None and d.sync is not None
        rel = d.sync.rel + name + b"/"
        if (os.makedev(int(st.dev_major), int(st.dev_minor)), int(st.ino)) == self.made_dst:
            return None  # DST, made by this run inside SRC: rsync listed SRC before
        existed = dst_st is not None
        if dst_st is not None and dst_st.type != engine.T_DIR:
            if so.ignore_existing:  # rsync cannot go into it either
                p = join(d.dst_path, name)
                self.error(p, steps.OPENDIR_DST, E.ENOTDIR, steps.OPENDIR_DST.what(p, p))
                self._src_unreadable(d)  # an I/O error: no deletions from now on
                return None
            # something else is in the way: replaced by the directory
            if not so.dry_run:
                try:
                    os.unlink(name, dir_fd=self._fds(d)[1])
                except OSError as e:
                    path = join(d.dst_path, name)
                    self.error(path, steps.UNLINK, e.errno or E.EIO, steps.UNLINK.what(path, path))
                    return None
                d.sync.modified = True
            dst_st = None
        if not existed and so.existing:
            return None  # --existing: no new directories, nothing below them
        child = Dir(
            d,
            name,
            name,
            join(d.src_path, name),
            join(d.dst_path, name),
            engine.copy_stat(st),
        )
        child.sync = SyncDir(rel, engine.copy_stat(dst_st) if dst_st is not None else None)
        child.sync.diff = v
        if self.opts.one_file_system and (int(st.dev_major), int(st.dev_minor)) != self.root_dev:
            child.skip_contents = True  # -x: a mount point is made, empty
        key = (os.makedev(int(st.dev_major), int(st.dev_minor)), int(st.ino))
        if key in self.dst_dirs:
            child.skip_contents = True  # DST inside SRC: made, empty, never walked into
        if dst_st is None:
            if self.opts.on_itemize is None:
                self.totals.created += 1
            else:
                self._item(Change("create", "d", rel))
            d.sync.modified = True
        d.pending += 1
        return child

    def _dir_attrs(
        self, st: Stat, dst: Stat, v: int | None = None
    ) -> tuple[bool, bool, bool, bool]:
        """(perms, owner, group, time) differences between two lstats, as
        far as the options keep them (``v``: the match's bits, whose mode
        comparison is -A's: group bits from the ACL, not its mask)."""
        so = self.so
        assert so is not None
        if v is not None:
            perms = so.perms and bool(v & engine.D_PERMS)
        else:
            perms = so.perms and (int(st.mode) & 0o7777) != (int(dst.mode) & 0o7777)
        owner = so.owner and int(st.uid) != int(dst.uid)
        group = so.group and int(st.gid) != int(dst.gid)
        time = so.times and _mtime(st) != _mtime(dst)
        return perms, owner, group, time

    def _old_attrs(self, st: Stat, dst: Stat) -> tuple[bool, bool, bool, bool]:
        """What rsync's line for a file replacing ``dst`` shows of its
        attributes: the raw mode, and what an earlier name of the same
        destination inode had fixed already this run."""
        perms, owner, group, time = self._dir_attrs(st, dst)
        if int(dst.nlink) > 1:
            fixed = self.meta_fixed.get((int(dst.dev_major), int(dst.dev_minor), int(dst.ino)))
            if fixed is not None:
                so = self.so
                assert so is not None
                perms = so.perms and fixed[0] != int(st.mode) & 0o7777
                owner = so.owner and fixed[1] != int(st.uid)
                group = so.group and fixed[2] != int(st.gid)
                time = so.times and fixed[3] != _mtime(st)
        return perms, owner, group, time

    def _sync_dir_meta(self, d: Dir, dst_fd: int) -> None:
        """A directory's own metadata, after its children: all of it when
        it is new, only what differs (or its times, when something in it
        changed) when it existed."""
        so = self.so
        assert so is not None and d.st is not None
        sd = d.sync
        assert sd is not None
        path = sd.rel or b"./"
        if sd.resume_left:  # an interrupted copy's names that no copy took up
            sd.modified = True
            for name in sd.resume_left:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dst_fd)
        if sd.new:
            if so.dry_run:
                return
            ret, step = engine.dir_meta(d.src_fd, dst_fd, d.st, self.flags, self.dir_mode_mask)
            if ret < 0:
                self.error(d.dst_path, step, -ret, step.what(d.dst_path, d.dst_path))
            return
        assert sd.dst_st is not None
        perms, owner, group, time = self._dir_attrs(d.st, sd.dst_st)
        flags = 0
        if perms:
            flags |= engine.P_MODE
        if owner or group:
            flags |= engine.P_OWNER | (self.flags & engine.F_STRICT_OWNER)
        if so.times and (time or sd.modified):
            flags |= engine.P_TIMES
        if sd.diff is None or sd.diff & (engine.D_XATTR | engine.D_ACL | engine.D_ERR):
            flags |= self.flags & MATCH_FLAGS  # else the scan found them equal
        changed = 0
        if flags:
            if so.dry_run:
                flags |= engine.F_DRY
            src_fd = d.src_fd if not d.no_src else -1
            ret, step, changed = engine.meta_sync_fd(
                src_fd, dst_fd, d.st, flags, self.dir_mode_mask
            )
            if ret < 0:
                self.error(d.dst_path, step, -ret, step.what(d.dst_path, d.dst_path))
        acl = bool(changed & engine.CH_ACL)
        xattr = bool(changed & engine.CH_XATTR)
        if perms or owner or group or time or acl or xattr:
            self._item(
                Change(
                    "meta",
                    "d",
                    path,
                    perms=perms,
                    owner=owner,
                    group=group,
                    time=time,
                    acl=acl,
                    xattr=xattr,
                )
            )
        else:
            self._unchanged("d", path)

    # ------------------------------------------------------------ entries
    def _sync_entry(
        self, d: Dir, name: bytes, st: Stat, dst_st: Stat | None, v: int | None = None
    ) -> None:
        so = self.so
        assert so is not None and d.sync is not None
        t = int(st.type)
        path = d.sync.rel + name
        if t == engine.T_LNK and not so.symlinks:
            self._info(f'skipping non-regular file "{os.fsdecode(path)}"')
            return
        if t in (engine.T_CHR, engine.T_BLK) and not so.devices:
            self._info(f'skipping non-regular file "{os.fsdecode(path)}"')
            return
        if t in (engine.T_FIFO, engine.T_SOCK) and not so.specials:
            self._info(f'skipping non-regular file "{os.fsdecode(path)}"')
            return
        ftype = _FTYPE.get(t)
        if ftype is None:
            self._unknown_type(join(d.src_path, name))
            return
        if dst_st is not None and so.ignore_existing:
            return
        if dst_st is None and so.existing:
            return
        if t == engine.T_REG and so.hard_links and int(st.nlink) > 1:
            self._sync_linked(d, name, st, dst_st, path, v)
            return
        if dst_st is None:
            self._create_entry(d, name, st, t, path, existed=False)
            return
        dt = int(dst_st.type)
        if dt != t:
            if dt == engine.T_DIR and not self._remove_dir_in_way(d, name, path, ftype):
                return
            self._create_entry(d, name, st, t, path, existed=dt != engine.T_DIR)
            return
        if t == engine.T_REG:
            self._sync_file(d, name, st, dst_st, path, v)
        elif t == engine.T_LNK:
            self._sync_symlink(d, name, st, dst_st, path, v)
        else:
            self._sync_special(d, name, st, dst_st, path, ftype, v)

    def _remove_dir_in_way(self, d: Dir, name: bytes, path: bytes, ftype: str) -> bool:
        """A directory where the source has something else: removed when
        empty, or with its contents under --delete (rsync's rule, and its
        messages)."""
        so = self.so
        assert so is not None
        kind = {"f": "regular file", "L": "symlink", "D": "device", "S": "special file"}[ftype]
        _, dfd = self._fds(d)
        if self._delete_item(dfd, name, path, True, make_room=True, recurse=so.delete) == _DR_OK:
            assert d.sync is not None
            d.sync.modified = True
            return True
        p = join(d.dst_path, name)
        self.error(p, steps.UNLINK, E.ENOTEMPTY, f"could not make way for new {kind}: {show(p)}")
        return False

    def _create_entry(
        self, d: Dir, name: bytes, st: Stat, t: int, path: bytes, existed: bool
    ) -> None:
        if self.opts.on_itemize is None:  # nobody reads the line: only count it
            self.totals.created += 1
        else:
            target = self._readlink(d, name, True) if t == engine.T_LNK else None
            self._item(Change("create", _FTYPE[t], path, target=target))
        self._queue_sync_copy(d, name, st, t, existed=existed)

    def _sync_file(
        self, d: Dir, name: bytes, st: Stat, dst_st: Stat, path: bytes, v: int | None = None
    ) -> bool:
        """A regular file at both ends.  Returns False when the decision waits
        for the digests (-c)."""
        so = self.so
        assert so is not None
        if so.update and _mtime(dst_st) > _mtime(st):
            return True  # -u: newer at the destination
        same_size = int(st.size) == int(dst_st.size)
        if so.checksum:
            if same_size:
                self._queue_hash_pair(d, name, st, dst_st, v)
                return False
            self._update_file(d, name, st, dst_st, path, v)
            return True
        if so.size_only:
            unchanged = same_size
        elif so.ignore_times:
            unchanged = False
        else:
            unchanged = same_size and _mtime(st) == _mtime(dst_st)
        if unchanged:
            self._meta_or_unchanged(d, name, st, dst_st, path, "f", None, v)
        else:
            self._update_file(d, name, st, dst_st, path, v)
        return True

    def _update_file(
        self, d: Dir, name: bytes, st: Stat, dst_st: Stat, path: bytes, v: int | None = None
    ) -> None:
        so = self.so
        assert so is not None
        perms, owner, group, _time = self._old_attrs(st, dst_st)
        c = Change(
            "update",
            "f",
            path,
            checksum=so.checksum,
            size=int(st.size) != int(dst_st.size),
            time=so.times and _mtime(st) != _mtime(dst_st),
            transfer_time=not so.times,
            perms=perms,
            owner=owner,
            group=group,
        )
        xa = self.flags & (engine.P_XATTR | engine.P_ACL)
        if v is not None:  # the match compared the ACLs and xattrs already
            c = dataclasses.replace(c, acl=bool(v & engine.D_ACL), xattr=bool(v & engine.D_XATTR))
        if not xa or v is not None:
            self._item(c)
            self._queue_sync_copy(d, name, st, engine.T_REG, existed=True, update=True)
            return
        # rsync's line for a transferred file also says whether its ACLs or
        # xattrs differ from the old file's: compare them first (writing nothing)
        self.totals.updated += 1
        task = Task("precheck", d, name, engine.copy_stat(st), change=c)
        d.pending += 2  # the comparison, and the copy it leads to
        self._queue_task(d, name, name, st, engine.T_META, xa | engine.F_DRY, task)

    def _prechecked(self, task: Task, changed: int) -> None:
        """A changed file's ACLs and xattrs are compared: its line, then its copy."""
        d = task.d
        c = task.change
        assert c is not None
        acl = bool(changed & engine.CH_ACL)
        xattr = bool(changed & engine.CH_XATTR)
        self._item(dataclasses.replace(c, acl=acl, xattr=xattr), count=False)
        self._queue_sync_copy(d, task.name, task.st, engine.T_REG, existed=True, update=True)
        d.pending -= 1
        self._finish_dir(d)

    def _meta_or_unchanged(
        self,
        d: Dir,
        name: bytes,
        st: Stat,
        dst_st: Stat,
        path: bytes,
        ftype: itemize.FType,
        target: bytes | None = None,
        v: int | None = None,
    ) -> None:
        """Same data: fix what differs of owner, mode, times (only when the
        quick check did not compare them), xattrs and ACLs (``v``: what the
        match found of those; None: a job compares them)."""
        so = self.so
        assert so is not None
        # rsync's mode comparison is -A's (group bits from the ACL) in a
        # real run, the raw mode under -n
        perms, owner, group, time = self._dir_attrs(st, dst_st, None if so.dry_run else v)
        if ftype == "L":
            perms = False
        shared = None
        if ftype == "f" and int(dst_st.nlink) > 1:
            # one inode under several destination names: what an earlier
            # name's fix applied, a later name sees done (rsync looks again)
            shared = (int(dst_st.dev_major), int(dst_st.dev_minor), int(dst_st.ino))
            wanted = (int(st.mode) & 0o7777, int(st.uid), int(st.gid), _mtime(st))
            if self.meta_fixed.get(shared) == wanted:
                self._unchanged(ftype, path, target)
                return
        flags = 0
        if perms:
            flags |= engine.P_MODE
        if owner or group:
            flags |= engine.P_OWNER | (self.flags & engine.F_STRICT_OWNER)
        if time:
            flags |= engine.P_TIMES
        if v is None:
            flags |= self.flags & (engine.P_XATTR | engine.P_ACL)
        else:
            flags |= (engine.P_XATTR if v & engine.D_XATTR else 0) | (
                engine.P_ACL if v & engine.D_ACL else 0
            )
            flags &= self.flags | engine.F_STRICT_OWNER
        if not flags:
            self._unchanged(ftype, path, target)
            return
        c = Change(
            "meta", ftype, path, target=target, perms=perms, owner=owner, group=group, time=time
        )
        if shared is not None:
            self.meta_fixed[shared] = (int(st.mode) & 0o7777, int(st.uid), int(st.gid), _mtime(st))
        if v is not None:  # the line is known: no comparison to wait for
            c = dataclasses.replace(
                c, acl=bool(flags & engine.P_ACL), xattr=bool(flags & engine.P_XATTR)
            )
            self._item(c)
            if so.dry_run:
                return
            d.pending += 1
            self._queue_task(d, name, name, st, engine.T_META, flags, Task("fix", d, name, st))
            return
        if so.dry_run:
            flags |= engine.F_DRY
        task = Task("meta", d, name, st, change=c)
        d.pending += 1
        self._queue_task(d, name, name, st, engine.T_META, flags, task)

    def _sync_symlink(
        self, d: Dir, name: bytes, st: Stat, dst_st: Stat, path: bytes, v: int | None = None
    ) -> None:
        target = self._readlink(d, name, True)
        if target is None:
            return
        if v is not None:
            differs = bool(v & engine.D_TARGET)
        else:
            differs = self._readlink(d, name, False) != target
        if differs:
            _perms, owner, group, time = self._dir_attrs(st, dst_st)
            self._item(
                Change("update", "L", path, target=target, time=time, owner=owner, group=group)
            )
            self._queue_sync_copy(d, name, st, engine.T_LNK, existed=True)
            return
        self._meta_or_unchanged(d, name, st, dst_st, path, "L", target, v)

    def _sync_special(
        self,
        d: Dir,
        name: bytes,
        st: Stat,
        dst_st: Stat,
        path: bytes,
        ftype: itemize.FType,
        v: int | None = None,
    ) -> None:
        same = (int(st.rdev_major), int(st.rdev_minor)) == (
            int(dst_st.rdev_major),
            int(dst_st.rdev_minor),
        )
        if int(st.type) in (engine.T_FIFO, engine.T_SOCK):
            same = True
        if not same:
            perms, owner, group, time = self._dir_attrs(st, dst_st)
            self._item(
                Change("update", ftype, path, time=time, perms=perms, owner=owner, group=group)
            )
            self._queue_sync_copy(d, name, st, int(st.type), existed=True)
            return
        self._meta_or_unchanged(d, name, st, dst_st, path, ftype, None, v)

    def _readlink(self, d: Dir, name: bytes, src: bool) -> bytes | None:
        src_fd, dst_fd = self._fds(d)
        try:
            return os.readlink(name, dir_fd=src_fd if src else dst_fd)
        except OSError as e:
            if src:
                p = join(d.src_path, name)
                self.error(p, steps.READLINK, e.errno or E.EIO, steps.READLINK.what(p, p))
            return None

    # ------------------------------------------------------------ hard links
    def _sync_linked(
        self, d: Dir, name: bytes, st: Stat, dst_st: Stat | None, path: bytes, v: int | None
    ) -> None:
        """-H: the names of a source inode are gathered (their directories
        wait) until all are met, or the walk ends; then rsync's choice of
        the one synced as a file leads, and the others become its links."""
        key = (int(st.dev_major), int(st.dev_minor), int(st.ino))
        g = self.inodes.get(key)
        if g is None:
            g = LinkGroup(key, d, name, engine.copy_stat(st))
            self.inodes[key] = g
        dst = engine.copy_stat(dst_st) if dst_st is not None else None
        g.members.append((d, name, engine.copy_stat(st), dst, path, v))
        d.pending += 1  # held until the group is decided
        if len(g.members) >= g.nlink:
            self._decide_group(g)

    def flush_link_groups(self) -> None:
        """The walk is over: groups with names outside the transfer are
        decided with the names met."""
        for g in list(self.inodes.values()):
            if g.members:
                self._decide_group(g)

    def _decide_group(self, g: LinkGroup) -> None:
        """rsync's leader: the first name already a file at the destination,
        else the last name (--ignore-existing and --existing leave out the
        names they skip)."""
        members, g.members = sorted(g.members, key=_rsync_order), []
        so = self.so
        assert so is not None

        def there(m: Member) -> bool:
            return m[3] is not None and int(m[3].type) == engine.T_REG

        skipped = [
            m for m in members if (there(m) if so.ignore_existing else so.existing and m[3] is None)
        ]
        for m in skipped:
            m[0].pending -= 1
            self._finish_dir(m[0])
        members = [m for m in members if m not in skipped]
        if not members:
            return
        present = [m for m in members if there(m)]
        leader = present[0] if present else members[-1]
        d, name, st, dst_st, path, v = leader
        g.dir, g.name_c, g.st = d, engine.c_name(name), st
        g.seen = len(members)
        g.path = path
        g.xa = (v or 0) & (engine.D_ACL | engine.D_XATTR)
        g.dst_ino = None
        if dst_st is not None and int(dst_st.type) == engine.T_REG:
            g.dst_ino = (int(dst_st.dev_major), int(dst_st.dev_minor), int(dst_st.ino))
        g.state = LinkGroup.QUEUED
        self._sync_leader(d, name, st, dst_st, path, g, v)
        for m in members:
            if m is not leader:
                self._sync_twin(g, *m)
        for m in members:  # the holds
            m[0].pending -= 1
            self._finish_dir(m[0])

    def _sync_twin(
        self,
        g: LinkGroup,
        d: Dir,
        name: bytes,
        st: Stat,
        dst_st: Stat | None,
        path: bytes,
        v: int | None,
    ) -> None:
        """A name of a linked inode other than its leader: linked to it,
        unless it already is."""
        have = None
        if dst_st is not None and int(dst_st.type) == engine.T_REG:
            have = (int(dst_st.dev_major), int(dst_st.dev_minor), int(dst_st.ino))
        if dst_st is not None and int(dst_st.type) == engine.T_DIR:
            if not self._remove_dir_in_way(d, name, path, "f"):
                return
            dst_st = None
        if g.dst_ino is not None and have == g.dst_ino:
            if g.state == LinkGroup.DONE:
                self._linked_already(path, g)
                return
            if g.state == LinkGroup.QUEUED:  # -c: the leader's digests decide
                d.pending += 1
                g.same.append((d, name, path))
                return
        existed = dst_st is not None and int(dst_st.type) == engine.T_REG
        c = Change("hardlink", "f", path, target=g.path, existed=existed)
        if existed and dst_st is not None and v is not None:  # what the old file differed in
            perms, owner, group, time = self._old_attrs(st, dst_st)
            c = dataclasses.replace(
                c,
                size=bool(v & engine.D_SIZE),
                time=time,
                perms=perms,
                owner=owner,
                group=group,
                # rsync's a and x for a twin are its leader's old file's
                acl=bool(g.xa & engine.D_ACL),
                xattr=bool(g.xa & engine.D_XATTR),
            )
        self._item(c)
        if self.so is not None and self.so.dry_run:
            return
        d.pending += 1
        assert d.sync is not None
        d.sync.modified = True
        if g.state == LinkGroup.DONE:
            self._queue_link(g, d, name)
        else:
            g.waiting.append((d, name))

    def _sync_leader(
        self,
        d: Dir,
        name: bytes,
        st: Stat,
        dst_st: Stat | None,
        path: bytes,
        g: LinkGroup,
        v: int | None,
    ) -> None:
        """The first name met of a linked inode: synced as a plain file; its
        group is done (its twins can link to it) when that is."""
        before = self.totals.created + self.totals.updated
        decided = True
        if dst_st is None:
            self._create_entry(d, name, st, engine.T_REG, path, existed=False)
        elif int(dst_st.type) != engine.T_REG:
            if int(dst_st.type) == engine.T_DIR and not self._remove_dir_in_way(d, name, path, "f"):
                g.state = LinkGroup.FAILED
                return
            self._create_entry(d, name, st, engine.T_REG, path, existed=True)
        else:
            decided = self._sync_file(d, name, st, dst_st, path, v)
        if not decided:
            return  # -c: _hashed settles the group
        self._leader_decided(g, self.totals.created + self.totals.updated != before)

    def _leader_decided(self, g: LinkGroup, copying: bool) -> None:
        """A copied leader makes a new inode (its twins are linked again, by
        _group_done when the copy is in); an unchanged one lets them link now."""
        if copying:
            g.dst_ino = None
        if not copying or (self.so is not None and self.so.dry_run):
            g.state = LinkGroup.DONE
        same, g.same = g.same, []
        for d, name, path in same:  # twins already linked to the old inode
            if copying:
                self._item(Change("hardlink", "f", path, target=g.path, existed=True))
                if self.so is not None and self.so.dry_run:
                    d.pending -= 1
                    self._finish_dir(d)
                else:
                    assert d.sync is not None
                    d.sync.modified = True
                    g.waiting.append((d, name))  # pending already counts it
            else:
                self._linked_already(path, g)
                d.pending -= 1
                self._finish_dir(d)

    # ------------------------------------------------------------ queueing
    def _queue_task(
        self,
        d: Dir,
        src: bytes,
        dst: bytes,
        st: Stat,
        ftype: int,
        flags: int,
        task: Task,
        final: bytes | None = None,
    ) -> None:
        self._queue(d, src, dst, st, ftype, flags, None, None, 0, task, final)

    def _queue_sync_copy(
        self, d: Dir, name: bytes, st: Stat, t: int, existed: bool, update: bool = False
    ) -> None:
        """Copy a source entry under its name: a regular file through a
        temporary name (unless --inplace), the rest in place (the job
        replaces what is there).  ``update``: a regular file replaces the
        regular file there (--delta writes only the blocks that differ)."""
        so = self.so
        assert so is not None and d.sync is not None
        if so.dry_run:
            return
        d.sync.modified = True
        group = None
        if t == engine.T_REG and so.hard_links and int(st.nlink) > 1:
            key = (int(st.dev_major), int(st.dev_minor), int(st.ino))
            group = self.inodes.get(key)
        flags = self.job_flags
        # --verify and digests hash the source as it is copied whole
        if update and so.delta and not so.verify and self.opts.on_digest is None:
            flags |= engine.F_DELTA
            tmp = None if so.inplace else temp_name(name)
            if (
                group is None
                and int(st.size) >= self.split_min
                and self._queue_delta_big(d, name, st, tmp)
            ):
                d.sync.modified = True
                return
        elif t == engine.T_REG and group is None and self._queue_big_sync(d, name, name, st):
            return
        d.pending += 1
        task = COPY
        if t == engine.T_REG and not so.inplace:
            self._queue(d, name, temp_name(name), st, t, flags, group, None, 0, task, name)
        else:
            self._queue(d, name, name, st, t, flags, group, None, 0, task)

    def _queue_big_sync(self, d: Dir, name: bytes, final: bytes, st: Stat) -> bool:
        """A big regular file in ranges on the workers, resumable (written
        under fixed names, with a record of its ranges: bigfiles.py).
        False: it goes as one job (too small, sparse, --inplace, a data path
        that does not split, or its names in use by another big file)."""
        so = self.so
        assert so is not None
        if (
            so.inplace
            or int(st.size) < self.split_min
            or int(st.blocks) * SECTOR < int(st.size)  # sparse
            or not self._can_split(workers=1)
        ):
            return False
        tmp, rec = resume_names(final)
        if any(b.d is d and b.resume is not None and b.resume.tmp == tmp for b in self.bigs):
            return False  # two long names that share their first 237 bytes
        sd = d.sync
        if sd is not None and sd.resume_left:
            sd.resume_left = [n for n in sd.resume_left if n not in (tmp, rec)]
        return self._queue_resumable(d, name, st, Resume(tmp, rec, final))

    def _queue_hash_pair(self, d: Dir, name: bytes, st: Stat, dst_st: Stat, v: int | None) -> None:
        """-c: both sides' digests, in the same batch (a big file's apart)."""
        task = Task("hash", d, name, engine.copy_stat(st), engine.copy_stat(dst_st))
        task.v = v
        task.left = 2
        twin = Task("hashdst", d, name, task.st)
        twin.pair = task
        d.pending += 3  # two digests, and the decision they lead to
        # a big pair: each digest a batch of its own, so that two workers hash
        # the two sides at once (hashing is CPU-bound: one core per digest)
        apart = int(st.size) >= self.split_min and self.pool is not None and self.pool.alive() > 1
        if apart:
            self.flush()
        self._queue(d, name, name, st, engine.T_HASH, 0, None, None, 0, task)
        if apart:
            self.flush()
        # link_to=d: the job's "source" directory is d's destination twin
        dev = engine.F_DEVICE if self.so is not None and self.so.device_reads else 0
        self._queue(d, name, name, st, engine.T_HASH, dev, None, d, 0, twin)
        if apart:
            self.flush()

    def _task_done(self, task: Task, j: engine.UsJob, d: Dir) -> bool:
        """A sync job of directory ``d`` is back (called by
        Dispatch._complete, which already counted it off ``d``).  Returns
        whether the job's data is in place (for its hard-link group)."""
        if task.kind in ("hash", "hashdst"):
            side = 0 if task.pair is None else 1
            if task.pair is not None:
                task = task.pair
            if j.err:
                if side == 0:
                    self._job_error(d, j)
                task.digests[side] = b""
            else:
                task.digests[side] = engine.digest(j)
            task.left -= 1
            if task.left == 0:
                self.deferred.append(lambda: self._hashed(task))
            return True
        if task.kind == "precheck":  # a failed comparison: copied all the same
            changed = 0 if j.err else int(j.changed)
            self.deferred.append(lambda: self._prechecked(task, changed))
            return True
        if j.err:
            ok = j.op in engine.AFTER_DATA and task.kind == "copy" and not j.final_name
            self._job_error(d, j)
            return bool(ok)
        if task.kind == "meta":
            c = task.change
            assert c is not None
            changed = int(j.changed)
            acl = bool(changed & engine.CH_ACL)
            xattr = bool(changed & engine.CH_XATTR)
            if c.perms or c.owner or c.group or c.time or acl or xattr:
                self._item(
                    Change(
                        "meta",
                        c.ftype,
                        c.path,
                        target=c.target,
                        perms=c.perms,
                        owner=c.owner,
                        group=c.group,
                        time=c.time,
                        acl=acl,
                        xattr=xattr,
                    )
                )
            else:
                self._unchanged(c.ftype, c.path, c.target)
        return True

    def _hashed(self, task: Task) -> None:
        """-c: both digests are in: the file is unchanged (metadata fixed)
        or copied."""
        d = task.d
        src_dig, dst_dig = task.digests
        assert d.sync is not None and task.dst_st is not None
        path = d.sync.rel + task.name
        st = task.st
        g = None
        if self.so is not None and self.so.hard_links and int(st.nlink) > 1:
            g = self.inodes.get((int(st.dev_major), int(st.dev_minor), int(st.ino)))
        if src_dig:
            if src_dig == dst_dig:
                self._meta_or_unchanged(d, task.name, st, task.dst_st, path, "f", None, task.v)
                if self.opts.on_digest is not None:
                    self.opts.on_digest(path, src_dig)
                if g is not None:
                    g.digest = src_dig  # for the twins linked to it already
                if g is not None and g.state == LinkGroup.QUEUED:
                    self._leader_decided(g, False)
                    self._group_done(g, True)
            else:
                self._update_file(d, task.name, st, task.dst_st, path, task.v)
                if g is not None:
                    self._leader_decided(g, True)
        elif g is not None:
            self._group_done(g, False)
        d.pending -= 1
        self._finish_dir(d)

    # ------------------------------------------------------------ deletion
    def _delete_in(self, d: Dir, dsc: Scan, gone: list[tuple[bytes, int]]) -> None:
        """Entries only at the destination: stale temporaries go always
        (not with -n), the rest with --delete, unless a filter protects them."""
        so = self.so
        assert so is not None and d.sync is not None
        rules = self.rules
        rel = d.sync.rel
        for name, j in sorted(gone):
            st = ffi.addressof(dsc.entry(j), "st")
            t = int(st.type)
            if is_temp_name(name) and t == engine.T_REG:
                if so.dry_run:
                    pass
                elif is_resume_name(name):
                    d.sync.resume_left = (d.sync.resume_left or []) + [name]
                else:
                    self._unlink(d, name, False)
                continue
            if not so.delete:
                continue
            is_dir = t == engine.T_DIR
            if rules is not None and rules.protected(rel + name, is_dir, so.delete_excluded):
                continue
            if self.io_error:
                continue
            if so.delete_after:
                self.after.append((d, name, t))
                continue
            self._delete_one(d, name, t)

    def _count_deleted(self) -> None:
        self.deleted += 1
        self.totals.deleted += 1
        if self.opts.progress:
            self.opts.progress(Event("deleted", entries=1))

    def _may_delete(self) -> bool:
        so = self.so
        assert so is not None
        if so.max_delete is not None and self.deleted >= so.max_delete:
            self.delete_skipped += 1
            return False
        self.deleted += 1
        return True

    def _delete_one(self, d: Dir, name: bytes, t: int) -> None:
        assert d.sync is not None
        path = d.sync.rel + name
        if t == engine.T_DIR:
            _, dfd = self._fds(d)
            if self._delete_item(dfd, name, path, True) == _DR_OK:
                d.sync.modified = True
            return
        if not self._may_delete():
            return
        self._item(Change("delete", _FTYPE.get(t, "f"), path))
        self.totals.deleted += 1
        if self.opts.progress:
            self.opts.progress(Event("deleted", entries=1))
        if self.so is not None and not self.so.dry_run:
            self._unlink(d, name, False)

    def _unlink(self, d: Dir, name: bytes, rmdir: bool) -> None:
        """Remove one destination entry by a job (UNLINKAT on the engine)."""
        assert d.sync is not None
        d.sync.modified = True
        d.pending += 1
        st = ffi.new("struct us_stat *")
        task = Task("unlink", d, name, st)
        self._queue(
            d, name, name, st, engine.T_UNLINK, engine.F_RMDIR if rmdir else 0, None, None, 0, task
        )

    def _delete_item(
        self,
        dfd: int,
        name: bytes,
        path: bytes,
        is_dir: bool,
        make_room: bool = False,
        recurse: bool = True,
        dir_is_empty: bool = False,
    ) -> int:
        """rsync's delete_item (delete.c): a directory's contents first
        (deepest first, never following a symlink), then the entry itself,
        within --max-delete (which an entry removed to make room for another
        is not held to, though its contents are).  -n: only the lines."""
        so = self.so
        assert so is not None
        if is_dir and not dir_is_empty:
            ret = self._delete_dir_contents(dfd, name, path, recurse)
            if ret in (_DR_NOT_EMPTY, _DR_AT_LIMIT):
                return ret
        if not make_room and so.max_delete is not None and self.deleted >= so.max_delete:
            self.delete_skipped += 1
            return _DR_AT_LIMIT
        if not so.dry_run:
            try:
                if is_dir:
                    os.rmdir(name, dir_fd=dfd)
                else:
                    os.unlink(name, dir_fd=dfd)
            except OSError as e:
                if is_dir and e.errno == E.ENOTEMPTY:
                    self._info(f"cannot delete non-empty directory: {os.fsdecode(path)}")
                    return _DR_NOT_EMPTY
                if e.errno == E.ENOENT:
                    return _DR_OK
                self.error(path, steps.UNLINK, e.errno or E.EIO, steps.UNLINK.what(path, path))
                return _DR_FAILED
        if not make_room:
            self._count_deleted()
            self._item(Change("delete", "d" if is_dir else "f", path + (b"/" if is_dir else b"")))
        return _DR_OK

    def _delete_dir_contents(self, dfd: int, name: bytes, path: bytes, recurse: bool) -> int:
        """rsync's delete_dir_contents: without ``recurse`` only whether the
        directory is empty.  Names a filter protects (not --delete-excluded)
        are kept, so their directory is not empty."""
        try:
            fd = os.open(name, O_DIR, dir_fd=dfd)
        except OSError as e:
            self.error(
                path, steps.OPENDIR_DST, e.errno or E.EIO, steps.OPENDIR_DST.what(path, path)
            )
            return _DR_FAILED
        try:
            with os.scandir(fd) as it:
                ents = [(os.fsencode(e.name), e.is_dir(follow_symlinks=False)) for e in it]
            rules, de = self.rules, self.so is not None and self.so.delete_excluded
            listed = ents
            if rules is not None:
                below = rules.protected_below
                listed = [(n, d) for n, d in ents if not below(path + b"/" + n, d, de)]
            ret = _DR_NOT_EMPTY if len(listed) < len(ents) else _DR_OK
            if listed and not recurse:
                ret = _DR_NOT_EMPTY
            elif listed:
                for ent, sub_is_dir in sorted(listed, reverse=True):  # rsync: backwards
                    sub = path + b"/" + ent
                    if sub_is_dir and self._delete_dir_contents(fd, ent, sub, True) != _DR_OK:
                        ret = _DR_NOT_EMPTY
                    if self._delete_item(fd, ent, sub, sub_is_dir, dir_is_empty=True) != _DR_OK:
                        ret = _DR_NOT_EMPTY
        finally:
            os.close(fd)
        if ret == _DR_NOT_EMPTY:
            self._info(f"cannot delete non-empty directory: {os.fsdecode(path)}")
        return ret

    def delete_after_pass(self) -> None:
        """--delete-after: what the walk found only at the destination,
        once everything else is done; then the times of the directories it
        emptied are set again (rsync re-touches them too)."""
        todo, self.after = self.after, []
        if self.io_error:
            if todo:
                self._deletions_skipped()
            return
        touched: dict[Dir, None] = {}
        for d, name, t in todo:
            self._delete_one(d, name, t)
            touched[d] = None
        self.drain()
        so = self.so
        if so is None or so.dry_run or not so.times:
            return
        for d in touched:
            if d.st is None:
                continue
            try:
                _, dst_fd = self._fds(d, need_src=False)
            except OSError as e:
                self.dir_error(d.dst_path, steps.OPENDIR_DST, e)
                continue
            ret, step, _ = engine.meta_sync_fd(-1, dst_fd, d.st, engine.P_TIMES, self.dir_mode_mask)
            if ret < 0:
                self.error(d.dst_path, step, -ret, step.what(d.dst_path, d.dst_path))

    def sync_file(self, top: Dir, src_name: bytes, dst_name: bytes, st: Stat) -> None:
        """A command-line SRC that is not a directory, into ``top``."""
        assert top.sync is not None
        if self.opts.on_name is not None and int(st.type) == engine.T_REG:
            self.opts.on_name(top.sync.rel + dst_name)
        if dst_name != src_name:
            self._sync_renamed(top, src_name, dst_name, st)
            return
        dst_st = None
        if not top.sync.missing:
            try:
                dst_st = engine.stat_at(top.dst_fd, dst_name)
            except OSError:
                dst_st = None
        self._sync_entry(top, src_name, st, dst_st)

    def _sync_renamed(self, top: Dir, src_name: bytes, dst_name: bytes, st: Stat) -> None:
        """``sync FILE NEWNAME``: the one case where the names differ."""
        so = self.so
        assert so is not None and top.sync is not None
        try:
            dst_st: Stat | None = engine.stat_at(top.dst_fd, dst_name)
        except OSError:
            dst_st = None
        t = int(st.type)
        ftype = _FTYPE.get(t, "f")
        if dst_st is not None and int(dst_st.type) == t == engine.T_REG:
            if (
                int(dst_st.size) == int(st.size)
                and _mtime(dst_st) == _mtime(st)
                and not (so.checksum or so.ignore_times)
            ):
                self._unchanged("f", src_name)
                return
            self._item(
                Change(
                    "update",
                    "f",
                    src_name,
                    size=int(dst_st.size) != int(st.size),
                    time=_mtime(dst_st) != _mtime(st),
                )
            )
        else:
            self._item(Change("create", ftype, src_name))
        if so.dry_run:
            return
        if t == engine.T_REG and self._queue_big_sync(top, src_name, dst_name, st):
            return
        top.pending += 1
        task = COPY
        if t == engine.T_REG and not so.inplace:
            self._queue(
                top,
                src_name,
                temp_name(dst_name),
                st,
                t,
                self.job_flags,
                None,
                None,
                0,
                task,
                dst_name,
            )
        else:
            self._queue(top, src_name, dst_name, st, t, self.job_flags, None, None, 0, task)
