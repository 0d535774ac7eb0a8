"""The hard-link table: multiply-linked source inodes, keyed by (dev, ino).
The first name met is copied; the others become hard links to that copy
once it is complete.  The table lives in the walker alone, so it stays right
with any number of workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from uringsync import engine
from uringsync.engine import Stat

if TYPE_CHECKING:
    from uringsync.walker.dirs import Dir
    from uringsync.walker.dispatch import Dispatch as Below  # for mypy: the roles after it
else:
    Below = object  # at run time: no base (Walker's MRO, core.py)

InodeKey = tuple[int, int, int]  # (dev major, dev minor, ino)


class LinkGroup:
    """The names met so far of one multiply-linked source inode.  The first
    name is copied; the others become hard links to that copy once it is
    complete (they wait meanwhile).  If the copy fails, the next name is
    copied instead, so the data is written once per inode."""

    __slots__ = (
        "digest",
        "dir",
        "dst_ino",
        "key",
        "members",
        "name_c",
        "nlink",
        "path",
        "same",
        "seen",
        "st",
        "state",
        "waiting",
        "xa",
    )
    QUEUED, DONE, FAILED = range(3)

    def __init__(self, key: InodeKey, d: Dir, name: bytes, st: Stat) -> None:
        self.key = key
        self.dir = d
        self.name_c = engine.c_name(name)
        self.st = st
        self.nlink = int(st.nlink)
        self.seen = 1
        self.state = LinkGroup.QUEUED
        self.waiting: list[tuple[Dir, bytes]] = []
        # sync -H: the name's path from the transfer root, and the
        # destination inode its twins must share (None: link them all again)
        self.path = b""
        self.dst_ino: InodeKey | None = None
        self.same: list[tuple[Dir, bytes, bytes]] = []  # twins waiting for -c's verdict
        self.xa = 0  # sync -H: the D_ACL/D_XATTR bits of the leader's old file
        self.members: list[Any] = []  # sync -H: the names met, until decided (sync.Member)
        self.digest = b""  # sync -c: the leader's data, found equal at both ends


class Links(Below):
    """The walker's hard-link role."""

    inodes: dict[InodeKey, LinkGroup]

    def _group_for(self, d: Dir, name: bytes, st: Stat) -> LinkGroup | None:
        """The hard-link group of a multiply-linked entry.  Returns the group
        when this name must be copied (the first, or the next after a failed
        copy); None when it is (or will be) linked to the copy."""
        key = (int(st.dev_major), int(st.dev_minor), int(st.ino))
        g = self.inodes.get(key)
        if g is None:
            g = LinkGroup(key, d, name, engine.copy_stat(st))
            self.inodes[key] = g
            return g
        g.seen += 1
        if g.state == LinkGroup.FAILED:
            g.dir, g.name_c, g.state = d, engine.c_name(name), LinkGroup.QUEUED
            return g
        d.pending += 1
        if g.state == LinkGroup.DONE:
            self._queue_link(g, d, name)
        else:
            g.waiting.append((d, name))
        return None

    def _queue_link(self, g: LinkGroup, d: Dir, name: bytes) -> None:
        self._queue(d, g.name_c, name, g.st, engine.T_HARDLINK, self.job_flags, None, g.dir)
        if g.seen >= g.nlink and not g.waiting:
            self.inodes.pop(g.key, None)  # every name is met: forget the inode

    def _group_done(self, g: LinkGroup, ok: bool) -> None:
        """The group's copy finished: link the waiting names to it, or copy
        the next waiting name if it failed.  Queues: only at safe points."""
        if ok:
            g.state = LinkGroup.DONE
            waiting, g.waiting = g.waiting, []
            for d, name in waiting:
                self._queue_link(g, d, name)
            if g.seen >= g.nlink:
                self.inodes.pop(g.key, None)
            return
        g.state = LinkGroup.FAILED
        if g.waiting:
            d, name = g.waiting.pop(0)
            g.dir, g.name_c, g.state = d, engine.c_name(name), LinkGroup.QUEUED
            self._queue(d, name, name, g.st, g.st.type, self.job_flags, g)
