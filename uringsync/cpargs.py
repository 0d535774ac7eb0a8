"""cp's rules for the command-line paths: whether DST is a directory, what
trailing slashes mean, several SRCs, and the combinations cp refuses (the
same file, a directory into itself, a directory over a file, ...).  Every
problem raises :class:`CopyError` before anything is written."""

from __future__ import annotations

import errno as E
import os
import stat as S
from collections.abc import Sequence
from dataclasses import dataclass

from uringsync.options import CopyError
from uringsync.steps import join, show

__all__ = ["CopyError", "Plan", "operands", "plan", "shown_parent"]


@dataclass(frozen=True)
class Plan:
    """One command-line SRC and where it goes."""

    src: bytes  # as given, for messages
    src_parent: bytes
    src_name: bytes
    dst_parent: bytes
    dst_name: bytes
    is_dir: bool
    dst_shown: bytes  # the destination's parent as the user would write it
    follow: bool = False  # SRC itself is a symlink to follow (cp -H, -L, no -r, "link/")
    # cp --parents: (source dir, destination dir) to make first, outermost first
    parents: tuple[tuple[bytes, bytes], ...] = ()


def operands(paths: Sequence[str]) -> tuple[list[str], str]:
    """SRC... DST of the command line (at least one SRC)."""
    if len(paths) < 2:
        raise CopyError(
            f"missing destination file operand after '{paths[0]}'"
            if paths
            else "missing file operand"
        )
    return list(paths[:-1]), paths[-1]


def shown_parent(parent: bytes, given: bytes) -> bytes:
    """'f' rather than './f' in messages when the user typed 'f'."""
    return b"" if parent == b"." and not given.startswith(b"./") else parent


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


def _dst_of(src: bytes, sst: os.stat_result, dst: bytes, dst_st: os.stat_result | None) -> None:
    """cp's refusals for a DST written with a trailing slash that is not a
    directory: ``cp f nodir/`` and ``cp f file/`` (``cp -r d nodir/`` makes it)."""
    if not dst.endswith(b"/") or (dst_st is not None and S.S_ISDIR(dst_st.st_mode)):
        return
    try:
        os.stat(dst)
    except OSError as e:
        if e.errno == E.ENOENT and S.S_ISDIR(sst.st_mode):
            return
        if e.errno == E.ENOENT:
            raise CopyError(
                f"cannot create regular file {show(dst)}: {os.strerror(E.ENOTDIR)}"
            ) from None
        raise CopyError(f"cannot stat {show(dst)}: {os.strerror(e.errno or 0)}") from None


def _target(dst: bytes, n_srcs: int, target_is_dir: bool | None, parents: bool) -> bool:
    """Whether DST is the directory that receives the SRCs, as cp decides."""
    try:
        dst_st: os.stat_result | None = os.stat(dst)
        why = E.ENOTDIR
    except OSError as e:
        dst_st, why = None, e.errno or 0
    is_dir = dst_st is not None and S.S_ISDIR(dst_st.st_mode)
    if target_is_dir:
        if not is_dir:
            raise CopyError(f"target directory {show(dst)}: {os.strerror(why)}")
        return True
    if target_is_dir is False:
        return False
    if parents and not is_dir:
        raise CopyError("with --parents, the destination must be a directory")
    if n_srcs > 1 and not is_dir:
        raise CopyError(f"target {show(dst)}: {os.strerror(why)}")
    return is_dir


