"""The steps of a copy that can fail, in one table.

Each step: the name errors and ``--json``'s ``op`` carry, the side of the
copy it touches (an error names that side's path; a source step's ENOENT
means the file vanished), the message template, whether it is reported once
per run, and whether it comes after the data (the file stays, complete).
Steps the C engine reports carry their ``US_OP_*`` macro name; the binding
(uringsync/engine.py) maps the codes to these rows.  The others are the
walker's own (directories, workers).

This module is plain data: it imports nothing of uringsync.
"""

from __future__ import annotations

import errno as E
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from uringsync.quote import quote

Side = Literal["source", "destination", "none"]


def show(path: bytes) -> str:
    """A path for a message, quoted as GNU cp quotes it (uringsync/quote.py):
    one line whatever its bytes."""
    return quote(path)


def join(a: bytes, b: bytes) -> bytes:
    """Display path of ``b`` inside ``a`` (paths are only for messages)."""
    if not a:
        return b
    return a + b if a.endswith(b"/") else a + b"/" + b


@dataclass(frozen=True)
class Step:
    """One step that can fail.  ``template`` is ``str.format``-ed with
    ``src``, ``dst`` (shown paths) and ``kind`` (the file's kind in words);
    ``by_errno`` holds other templates for particular errnos."""

    name: str
    side: Side
    template: str
    c_name: str | None = None  # US_OP_* of csrc/api.h; None: a walker step
    once: bool = False  # reported once per (step, errno): one line, not one per file
    after_data: bool = False  # fails after the data is in: the file stays, complete
    with_reason: bool = True  # the message ends with ': strerror(errno)'
    by_errno: MappingProxyType[int, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def source(self) -> bool:
        return self.side == "source"

    def what(self, src: bytes, dst: bytes, err: int = 0, kind: str = "regular file") -> str:
        """The message's words (the reason is added by the reporter)."""
        template = self.by_errno.get(err, self.template)
        reason = os.strerror(err) if err else ""  # for a step whose words hold it
        return template.format(src=show(src), dst=show(dst), kind=kind, reason=reason)


def _step(
    name: str,
    side: Side,
    template: str,
    c_name: str | None = None,
    *,
    once: bool = False,
    after_data: bool = False,
    with_reason: bool = True,
    by_errno: dict[int, str] | None = None,
) -> Step:
    return Step(
        name, side, template, c_name, once, after_data, with_reason,
        MappingProxyType(by_errno or {}),
    )  # fmt: skip


SRC: Side = "source"
DST: Side = "destination"
NONE: Side = "none"

# fmt: off
STEPS: tuple[Step, ...] = (
    # ---- the C engine's steps, in US_OP_* order
    _step("none", DST, "none {dst}", "US_OP_NONE"),
    _step("open", SRC, "cannot open {src} for reading", "US_OP_OPEN_SRC"),
    _step("create", DST, "cannot create {kind} {dst}", "US_OP_OPEN_DST",
          by_errno={E.EISDIR: "cannot overwrite directory {dst} with non-directory"}),
    _step("read", SRC, "error reading {src}", "US_OP_READ"),
    _step("write", DST, "error writing {dst}", "US_OP_WRITE"),
    _step("copy_file_range", DST, "error copying {src} to {dst}", "US_OP_COPY_RANGE"),
    _step("chown", DST, "failed to preserve ownership for {dst}", "US_OP_CHOWN",
          after_data=True),
    _step("chmod", DST, "preserving permissions for {dst}", "US_OP_CHMOD", after_data=True),
    _step("utimens", DST, "preserving times for {dst}", "US_OP_UTIMES", after_data=True),
    _step("close", DST, "failed to close {dst}", "US_OP_CLOSE"),
    _step("readlink", SRC, "cannot read symbolic link {src}", "US_OP_READLINK"),
    _step("symlink", DST, "cannot create symbolic link {dst}", "US_OP_SYMLINK"),
    _step("unlink", DST, "cannot remove {dst}", "US_OP_UNLINK"),
    _step("stat", SRC, "cannot stat {src}", "US_OP_STAT"),
    _step("type", DST, "cannot copy {src}", "US_OP_TYPE"),
    # the reason is in the words: ESTALE's text would mislead
    _step("src_changed", SRC, "skipping {src}, as it was replaced while being copied",
          "US_OP_SRC_CHANGED", with_reason=False),
    # a destination that refuses xattrs would otherwise print one line per file
    _step("xattr_list", DST, "cannot list extended attributes for {dst}", "US_OP_XATTR_LIST",
          once=True, after_data=True),
    _step("xattr_get", DST, "cannot read extended attributes for {dst}", "US_OP_XATTR_GET",
          once=True, after_data=True),
    _step("xattr_set", DST, "setting extended attributes for {dst}", "US_OP_XATTR_SET",
          once=True, after_data=True),
    _step("mknod", DST, "cannot create special file {dst}", "US_OP_MKNOD"),
    _step("link", DST, "cannot create hard link {dst}", "US_OP_LINK"),
    _step("clone", DST, "failed to clone {dst} from {src}", "US_OP_CLONE"),
    _step("seek", DST, "cannot find the holes of {src}", "US_OP_SEEK"),
    _step("truncate", DST, "cannot set the size of {dst}", "US_OP_TRUNCATE"),
    _step("stopped", DST, "stopped while copying {src}", "US_OP_STOPPED"),
    _step("rename", DST, "cannot rename {dst}", "US_OP_RENAME"),
    _step("fsync", DST, "cannot flush {dst} to disk", "US_OP_FSYNC"),
    # EBADMSG: what the disk gave back is not what was read from {src}
    _step("verify", DST, "cannot verify {dst}: {reason}", "US_OP_VERIFY", with_reason=False,
          by_errno={E.EBADMSG: "verifying {dst}: the data read back from the disk differs "
                               "from what was read from {src}"}),
    _step("record", DST, "cannot record the progress of {dst} for a resume", "US_OP_RECORD"),
    _step("backup", DST, "cannot backup {dst}", "US_OP_BACKUP"),
    _step("link_to", DST, "cannot create hard link {dst} to {src}", "US_OP_LINK_TO"),
    _step("symlink_to", DST, "cannot create symbolic link {dst} to {src}", "US_OP_SYMLINK_TO"),
    _step("same_file", DST, "{src} and {dst} are the same file", "US_OP_SAME_FILE",
          with_reason=False),
    # cp -s with a relative SRC: the reason is in the words (cp quotes the name only if it must)
    _step("symlink_relative", DST, "{dst}: can make relative symbolic links only in current "
          "directory", with_reason=False),
    # ---- the walker's steps (one path: pass it as both src and dst)
    _step("opendir", SRC, "cannot open directory {src}"),
    _step("readdir", SRC, "cannot read directory {src}"),
    _step("mkdir", DST, "cannot create directory {dst}"),
    _step("opendir_dst", DST, "cannot open directory {dst}",
          by_errno={E.ENOTDIR: "cannot overwrite non-directory {dst} with directory {src}",
                    E.ELOOP: "cannot overwrite non-directory {dst} with directory {src}"}),
    _step("syncfs", DST, "cannot flush the file system of {dst} to disk"),
    # the reason is in the words (which worker, how it died)
    _step("worker", NONE, "{dst} not copied: its workers died", with_reason=False),
    # cp -L: a symlink whose target cannot be stat'ed (dangling: not "vanished")
    _step("follow", NONE, "cannot stat {src}"),
    # a code C does not know of (never expected)
    _step("copy", DST, "copy {dst}"),
    _step("meta", DST, "meta {dst}"),
)
# fmt: on

BY_NAME: MappingProxyType[str, Step] = MappingProxyType({s.name: s for s in STEPS})

OPENDIR = BY_NAME["opendir"]
READDIR = BY_NAME["readdir"]
MKDIR = BY_NAME["mkdir"]
OPENDIR_DST = BY_NAME["opendir_dst"]
SYNCFS = BY_NAME["syncfs"]
WORKER = BY_NAME["worker"]
STAT = BY_NAME["stat"]
TYPE = BY_NAME["type"]
NONE_STEP = BY_NAME["none"]
CLOSE = BY_NAME["close"]
SRC_CHANGED = BY_NAME["src_changed"]
FOLLOW = BY_NAME["follow"]
UNLINK = BY_NAME["unlink"]
TRUNCATE = BY_NAME["truncate"]
RENAME = BY_NAME["rename"]
READLINK = BY_NAME["readlink"]
SYMLINK_RELATIVE = BY_NAME["symlink_relative"]
UNKNOWN_JOB = BY_NAME["copy"]  # a job's code missing from the table
UNKNOWN_META = BY_NAME["meta"]  # a metadata call's code missing from the table

# Names of the steps on the source side: ENOENT there means "vanished".
SOURCE_NAMES = frozenset(s.name for s in STEPS if s.source)
