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
from uringsync.walker.errors import Trace, join

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
# us_big_open's return: bit 2 when the destination got O_DIRECT
DIRECT_DST = 2


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
        self.err: tuple[Step, int] | None = None  # (step, errno) of the first failure


class BigFiles(Below):
    """The walker's big-file role: whether to split, the ranges, the finish."""

    bigs: dict[BigFile, None]
    offload: bool  # the destination uses copy_file_range
    split_min: int
    range_size: int

    def _can_split(self) -> bool:
        """Big files go in ranges to several workers, unless the data path
        would not read and write them (clones, copy_file_range offload),
        holes must be made of zero runs, or --verify/--manifest hash each
        file in order (one job: ranges are not hashed yet)."""
        return (
            self.pool is not None
            and self.pool.alive() > 1
            and not self.offload
            and not self.job_flags
            & (engine.F_REFLINK_TRY | engine.F_REFLINK_REQUIRE | engine.F_VERIFY | engine.F_DIGEST)
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
        flags = self.job_flags
        if self.inherits_acl(d):
            flags |= engine.F_CLEAR_ACL
        big = BigFile(d, name, st, fds, flags)
        size = int(st.size)
        big.body_end = size & ~(DIRECT_BLOCK - 1) if ret & DIRECT_DST else size
        self.bigs[big] = None
        d.pending += 1
        rng = self.range_size
        offs = list(range(0, big.body_end, rng))
        big.left = len(offs)
        if not offs:
            self._big_done(big)
            return True
        workers = self.pool.alive() if self.pool else 1
        per_batch = max(1, min(RANGES_PER_BATCH, -(-len(offs) // (2 * workers))))
        self.flush()  # ranges start a batch of their own, to spread over workers
        for k, off in enumerate(offs):
            self._queue_range(big, off, min(rng, big.body_end - off))
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
        sl.tasks.append(None)

    def _range_done(self, big: BigFile, j: engine.UsJob) -> None:
        if self.trace:
            self.trace(Trace("range_done", name=big.name, bytes=int(j.bytes)))
        if j.err and big.err is None:
            big.err = (engine.step_of(int(j.op)), -int(j.err))
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
            err = (steps.SRC_CHANGED, E.ESTALE)  # it shrank while being copied
        meta_err: tuple[Step, int] | None = None
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

    def _abort_bigs(self) -> None:
        """After a stop: close the big files and remove their partial copies."""
        for big in list(self.bigs):
            for fd in big.fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(big.name, dir_fd=self._fds(big.d, False)[1])
        self.bigs.clear()
