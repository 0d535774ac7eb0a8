"""The tree visit: directories depth first, listed and stat'ed several at
a time, each entry turned into a job (or a subdirectory, a hard link, a big
file's ranges); and a command-line SRC that is not a directory."""

from __future__ import annotations

import errno as E
import os
import re
from typing import TYPE_CHECKING

from uringsync import engine, steps
from uringsync.engine import Scan, Stat, ffi  # ffi: see _visit
from uringsync.walker.bigfiles import SECTOR
from uringsync.walker.dirs import Dir
from uringsync.walker.errors import Event, Stopped, join, show

if TYPE_CHECKING:
    from uringsync.walker.bigfiles import BigFiles as Below  # for mypy: the roles after it
else:
    Below = object  # at run time: no base (Walker's MRO, core.py)

SCAN_GROUP = 16  # directories listed and stat'ed together
SCAN_SHARE = 4  # ... holding at most this part of the directory budget open
UNSENT_SHARE = 2  # flush when unsent jobs pin this part of the directory budget
_SPECIAL = frozenset({engine.T_FIFO, engine.T_CHR, engine.T_BLK, engine.T_SOCK})
_COPYABLE = frozenset(
    {engine.T_REG, engine.T_LNK, engine.T_FIFO, engine.T_CHR, engine.T_BLK, engine.T_SOCK}
)


