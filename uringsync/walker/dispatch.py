"""Batches: queueing jobs into the current batch, sending full ones to the
worker pool (or running them on the walker's ring without one), taking in
completions, and the deferred list.

Completions may not queue jobs (a full batch would have to wait for
completions inside a completion): what they would queue goes to
``deferred``, run at the walk's safe points."""

from __future__ import annotations

import contextlib
import errno as E
import functools
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from uringsync import engine, steps
from uringsync.engine import Batch, CharPtr, Ring, Stat
from uringsync.walker.bigfiles import BigFile
from uringsync.walker.errors import Event, SentJobs, Stopped, Trace, join, show

if TYPE_CHECKING:
    from uringsync.pool import Pool, Worker
    from uringsync.walker.dirs import Dir
    from uringsync.walker.dirs import Dirs as Below  # for mypy: the roles after it
    from uringsync.walker.links import LinkGroup
    from uringsync.walker.sync import Task
else:
    Below = object  # at run time: no base (Walker's MRO, core.py)

EARLY_FLUSH = 64  # an idle worker gets a batch as soon as it has this many jobs
MAX_TRIES = 2  # runs of a job whose worker died
DIRS_HELD_SPARE = 2  # a job pins up to two directories (a hard link's target)
_SPECIALS = frozenset({engine.T_FIFO, engine.T_CHR, engine.T_BLK, engine.T_SOCK})


class Slot:
    """The walker's side of one batch: per job, the directory it belongs
    to, its hard-link group, a second directory (a hard link's target) or
    the big file (a range), and how often it ran; the directories whose fds
    it uses until it is sent."""

    __slots__ = ("aux", "dirs", "groups", "owners", "tasks", "tries")

    def __init__(self) -> None:
        self.owners: list[Dir] = []
        self.groups: list[LinkGroup | None] = []
        self.aux: list[Dir | BigFile | None] = []
        self.tries: list[int] = []
        self.tasks: list[Task | None] = []  # sync: what the job's completion means
        self.dirs: dict[Dir, None] = {}

    def clear(self) -> None:
        self.owners.clear()
        self.groups.clear()
        self.aux.clear()
        self.tries.clear()
        self.tasks.clear()
        self.dirs.clear()


