"""shutil's copy functions on uringsync's engine: :func:`copytree`,
:func:`copy2`, :func:`copy`, :func:`copyfile`, each a drop-in for the
standard library's function of that name: the same arguments, defaults,
return value, result on disk and exceptions (``shutil.Error`` itself, with
its list of ``(src, dst, reason)``; ``FileExistsError``; the OSError
subclasses), the files copied by uringsync's engine (io_uring, many files in
flight, reflinks and copy_file_range where the file system has them).

Where the engine cannot give shutil's result, the standard library's own
function runs instead (said in each docstring): a custom ``copy_function``,
a destination inside the source tree, a single-file copy whose source is not
a regular file or whose destination is not a plain file.

The differences that remain (docs/api.md):

* a symlink met inside the destination tree is replaced, never written
  through (shutil opens it and writes to its target);
* ``ignore_dangling_symlinks`` looks a relative link up from its own
  directory (shutil looks it up from the current directory);
* a directory that cannot be read is made in DST, empty (shutil makes none),
  and its error is in the list all the same.
"""

from __future__ import annotations

import os
import shutil
import stat as S
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from uringsync import api, engine

# ``copy`` here is shutil.copy's drop-in; ``uringsync.copy`` is cp's API
__all__ = ["copy", "copy2", "copyfile", "copytree"]

# the standard library's own functions, as they were when uringsync was
# imported (a program may have put ours in their place: the fall-backs must
# not call themselves)
_STD_COPYTREE = shutil.copytree
_STD_COPY2 = shutil.copy2
_STD_COPY = shutil.copy
_STD_COPYFILE = shutil.copyfile

# the types typeshed gives shutil's functions (bytes paths work too, as
# they do with shutil's)
StrPath = str | os.PathLike[str]
StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
_StrPathT = TypeVar("_StrPathT", bound=StrPath)
_StrOrBytesPathT = TypeVar("_StrOrBytesPathT", bound=StrOrBytesPath)
# copytree's ``ignore``: (directory, names) -> the names not to copy
IgnoreFn = Callable[[str, list[str]], Iterable[str]] | Callable[[StrPath, list[str]], Iterable[str]]

# shutil's copy2 and copystat: mode (with ACLs), times and every xattr; not
# the owner; hard links not kept
COPY2_KEEPS = "mode,timestamps,xattr"
COPY_KEEPS = "mode"


def _engine_copy_function(fn: Callable[[str, str], object] | None) -> bool:
    return fn is None or fn is _STD_COPY2 or fn is copy2


def _inside(dst: StrOrBytesPath, src: StrOrBytesPath) -> bool:
    """DST is SRC or a path under it (however either is spelled)."""
    s = os.fsencode(os.path.realpath(os.fsencode(src)))
    d = os.fsencode(os.path.realpath(os.fsencode(dst)))
    return d == s or d.startswith(s.rstrip(b"/") + b"/")


