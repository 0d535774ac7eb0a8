"""The Python API: ``uringsync.copy(srcs, dst, archive=True)``.

Command-line paths are checked up front with cp's rules; a problem with any of
them raises :class:`CopyError` before anything is written.  Per-file failures
do not raise: they are collected in :attr:`Result.errors` and the copy goes on.
"""

from __future__ import annotations

import os
import stat as S
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from uringsync import engine
from uringsync._uring import lib
from uringsync.engine import Ring
from uringsync.pool import Pool, peak_rss_self, usable_cpus
from uringsync.walker import (
    Dir,
    Event,
    FileError,
    Options,
    Stopped,
    Walker,
    fd_budget,
    has_default_acl,
    join,
    show,
)

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_PARTIAL = 23
EXIT_VANISHED = 24

# O_DIRECT for split big files: see docs/benchmarks.md for the measurements.
DIRECT_DEFAULT = 0

PRESERVE_NAMES = ("mode", "ownership", "timestamps", "links", "context", "xattr", "all")


class CopyError(Exception):
    """A usage or fatal error: nothing was copied.  ``str()`` is the message."""


@dataclass
class Result:
    exit_code: int
    errors: list[FileError] = field(default_factory=list)
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    links: int = 0
    specials: int = 0
    bytes: int = 0
    seconds: float = 0.0
    workers: int = 0  # worker processes used (0: copied in this process)
    peak_rss: int = 0  # bytes: peak resident memory summed over all processes


@dataclass(frozen=True)
class _Plan:
    src: bytes  # as given, for messages
    src_parent: bytes
    src_name: bytes
    dst_parent: bytes
    dst_name: bytes
    is_dir: bool
    dst_shown: bytes  # the destination's parent as the user would write it


def _shown_parent(parent: bytes, given: bytes) -> bytes:
    """'f' rather than './f' in messages when the user typed 'f'."""
    return b"" if parent == b"." and not given.startswith(b"./") else parent


def parse_preserve(spec: str) -> set[str]:
    """``--preserve=mode,ownership,...`` as cp takes it."""
    out: set[str] = set()
    for word in filter(None, (w.strip() for w in spec.split(","))):
        if word not in PRESERVE_NAMES:
            raise CopyError(f"invalid argument {word!r} for '--preserve'")
        out.update(PRESERVE_NAMES[:-1] if word == "all" else (word,))
    return out


def _split(path: bytes) -> tuple[bytes, bytes]:
    """(parent, name) of a path given on the command line."""
    stripped = path.rstrip(b"/") or b"/"
    parent, name = os.path.split(stripped)
    if not name:  # "/"
        return b"/", b"."
    return parent or b".", name


def _same(a: os.stat_result, b: os.stat_result | None) -> bool:
    return b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _try_stat(path: bytes, follow: bool) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=follow)
    except OSError:
        return None