class Dispatch(Below):
    """The walker's batch role."""

    ring: Ring
    pool: Pool | None
    wake_fd: int
    batches: list[Batch]
    slots: list[Slot]
    free: list[int]
    ready: deque[int]  # sealed, waiting for a worker
    deferred: deque[Callable[[], None]]
    cur: int
    batch: Batch
    slot: Slot
    copy_range_min: int
    job_flags: int  # what jobs are queued with (the walker's flags and the reflink choice)
    delta_block: int  # sync --delta: bytes per compared block
    link_digests: dict[bytes, bytes]  # cp --manifest: a linked copy's path -> its digest
    mode_mask: int
    trace: Callable[[Trace], None] | None

    if TYPE_CHECKING:  # what it calls of the roles before it in the MRO (links, bigfiles)

        def _group_done(self, g: LinkGroup, ok: bool) -> None: ...
        def _range_done(self, big: BigFile, j: engine.UsJob) -> None: ...
        def _queue_range(self, big: BigFile, off: int, length: int, tries: int = 0) -> None: ...
        def _task_done(self, task: Task, j: engine.UsJob, d: Dir) -> bool: ...

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
        src_name: bytes | CharPtr,
        dst_name: bytes | CharPtr,
        st: Stat,
        ftype: int,
        flags: int,
        group: LinkGroup | None,
        link_to: Dir | None = None,
        tries: int = 0,
        task: Task | None = None,
        final: bytes | None = None,
    ) -> None:
        """Add a job for an entry of ``d`` (whose ``pending`` already counts
        it).  A hard link's source is the copy in ``link_to``.  Names are
        bytes or C strings; the batch keeps copies.  ``task``: a sync job's
        follow-up; ``final``: the name a copy is renamed to when complete."""
        while self.batch.full:
            self.flush()
        if self.pinned >= self.max_dirs - DIRS_HELD_SPARE and self.batch.n:
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
            self.dir_error(bad, steps.OPENDIR, e)
            d.pending -= 1
            if group is not None:
                self.deferred.append(lambda: self._group_done(group, False))
            self._finish_dir(d)
            return
        if self.inherits_acl(d):
            flags |= engine.F_CLEAR_ACL  # remove what the entry inherits
        idx = self.batch.add(src_fd, src_name, dst_fd, dst_name, st, ftype, flags, self.mode_mask)
        if final is None and self.opts.backup_suffix is not None and ftype != engine.T_RANGE:
            final = self.opts.backup_suffix  # cp -b: a cp job's final_name is its suffix
        if final is not None:
            self.batch.set_final(idx, final)
        if flags & engine.F_DELTA:
            self.batch.jobs[idx].delta_block = self.delta_block
        sl = self.slot
        sl.owners.append(d)
        sl.groups.append(group)
        sl.aux.append(link_to)
        sl.tries.append(tries)
        sl.tasks.append(task)

    def drain(self) -> None:
        """Run everything queued, including what the runs queue (hard
        links), until nothing is left anywhere."""
        while True:
            if engine.stop_requested():
                raise Stopped
            self._run_deferred()
            if self.batch.n:
                self.flush()
            elif self.pool is not None and any(w.held for w in self.pool.workers):
                self._wait(timeout=None)
            elif not self.deferred:
                return

    def _safe_point(self) -> None:
        """Between directories: notice a stop, take in finished batches, run
        what completions deferred, and feed an idle worker."""
        if engine.stop_requested():
            raise Stopped
        if self.pool is not None:
            self._wait(timeout=0)
        self._run_deferred()
        if self.pool is not None and self.batch.n >= EARLY_FLUSH and self.pool.idle():
            self.flush()

    def _run_deferred(self) -> None:
        while self.deferred:
            self.deferred.popleft()()

    def _abort_batches(self) -> None:
        """After a stop (the workers are gone): remove what was left half
        written.  A worker that stopped cleanly removed its own partial
        files; one that was killed left its started jobs' files behind."""
        held = [idx for w in self.pool.workers for idx in w.held] if self.pool else []
        for idx in held:
            self._remove_partial(idx)

    def _remove_partial(self, idx: int) -> None:
        """A worker was killed holding batch ``idx``: the files it had
        started may be partial (it could not unlink them itself)."""
        b, sl = self.batches[idx], self.slots[idx]
        for i in range(b.n):
            j = b.jobs[i]
            if j.type == engine.T_REG and j.state == engine.JOB_STARTED:
                dst_fd = self._fds(sl.owners[i], False)[1]
                with contextlib.suppress(OSError):
                    if j.flags & engine.F_CP_DEST:  # maybe an existing file, written in place
                        _empty(engine.string(j.dst_name), dst_fd)
                    else:
                        os.unlink(engine.string(j.dst_name), dir_fd=dst_fd)
                j.state = engine.JOB_QUEUED  # nothing of it is left

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
                worker = pool.send(idx)  # the worker gets its own copies of the fds
                if self.trace:
                    self.trace(Trace("batch_sent", worker=worker, jobs=_jobs_of(pool.batches[idx])))
                self._unpin(idx)

    def _run_here(self, idx: int) -> None:
        """No workers (or none left): run the batch on the walker's ring."""
        b = self.batches[idx]
        self.ring.set_copy_range_min(int(b.c.copy_range_min))
        try:
            self.ring.run(b)
        except OSError:
            if engine.stop_requested():
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
        if engine.stop_requested():
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
            steps.WORKER,
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

    # -------------------------------------------------------- completion
    def _complete(self, idx: int) -> None:
        """A batch is back: count, report, and finish what it completes.
        Jobs it did not finish (a worker died or stopped) are queued again."""
        b = self.batches[idx]
        sl = self.slots[idx]
        t = self.totals
        touched: dict[Dir, None] = {}
        files = nbytes = range_bytes = 0
        after_data = engine.AFTER_DATA
        for i in range(b.n):
            j = b.jobs[i]
            d = sl.owners[i]
            aux = sl.aux[i]
            group = sl.groups[i]
            if j.state != engine.JOB_DONE or (
                j.op == engine.OP_STOPPED and not engine.stop_requested()
            ):  # its worker died or was stopped alone: run it again
                self._again(d, j, group, aux, sl.tries[i] + 1, sl.tasks[i])
                continue
            if isinstance(aux, BigFile):
                self._range_done(aux, j)  # counted when the whole file is in
                range_bytes += int(j.bytes)
                continue
            d.pending -= 1
            touched[d] = None
            task = sl.tasks[i]
            if task is not None:  # sync: its own counting and reporting
                ok = self._task_done(task, j, d)
                if group is not None:
                    self.deferred.append(functools.partial(self._group_done, group, ok))
                if ok and int(j.type) == engine.T_REG and task.kind == "copy":
                    t.files += 1  # regular files transferred
                    files += 1
                    literal, matched = int(j.bytes), int(j.matched)
                    if int(j.path) == engine.PATH_CLONE:  # shared with the source
                        literal, matched = 0, literal
                    t.literal += literal
                    t.matched += matched
                    nbytes += literal + matched
                continue
            ok = not j.err or j.op in after_data  # the data is at the destination
            if j.err:
                self._job_error(d, j)
            if group is not None:
                self.deferred.append(functools.partial(self._group_done, group, ok))
            if not ok or j.changed & engine.CH_SKIPPED:  # (cp -n, -u: left alone)
                continue
            jt = j.type
            if self.opts.on_digest is not None and jt in (engine.T_REG, engine.T_HARDLINK):
                self._digested(d, j, aux)
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
                if j.flags & engine.F_LINK_EXCL:  # cp -l: the source's; -s: the link's value
                    src_name = j.src_name
                src = engine.string(src_name)
                dst = engine.string(j.dst_name)
                if j.changed & engine.CH_REMOVED:
                    self.opts.on_verbose(f"removed {show(join(d.dst_path, dst))}")
                bak = None
                if j.changed & engine.CH_BACKUP:
                    bak = join(d.dst_path, _backup_made(self._fds(d, False)[1], dst, j))
                self.verbose(
                    src if j.flags & engine.F_SYMLINK_SRC else join(d.src_path, src),
                    join(d.dst_path, dst),
                    bak,
                )
        t.bytes += nbytes
        b.clear()
        sl.clear()
        self.free.append(idx)
        for d in touched:
            self._finish_dir(d)
        if self.opts.progress:
            self.opts.progress(Event("batch", files=files, bytes=nbytes + range_bytes))

    def _digested(self, d: Dir, j: engine.UsJob, aux: object) -> None:
        """cp --manifest: a file's digest (F_DIGEST) under each of its names:
        a copy's own, a hard link's its copy's (kept by path until then)."""
        assert self.opts.on_digest is not None
        name = engine.string(j.dst_name)
        if int(j.type) == engine.T_HARDLINK:
            target = cast("Dir", aux)  # the directory of the copy it links to
            dig = self.link_digests.get(join(target.dst_path, engine.string(j.src_name)))
            if dig is None:
                return
        else:
            dig = engine.digest(j)
            if int(j.st.nlink) > 1:
                self.link_digests[join(d.dst_path, name)] = dig
        self.opts.on_digest(join(d.dst_path, name), dig)

    def _again(
        self,
        d: Dir,
        j: engine.UsJob,
        group: LinkGroup | None,
        aux: Dir | BigFile | None,
        tries: int,
        task: Task | None = None,
    ) -> None:
        """Queue a job again (at a safe point) whose worker died before it
        finished; after MAX_TRIES it fails."""
        src = engine.string(j.src_name)
        dst = engine.string(j.dst_name)
        final = engine.string(j.final_name) if j.final_name else None
        st = engine.copy_stat(j.st)
        ftype, flags = int(j.type), int(j.flags)
        if tries >= MAX_TRIES and self.pool is not None:  # (the walker itself never dies)
            j.err, j.op = -E.ECHILD, engine.OP_NONE
            if isinstance(aux, BigFile):
                # no C step failed: the big file is reported as an ordinary
                # file would be ('... not copied: its workers died'), not as
                # OP_NONE's 'none'
                if aux.err is None:
                    aux.err = (steps.WORKER, E.ECHILD)
                self._range_done(aux, j)
                return
            path = join(d.dst_path, dst)
            self.error(path, steps.WORKER, E.ECHILD, steps.WORKER.what(path, path))
            d.pending -= 1
            if group is not None:
                self.deferred.append(lambda: self._group_done(group, False))
            self._finish_dir(d)
            return
        if isinstance(aux, BigFile):
            big = aux
            off, length = int(j.off), int(j.len)
            self.deferred.append(lambda: self._queue_range(big, off, length, tries))
            return
        link_to = aux
        self.deferred.append(
            lambda: self._queue(d, src, dst, st, ftype, flags, group, link_to, tries, task, final)
        )