class Visit(Below):
    """The walker's visiting role."""

    def copy_dir(self, top: Dir, root: Dir) -> None:
        """Copy the directory ``root`` (a child of the pseudo-directory ``top``
        that holds the command-line parents' fds)."""
        top.pending += 1
        stack = [root]
        assert root.st is not None
        root_dev = (root.st.dev_major, root.st.dev_minor)
        per_scan = max(1, min(SCAN_GROUP, self.max_dirs // SCAN_SHARE))
        while stack:
            self._safe_point()
            if self.pinned >= self.max_dirs // UNSENT_SHARE:
                self.flush()  # unsent jobs hold half the directory budget
            # Several directories are listed and stat'ed at once (in
            # parallel when cold); they stay open meanwhile.
            group: list[Dir] = []
            while stack and len(group) < per_scan:
                d = stack.pop()
                if not self._create(d):
                    self._abandon(d)
                    continue
                self._hold(d)
                group.append(d)
            todo = [d for d in group if not d.skip_contents]
            try:
                found = self.ring.scan_many([d.src_fd for d in todo]) if todo else []
            except OSError:
                if engine.stop_requested():
                    raise Stopped from None
                raise
            scans: dict[Dir, Scan | OSError] = dict(zip(todo, found, strict=True))
            for d in group:
                self._release(d)
                subdirs = self._visit(d, root_dev, scans.get(d))
                stack.extend(reversed(subdirs))

    def _visit(self, d: Dir, root_dev: tuple[int, int], sc: Scan | OSError | None) -> list[Dir]:
        subdirs: list[Dir] = []
        if d.skip_contents or sc is None:
            d.scanned = True
            self._finish_dir(d)
            return subdirs
        if isinstance(sc, OSError):
            self.dir_error(d.src_path, steps.READDIR, sc)
            d.scanned = True
            self._finish_dir(d)
            return subdirs
        # ffi.addressof (from the binding) directly: one C call per entry,
        # no Python wrapper around it
        one_fs = self.opts.one_file_system
        split = self._can_split()
        split_min = self.split_min
        total = 0
        ignored = self._ignored(d, sc) if self.opts.ignore is not None else None
        on_special = self.opts.on_special
        for i, ent in enumerate(sc):
            if ignored and sc.name(i) in ignored:
                continue
            if ent.err:
                path = join(d.src_path, sc.name(i))
                step = steps.FOLLOW if self.opts.follow_links else steps.STAT
                self.error(path, step, -ent.err, step.what(path, path))
                continue
            st = ent.st
            t = st.type
            if t == engine.T_DIR:
                name = sc.name(i)
                if self.opts.follow_links and _cyclic(d, st.ino, st.dev_major, st.dev_minor):
                    path = join(d.src_path, name)
                    self.error(
                        path, steps.STAT, E.ELOOP, f"cannot copy cyclic symbolic link {show(path)}"
                    )
                    continue
                child = Dir(
                    d,
                    name,
                    name,
                    join(d.src_path, name),
                    join(d.dst_path, name),
                    engine.copy_stat(ffi.addressof(ent, "st")),
                )
                child.skip_contents = one_fs and (st.dev_major, st.dev_minor) != root_dev
                d.pending += 1
                subdirs.append(child)
            elif on_special is not None and t in _SPECIAL:
                name = sc.name(i)
                on_special(join(d.src_path, name), join(d.dst_path, name))
            elif t in _COPYABLE and self.job_flags & engine.F_LINK_EXCL:
                d.pending += 1  # cp -l, cp -s
                name = sc.name(i)
                self._link_to_src(d, name, name, ffi.addressof(ent, "st"), self.job_flags)
            elif t in _COPYABLE:
                group = None
                if t == engine.T_REG:
                    total += st.size
                if st.nlink > 1 and self.opts.flags.links:
                    group = self._group_for(d, sc.name(i), ffi.addressof(ent, "st"))
                    if group is None:
                        continue  # a later name of a copied inode: linked, not copied
                elif (
                    split
                    and t == engine.T_REG
                    and st.size >= split_min
                    and st.blocks * SECTOR >= st.size  # not sparse
                    and self._queue_big(d, sc.name(i), ffi.addressof(ent, "st"))
                ):
                    continue
                nm = sc.name_ptr(i)
                d.pending += 1
                self._queue(d, nm, nm, ffi.addressof(ent, "st"), t, self.job_flags, group)
            else:
                self._unknown_type(join(d.src_path, sc.name(i)))
        d.scanned = True
        if self.opts.progress:
            self.opts.progress(Event("scanned", src_dir=d.src_path, entries=sc.n, bytes=total))
        sc.free()  # the batches hold copies of the names and stats
        self._finish_dir(d)
        return subdirs

    def _ignored(self, d: Dir, sc: Scan) -> frozenset[bytes]:
        """The names of ``d`` that ``Options.ignore`` leaves out (asked once
        per directory, with every name listed, as shutil.copytree asks)."""
        assert self.opts.ignore is not None
        return frozenset(self.opts.ignore(d.src_path, [sc.name(i) for i in range(sc.n)]))

    def _link_to_src(self, d: Dir, src_name: bytes, dst_name: bytes, st: Stat, flags: int) -> None:
        """cp -l (a hard link to the source entry) and cp -s (a symbolic link
        whose value is the source's path as given: cp refuses a relative one
        unless the link is made in the current directory).  ``d.pending``
        already counts it."""
        if not flags & engine.F_SYMLINK_SRC:
            self._queue(d, src_name, dst_name, st, engine.T_HARDLINK, flags, None)
            return
        target = join(d.src_path, src_name)
        if not target.startswith(b"/"):
            here = os.stat(".")
            there = os.fstat(self._fds(d, need_src=False)[1])
            if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
                path = join(d.dst_path, dst_name)
                what = f"{_shown_f(path)}: {_RELATIVE}"
                self.error(path, steps.SYMLINK_RELATIVE, E.EINVAL, what)
                d.pending -= 1
                self._finish_dir(d)
                return
        self._queue(d, target, dst_name, st, engine.T_LNK, flags, None)

    def _unknown_type(self, path: bytes) -> None:
        what = steps.TYPE.what(path, path) + ": unknown type"
        self.error(path, steps.TYPE, E.EOPNOTSUPP, what)

    def copy_one(
        self, top: Dir, src_name: bytes, dst_name: bytes, st: Stat, follow: bool = False
    ) -> None:
        """A command-line SRC that is a file or a symlink (``follow``: the
        symlink's target, as cp does without -r)."""
        if st.type not in _COPYABLE:
            self._unknown_type(join(top.src_path, src_name))
            return
        flags = self.job_flags | (engine.F_FOLLOW_SRC if follow else 0)
        if flags & engine.F_LINK_EXCL:
            top.pending += 1  # cp -l, cp -s
            self._link_to_src(top, src_name, dst_name, st, flags)
            return
        group = None
        if st.nlink > 1 and self.opts.flags.links and not follow:
            group = self._group_for(top, dst_name, st)
            if group is None:
                return
        top.pending += 1
        self._queue(top, src_name, dst_name, st, st.type, flags, group)


_RELATIVE = "can make relative symbolic links only in current directory"


def _shown_f(path: bytes) -> str:
    """A name as cp's quotef shows it: quoted only when it needs to be."""
    return path.decode() if re.fullmatch(rb"[A-Za-z0-9/._+,:@%=^-]+", path) else show(path)


def _cyclic(d: Dir, ino: int, major: int, minor: int) -> bool:
    """cp -L: the directory (ino, dev) is ``d`` or one of its ancestors
    (a symlink back up the tree): copying it would never end."""
    node: Dir | None = d
    while node is not None:
        st = node.st
        if st is not None and (st.ino, st.dev_major, st.dev_minor) == (ino, major, minor):
            return True
        node = node.parent
    return False
