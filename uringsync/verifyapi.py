"""``uringsync verify``: is every byte there?

* :func:`verify` compares the tree SRC with the tree DST by everything
  ``-a`` keeps (``-aHAX``: type, mode, owner, times, symlink targets, hard
  links, xattrs, ACLs) and by content: every regular file of the same size
  on both sides is hashed (XXH3-128) on the engine, many files in flight,
  the destination's data read from the device, not the page cache.  It is
  ``sync``'s dry run with ``-c`` and ``--delete`` (what ``rsync -naHAXc
  --delete`` would do), so every difference is one of rsync's itemize lines,
  an entry only DST has included (``*deleting``).
* :func:`check_manifest` checks DST against a manifest (uringsync/manifest.py)
  as ``xxh128sum -c`` does, on the engine and from the device.

Exit codes: 0 identical; 1 a difference (or a usage error: its message says
so); 23 some files could not be read (each reported).
"""

from __future__ import annotations

import errno as E
import os
import stat as S
import time
from collections.abc import Callable

from uringsync import apiargs, engine, manifest
from uringsync.api import (
    EXIT_OK,
    EXIT_PARTIAL,
    PathLike,
    Result,
    manifest_writer,
    pick_engine,
)
from uringsync.apiargs import EngineName
from uringsync.options import CopyError, SyncOptions
from uringsync.walker import FileError, show

EXIT_DIFFER = 1
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

__all__ = ["EXIT_DIFFER", "check_manifest", "verify"]


def _stat(path: bytes, what: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as e:
        raise CopyError(f"cannot verify {what} {show(path)}: {e.strerror}") from None


def verify(
    src: PathLike,
    dst: PathLike,
    *,
    manifest_file: PathLike | None = None,
    jobs: int | None = None,
    engine: EngineName | None = None,
    on_itemize: Callable[[bytes], None] | None = None,
    on_error: Callable[[FileError], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> Result:
    """Compare SRC's tree with DST's (two directories).
    ``Result.changes`` holds a line per difference (rsync's ``-i`` format);
    exit code 0 only when there is none and every file could be read.
    ``manifest_file``: written with the digest of each regular file name in
    DST whose data matched SRC's (a difference is reported instead).
    ``jobs``, ``engine``, ``on_error``, ``on_notice``: as
    :func:`uringsync.copy`'s; ``on_itemize`` gets each difference's line
    as it is found.  TypeError or ValueError for a bad argument, CopyError
    when SRC or DST is not a directory."""
    apiargs.check(locals())  # first: only the arguments are local yet
    from uringsync import syncapi  # the sync machinery runs the comparison

    src_b, dst_b = os.fsencode(src), os.fsencode(dst)
    for path, what in ((src_b, "source"), (dst_b, "destination")):
        if not S.S_ISDIR(_stat(path, what).st_mode):
            raise CopyError(f"cannot verify {show(path)}: not a directory")
    root = os.geteuid() == 0  # as sync: a user cannot give files away
    so = SyncOptions(
        perms=True,
        times=True,
        owner=root,
        group=root,
        symlinks=True,
        devices=True,
        specials=True,
        hard_links=True,
        acls=True,
        xattrs=True,
        dry_run=True,
        checksum=True,
        delete=True,
        itemize=1,
        device_reads=True,
    )
    writer = manifest_writer(manifest_file, dst_b) if manifest_file is not None else None
    try:
        res = syncapi.run_sync(
            [src_b.rstrip(b"/") + b"/"],
            dst_b,
            so,
            jobs=jobs,
            engine_name=engine,
            on_itemize=on_itemize,
            on_error=on_error,
            on_notice=on_notice,
            on_digest=writer.add if writer is not None else None,
        )
    finally:
        if writer is not None:
            writer.close()
    if res.exit_code == EXIT_OK and res.changes:
        res.exit_code = EXIT_DIFFER
    return res


def check_manifest(
    manifest_path: PathLike,
    dst: PathLike,
    *,
    engine_name: EngineName | None = None,
    on_failed: Callable[[bytes], None] | None = None,
    on_error: Callable[[FileError], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> Result:
    """Check the files of DST against a manifest, as ``xxh128sum -c`` run in
    DST would, but reading each file from the device on the engine, many in
    flight.  ``on_failed`` gets ``PATH: FAILED`` for a file whose digest
    differs (``PATH: FAILED open or read`` for one that cannot be read, also
    an error).  Exit code: 0 all match; 1 a mismatch; 23 a file unreadable.
    ``engine_name``, ``on_error``, ``on_notice``: as :func:`uringsync.copy`'s
    ``engine``, ``on_error``, ``on_notice``."""
    apiargs.check(locals())  # first: only the arguments are local yet
    started = time.monotonic()
    mpath, dst_b = os.fsencode(manifest_path), os.fsencode(dst)
    try:
        with open(mpath, "rb") as f:
            entries = list(manifest.parse(f.read()))
    except OSError as e:
        raise CopyError(f"cannot read manifest {show(mpath)}: {e.strerror}") from None
    except manifest.ManifestError as e:
        raise CopyError(f"{show(mpath)}: {e}") from None
    chosen, notice = pick_engine(engine_name)
    if notice is not None and on_notice is not None:
        on_notice(notice)
    try:
        dst_fd = os.open(dst_b, O_DIR)
    except OSError as e:
        raise CopyError(f"cannot verify {show(dst_b)}: {e.strerror}") from None
    res = Result(exit_code=EXIT_OK, engine=chosen, notice=notice)

    def failed(path: bytes, why: str = "") -> None:
        line = manifest.result_line(path, b"FAILED" + (b" " + why.encode() if why else b""))
        res.changes.append(line)
        if on_failed is not None:
            on_failed(line)

    def error(path: bytes, full: bytes, op: str, err: int, msg: str) -> None:
        fe = FileError(full, op, err, msg)
        res.errors.append(fe)
        if on_error is not None:
            on_error(fe)
        failed(path, "open or read")

    try:
        with engine.Ring(engine=chosen) as ring:
            paths = (path for path, _ in entries)
            hashed = manifest.digests(ring, dst_fd, paths, engine.F_DEVICE)
            for (path, h), (_, digest) in zip(hashed, entries, strict=True):
                full = os.path.join(dst_b, path)
                if isinstance(h, engine.JobError):
                    err = h.errno or E.EIO
                    what = h.step.what(full, full, err, "regular file")
                    error(path, full, h.step.name, err, f"{what}: {os.strerror(err)}")
                elif isinstance(h, OSError):
                    err = h.errno or E.EIO
                    if err == E.EXDEV:
                        msg = f"{show(path)}: a path outside DST"
                    else:
                        msg = f"cannot open directory of {show(full)}: {os.strerror(err)}"
                    error(path, full, "open", err, msg)
                else:
                    res.files += 1
                    if h != digest:
                        failed(path)
    finally:
        os.close(dst_fd)
    if res.errors:
        res.exit_code = EXIT_PARTIAL
    elif res.changes:
        res.exit_code = EXIT_DIFFER
    res.seconds = time.monotonic() - started
    return res