def plan(
    srcs: Sequence[bytes],
    dst: bytes,
    recursive: bool,
    deref_top: bool,
    target_is_dir: bool | None = None,
    parents: bool = False,
) -> list[Plan]:
    """Apply cp's rules to the command-line paths; raise CopyError on any
    problem.  ``deref_top``: the SRC operands' symlinks are followed (cp -H,
    -L, or no -r); a SRC with a trailing slash always is.  ``target_is_dir``:
    cp -t (True) and -T (False); ``parents``: cp --parents."""
    if not srcs:
        raise CopyError(f"missing destination file operand after {show(dst)}")
    dst_is_dir = _target(dst, len(srcs), target_is_dir, parents)
    dst_st = _try_stat(dst, follow=True)
    plans = []
    for src in srcs:
        follow = deref_top or src.endswith(b"/")
        try:
            sst = os.stat(src, follow_symlinks=follow)
        except OSError as e:
            raise CopyError(f"cannot stat {show(src)}: {os.strerror(e.errno or 0)}") from None
        src_parent, src_name = _split(src)
        made: tuple[tuple[bytes, bytes], ...] = ()
        if parents:
            rel = src.lstrip(b"/")
            rel_dir, name = os.path.split(rel.rstrip(b"/"))
            dst_parent, dst_name = (join(dst, rel_dir) if rel_dir else dst), name or src_name
            target = join(dst_parent, dst_name)
            made = _parent_chain(src, rel_dir, dst)
        elif dst_is_dir:
            dst_parent, dst_name = dst, src_name
            target = join(dst, src_name)
        else:
            _dst_of(src, sst, dst, dst_st)
            dst_parent, dst_name = _split(_through_link(dst, sst))
            target = dst
        if src_name in (b".", b"..") and not dst_is_dir:
            dst_parent, dst_name = _split(dst)
        t_l = _try_stat(target, follow=False)
        t_f = _try_stat(target, follow=True)
        s_f = sst if follow else _try_stat(src, follow=True)
        # the same inode, or a SRC symlink resolving to DST (copying it over
        # DST would leave a link to itself): cp refuses both
        if _same(sst, t_l) or _same(sst, t_f) or (s_f is not None and _same(s_f, t_l)):
            raise CopyError(f"{show(src)} and {show(target)} are the same file")
        pst = _try_stat(dst_parent, follow=True)
        if not made and (pst is None or not S.S_ISDIR(pst.st_mode)):
            kind = "directory" if S.S_ISDIR(sst.st_mode) else "regular file"
            reason = os.strerror(E.ENOENT if pst is None else E.ENOTDIR)
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
            raise CopyError(f"cannot overwrite directory {show(target)} with non-directory")
        shown = dst_parent if dst_is_dir else shown_parent(dst_parent, dst)
        if follow and is_dir and S.S_ISLNK(os.lstat(src.rstrip(b"/") or b"/").st_mode):
            # a followed symlink to a directory: opened through the link
            # itself ("link/."), named after it at the destination
            src_parent, src_name = src.rstrip(b"/") + b"/", b"."
        plans.append(
            Plan(src, src_parent, src_name, dst_parent, dst_name, is_dir, shown, follow, made)
        )
    return plans


def _parent_chain(src: bytes, rel_dir: bytes, dst: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """cp --parents: (source directory, destination directory) for each
    component of SRC's directory part, outermost first."""
    out = []
    parts = [p for p in rel_dir.split(b"/") if p]
    src_root = b"/" if src.startswith(b"/") else b""
    for k in range(1, len(parts) + 1):
        sub = b"/".join(parts[:k])
        out.append((src_root + sub, join(dst, sub)))
    return tuple(out)


def _through_link(dst: bytes, sst: os.stat_result) -> bytes:
    """The DST operand is the user's own path: when it is a symlink and SRC
    is not a directory or a symlink kept as one, cp writes through it (to
    the file it names), and refuses a dangling one."""
    lst = _try_stat(dst, follow=False)
    if lst is None or not S.S_ISLNK(lst.st_mode) or S.S_ISDIR(sst.st_mode):
        return dst
    if S.S_ISLNK(sst.st_mode):
        return dst  # a symlink copied as one replaces the link, as cp does
    if _try_stat(dst, follow=True) is None:
        raise CopyError(f"not writing through dangling symlink {show(dst)}")
    return os.path.realpath(dst)