def _backup_made(dir_fd: int, name: bytes, j: engine.UsJob) -> bytes:
    """cp -v: the backup name the engine gave ``name`` (make_backup in
    csrc/job.c): NAME + suffix, or the largest NAME.~N~ there now."""
    simple = name + (engine.string(j.final_name) if j.final_name else b"~")
    if not j.flags & engine.F_BACKUP_NUMBERED:
        return simple
    best = 0
    pre = name + b".~"
    for e in os.listdir(dir_fd):
        n = os.fsencode(e)
        digits = n[len(pre) : -1]
        if n.startswith(pre) and n.endswith(b"~") and digits[:1] in _NONZERO and digits.isdigit():
            best = max(best, int(digits))
    if best == 0 and j.flags & engine.F_BACKUP_SIMPLE:
        return simple
    return name + b".~%d~" % best


_NONZERO = frozenset(b"%d" % i for i in range(1, 10))


def _empty(name: bytes, dir_fd: int) -> None:
    """A cp copy a killed worker left unfinished: maybe an existing file
    written in place, so emptied (its inode, links, owner kept), not
    unlinked; the job runs again and writes it in place."""
    fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _jobs_of(b: Batch) -> SentJobs:
    """(type, src name, dst name) of each job of a batch, for a trace."""
    return tuple(
        (int(j.type), engine.string(j.src_name), engine.string(j.dst_name))
        for j in (b.jobs[i] for i in range(b.n))
    )
