"""rsync's ``--itemize-changes`` lines (``%i %n%L``) for what a sync decided about one entry.

Pure: it knows nothing of the file system or of the rest of uringsync.  The caller
describes one entry's outcome as a :class:`Change`; :func:`line` gives the bytes
``rsync -i`` prints for it (no newline).  The rules follow rsync's log.c and were
checked against rsync 3.x itself (tests/test_itemize.py), as a local transfer
(``rsync SRC/ DST/``) prints them:

* The 11 letters are ``YXcstpoguax``.  Y: ``>`` a regular file's data is received,
  ``c`` a local creation or change (new dir, symlink, device, special; a symlink's or
  device's changed value), ``h`` a hard link (``-H``), ``.`` nothing transferred,
  ``*`` a message (``*deleting``).  X: ``f d L D S``.
* A new entry shows ``+++++++++``.  An entry replacing one of another type (file
  over directory, symlink over file...) is new too: rsync prints no ``*deleting``
  line for what it replaced (only for a replaced directory's contents).
* When Y is ``.``, ``c`` or ``h`` and no attribute letter is set, the dots turn to
  spaces: ``.f          name`` (an unchanged entry, shown only with ``-ii``) or
  ``hf          name => other`` (an existing file re-linked to its twin).
* ``t`` is ``T`` when the time is set to the transfer time (no ``--times``).
  The ``u`` column is ``u`` (atime), ``n`` (crtime) or ``b`` (both).
* ``%L`` is `` -> target`` for symlinks and `` => target`` for a hard link being
  made; a hard link that is already in place (``-ii``) has no ``=>`` part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["create", "update", "meta", "delete", "hardlink", "unchanged"]
FType = Literal["f", "d", "L", "D", "S"]

_FTYPES = frozenset("fdLDS")
_KINDS = frozenset({"create", "update", "meta", "delete", "hardlink", "unchanged"})


@dataclass(frozen=True)
class Change:
    """One entry's outcome, as a sync decided it.

    kind:
      ``create``    the entry is new at the destination (or replaces one of another type);
      ``update``    a regular file's data is transferred (``>f``), or a symlink's target,
                    a device's numbers or a special file's value changed (``cL``/``cD``/
                    ``cS``: the ``c`` letter is implied);
      ``meta``      nothing transferred, only the flagged attributes change (``.``);
      ``delete``    removed with ``--delete`` (``*deleting``);
      ``hardlink``  linked to ``target``, an entry of this transfer (``-H``); new
                    (``hf+++++++++``) unless ``existed`` (then the attribute letters);
      ``unchanged`` nothing at all (what ``-ii`` shows).
    path: relative to the transfer root; directories end in ``/`` (the root is ``./``).
    target: the symlink's value, or the hard link's other name (both as rsync shows them).
    """

    kind: Kind
    ftype: FType
    path: bytes
    target: bytes | None = None
    checksum: bool = False  # c: -c checksum differs (files); changed value (L, D, S)
    size: bool = False  # s
    time: bool = False  # t
    transfer_time: bool = False  # T: mtime set to the transfer time (no --times)
    perms: bool = False  # p
    owner: bool = False  # o
    group: bool = False  # g
    atime: bool = False  # u (b with crtime)
    crtime: bool = False  # n (b with atime)
    acl: bool = False  # a
    xattr: bool = False  # x
    existed: bool = False  # hardlink only: the destination name held a file already

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")
        if self.ftype not in _FTYPES:
            raise ValueError(f"unknown file type {self.ftype!r}")
        if (self.ftype == "d") != self.path.endswith(b"/"):
            raise ValueError("a directory's path, and only it, ends in '/'")
        if self.kind == "update" and self.ftype == "d":
            raise ValueError("a directory has no data to update; use kind='meta'")
        if self.kind == "hardlink" and self.ftype != "f":
            raise ValueError("only regular files are hard-linked")
        if self.target is not None and self.ftype != "L" and self.kind != "hardlink":
            raise ValueError("a target belongs to a symlink or a hard link")
        if self.kind in ("unchanged", "delete") and _attrs(self) != b"." * 9:
            raise ValueError(f"a {self.kind} entry has no changed attribute")


def _update_type(c: Change) -> bytes:
    if c.kind == "hardlink":
        return b"h"
    if c.kind in ("create", "update"):
        return b">" if c.ftype == "f" else b"c"
    return b"."  # meta, unchanged


def _attrs(c: Change) -> bytes:
    """The nine letters after YX, before the + / space rules."""
    value_changed = c.checksum or (c.kind == "update" and c.ftype != "f")
    both = c.atime and c.crtime
    letters = [
        "c" if value_changed else ".",
        "s" if c.size else ".",
        "T" if c.transfer_time else "t" if c.time else ".",
        "p" if c.perms else ".",
        "o" if c.owner else ".",
        "g" if c.group else ".",
        "b" if both else "u" if c.atime else "n" if c.crtime else ".",
        "a" if c.acl else ".",
        "x" if c.xattr else ".",
    ]
    return "".join(letters).encode()


def itemize(c: Change) -> bytes:
    """The ``%i`` field alone: 11 bytes (``*deleting`` padded with spaces)."""
    if c.kind == "delete":
        return b"*deleting  "
    attrs = _attrs(c)
    y = _update_type(c)
    if c.kind == "create" or (c.kind == "hardlink" and not c.existed):
        attrs = b"+" * 9
    elif y in b".ch" and attrs == b"." * 9:
        attrs = b" " * 9
    return y + c.ftype.encode() + attrs


def line(c: Change) -> bytes:
    """rsync's ``-i`` line (``%i %n%L``) for ``c``, without the newline."""
    tail = b""
    if c.kind != "delete" and c.target is not None:
        tail = (b" => " if c.kind == "hardlink" else b" -> ") + c.target
    return itemize(c) + b" " + c.path + tail


def unchanged_line(ftype: FType, path: bytes, target: bytes | None = None) -> bytes:
    """What ``rsync -ii`` prints for an entry it left alone (``.f          name``)."""
    return line(Change("unchanged", ftype, path, target=target))
