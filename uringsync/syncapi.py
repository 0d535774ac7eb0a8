"""The Python API of ``sync``: ``uringsync.sync(src, dst, delete=True)``,
rsync's meaning (a trailing slash on SRC: its contents), and the command
line's :class:`~uringsync.syncargs.SyncArgs` run through it.

Usage errors raise :class:`CopyError` before anything is written; per-file
failures are collected in :attr:`Result.errors` and the run goes on.
"""

from __future__ import annotations

import dataclasses
import errno as E
import os
import stat as S
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

from uringsync import apiargs, engine, filters, manifest, options
from uringsync.api import (
    EXIT_OK,
    EXIT_PARTIAL,
    PathLike,
    Result,
    direct_default,
    manifest_writer,
    pick_engine,
    raise_on_errors,
    result_of,
    run_walker,
)
from uringsync.apiargs import EngineName
from uringsync.itemize import Change
from uringsync.options import CopyError, SyncOptions
from uringsync.pool import Pool, usable_cpus
from uringsync.syncargs import SyncArgs
from uringsync.walker import Dir, Event, FileError, Options, Tuning, Walker, fd_budget, join, show
from uringsync.walker.sync import SyncDir, missing_dir_fd

EXIT_MAX_DELETE = 25  # rsync's: --max-delete stopped deletions

__all__ = ["EXIT_MAX_DELETE", "run_args", "run_sync", "sync"]