def plan(srcs: Sequence[bytes], dst: bytes, recursive: bool, deref_top: bool) -> list[_Plan]:
    """Apply cp's rules to the command-line paths; raise CopyError on any problem."""
    if not srcs:
        raise CopyError(f"missing destination file operand after {show(dst)}")
    dst_st = _try_stat(dst, follow=True)
    dst_is_dir = dst_st is not None and S.S_ISDIR(dst_st.st_mode)
    if len(srcs) > 1 and not dst_is_dir:
        raise CopyError(f"target {show(dst)} is not a directory")
    plans = []
    for src in srcs:
        try:
            sst = os.stat(src, follow_symlinks=deref_top)
        except OSError as e:
            raise CopyError(f"cannot stat {show(src)}: {os.strerror(e.errno or 0)}") from None
        src_parent, src_name = _split(src)
        if dst_is_dir:
            dst_parent, dst_name = dst, src_name
            target = join(dst, src_name)
        else:
            dst_parent, dst_name = _split(dst)
            target = dst
        if src_name in (b".", b"..") and not dst_is_dir:
            dst_parent, dst_name = _split(dst)
        t_l = _try_stat(target, follow=False)
        t_f = _try_stat(target, follow=True)
        s_f = sst if deref_top else _try_stat(src, follow=True)
        # the same inode, or a SRC symlink resolving to DST (copying it over
        # DST would leave a link to itself): cp refuses both
        if _same(sst, t_l) or _same(sst, t_f) or (s_f is not None and _same(s_f, t_l)):
            raise CopyError(f"{show(src)} and {show(target)} are the same file")
        pst = _try_stat(dst_parent, follow=True)
        if pst is None or not S.S_ISDIR(pst.st_mode):
            kind = "directory" if S.S_ISDIR(sst.st_mode) else "regular file"
            reason = os.strerror(2 if pst is None else 20)
            raise CopyError(f"cannot create {kind} {show(target)}: {reason}")
        is_dir = S.S_ISDIR(sst.st_mode)
        if is_dir:
            if not recursive:
                raise CopyError(f"-r not specified; omitting directory {show(src)}")
            if t_l is not None and not S.S_ISDIR(t_l.st_mode):
                raise CopyError(
                    f"cannot overwrite non-directory {show(target)} with directory {show(src)}"
                )
            real_src = os.path.realpath(src)
            real_dst = os.path.join(os.path.realpath(dst_parent), dst_name)
            real_dst = os.path.normpath(real_dst)
            if real_dst == real_src or real_dst.startswith(real_src.rstrip(b"/") + b"/"):
                raise CopyError(
                    f"cannot copy a directory, {show(src)}, into itself, {show(target)}"
                )
        elif t_l is not None and S.S_ISDIR(t_l.st_mode):
            raise CopyError(
                f"cannot overwrite directory {show(target)} with non-directory {show(src)}"
            )
        shown = dst_parent if dst_is_dir else _shown_parent(dst_parent, dst)
        plans.append(_Plan(src, src_parent, src_name, dst_parent, dst_name, is_dir, shown))
    return plans


def copy(
    srcs: Sequence[PathLike] | PathLike,
    dst: PathLike,
    *,
    archive: bool = False,
    recursive: bool = False,
    preserve: str | None = None,
    one_file_system: bool = False,
    verbose: bool = False,
    sparse: str = "auto",
    reflink: str = "auto",
    queue_depth: int = engine.DEFAULT_QUEUE_DEPTH,
    jobs: int | None = None,
    progress: Callable[[Event], None] | None = None,
    on_error: Callable[[FileError], None] | None = None,
    on_verbose: Callable[[str], None] | None = None,
    copy_range_min: int | None = None,
    direct: bool | None = None,
) -> Result:
    """Copy like ``cp``: ``archive=True`` is ``cp -a``.

    ``copy_range_min``: files at least this big use copy_file_range, smaller
    ones io_uring READ/WRITE; None picks by the destination's file system
    (see docs/design.md).

    ``jobs``: worker processes, each pinned to a CPU with its own ring
    (None: one per usable CPU; 0: copy in this process).  ``direct``:
    O_DIRECT for big files split across workers (None: the measured
    default, see docs/benchmarks.md).

    SIGINT and SIGTERM stop the copy (workers stopped, partial files
    removed) and raise :class:`Stopped`, a KeyboardInterrupt.

    Raises CopyError for usage errors (nothing copied).  Per-file failures are
    in ``Result.errors``; ``Result.exit_code`` follows rsync: 0 all copied,
    23 some failed, 24 only vanished source files.
    """
    started = time.monotonic()
    for name, value in (("sparse", sparse), ("reflink", reflink)):
        if value not in ("auto", "always", "never"):
            raise CopyError(f"invalid argument {value!r} for '--{name}'")
    src_list = [srcs] if isinstance(srcs, (str, bytes, os.PathLike)) else list(srcs)
    src_b = [os.fsencode(s) for s in src_list]
    dst_b = os.fsencode(dst)
    keep: set[str] = set()
    if archive:
        keep = set(PRESERVE_NAMES[:-1])
    if preserve:
        keep |= parse_preserve(preserve)
    recursive = recursive or archive
    plans = plan(src_b, dst_b, recursive, deref_top=not recursive)
    if verbose and on_verbose is None:

        def on_verbose(line: str) -> None:
            print(line)

    opts = Options(
        preserve_owner="ownership" in keep,
        preserve_mode="mode" in keep,
        preserve_times="timestamps" in keep,
        # cp keeps ACLs with the mode, other xattrs with "xattr"
        preserve_acl="mode" in keep,
        preserve_xattr="xattr" in keep,
        preserve_links="links" in keep,
        sparse=sparse,
        reflink=reflink,
        recursive=recursive,
        one_file_system=one_file_system,
        queue_depth=queue_depth,
        jobs=len(usable_cpus()) if jobs is None else max(0, jobs),
        direct=DIRECT_DEFAULT if direct is None else (3 if direct else 0),
        progress=progress,
        on_error=on_error,
        on_verbose=on_verbose if verbose else None,
    )
    budget = fd_budget()  # raises RLIMIT_NOFILE before the workers are forked
    pool = (
        Pool(opts.jobs, queue_depth, min(budget[1], queue_depth), opts.batch_size)
        if opts.jobs
        else None
    )
    try:
        walker = _run(plans, opts, pool, budget, not recursive, copy_range_min)
    except BaseException:
        if pool is not None:
            pool.stop()  # whatever failed, no worker outlives the call
        raise
    peak = peak_rss_self() + (pool.peak_rss() if pool else 0)
    t = walker.totals
    if not t.errors:
        code = EXIT_OK
    elif all(e.vanished for e in t.errors):
        code = EXIT_VANISHED
    else:
        code = EXIT_PARTIAL
    return Result(
        exit_code=code,
        errors=t.errors,
        files=t.files,
        dirs=t.dirs,
        symlinks=t.symlinks,
        links=t.links,
        specials=t.specials,
        bytes=t.bytes,
        seconds=time.monotonic() - started,
        workers=opts.jobs,
        peak_rss=peak,
    )