def copytree(
    src: StrPath,
    dst: _StrPathT,
    symlinks: bool = False,
    ignore: IgnoreFn | None = None,
    copy_function: Callable[[str, str], object] | None = None,
    ignore_dangling_symlinks: bool = False,
    dirs_exist_ok: bool = False,
) -> _StrPathT:
    """Copy the directory tree SRC to DST and return DST, as
    :func:`shutil.copytree` does, on uringsync's engine.

    DST's parents are made as :func:`os.makedirs` makes them; DST itself
    must not exist unless ``dirs_exist_ok`` (else :class:`FileExistsError`,
    nothing copied); with ``dirs_exist_ok`` existing directories are merged
    and existing files overwritten.  Each file, directory and symlink keeps
    what :func:`shutil.copy2` and :func:`shutil.copystat` keep: its mode
    (and ACLs), its access and modification times (ns), its extended
    attributes; not its owner; hard links are not kept (each name is a
    copy).  ``symlinks``: False (default): symlinks are followed and their
    targets copied (a dangling one is an error, left out with
    ``ignore_dangling_symlinks``); True: symlinks are copied as symlinks.
    FIFOs, sockets and device nodes are handed to :func:`shutil.copy2`, as
    shutil does (a FIFO is an error: "`path` is a named pipe").
    ``ignore``: called once per directory copied with its path (SRC joined
    with the names below it, as shutil passes it) and the names of its
    entries; the names it returns are not copied
    (``shutil.ignore_patterns(...)`` is one).

    Per-file failures do not stop the copy: at the end :class:`shutil.Error`
    is raised, its ``args[0]`` the list of ``(srcname, dstname, reason)``.
    A source that cannot be listed raises as :func:`os.scandir` does,
    before anything is made.

    ``copy_function``: None, :func:`shutil.copy2` or :func:`uringsync.copy2`
    copy on the engine.  Any other function must be called for each file,
    which the engine cannot do: then :func:`shutil.copytree` itself runs
    with the same arguments.  It runs too when DST is inside SRC (shutil
    lists SRC before it makes DST, which keeps DST out of the copy).
    """
    copy_fn = _STD_COPY2 if copy_function is None else copy_function
    if not _engine_copy_function(copy_function) or _inside(dst, src):
        return _STD_COPYTREE(
            src, dst, symlinks, ignore, copy_fn, ignore_dangling_symlinks, dirs_exist_ok
        )
    sys.audit("shutil.copytree", src, dst)
    with os.scandir(src):  # shutil's exceptions, before DST is made
        pass
    os.makedirs(dst, exist_ok=dirs_exist_ok)
    run = _Tree(src, dst, ignore)
    res = api.copy(
        [run.top],
        dst,
        recursive=True,
        preserve=COPY2_KEEPS,
        dereference="never" if symlinks else "always",
        ignore=run.ignore if ignore is not None else None,
        _on_special=run.special,
    )
    errors = [e for e in map(run.error, res.errors) if e is not None]
    if ignore_dangling_symlinks:
        errors = [e for e in errors if not _dangling(e[0])]
    run.drop_unread_dirs(res.errors)
    errors += run.copy_specials()
    errors += run.restamp()
    if errors:
        raise shutil.Error(errors)
    return dst


def _dangling(path: Any) -> bool:
    return os.path.islink(path) and not os.path.exists(path)


