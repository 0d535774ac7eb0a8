"""What the walker tells its caller: per-file failures (FileError, in cp's
words, from the step table), progress (Event), internal trace events
(Trace), the totals; and Stopped."""

from __future__ import annotations

import errno as E
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from uringsync import engine
from uringsync.steps import SOURCE_NAMES, Step, join, show

if TYPE_CHECKING:
    from uringsync.walker.core import Options
    from uringsync.walker.dirs import Dir

__all__ = ["join", "show"]


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the copy stopped, partial files removed."""


@dataclass(frozen=True)
class FileError:
    """One per-file failure: the path, the step that failed and errno."""

    path: bytes
    op: str
    errno: int
    message: str

    @property
    def vanished(self) -> bool:
        return self.errno == E.ENOENT and self.op in SOURCE_NAMES


@dataclass(frozen=True)
class Event:
    """Progress: ``scanned`` after a source directory was listed and stat'ed
    (before its files are copied); ``batch`` after a batch of jobs finished."""

    kind: str
    src_dir: bytes = b""
    entries: int = 0
    files: int = 0
    bytes: int = 0


SentJobs = tuple[tuple[int, bytes, bytes], ...]  # (type, src name, dst name) per job


@dataclass(frozen=True)
class Trace:
    """Internal events, for tests that check which path the walker took
    (``Tuning.on_trace``; not part of the API):

    * ``batch_sent``: a batch went to worker ``worker``; ``jobs`` holds
      (type, src name, dst name) per job;
    * ``big_open``: the walker is about to open big file ``name`` to split it;
    * ``big_split``: ``split`` tells whether ``name`` went in ranges (or
      failed to open, reported); False: it is copied as one job instead;
    * ``range_done``: a range of ``name`` came back, ``bytes`` copied."""

    kind: str
    name: bytes = b""
    worker: int = -1
    split: bool = False
    bytes: int = 0
    jobs: SentJobs = ()


@dataclass
class Totals:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    links: int = 0  # hard links made (names after the first of an inode)
    specials: int = 0
    bytes: int = 0
    # sync: of the transferred files' bytes, those written (rsync's literal
    # data) and those found equal at the destination (matched: --delta, clones)
    literal: int = 0
    matched: int = 0
    errors: list[FileError] = field(default_factory=list)
    # sync: entries by outcome (itemize's kinds)
    created: int = 0
    updated: int = 0
    meta: int = 0  # only metadata fixed
    unchanged: int = 0
    deleted: int = 0


class Reporting:
    """The walker's reporting role: every failure becomes one FileError,
    worded by its step (uringsync/steps.py)."""

    opts: Options
    totals: Totals
    reported: set[tuple[str, int]]  # (step, errno) of the once-per-run steps seen

    def error(self, path: bytes, step: Step, err: int, what: str) -> None:
        if err == E.ENOENT and step.source:
            msg = f"file has vanished: {show(path)}"
        elif not step.with_reason:
            msg = what  # the reason is in the words
        else:
            msg = f"{what}: {os.strerror(err)}"
        op = step.name
        fe = FileError(path, op, err, msg)
        self.totals.errors.append(fe)
        if step.once:
            if (op, err) in self.reported:
                return
            self.reported.add((op, err))
            fe = FileError(path, op, err, msg + " (reported once for all files)")
        if self.opts.on_error:
            self.opts.on_error(fe)

    def dir_error(self, path: bytes, step: Step, e: OSError) -> None:
        """A step on a directory failed: 'cannot <verb> directory 'path': reason'."""
        self.error(path, step, e.errno or E.EIO, step.what(path, path))

    def verbose(self, src: bytes, dst: bytes, backup: bytes | None = None) -> None:
        if self.opts.on_verbose:
            more = f" (backup: {show(backup)})" if backup is not None else ""  # cp -b
            self.opts.on_verbose(f"{show(src)} -> {show(dst)}{more}")

    def _report(
        self, d: Dir, src_name: bytes, dst_name: bytes, step: Step, err: int, ftype: int
    ) -> None:
        """A job's failure: 'what happened to which path: reason'."""
        src = join(d.src_path, src_name)
        dst = join(d.dst_path, dst_name)
        kind = "symbolic link" if ftype == engine.T_LNK else "regular file"
        self.error(src if step.source else dst, step, err, step.what(src, dst, err, kind))

    def _job_error(self, d: Dir, j: engine.UsJob) -> None:
        dst = j.dst_name
        if self.opts.sync is not None and j.final_name:
            # sync writes under a temporary name of its own: the user's is
            # the one it replaces (rsync names that too)
            dst = j.final_name
        self._report(
            d,
            engine.string(j.src_name),
            engine.string(dst),
            engine.step_of(int(j.op)),
            -int(j.err),
            int(j.type),
        )
