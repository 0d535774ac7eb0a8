"""The Python API: ``uringsync.copy(srcs, dst, archive=True)``.

Command-line paths are checked up front with cp's rules; a problem with any of
them raises :class:`CopyError` before anything is written.  Per-file failures
do not raise: they are collected in :attr:`Result.errors` and the copy goes on.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import stat as S
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from uringsync import apiargs, engine, manifest, options
from uringsync.apiargs import Backup, EngineName, When
from uringsync.engine import F_DIGEST, F_FSYNC, F_VERIFY
from uringsync.options import ArgumentError, CopyError
from uringsync.pool import Pool, peak_rss_self, usable_cpus
from uringsync.walker import (
    Dir,
    Event,
    FileError,
    Options,
    Stopped,
    Tuning,
    Walker,
    fd_budget,
    has_default_acl,
    join,
    show,
)

if TYPE_CHECKING:
    from uringsync.cpargs import Plan

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_PARTIAL = 23
EXIT_VANISHED = 24

# O_DIRECT for split big files: see docs/benchmarks.md for the measurements.
DIRECT_DEFAULT = 0
DIRECT_BOTH = 3  # --direct: O_DIRECT on the source (1) and the destination (2)


def direct_default(flushed: bool) -> int:
    """O_DIRECT for split big files unless asked: buffered when the copy may
    end before its data is on disk (it ends sooner, as cp's does); O_DIRECT
    both ends when every byte must reach the disk before the run ends anyway
    (--fsync, --verify, sync's resumable ranges, each flushed): the page
    cache's write-back then only adds to the time (docs/benchmarks.md, "4 GiB
    until synced")."""
    return DIRECT_BOTH if flushed else DIRECT_DEFAULT


__all__ = [
    "EXIT_FATAL",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_VANISHED",
    "CopyError",
    "Event",
    "FileError",
    "Result",
    "Stopped",
    "copy",
]


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
    engine: str = "io_uring"  # what issued the steps: "io_uring" or "threads"
    notice: str | None = None  # why io_uring was not used, when auto fell back
    # sync: entries by outcome, and the itemized changes (rsync's -i lines)
    created: int = 0
    updated: int = 0
    meta: int = 0  # only metadata fixed
    unchanged: int = 0
    deleted: int = 0
    # sync: of the transferred files' bytes, those written (rsync's "literal
    # data") and those found equal and left as they were ("matched data":
    # --delta's unchanged blocks, and files cloned from the source)
    literal_bytes: int = 0
    matched_bytes: int = 0
    changes: list[builtins.bytes] = field(default_factory=list)


def copy(
    srcs: Sequence[PathLike] | PathLike,
    dst: PathLike,
    *,
    archive: bool = False,
    recursive: bool = False,
    preserve: str | None = None,
    one_file_system: bool = False,
    verbose: bool = False,
    sparse: When = "auto",
    reflink: When = "auto",
    queue_depth: int = engine.DEFAULT_QUEUE_DEPTH,
    jobs: int | None = None,
    progress: Callable[[Event], None] | None = None,
    on_error: Callable[[FileError], None] | None = None,
    on_verbose: Callable[[str], None] | None = None,
    copy_range_min: int | None = None,
    direct: bool | None = None,
    engine: EngineName | None = None,
    on_notice: Callable[[str], None] | None = None,
    fsync: bool = False,
    verify: bool = False,
    manifest_file: PathLike | None = None,
    dereference: Literal["auto", "never", "command-line", "always"] = "auto",
    no_preserve: str | None = None,
    parents: bool = False,
    target_is_dir: bool | None = None,
    ignore: Callable[[str, list[str]], Iterable[str]] | None = None,
    check: bool = False,
    no_clobber: bool = False,
    update: bool = False,
    force: bool = False,
    remove_destination: bool = False,
    backup: Backup | None = None,
    suffix: str = "~",
    link: bool = False,
    symbolic_link: bool = False,
    attributes_only: bool = False,
    _on_special: Callable[[bytes, bytes], None] | None = None,
    _tuning: Tuning | None = None,
) -> Result:
    """Copy like ``cp``: ``archive=True`` is ``cp -a``.

    ``dereference``: which symbolic links in SRC are followed: "never"
    (cp -P), "command-line" (cp -H: the SRC operands themselves), "always"
    (cp -L), "auto" (cp's default: "never" when recursive without
    ``link``, else "always").
    A SRC written with a trailing slash is followed in every case, as the
    kernel resolves ``link/``.  ``no_preserve``: attributes taken away from
    ``archive``/``preserve``'s (cp --no-preserve=LIST).  ``parents``: each
    SRC goes to DST/SRC, its missing directories made (cp --parents; DST must
    be a directory).  ``target_is_dir``: True: DST must be a directory that
    receives every SRC (cp -t); False: DST is the copy itself even if it is a
    directory (cp -T); None: cp's rule (DST is a directory if it is one).

    ``verify``: each file's data is hashed (XXH3-128) as it is read, then
    read back from the device once written and compared; a file that
    differs is an error (step "verify") and is removed.  Files go through
    the buffers (no reflink or copy_file_range; ``reflink="always"`` is a
    CopyError), one job each (big files are not split).

    ``manifest_file``: written with one line per regular file name copied
    (hard links' every name), its XXH3-128 digest taken as the data passed
    and its path relative to DST, in ``xxh128sum``'s format (run
    ``xxh128sum -c FILE`` in DST).  Files go through the buffers as with
    ``verify``.

    ``fsync``: when it returns, everything it wrote is on stable storage:
    each file flushed (fsync) after its metadata, then each destination file
    system once (syncfs) after the last entry (docs/design.md).

    ``copy_range_min``: files at least this big use copy_file_range, smaller
    ones io_uring READ/WRITE; None picks by the destination's file system
    (see docs/design.md).

    ``jobs``: worker processes, each pinned to a CPU with its own ring
    (None: one per usable CPU; 0: copy in this process).  ``direct``:
    O_DIRECT for big files split across workers (None: the measured
    default: buffered, but O_DIRECT under ``fsync`` or ``verify``, see
    docs/benchmarks.md).

    SIGINT and SIGTERM stop the copy (workers stopped, partial files
    removed) and raise :class:`Stopped`, a KeyboardInterrupt.

    Raises CopyError for usage errors (nothing copied).  Per-file failures are
    in ``Result.errors``; ``Result.exit_code`` follows rsync: 0 all copied,
    23 some failed, 24 only vanished source files.

    ``engine``: how the steps are issued: "io_uring", "threads" (plain
    syscalls on a few threads per worker), or "auto": io_uring, or threads
    where io_uring cannot be set up (seccomp, ``kernel.io_uring_disabled``,
    an old kernel); then ``on_notice`` gets one line saying why, which is
    also ``Result.notice``.  None: ``$URINGSYNC_ENGINE``, else "auto".  An
    engine that cannot run is a CopyError.

    ``ignore``: shutil.copytree's ``ignore`` (``shutil.ignore_patterns(...)``
    is one): called once per source directory with its path and the names
    of its entries (str; bytes that are not UTF-8 as ``os.fsdecode`` gives
    them); the names it returns are not copied (nor, for a directory,
    anything under it).

    ``check``: when some entries failed, raise :class:`PartialCopyError`
    (a CopyError, so an OSError) after the run, its ``errors`` and
    ``result`` holding what the Result would; by default the Result is
    returned and its ``errors`` must be looked at.

    Arguments are checked before anything is read or written: TypeError for
    a wrong type, ValueError (an ArgumentError, also a CopyError) for a
    value an option cannot take.

    What happens where a destination name is taken (cp's rules): a regular
    file there is opened and truncated in place, so its inode, other hard
    links, owner and ACLs stay (its mode too, unless the mode is preserved);
    if it cannot be opened (write-protected, as a non-root user) that is an
    error, or with ``force`` it is removed and made anew;
    ``remove_destination`` removes every taken name first.  A symbolic link
    met inside DST is never written through: it is replaced (uringsync's one
    difference from cp).  A file that fails while written in place is left
    empty (0 bytes; cp leaves it partial), never looking complete.
    ``no_clobber``: a taken name is left alone (no error).  ``update``: it is
    left alone unless the source's mtime is later.  ``backup``: it is first
    renamed to its backup name (cp's CONTROL words: "simple"/"never": NAME +
    ``suffix``; "numbered"/"t": NAME.~N~; "existing"/"nil": numbered if
    NAME has numbered backups, else simple; "none"/"off": no backup).
    ``link``: hard links to the source entries instead of copies;
    ``symbolic_link``: symbolic links whose value is the source's path as
    given (relative ones only into the current directory, as cp);
    with either, a taken name is an error unless ``force`` or
    ``remove_destination``.  ``attributes_only``: files are made (or
    existing ones kept, not truncated) with the attributes asked for and no
    data.  A big file whose destination exists is copied as one job, in
    place, not split into ranges.

    ``_tuning`` is internal (tests): see :class:`uringsync.walker.Tuning`.
    ``_on_special`` is internal (copytree): FIFOs, sockets and device nodes
    inside a tree are handed to it, not made in DST.
    """
    apiargs.check(locals())  # first: only the arguments are local yet
    from uringsync.cpargs import plan  # cp's path rules: sync's start-up does without them

    started = time.monotonic()
    flags = options.copy_flags(archive, preserve, sparse, reflink, no_preserve)
    hashed = verify or manifest_file is not None
    if hashed and reflink == "always":  # the command line's words: cp has no check of its own
        raise ArgumentError(
            "--verify and --manifest read the data through their buffers: not with --reflink=always"
        )
    extra = (F_FSYNC if fsync else 0) | (F_VERIFY if verify else 0)
    extra |= F_DIGEST if manifest_file is not None else 0
    if extra:
        flags = replace(flags, flags=flags.flags | extra)
    src_list = [srcs] if isinstance(srcs, (str, bytes, os.PathLike)) else list(srcs)
    src_b = [os.fsencode(s) for s in src_list]
    dst_b = os.fsencode(dst)
    recursive = recursive or archive
    if dereference == "auto":  # cp: -l follows symlinks even with -r
        dereference = "always" if not recursive or link else "never"
    plans = plan(
        src_b,
        dst_b,
        recursive,
        deref_top=dereference != "never",
        target_is_dir=target_is_dir,
        parents=parents,
    )
    if verbose and on_verbose is None:

        def on_verbose(line: str) -> None:
            print(line)

    if jobs is None:
        found = _small_work(plans)
        jobs = 0 if found is not None else len(usable_cpus())
        if found is not None and found < queue_depth:
            # a ring sized to the work: registering 64 buffers costs ms
            queue_depth = max(SMALL_RING, found)
    opts = Options(
        flags=flags,
        recursive=recursive,
        one_file_system=one_file_system,
        queue_depth=queue_depth,
        jobs=max(0, jobs),
        direct=direct_default(fsync or verify) if direct is None else DIRECT_BOTH * direct,
        progress=progress,
        on_error=on_error,
        on_verbose=on_verbose if verbose else None,
        tuning=_tuning or Tuning(),
        ignore=apiargs.ignore_in_bytes(ignore) if ignore is not None else None,
        on_special=_on_special,
        follow_links=dereference == "always" and recursive,
        dest_flags=dest_flags(
            no_clobber=no_clobber,
            update=update,
            force=force,
            remove_destination=remove_destination,
            backup=backup,
            link=link,
            symbolic_link=symbolic_link,
            attributes_only=attributes_only,
            keep_links=flags.links,
        ),
        backup_suffix=os.fsencode(suffix) if backup not in (None, "none", "off") else None,
    )
    # decided once, before the workers are forked: they all run the same one
    opts.engine, notice = pick_engine(engine, queue_depth, keep=opts.jobs == 0)
    if notice is not None and on_notice is not None:
        on_notice(notice)
    budget = fd_budget()  # raises RLIMIT_NOFILE before the workers are forked
    pool = (
        Pool(opts.jobs, queue_depth, min(budget[1], queue_depth), opts.batch_size, opts.engine)
        if opts.jobs
        else None
    )
    writer = None
    try:
        if manifest_file is not None:
            writer = manifest_writer(manifest_file, dst_b)
            opts.on_digest = writer.add
        made = _make_parents(plans, flags)
        walker = _run(plans, opts, pool, budget, copy_range_min)
        _finish_parents(made, flags)
        if no_preserve and "mode" in options.parse_preserve(no_preserve, "--no-preserve"):
            _default_modes(plans)
    except BaseException:
        if pool is not None:
            pool.stop()  # whatever failed, no worker outlives the call
        raise
    finally:
        if writer is not None:
            writer.close()
    res = result_of(walker, opts, pool, started, notice)
    if check:
        raise_on_errors(res)
    return res


# cp's version-control words (argmatch's) to the engine's backup flags
_BACKUP_FLAGS: dict[str, int] = {
    "none": 0,
    "off": 0,
    "numbered": engine.F_BACKUP_NUMBERED,
    "t": engine.F_BACKUP_NUMBERED,
    "existing": engine.F_BACKUP_NUMBERED | engine.F_BACKUP_SIMPLE,
    "nil": engine.F_BACKUP_NUMBERED | engine.F_BACKUP_SIMPLE,
    "simple": engine.F_BACKUP_SIMPLE,
    "never": engine.F_BACKUP_SIMPLE,
}


def default_backup() -> str:
    """cp -b without CONTROL: $VERSION_CONTROL, else "existing" (the caller
    checks the word, as cp refuses a bad one)."""
    return os.environ.get("VERSION_CONTROL") or "existing"


def dest_flags(
    *,
    no_clobber: bool = False,
    update: bool = False,
    force: bool = False,
    remove_destination: bool = False,
    backup: str | None = None,
    link: bool = False,
    symbolic_link: bool = False,
    attributes_only: bool = False,
    keep_links: bool = False,
) -> int:
    """cp's rules for a destination name that is taken, and its per-entry
    alternatives to copying data, as the engine's job flags (csrc/api.h,
    US_F_CP_DEST): an existing regular file is written in place (O_TRUNC),
    and the flags say otherwise."""
    f = engine.F_CP_DEST
    f |= engine.F_NO_CLOBBER if no_clobber else 0
    f |= engine.F_UPDATE if update else 0
    f |= engine.F_FORCE if force else 0
    f |= engine.F_REMOVE_DST if remove_destination else 0
    f |= _BACKUP_FLAGS[backup] if backup is not None else 0
    f |= engine.F_LINK_EXCL if link or symbolic_link else 0
    f |= engine.F_SYMLINK_SRC if symbolic_link else 0
    f |= engine.F_ATTR_ONLY if attributes_only else 0
    f |= engine.F_KEEP_LINKS if keep_links else 0
    return f


def manifest_writer(path: PathLike, dst: bytes) -> manifest.Writer:
    """``--manifest FILE``'s writer (CopyError when FILE cannot be made)."""
    try:
        return manifest.Writer(os.fsencode(path), dst)
    except OSError as e:
        shown = show(os.fsencode(path))
        raise CopyError(f"cannot write manifest {shown}: {e.strerror}") from None


def result_of(
    walker: Walker,
    opts: Options,
    pool: Pool | None,
    started: float,
    notice: str | None,
    **more: Any,
) -> Result:
    """The Result of a finished walk (``more``: what sync adds); the exit
    code follows rsync: 0, 23 when something failed, 24 when only vanished
    source files did."""
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
        engine=opts.engine,
        notice=notice,
        **more,
    )


def pick_engine(
    requested: str | None, queue_depth: int = engine.DEFAULT_QUEUE_DEPTH, keep: bool = False
) -> tuple[str, str | None]:
    """The engine a copy asked to run with ``requested`` runs with, and the
    notice when "auto" could not use io_uring.  CopyError when the engine
    asked for cannot run.  ``keep``: the walk runs in this process (no
    workers): the ring set up to find out is kept for it (engine.ring_for)."""
    requested = requested or engine.default_engine()
    if requested not in engine.ENGINES:
        raise CopyError(f"invalid engine {requested!r}: use one of {', '.join(engine.ENGINES)}")
    try:
        chosen, uring_err = engine.choose_engine(requested, queue_depth, keep)
    except OSError as e:
        why = engine.uring_unavailable(e.errno or 0) if requested == "io_uring" else str(e)
        hint = "; --engine=threads copies without it" if requested == "io_uring" else ""
        raise CopyError(f"{why}{hint}") from None
    if uring_err:
        return chosen, f"{engine.uring_unavailable(uring_err)}; copying with threads"
    return chosen, None


def _run(
    plans: list[Plan],
    opts: Options,
    pool: Pool | None,
    budget: tuple[int, int],
    copy_range_min: int | None,
) -> Walker:
    """Walk and copy every command-line SRC; stop cleanly on SIGINT/SIGTERM."""

    def body(walker: Walker, tops: list[Dir]) -> None:
        for p in plans:
            _copy_one_arg(walker, p, copy_range_min, tops)

    return run_walker(opts, pool, budget, body)


def run_walker(
    opts: Options,
    pool: Pool | None,
    budget: tuple[int, int],
    body: Callable[[Walker, list[Dir]], None],
) -> Walker:
    """Run ``body`` (which starts the walk of every command-line path) on a
    walker, then everything it queued; stop cleanly on SIGINT/SIGTERM.  The
    pseudo-directories ``body`` puts in its list are closed at the end."""
    tops: list[Dir] = []
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    catching = threading.current_thread() is threading.main_thread()
    engine.clear_stop()  # a stop belongs to the copy it stopped
    if catching:
        engine.check(engine.catch_stop(wake_w), "sigaction")
    ok = False
    try:
        with engine.ring_for(opts.queue_depth, opts.engine) as ring:
            walker = Walker(ring, opts, pool, budget, wake_r)
            try:
                body(walker, tops)
                walker.drain()
                if walker.after:
                    walker.delete_after_pass()
                walker.flush_to_disk()
                ok = True
            finally:
                if not ok:
                    if pool is not None:
                        pool.stop()  # the workers remove their partial files
                    walker.abort()
                walker.close()
                # open until the end: hard links may join names across arguments
                for top in tops:
                    for fd in (top.src_fd, top.dst_fd):
                        if fd >= 0:
                            os.close(fd)
        if pool is not None:
            pool.close()
    finally:
        if catching:
            engine.release_stop()
        os.close(wake_r)
        os.close(wake_w)
    if engine.stop_requested():
        raise Stopped
    return walker


def _copy_one_arg(walker: Walker, p: Plan, copy_range_min: int | None, tops: list[Dir]) -> None:
    """Start copying one command-line SRC.  The pseudo-directory that holds
    the parents' fds goes into ``tops`` as soon as they are open (the caller
    closes them after the run, however it ends)."""
    from uringsync.cpargs import shown_parent

    o_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    top = Dir(None, b"", b"", shown_parent(p.src_parent, p.src), p.dst_shown, None)
    top.top = True
    top.scanned = True
    try:
        top.src_fd = os.open(p.src_parent, o_dir)
        top.dst_fd = os.open(p.dst_parent, o_dir)
        st = engine.stat_at(top.src_fd, p.src_name, follow=p.follow)
        top.acl_default = has_default_acl(top.dst_fd)
    except OSError as e:
        for fd in (top.src_fd, top.dst_fd):
            if fd >= 0:
                os.close(fd)
        raise CopyError(f"cannot access {show(p.src)}: {os.strerror(e.errno or 0)}") from None
    tops.append(top)
    walker.set_destination(top.dst_fd, copy_range_min, p.dst_parent)
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
        walker.copy_one(top, p.src_name, p.dst_name, st, follow=p.follow)


def _make_parents(plans: list[Plan], cf: options.CopyFlags) -> list[tuple[bytes, bytes]]:
    """cp --parents: make each SRC's missing directories under DST, as cp
    does (mode as a new directory's, attributes after the copy); the ones
    made, for :func:`_finish_parents`."""
    made: list[tuple[bytes, bytes]] = []
    for p in plans:
        for src_dir, dst_dir in p.parents:
            try:
                st = os.stat(src_dir)
            except OSError as e:
                raise CopyError(f"cannot stat {show(src_dir)}: {e.strerror}") from None
            try:
                os.mkdir(dst_dir, (st.st_mode & cf.dir_mode_mask) | 0o700)
            except FileExistsError:
                if not os.path.isdir(dst_dir):
                    raise CopyError(f"{show(dst_dir)} exists but is not a directory") from None
                continue
            except OSError as e:
                raise CopyError(f"cannot make directory {show(dst_dir)}: {e.strerror}") from None
            made.append((src_dir, dst_dir))
    return made


def _finish_parents(made: list[tuple[bytes, bytes]], cf: options.CopyFlags) -> None:
    """The attributes cp gives the directories --parents made: the source
    directory's mode (less umask unless kept), owner and times when kept."""
    for src_dir, dst_dir in reversed(made):
        st = os.stat(src_dir)
        if cf.flags & engine.P_OWNER:
            with contextlib.suppress(OSError):
                os.chown(dst_dir, st.st_uid, st.st_gid)
        os.chmod(dst_dir, st.st_mode & cf.dir_mode_mask)
        if cf.flags & engine.P_TIMES:
            os.utime(dst_dir, ns=(st.st_atime_ns, st.st_mtime_ns))


# A copy smaller than this runs in the calling process: forking and pinning
# the workers (tens of ms) would cost more than they save
# (docs/benchmarks.md, "Start-up").
SMALL_ENTRIES = 1000
SMALL_BYTES = 64 << 20
SMALL_RING = 8  # the least queue depth a small copy's ring is given


def _small_work(plans: list[Plan]) -> int | None:
    """For a copy that did not say how many workers (``jobs=None``): the
    entries a bounded look at the sources finds when they are fewer than
    SMALL_ENTRIES and hold less than SMALL_BYTES (the copy then runs in
    this process), else None (one worker per usable CPU)."""
    entries = 0
    size = 0
    stack = []
    for p in plans:
        if p.is_dir:
            stack.append(p.src)
            continue
        entries += 1
        with contextlib.suppress(OSError):
            size += os.stat(p.src, follow_symlinks=p.follow).st_size
    while stack and entries < SMALL_ENTRIES and size < SMALL_BYTES:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    entries += 1
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif e.is_file(follow_symlinks=False):
                        size += e.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # the copy reports it
    if entries < SMALL_ENTRIES and size < SMALL_BYTES:
        return entries
    return None


def _default_modes(plans: list[Plan]) -> None:
    """cp --no-preserve=mode: what was copied gets the default permissions
    (0666, directories 0777, less umask), not the source's less umask.  A
    pass over each copied tree after the copy: entries that were already in
    DST when a directory was merged into it get them too (cp leaves those)."""
    mask = options.umask()

    def fix(dirfd: int | None, name: bytes) -> None:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        if S.S_ISLNK(st.st_mode):
            return
        if S.S_ISDIR(st.st_mode):
            os.chmod(name, 0o777 & ~mask, dir_fd=dirfd, follow_symlinks=False)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
            try:
                for child in os.listdir(fd):
                    fix(fd, os.fsencode(child))
            finally:
                os.close(fd)
        else:
            os.chmod(name, 0o666 & ~mask, dir_fd=dirfd, follow_symlinks=False)

    for p in plans:
        with contextlib.suppress(OSError):
            fix(None, join(p.dst_parent, p.dst_name))


class PartialCopyError(CopyError):
    """Raised by ``copy(..., check=True)`` and ``sync(..., check=True)``
    after the run when some entries failed.  ``errors`` holds each failure
    (:class:`~uringsync.FileError`: path, step, errno, message) and
    ``result`` the run's :class:`~uringsync.Result`; ``str()`` is the first
    failure's message and their count.  Everything else was copied."""

    def __init__(self, message: str, result: Result | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.errors: list[FileError] = list(result.errors) if result is not None else []

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result))


def raise_on_errors(res: Result, done: str = "copied") -> None:
    """``check=True``: PartialCopyError when the run reported a failure."""
    errors = res.errors
    if not errors:
        return
    n = len(errors)
    what = "1 entry was" if n == 1 else f"{n} entries were"
    raise PartialCopyError(f"{what} not {done}; the first: {errors[0].message}", res)