class _Tree:
    """One copytree run: its paths as shutil spells them."""

    def __init__(self, src: StrOrBytesPath, dst: StrOrBytesPath, ignore: IgnoreFn | None) -> None:
        self.src = src
        self.dst = dst
        self.src_fs = os.fspath(src)  # what shutil joins names to (str or bytes)
        self.dst_fs = os.fspath(dst)
        self.user_ignore = ignore
        src_b = os.fsencode(src).rstrip(b"/")
        # SRC/. into DST: its contents, DST's attributes from SRC's
        self.top = src_b + b"/." if src_b else b"/."
        self.dst_b = os.fsencode(dst).rstrip(b"/") or b"/"
        self.specials: list[tuple[bytes, bytes]] = []
        # directories (relative) whose times must be set again
        self.touched: dict[bytes, None] = {}

    def rel(self, path: bytes) -> bytes | None:
        """A path the walker reports, relative to the top of SRC or DST
        (b"" for the top itself); None when it is neither's."""
        for top in (self.top, self.dst_b + b"/.", self.dst_b):
            if path == top:
                return b""
            if path.startswith(top + b"/"):
                return path[len(top) + 1 :]
        return None

    def names(self, rel: bytes) -> tuple[Any, Any]:
        """(srcname, dstname) of an entry, as shutil.copytree builds them
        (os.path.join of the arguments and the names); the arguments
        themselves for the top."""
        if not rel:
            return self.src, self.dst
        if isinstance(self.src_fs, bytes):
            return os.path.join(self.src_fs, rel), os.path.join(os.fsencode(self.dst_fs), rel)
        r = os.fsdecode(rel)
        return os.path.join(self.src_fs, r), os.path.join(os.fsdecode(self.dst_fs), r)

    def ignore(self, path: str, names: list[str]) -> Iterable[str]:
        """The user's ``ignore`` with shutil's arguments: the directory as
        SRC joined with the names down to it, str (bytes if SRC is)."""
        assert self.user_ignore is not None
        rel = self.rel(os.fsencode(path))
        where = self.names(rel)[0] if rel is not None else path
        where = os.fspath(where)
        if isinstance(where, bytes):
            got = self.user_ignore(where, [os.fsencode(n) for n in names])
            return [os.fsdecode(n) for n in got]
        return self.user_ignore(where, names)

    def special(self, src: bytes, dst: bytes) -> None:
        self.specials.append((src, dst))

    def error(self, fe: api.FileError) -> tuple[Any, Any, str] | None:
        """A FileError as shutil's (srcname, dstname, str(OSError))."""
        rel = self.rel(fe.path)
        if rel is None:
            return (self.src, self.dst, fe.message)
        srcname, dstname = self.names(rel)
        if not fe.errno:
            return (srcname, dstname, fe.message)
        on_src = fe.path.startswith(self.top)
        why = OSError(fe.errno, os.strerror(fe.errno), srcname if on_src else dstname)
        return (srcname, dstname, str(why))

    def copy_specials(self) -> list[tuple[Any, Any, str]]:
        """FIFOs, sockets, device nodes: what shutil.copy2 makes of them
        (a FIFO: SpecialFileError; a socket: ENXIO; a device: its data)."""
        errors: list[tuple[Any, Any, str]] = []
        for src, _dst in self.specials:
            rel = self.rel(src)
            if rel is None:
                continue
            srcname, dstname = self.names(rel)
            try:
                _STD_COPY2(srcname, dstname)
            except OSError as why:
                errors.append((srcname, dstname, str(why)))
            else:
                self.touched[rel.rpartition(b"/")[0]] = None
        return errors

    def drop_unread_dirs(self, failed: list[api.FileError]) -> None:
        """A source directory that could not be opened or listed: shutil
        makes no copy of it (it lists a directory before it makes its
        copy); the walker made it first, empty: removed."""
        for fe in failed:
            rel = self.rel(fe.path) if fe.op in ("opendir", "readdir") else None
            if not rel:
                continue
            try:
                os.rmdir(self.names(rel)[1])
            except OSError:
                continue
            self.touched[rel.rpartition(b"/")[0]] = None

    def restamp(self) -> list[tuple[Any, Any, str]]:
        """The directories where an entry was made or removed after the
        walk set their times: shutil.copystat again (its errors, shutil's)."""
        errors: list[tuple[Any, Any, str]] = []
        for rel in self.touched:
            srcname, dstname = self.names(rel)
            try:
                shutil.copystat(srcname, dstname)
            except OSError as why:
                errors.append((srcname, dstname, str(why)))
        return errors


# tests: every plain single-file copy on the engine, worth it or not
_ENGINE_ALWAYS = False


def _plain_file(src: StrOrBytesPath, dst: StrOrBytesPath, follow_symlinks: bool) -> bool:
    """A single-file copy the engine makes as shutil would, and better: SRC
    a regular file (through a symlink only when following), DST absent in an
    existing directory or another regular file; and SRC sparse (the engine
    keeps the holes, shutil writes zeros) or DST on btrfs or XFS (a
    reflink).  Otherwise shutil's own copy (sendfile in the kernel) is as
    fast, without the engine's set-up (docs/api.md)."""
    try:
        st = os.stat(src, follow_symlinks=follow_symlinks)
        if not S.S_ISREG(st.st_mode):
            return False
        parent = os.path.dirname(os.fsencode(dst)) or b"."
        try:
            dt = os.stat(dst)
        except FileNotFoundError:
            if os.path.lexists(dst) or not os.path.isdir(parent):
                return False  # a dangling symlink: shutil writes its target
        else:
            if not S.S_ISREG(dt.st_mode) or (dt.st_dev, dt.st_ino) == (st.st_dev, st.st_ino):
                return False
        if _ENGINE_ALWAYS or st.st_blocks * 512 < st.st_size:
            return True
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return engine.OFFLOAD_FS.get(engine.fs_type(fd)) in ("btrfs", "xfs")
        finally:
            os.close(fd)
    except OSError:
        return False


