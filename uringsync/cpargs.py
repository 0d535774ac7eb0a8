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


def plan(srcs: Sequence[bytes], dst: bytes, recursive: bool, deref_top: bool) -> list[Plan]:
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
            raise CopyError(
                f"cannot overwrite directory {show(target)} with non-directory {show(src)}"
            )
        shown = dst_parent if dst_is_dir else shown_parent(dst_parent, dst)
        plans.append(Plan(src, src_parent, src_name, dst_parent, dst_name, is_dir, shown))
    return plans