O_DIR_FOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def sync(
    srcs: Sequence[PathLike] | PathLike,
    dst: PathLike,
    *,
    delete: bool = False,
    dry_run: bool = False,
    checksum: bool = False,
    exclude: Sequence[str | bytes] = (),
    include: Sequence[str | bytes] = (),
    archive: bool = True,
    hard_links: bool = False,
    acls: bool = False,
    xattrs: bool = False,
    size_only: bool = False,
    ignore_times: bool = False,
    update: bool = False,
    ignore_existing: bool = False,
    existing: bool = False,
    inplace: bool = False,
    delta: bool = False,
    block_size: int = 65536,
    delete_after: bool = False,
    delete_excluded: bool = False,
    max_delete: int | None = None,
    one_file_system: bool = False,
    fsync: bool = False,
    verify: bool = False,
    jobs: int | None = None,
    engine: EngineName | None = None,
    on_itemize: Callable[[bytes], None] | None = None,
    on_info: Callable[[str], None] | None = None,
    on_error: Callable[[FileError], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    check: bool = False,
) -> Result:
    """Make ``dst`` like ``srcs`` as ``rsync -a`` does (``archive``; with
    ``hard_links``, ``acls``, ``xattrs``: ``-aHAX``).  A SRC ending in ``/``
    means its contents.  Excludes and includes are rsync's patterns, the
    includes first (rsync's first-match rule: list order matters; use
    :func:`run_args` for full control).  ``Result.changes`` holds the
    itemized changes (rsync's ``-i`` lines), ``Result.created`` etc. the
    counts.

    ``dry_run``: nothing is changed; ``Result.changes`` says what would be.
    ``delete``: entries only DST has are removed (``delete_after``: once
    the transfer is done; ``delete_excluded``: excluded ones too;
    ``max_delete``: at most this many).  ``checksum``, ``size_only``,
    ``ignore_times``, ``update``, ``ignore_existing``, ``existing``,
    ``inplace``, ``one_file_system``: rsync's options of those names.
    ``delta``: an updated file is compared with its old version block by
    block (``block_size`` bytes, XXH3-128) and only the blocks that differ
    are written (rsync's ``--no-whole-file``): into a clone of the old
    version renamed into place where the file system clones (btrfs, xfs),
    into the file itself with ``inplace``; elsewhere an atomic update is a
    whole copy.  ``Result.literal_bytes``/``matched_bytes`` say how much
    was written and how much was found equal.
    ``fsync``, ``verify``, ``jobs``, ``engine``, ``on_error``,
    ``on_notice``: as :func:`uringsync.copy`'s.  ``on_itemize`` gets each
    itemized line as it is made, ``on_info`` rsync's informational lines.

    Arguments are checked before anything is read or written (TypeError,
    or ValueError for a value an option cannot take); usage errors raise
    CopyError, nothing changed.  Per-file failures are in ``Result.errors``
    (exit code 23), or with ``check=True`` raise PartialCopyError after the
    run."""
    apiargs.check(locals())  # first: only the arguments are local yet
    src_list = [srcs] if isinstance(srcs, (str, bytes, os.PathLike)) else list(srcs)
    so = SyncOptions(
        perms=archive,
        times=archive,
        owner=archive,
        group=archive,
        symlinks=archive,
        devices=archive,
        specials=archive,
        hard_links=hard_links,
        acls=acls,
        xattrs=xattrs,
        dry_run=dry_run,
        checksum=checksum,
        size_only=size_only,
        ignore_times=ignore_times,
        update=update,
        ignore_existing=ignore_existing,
        existing=existing,
        inplace=inplace,
        delta=delta,
        block_size=block_size,
        delete=delete or delete_after or delete_excluded,
        delete_after=delete_after,
        delete_excluded=delete_excluded,
        max_delete=max_delete,
        itemize=1,
        fsync=fsync,
        verify=verify,
    )
    if os.geteuid() != 0:  # as in run_args
        so = dataclasses.replace(so, owner=False, group=False)
    items = [("--include", os.fsencode(p)) for p in include]
    items += [("--exclude", os.fsencode(p)) for p in exclude]
    res = run_sync(
        [os.fsencode(s) for s in src_list],
        os.fsencode(dst),
        so,
        _rules(items),
        recursive=archive,
        one_file_system=one_file_system,
        jobs=jobs,
        engine_name=engine,
        on_itemize=on_itemize,
        on_info=on_info,
        on_error=on_error,
        on_notice=on_notice,
    )
    if check:
        raise_on_errors(res, "synced")
    return res


def _rules(items: Sequence[tuple[str, bytes]], from0: bool = False) -> filters.Rules | None:
    try:
        rules = filters.rules_from_args([(k.removeprefix("--"), v) for k, v in items], from0)
    except filters.FilterError as e:
        raise CopyError(str(e)) from None
    return rules or None


def run_args(
    a: SyncArgs,
    on_itemize: Callable[[bytes], None] | None = None,
    on_info: Callable[[str], None] | None = None,
    on_error: Callable[[FileError], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    engine_name: str | None = None,
    progress: Callable[[Event], None] | None = None,
) -> Result:
    """The command line's options (already checked by syncargs)."""
    so = SyncOptions(
        perms=a.perms,
        times=a.times,
        owner=a.owner,
        group=a.group,
        symlinks=a.links,
        devices=a.devices,
        specials=a.specials,
        hard_links=a.hard_links,
        acls=a.acls,
        xattrs=a.xattrs,
        dry_run=a.dry_run,
        checksum=a.checksum,
        size_only=a.size_only and not a.checksum,
        ignore_times=a.ignore_times and not (a.checksum or a.size_only),
        update=a.update,
        ignore_existing=a.ignore_existing,
        existing=a.existing,
        inplace=a.inplace,
        delta=a.delta,
        block_size=a.block_size,
        delete=a.delete,
        delete_after=a.delete_after,
        delete_excluded=a.delete_excluded,
        max_delete=a.max_delete,
        itemize=a.itemize,
        fsync=a.fsync,
        verify=a.verify,
    )
    if os.geteuid() != 0:
        # as rsync run by a user: no owner to give away, and (a choice here:
        # rsync keeps the group when the user is in it) no group either
        so = dataclasses.replace(so, owner=False, group=False)
    rules = _rules(list(a.filters), a.from0)
    listed_errors: list[FileError] | None = None
    if a.files_from is not None:
        srcs, rules, listed_errors = _files_from(a, rules)
    else:
        srcs = [(s.path.rstrip(b"/") or b"/") + (b"/" if s.contents else b"") for s in a.srcs]
    return run_sync(
        srcs,
        a.dst,
        so,
        rules,
        recursive=a.recursive or listed_errors is not None,  # files-from: the rules decide
        one_file_system=a.one_file_system,
        jobs=a.jobs,
        engine_name=engine_name,
        on_itemize=on_itemize,
        on_info=on_info,
        on_error=on_error,
        on_notice=on_notice,
        progress=progress,
        collect=False,
        listed_errors=listed_errors,
        manifest_file=a.manifest,
    )


def _files_from(
    a: SyncArgs, user: filters.Rules | None
) -> tuple[list[bytes], filters.FilesFrom, list[FileError]]:
    """rsync's ``--files-from``: the list read and each path looked up in SRC
    (rsync's sender does so before it sends anything).  Returns the SRC
    operands to walk -- SRC/ when SRC itself is sent (a listed ``.``, or a
    ``./`` prefix), else SRC/NAME for each first name of a listed path --,
    the rule set that keeps the walk to the list, and the error of each
    listed path that is not there."""
    assert a.files_from is not None and len(a.srcs) == 1
    base = a.srcs[0].path.rstrip(b"/") or b"/"
    try:
        listed = filters.read_list(a.files_from, a.from0)
    except filters.FilterError as e:
        raise CopyError(str(e)) from None
    entries: dict[bytes, bool] = {}  # path -> its entries are sent too
    errors: list[FileError] = []
    root = False
    for ent in listed:
        root = root or ent.dot  # rsync sends "." before it looks at the path
        full = os.path.join(base, ent.path) if ent.path else base
        try:
            # rsync's link_stat: "dir/" and "." follow a symlink
            st = os.stat(full, follow_symlinks=ent.contents)
        except OSError as e:
            err = e.errno or E.EIO
            shown = os.fsdecode(os.path.abspath(full))
            msg = f'link_stat "{shown}" failed: {os.strerror(err)} ({err})'
            errors.append(FileError(full, "link_stat", err, msg))
            continue
        is_dir = S.S_ISDIR(st.st_mode)
        if ent.path and user is not None and user.excluded(ent.path, is_dir):
            continue  # rsync applies the user's rules to a listed path too
        content = is_dir and (ent.contents or a.recursive)
        entries[ent.path] = entries.get(ent.path, False) or content
    rules = filters.FilesFrom(entries, a.recursive, user)
    if root or b"" in entries:
        return [base.rstrip(b"/") + b"/"], rules, errors
    tops = sorted({p.split(b"/", 1)[0] for p in entries})
    return [os.path.join(base, t) for t in tops], rules, errors


def run_sync(
    srcs: list[bytes],
    dst: bytes,
    so: SyncOptions,
    rules: filters.Rules | None = None,
    *,
    recursive: bool = True,
    one_file_system: bool = False,
    jobs: int | None = None,
    engine_name: str | None = None,
    on_itemize: Callable[[bytes], None] | None = None,
    on_info: Callable[[str], None] | None = None,
    on_error: Callable[[FileError], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    progress: Callable[[Event], None] | None = None,
    collect: bool = True,
    listed_errors: list[FileError] | None = None,
    on_digest: Callable[[bytes, bytes], None] | None = None,
    manifest_file: PathLike | None = None,
    _tuning: Tuning | None = None,
) -> Result:
    """``collect``: keep the itemized lines in ``Result.changes`` (the
    command line passes False: it prints them, or nobody reads them).
    ``listed_errors``: a ``--files-from`` sync (DST is a directory, made
    only when something is sent), with the listed paths that are missing.
    ``on_digest``: -c's files found equal (Options.on_digest).
    ``manifest_file``: written with the digest of every regular file name of
    the transfer that is in DST once the sync is done (``--manifest``).
    ``_tuning`` is internal (tests): see :class:`uringsync.walker.Tuning`."""
    started = time.monotonic()
    if not srcs and listed_errors is None:
        raise CopyError("no source given")
    changes: list[bytes] = []

    def itemized(line: bytes) -> None:
        changes.append(line)
        if on_itemize is not None:
            on_itemize(line)

    item_cb = itemized if collect else on_itemize

    info = on_info or (lambda _msg: None)
    plans = [_plan(s, dst, len(srcs)) for s in srcs]
    names: BinaryIO | None = None  # --manifest: the names met, NUL-ended
    if manifest_file is not None:
        if so.dry_run:
            raise CopyError("--manifest lists the files written to DST: not with --dry-run")
        so = dataclasses.replace(so, manifest=True)
        names = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _write_manifest)
    opts = Options(
        flags=options.sync_flags(so),
        recursive=recursive,
        one_file_system=one_file_system,
        jobs=len(usable_cpus()) if jobs is None else max(0, jobs),
        # a big file's ranges are each flushed before they are recorded
        direct=direct_default(True),
        on_error=on_error,
        progress=progress,
        sync=so,
        rules=rules,
        on_itemize=item_cb,
        on_info=info,
        on_digest=on_digest,
        on_name=_name_writer(names) if names is not None else None,
        tuning=_tuning or Tuning(),
    )
    opts.engine, notice = pick_engine(engine_name, opts.queue_depth)
    if notice is not None and on_notice is not None:
        on_notice(notice)
    for p in plans:  # before DST is made: it may be inside a SRC (rsync stats first too)
        p.stat()
    if plans:
        dst_is_dir, created = _make_dst(dst, plans, so, info, listed_errors is not None)
    else:  # rsync makes no DST for an empty file list
        dst_is_dir, created = True, False
    # a manifest's paths are relative to DST, or to its directory when DST
    # names the file itself (its line then has DST's own name)
    mroot = dst if dst_is_dir else (os.path.dirname(dst.rstrip(b"/")) or b".")
    writer = manifest_writer(manifest_file, mroot) if manifest_file is not None else None
    budget = fd_budget()
    pool = (
        Pool(
            opts.jobs,
            opts.queue_depth,
            min(budget[1], opts.queue_depth),
            opts.batch_size,
            opts.engine,
            lazy=True,  # a sync with nothing to copy never forks them
        )
        if opts.jobs
        else None
    )

    def body(walker: Walker, tops: list[Dir]) -> None:
        for e in listed_errors or ():
            walker.totals.errors.append(e)
            if on_error is not None:
                on_error(e)
            if e.errno != E.ENOENT:
                walker.io_error = True  # rsync: it may be omitting a file, so no deletions
        for p in plans:
            _sync_one_arg(walker, p, dst, dst_is_dir, created, recursive, tops)
        walker.flush_link_groups()
        if progress is not None:
            progress(Event("walked"))

    try:
        walker = run_walker(opts, pool, budget, body)
    except BaseException:
        if pool is not None:
            pool.stop()
        if writer is not None and names is not None:
            writer.close()
            names.close()
        raise
    t = walker.totals
    res = result_of(
        walker,
        opts,
        pool,
        started,
        notice,
        created=t.created,
        updated=t.updated,
        meta=t.meta,
        unchanged=t.unchanged,
        deleted=t.deleted,
        literal_bytes=t.literal,
        matched_bytes=t.matched,
        changes=changes,
    )
    if walker.delete_skipped and on_error is not None:
        msg = f"Deletions stopped due to --max-delete limit ({walker.delete_skipped} skipped)"
        on_error(FileError(b"", "delete", 0, msg))
    if walker.delete_skipped and res.exit_code == EXIT_OK:
        res.exit_code = EXIT_MAX_DELETE
    if writer is not None and names is not None:
        _write_manifest(writer, names, mroot, opts.engine, res, on_error)
    return res


def _name_writer(f: BinaryIO) -> Callable[[bytes], None]:
    def put(path: bytes) -> None:
        f.write(path + b"\0")

    return put


def _write_manifest(
    writer: manifest.Writer,
    names: BinaryIO,
    root: bytes,
    engine_name: str,
    res: Result,
    on_error: Callable[[FileError], None] | None,
) -> None:
    """sync --manifest: every regular file name the walk met, hashed in DST
    on the engine now that the sync is done (a copy's data from the page
    cache it just went through), a line each.  A name not in DST (its copy
    failed, reported already, or an option skipped it) has no line."""
    try:
        names.seek(0)
        paths = (p for p in names.read().split(b"\0") if p)
        with engine.Ring(engine=engine_name) as ring:
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for path, h in manifest.digests(ring, root_fd, paths):
                    if isinstance(h, bytes):
                        writer.add(path, h)
                        continue
                    if h.errno == E.ENOENT:
                        continue
                    full = join(root, path)
                    why = os.strerror(h.errno or E.EIO)
                    fe = FileError(
                        full,
                        "manifest",
                        h.errno or E.EIO,
                        f"cannot hash {show(full)} for the manifest: {why}",
                    )
                    res.errors.append(fe)
                    if on_error is not None:
                        on_error(fe)
                    if res.exit_code == EXIT_OK:
                        res.exit_code = EXIT_PARTIAL
            finally:
                os.close(root_fd)
    finally:
        names.close()
        writer.close()


class _Plan:
    """One SRC: where its entry is (parent, name), and whether it is a
    directory's contents (SRC/)."""

    __slots__ = ("contents", "is_dir", "name", "parent", "src", "st")

    def __init__(
        self, src: bytes, parent: bytes, name: bytes, contents: bool, is_dir: bool
    ) -> None:
        self.src = src
        self.parent = parent
        self.name = name
        self.contents = contents
        self.is_dir = is_dir
        self.st: engine.Stat | None = None

    def stat(self) -> None:
        """The entry's lstat (SRC/: the directory's stat)."""
        try:
            fd = os.open(self.parent if not self.contents else self.src, O_DIR_FOLLOW)
        except OSError as e:
            raise CopyError(
                f'cannot access "{os.fsdecode(self.src)}": {os.strerror(e.errno or 0)}'
            ) from None
        try:
            self.st = engine.stat_at(fd, self.name, follow=self.contents)
        except OSError as e:
            raise CopyError(
                f'cannot access "{os.fsdecode(self.src)}": {os.strerror(e.errno or 0)}'
            ) from None
        finally:
            os.close(fd)


def _plan(src: bytes, dst: bytes, n: int) -> _Plan:
    contents = src.endswith(b"/")
    bare = src.rstrip(b"/") or b"/"
    try:
        st = os.stat(bare if not contents else src, follow_symlinks=contents)
    except OSError as e:
        raise CopyError(
            f'link_stat "{os.fsdecode(bare)}" failed: {os.strerror(e.errno or 0)}'
        ) from None
    is_dir = S.S_ISDIR(st.st_mode)
    if contents and is_dir:
        return _Plan(src, bare, b".", True, True)
    parent, name = os.path.split(bare)
    return _Plan(src, parent or b".", name or b".", False, is_dir)


def _make_dst(
    dst: bytes,
    plans: list[_Plan],
    so: SyncOptions,
    info: Callable[[str], None],
    dst_dir: bool = False,
) -> tuple[bool, bool]:
    """DST exists as a directory, or is made (not its parents), as rsync does.
    Returns (DST is a directory (False: a file name, for one file SRC),
    DST was made by this run).  ``dst_dir``: DST is a directory whatever
    the SRCs (``--files-from``: rsync's -R)."""
    try:
        st = os.stat(dst)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise CopyError(
            f'cannot access "{os.fsdecode(dst)}": {os.strerror(e.errno or 0)}'
        ) from None
    if st is not None:
        if S.S_ISDIR(st.st_mode):
            return True, False
        if len(plans) > 1 or dst_dir or any(p.is_dir for p in plans):
            raise CopyError("destination must be a directory when copying more than 1 file")
        return False, False
    if len(plans) == 1 and not plans[0].is_dir and not dst.endswith(b"/") and not dst_dir:
        return False, False  # rsync FILE NEWNAME
    if not so.dry_run:
        try:
            os.mkdir(dst)
        except OSError as e:
            raise CopyError(
                f'mkdir "{os.fsdecode(dst)}" failed: {os.strerror(e.errno or 0)}'
            ) from None
    info(f"created directory {os.fsdecode(dst.rstrip(b'/') or dst)}")
    return True, True


def _sync_one_arg(
    walker: Walker,
    p: _Plan,
    dst: bytes,
    dst_is_dir: bool,
    created: bool,
    recursive: bool,
    tops: list[Dir],
) -> None:
    so = walker.so
    assert so is not None
    top = Dir(None, b"", b"", p.parent, dst, None)
    top.top = True
    top.scanned = True
    tops.append(top)
    dst_exists = os.path.isdir(dst)
    try:
        top.src_fd = os.open(p.parent if not p.contents else p.src, O_DIR_FOLLOW)
        if dst_is_dir and dst_exists:
            top.dst_fd = os.open(dst, O_DIR_FOLLOW)
        elif dst_is_dir:  # -n and DST not made: nothing can be there
            top.dst_fd = missing_dir_fd()
        else:
            top.dst_fd = os.open(os.path.dirname(dst.rstrip(b"/")) or b".", O_DIR_FOLLOW)
    except OSError as e:
        raise CopyError(
            f'cannot access "{os.fsdecode(p.src)}": {os.strerror(e.errno or 0)}'
        ) from None
    top.sync = SyncDir(b"", None)
    top.sync.missing = dst_is_dir and not dst_exists
    if dst_is_dir and dst_exists:
        walker.note_dst_dir(top.dst_fd, made=created, top=True)
    walker.set_destination(top.dst_fd, None, dst)
    if p.is_dir:
        if not recursive:
            walker._info(f"skipping directory {os.fsdecode(p.name if not p.contents else b'.')}")
            return
        st = p.st
        assert st is not None
        dst_st = None
        if not top.sync.missing:
            try:
                dst_st = engine.stat_at(top.dst_fd, p.name, follow=p.contents)
            except OSError:
                dst_st = None
        if dst_st is not None and int(dst_st.type) != engine.T_DIR:
            if not so.dry_run:
                os.unlink(p.name, dir_fd=top.dst_fd)
            dst_st = None
        rel = b"" if p.contents else p.name + b"/"
        root = Dir(
            top,
            p.name,
            p.name,
            p.src.rstrip(b"/") or p.src,
            join(dst, p.name) if not p.contents else dst,
            st,
        )
        if dst_st is None or created:
            dst_st = None
            walker._item(Change("create", "d", rel or b"./"))
        walker.sync_dir(top, root, rel, dst_st)
        return
    st = p.st
    assert st is not None
    dst_name = p.name if dst_is_dir else os.path.basename(dst.rstrip(b"/"))
    walker.sync_file(top, p.name, dst_name, st)
