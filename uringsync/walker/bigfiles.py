"""Big files: opened by the walker, copied as ranges (``US_T_RANGE`` jobs)
by several workers at once, finished (tail, metadata, close) by the walker
when the last range is in (docs/design.md, docs/benchmarks.md)."""

from __future__ import annotations

import contextlib
import errno as E
import os
from typing import TYPE_CHECKING

from uringsync import engine, steps
from uringsync.engine import Stat
from uringsync.walker.errors import Trace, join, show

if TYPE_CHECKING:
    from uringsync.steps import Step
    from uringsync.walker.dirs import Dir
    from uringsync.walker.links import Links as Below  # for mypy: the roles after it
else:
    Below = object  # at run time: no base (Walker's MRO, core.py)

# Files of at least SPLIT_MIN bytes are copied as RANGE-byte ranges by
# several workers at once (docs/benchmarks.md has the measurements); tests
# pass smaller ones (Tuning).
SPLIT_MIN = 64 << 20
RANGE = 32 << 20
MAX_BIG_OPEN = 4  # big files open at once (two fds each)
RANGES_PER_BATCH = 8
DIRECT_BLOCK = 4096  # O_DIRECT writes whole blocks: the tail is copied without it
SECTOR = 512  # st_blocks unit
# whole-file jobs: clones, cp --manifest's in-order hash, --attributes-only (no data)
_NO_SPLIT = engine.F_REFLINK_TRY | engine.F_REFLINK_REQUIRE | engine.F_DIGEST | engine.F_ATTR_ONLY
# us_big_open's return: bit 2 when the destination got O_DIRECT
DIRECT_DST = 2


class Resume:
    """Where a resumable big file (sync) is written: its temporary name, its
    record's name (engine.big_resume), and the name it is renamed to."""

    __slots__ = ("final", "rec", "rec_fd", "tmp")

    def __init__(self, tmp: bytes, rec: bytes, final: bytes) -> None:
        self.tmp = tmp
        self.rec = rec
        self.final = final
        self.rec_fd = -1


class BigFile:
    """A big regular file copied as ranges by several workers: the walker
    holds both ends open until the last range is in."""

    __slots__ = (
        "body_end",
        "bytes",
        "d",
        "delta",
        "delta_tmp",
        "done",
        "err",
        "expect",
        "fds",
        "flags",
        "left",
        "matched",
        "name",
        "resume",
        "st",
    )

    def __init__(
        self,
        d: Dir,
        name: bytes,
        st: Stat,
        fds: tuple[int, int],
        flags: int,
        resume: Resume | None = None,
    ) -> None:
        self.d = d
        self.name = name
        self.st = st
        self.fds = fds
        self.flags = flags
        self.resume = resume
        self.left = 0
        self.bytes = 0
        self.expect = 0  # bytes the queued ranges cover
        self.done = 0  # resumable: bytes of the ranges recorded complete
        self.body_end = 0  # ranges cover [0, body_end); us_big_finish the rest
        self.err: tuple[Step, int] | None = None  # (step, errno) of the first failure
        # sync --delta: ranges that write only what differs; ``delta_tmp``:
        # the clone of the old version renamed over ``name`` when complete
        # (None: ``name`` itself written in place)
        self.delta = False
        self.delta_tmp: bytes | None = None
        self.matched = 0

    @property
    def final_name(self) -> bytes:
        """The name it has once complete."""
        return self.resume.final if self.resume is not None else self.name

    @property
    def dst_name(self) -> bytes:
        """The name it is written under."""
        if self.delta_tmp is not None:
            return self.delta_tmp
        return self.resume.tmp if self.resume is not None else self.name