def _engine_file(
    src: StrOrBytesPath, dst: StrOrBytesPath, keep: str | None, follow_symlinks: bool
) -> None:
    """One regular file on the engine (in this process); its failure as
    the OSError shutil would raise (the errno's subclass, the path)."""
    res = api.copy(
        src,
        dst,
        preserve=keep,
        dereference="always" if follow_symlinks else "never",
        target_is_dir=False,
        jobs=0,
    )
    if res.errors:
        fe = res.errors[0]
        if not fe.errno:
            raise OSError(fe.message)
        on_dst = os.fsencode(dst).rstrip(b"/") == fe.path
        raise OSError(fe.errno, os.strerror(fe.errno), dst if on_dst else src)


def _into(src: StrPath, dst: _StrPathT) -> _StrPathT | str:
    """shutil.copy/copy2: a DST that is a directory gets SRC's name in it."""
    if os.path.isdir(dst):
        return os.path.join(dst, os.path.basename(src))
    return dst


def _one_file(
    src: StrPath, dst: _StrPathT, std: Any, keeps: str, follow_symlinks: bool
) -> _StrPathT | str:
    """copy2's and copy's body: shutil's own ``std`` where the engine would
    not do better, else the engine keeping ``keeps``; the file's path."""
    target = _into(src, dst)
    if not _plain_file(src, target, follow_symlinks):
        std(src, target, follow_symlinks=follow_symlinks)
    else:
        _engine_file(src, target, keeps, follow_symlinks)
    return target


def copy2(src: StrPath, dst: _StrPathT, *, follow_symlinks: bool = True) -> _StrPathT | str:
    """Copy the file SRC to DST with its mode, times and extended attributes
    and return the file's path, as :func:`shutil.copy2` does (DST a
    directory: the copy is DST/basename(SRC)).  Raises the OSError shutil
    raises (FileNotFoundError, PermissionError, ...,
    :class:`shutil.SameFileError`, :class:`shutil.SpecialFileError`).
    On uringsync's engine where it does better than shutil: a sparse SRC
    (its holes kept), a DST on btrfs or XFS (a reflink); elsewhere, and
    when SRC is not a regular file or DST not a plain file,
    :func:`shutil.copy2` itself runs (one file: the kernel's sendfile is as
    fast, and the engine's set-up costs milliseconds)."""
    return _one_file(src, dst, _STD_COPY2, COPY2_KEEPS, follow_symlinks)


def copy(src: StrPath, dst: _StrPathT, *, follow_symlinks: bool = True) -> _StrPathT | str:
    """Copy the file SRC to DST with its mode (not its times) and return
    the file's path, as :func:`shutil.copy` does; on uringsync's engine
    where :func:`copy2` would be, else :func:`shutil.copy` itself runs."""
    return _one_file(src, dst, _STD_COPY, COPY_KEEPS, follow_symlinks)


def copyfile(
    src: StrOrBytesPath, dst: _StrOrBytesPathT, *, follow_symlinks: bool = True
) -> _StrOrBytesPathT:
    """Copy the data of the file SRC to the file DST (not into a directory)
    and return DST, as :func:`shutil.copyfile` does: a new DST gets mode
    0o666 less the umask, an existing one keeps its mode.  On uringsync's
    engine where :func:`copy2` would be, else :func:`shutil.copyfile`
    itself runs (its exceptions: IsADirectoryError, SameFileError, ...)."""
    if not _plain_file(src, dst, follow_symlinks):
        _STD_COPYFILE(src, dst, follow_symlinks=follow_symlinks)
        return dst
    existed = os.path.lexists(dst)
    _engine_file(src, dst, None, follow_symlinks)
    if not existed:
        from uringsync.options import umask

        os.chmod(dst, 0o666 & ~umask())
    return dst