def _run(
    plans: list[_Plan],
    opts: Options,
    pool: Pool | None,
    budget: tuple[int, int],
    follow: bool,
    copy_range_min: int | None,
) -> Walker:
    """Walk and copy every command-line SRC; stop cleanly on SIGINT/SIGTERM."""
    tops: list[Dir] = []
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    catching = threading.current_thread() is threading.main_thread()
    lib.us_clear_stop()  # a stop belongs to the copy it stopped
    if catching:
        engine.check(lib.us_catch_stop(1, wake_w), "sigaction")
    ok = False
    try:
        with Ring(queue_depth=opts.queue_depth) as ring:
            walker = Walker(ring, opts, pool, budget, wake_r)
            try:
                for p in plans:
                    _copy_one_arg(walker, p, follow, copy_range_min, tops)
                walker.drain()
                ok = True
            finally:
                if not ok:
                    if pool is not None:
                        pool.stop()  # the workers remove their partial files
                    walker.abort()
                walker.close()
                # open until the end: hard links may join names across arguments
                for top in tops:
                    os.close(top.src_fd)
                    os.close(top.dst_fd)
        if pool is not None:
            pool.close()
    finally:
        if catching:
            lib.us_catch_stop(0, -1)
        os.close(wake_r)
        os.close(wake_w)
    if lib.us_stop_requested():
        raise Stopped
    return walker


def _copy_one_arg(
    walker: Walker, p: _Plan, follow: bool, copy_range_min: int | None, tops: list[Dir]
) -> None:
    """Start copying one command-line SRC.  The pseudo-directory that holds
    the parents' fds goes into ``tops`` as soon as they are open (the caller
    closes them after the run, however it ends)."""
    o_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    top = Dir(None, b"", b"", _shown_parent(p.src_parent, p.src), p.dst_shown, None)
    top.top = True
    top.scanned = True
    try:
        top.src_fd = os.open(p.src_parent, o_dir)
        top.dst_fd = os.open(p.dst_parent, o_dir)
        st = engine.stat_at(top.src_fd, p.src_name, follow=follow)
        top.acl_default = has_default_acl(top.dst_fd)
    except OSError as e:
        for fd in (top.src_fd, top.dst_fd):
            if fd >= 0:
                os.close(fd)
        raise CopyError(f"cannot access {show(p.src)}: {os.strerror(e.errno or 0)}") from None
    tops.append(top)
    walker.set_destination(top.dst_fd, copy_range_min)
    if p.is_dir:
        root = Dir(
            top,
            p.src_name,
            p.dst_name,
            p.src.rstrip(b"/") or p.src,
            join(p.dst_shown, p.dst_name),
            st,
        )
        walker.copy_dir(top, root)
    else:
        walker.copy_one(top, p.src_name, p.dst_name, st, follow=follow)