class BigFiles(Below):
    """The walker's big-file role: whether to split, the ranges, the finish."""

    bigs: dict[BigFile, None]
    offload: bool  # the destination uses copy_file_range
    split_min: int
    range_size: int

    def _can_split(self, workers: int = 2) -> bool:
        """Big files go in ranges to several workers (at least ``workers``
        alive), unless the data path would not read and write them (clones,
        copy_file_range offload), holes must be made of zero runs, or
        cp --manifest hashes each file whole, in order (one job).  Under
        --verify each range is hashed and read back on its own."""
        return (
            self.pool is not None
            and self.pool.alive() >= workers
            and not self.offload
            and not self.job_flags & _NO_SPLIT
            and self.opts.flags.sparse != "always"
            and len(self.bigs) < MAX_BIG_OPEN
        )

    def _queue_big(self, d: Dir, name: bytes, st_ptr: Stat) -> bool:
        """Open a big file's two ends and queue its ranges.  False: copy it
        as one job instead (something is in the way at the destination)."""
        if self.trace:
            self.trace(Trace("big_open", name=name))
        split = self._split_big(d, name, st_ptr)
        if self.trace:
            self.trace(Trace("big_split", name=name, split=split))
        return split

    def _split_big(self, d: Dir, name: bytes, st_ptr: Stat) -> bool:
        st = engine.copy_stat(st_ptr)
        src_fd, dst_fd = self._fds(d)
        ret, fds, step = engine.big_open(src_fd, name, dst_fd, st, self.opts.direct)
        if ret == -E.EEXIST or ret == -E.EMFILE:
            return False  # the one-job path replaces what is there / waits for fds
        if ret < 0:
            self._report(d, name, name, step, -ret, engine.T_REG)
            return True
        size = int(st.size)
        big = self._big_file(d, name, st, fds)
        big.body_end = size & ~(DIRECT_BLOCK - 1) if ret & DIRECT_DST else size
        self._queue_ranges(big, list(range(0, big.body_end, self.range_size)))
        return True

    def _queue_resumable(self, d: Dir, name: bytes, st_ptr: Stat, res: Resume) -> bool:
        """sync: a big file written under ``res.tmp`` with a record of its
        ranges, continued from what an earlier run recorded when the source
        is unchanged (docs/design.md, "Resume").  False: copy it as one job
        instead (out of fds)."""
        st = engine.copy_stat(st_ptr)
        src_fd, dst_fd = self._fds(d)
        rng = self.range_size
        r, ret, step = engine.big_resume(
            src_fd, name, dst_fd, res.tmp, res.rec, res.final, st, self.opts.direct, rng
        )
        if self.trace:
            self.trace(Trace("big_resume", name=name, split=r is not None and r.resumed))
        if ret == -E.EMFILE or ret == -E.ENFILE:
            return False
        if r is None:
            self._report(d, name, res.final, step, -ret, engine.T_REG)
            return True
        res.rec_fd = r.fds[2]
        big = self._big_file(d, name, st, (r.fds[0], r.fds[1]), res)
        big.body_end = r.body_end
        offs = [off for k, off in enumerate(range(0, r.body_end, rng)) if not r.done[k]]
        big.done = r.body_end - sum(min(rng, r.body_end - off) for off in offs)
        if r.resumed:
            self._kept_note(big, "resuming {}: {} were copied by an interrupted run")
        self._queue_ranges(big, offs, per_batch=1)
        return True

    def _queue_delta_big(self, d: Dir, name: bytes, st_ptr: Stat, tmp: bytes | None) -> bool:
        """sync --delta of a big file, its ranges compared and written by
        several workers: into ``tmp``, a clone of the old ``name`` (renamed
        over it when complete), or into ``name`` itself (``tmp`` None).
        False: one job instead (no clone: copied whole; out of fds)."""
        if self.pool is None or self.pool.alive() < 2 or len(self.bigs) >= MAX_BIG_OPEN:
            return False
        st = engine.copy_stat(st_ptr)
        src_fd, dst_fd = self._fds(d)
        ret, fds, step = engine.delta_open(
            src_fd, name, dst_fd, tmp or name, tmp and name, st, self.opts.direct
        )
        if ret in (-E.EOPNOTSUPP, -E.EEXIST, -E.EMFILE, -E.ENFILE, -E.ENOENT):
            return False  # the one-job path copies it whole / makes it / waits
        if ret < 0:
            self._report(d, name, name, step, -ret, engine.T_REG)
            return True
        big = self._big_file(d, name, st, fds)
        big.flags |= engine.F_DELTA
        big.delta = True
        big.delta_tmp = tmp
        size = int(st.size)
        # O_DIRECT: the ranges end on a block; us_big_finish writes the tail
        big.body_end = size & ~(DIRECT_BLOCK - 1) if ret & DIRECT_DST else size
        self._queue_ranges(big, list(range(0, big.body_end, self.range_size)))
        return True

    def _big_file(
        self, d: Dir, name: bytes, st: Stat, fds: tuple[int, int], res: Resume | None = None
    ) -> BigFile:
        flags = self.job_flags
        if self.inherits_acl(d):
            flags |= engine.F_CLEAR_ACL
        if res is not None:
            flags |= engine.F_RESUME
        big = BigFile(d, name, st, fds, flags, res)
        self.bigs[big] = None
        d.pending += 1
        return big

    def _queue_ranges(self, big: BigFile, offs: list[int], per_batch: int = 0) -> None:
        """Queue the ranges starting at ``offs``; ``per_batch`` ranges a batch
        (0: enough batches to spread them over the workers)."""
        rng = self.range_size
        big.left = len(offs)
        big.expect = sum(min(rng, big.body_end - off) for off in offs)
        if not offs:
            self._big_done(big)
            return
        if not per_batch:
            workers = self.pool.alive() if self.pool else 1
            per_batch = max(1, min(RANGES_PER_BATCH, -(-len(offs) // (2 * workers))))
        self.flush()  # ranges start a batch of their own, to spread over workers
        for k, off in enumerate(offs):
            self._queue_range(big, off, min(rng, big.body_end - off))
            if (k + 1) % per_batch == 0:
                self.flush()
        self.flush()

    def _queue_range(self, big: BigFile, off: int, length: int, tries: int = 0) -> None:
        while self.batch.full:
            self.flush()
        name = big.dst_name
        i = self.batch.add(
            big.fds[0], big.name, big.fds[1], name, big.st, engine.T_RANGE, big.flags, 0
        )
        j = self.batch.jobs[i]
        j.off = off
        j.len = length
        if big.resume is not None:
            j.rec_fd = big.resume.rec_fd
            j.rec_idx = off // self.range_size
        sl = self.slot
        sl.owners.append(big.d)
        sl.groups.append(None)
        sl.aux.append(big)
        sl.tries.append(tries)
        sl.tasks.append(None)

    def _range_done(self, big: BigFile, j: engine.UsJob) -> None:
        if self.trace:
            self.trace(Trace("range_done", name=big.name, bytes=int(j.bytes)))
        if j.err and big.err is None:
            big.err = (engine.step_of(int(j.op)), -int(j.err))
        big.bytes += int(j.bytes)
        big.matched += int(j.matched)
        if not j.err:
            big.done += int(j.bytes)
        big.left -= 1
        if big.left == 0:
            self._big_done(big)

    def _big_done(self, big: BigFile) -> None:
        """Every range is in: the tail, the metadata, close (and for a
        resumable file, the rename into place); or, after a failure, remove
        the partial copy, unless it is kept to be resumed."""
        self.bigs.pop(big, None)
        d = big.d
        sfd, dfd = big.fds
        res = big.resume
        err = big.err
        if err is None and big.bytes + big.matched != big.expect:
            err = (steps.SRC_CHANGED, E.ESTALE)  # it shrank while being copied
        meta_err: tuple[Step, int] | None = None
        if err is None and big.delta:
            try:  # the new size (growth was written by the ranges)
                os.ftruncate(dfd, int(big.st.size))
            except OSError as e:
                err = (steps.TRUNCATE, e.errno or E.EIO)
        if err is not None and big.delta and big.delta_tmp is None:
            _mark_incomplete(dfd)
        if err is None:
            ret, step = engine.big_finish(sfd, dfd, big.body_end, big.st, big.flags, self.mode_mask)
            if ret < 0:
                if step.after_data:
                    meta_err = (step, -ret)
                else:
                    err = (step, -ret)
        os.close(sfd)
        try:
            os.close(dfd)
        except OSError as e:
            err = err or (steps.CLOSE, e.errno or E.EIO)
        dst_fd = self._fds(d, need_src=False)[1]
        if res is not None:
            os.close(res.rec_fd)
            if err is None:
                ret, step = engine.big_commit(dst_fd, res.tmp, res.final, res.rec)
                if ret < 0:
                    err = (step, -ret)
        if big.delta_tmp is not None and err is None:
            try:
                os.rename(big.delta_tmp, big.name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
            except OSError as e:
                err = (steps.RENAME, e.errno or E.EIO)
        if err is not None:
            if res is None or err[0] is steps.SRC_CHANGED:
                self._remove_big(dst_fd, big)
            self._report(d, big.name, big.final_name, err[0], err[1], engine.T_REG)
            if res is not None and err[0] is not steps.SRC_CHANGED:
                self._kept_note(big, "keeping the partial copy of {} ({}) for the next sync")
        else:
            if meta_err is not None:
                self._report(d, big.name, big.final_name, meta_err[0], meta_err[1], engine.T_REG)
            self.totals.files += 1
            self.totals.bytes += int(big.st.size)
            # (a delta's unaligned tail, written whole by us_big_finish, too)
            self.totals.literal += int(big.bytes) + (
                int(big.st.size) - big.body_end if big.delta else 0
            )
            self.totals.matched += big.matched
            if self.opts.on_verbose:
                self.verbose(join(d.src_path, big.name), join(d.dst_path, big.final_name))
        d.pending -= 1
        self._finish_dir(d)

    @staticmethod
    def _remove_big(dst_fd: int, big: BigFile) -> None:
        """A partial copy's names gone (its temporary and record); a file
        written in place by --inplace --delta stays (marked incomplete)."""
        if big.delta and big.delta_tmp is None:
            return
        names = [big.dst_name] + ([big.resume.rec] if big.resume is not None else [])
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dst_fd)

    def _kept_note(self, big: BigFile, what: str) -> None:
        """An informational line about a resumable file's partial copy:
        ``what`` formatted with its path and 'N of M bytes'."""
        if self.opts.on_info is not None:
            path = show(join(big.d.dst_path, big.final_name))
            self.opts.on_info(what.format(path, f"{big.done:,} of {int(big.st.size):,} bytes"))

    def _abort_bigs(self) -> None:
        """After a stop: close the big files and remove their partial copies
        (a resumable one is kept, with the ranges it recorded)."""
        for big in list(self.bigs):
            for fd in big.fds:
                os.close(fd)
            if big.resume is not None:
                os.close(big.resume.rec_fd)
                self._kept_note(big, "keeping the partial copy of {} ({}) for the next sync")
            elif big.delta and big.delta_tmp is None:
                _mark_incomplete_at(self._fds(big.d, False)[1], big.name)
            else:
                self._remove_big(self._fds(big.d, False)[1], big)
        self.bigs.clear()


def _mark_incomplete(fd: int) -> None:
    """A file part old, part new (--inplace --delta that failed): its mtime
    set to 0, so that no quick check takes it for up to date (delta.c does
    the same for a file done as one job)."""
    with contextlib.suppress(OSError):
        os.utime(fd, ns=(os.fstat(fd).st_atime_ns, 0))


def _mark_incomplete_at(dir_fd: int, name: bytes) -> None:
    with contextlib.suppress(OSError):
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(name, flags, dir_fd=dir_fd)
        try:
            _mark_incomplete(fd)
        finally:
            os.close(fd)
