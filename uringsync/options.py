"""Copy options, as cp takes them, to what the engine needs: which
attributes to keep (-a, -p, --preserve=LIST), --sparse and --reflink, turned
into the engine's flag word (``US_P_*``, ``US_F_*``) and mode masks, and per
destination the data path.  The one place those words are made: the CLI and
the API check and parse the options here (:func:`copy_flags`), the walker
gets a :class:`CopyFlags` and asks :func:`data_path` per destination.  It
imports only the binding."""

from __future__ import annotations

import os
from dataclasses import dataclass

from uringsync import engine

PRESERVE_NAMES = ("mode", "ownership", "timestamps", "links", "context", "xattr", "all")
ARCHIVE = frozenset(PRESERVE_NAMES[:-1])  # -a: --preserve=all
KEEP_P = "mode,ownership,timestamps"  # -p
WHEN = ("auto", "always", "never")  # --sparse, --reflink
FULL_MODE = 0o7777  # with the mode preserved: every bit, set-id and sticky too
FILE_MODE = 0o777  # without: the permission bits less umask (cp's rule)
DIR_MODE = 0o1777  # ... and a directory keeps its sticky bit
_SPARSE = {"auto": engine.F_SPARSE_AUTO, "always": engine.F_SPARSE_ALWAYS, "never": 0}


class CopyError(OSError):
    """A usage or fatal error: nothing was copied.  ``str()`` is the message.

    An :class:`OSError`, as :mod:`shutil`'s errors are, so ``except OSError``
    catches it too; its ``errno`` is None (the message says what failed)."""


class ArgumentError(CopyError, ValueError):
    """An API argument with a value it cannot take (raised before anything
    is read or written): a :class:`ValueError` and a :class:`CopyError`."""


def parse_preserve(spec: str, option: str = "--preserve") -> set[str]:
    """``--preserve=mode,ownership,...`` as cp takes it."""
    out: set[str] = set()
    for word in filter(None, (w.strip() for w in spec.split(","))):
        if word not in PRESERVE_NAMES:
            raise CopyError(f"invalid argument {word!r} for {option!r}")
        out.update(ARCHIVE if word == "all" else (word,))
    return out


def with_p(preserve: str | None) -> str:
    """``-p``: --preserve=mode,ownership,timestamps plus what LIST names."""
    return KEEP_P + ("," + preserve if preserve else "")


def preserved(archive: bool, preserve: str | None) -> set[str]:
    """The attributes kept: -a's, and --preserve's."""
    keep: set[str] = set(ARCHIVE) if archive else set()
    if preserve:
        keep |= parse_preserve(preserve)
    return keep


def check_when(**choices: str) -> None:
    """--sparse=WHEN, --reflink=WHEN: auto, always or never."""
    for name, value in choices.items():
        if value not in WHEN:
            raise CopyError(f"invalid argument {value!r} for '--{name}'")


@dataclass(frozen=True)
class CopyFlags:
    """Everything the copy options decide, made once by :func:`copy_flags`:
    what every job carries, and what the walker asks of them."""

    flags: int  # every job's US_P_* | US_F_* (the destination adds its reflink choice)
    mode_mask: int  # a new file's mode: the source's & mode_mask
    dir_mode_mask: int  # a directory's
    links: bool  # keep hard links as links (-a, --preserve=links)
    acl: bool  # keep ACLs (cp keeps them with the mode)
    sparse: str  # auto | always | never
    reflink: str  # auto | always | never


def umask() -> int:
    """The process's umask, read without changing it (os.umask would, for a
    moment, for every thread)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    raise OSError("no Umask line in /proc/self/status")  # Linux < 4.7


def copy_flags(
    archive: bool,
    preserve: str | None,
    sparse: str = "auto",
    reflink: str = "auto",
    no_preserve: str | None = None,
) -> CopyFlags:
    """-a, --preserve=LIST, --sparse and --reflink (checked here) to the
    engine's flag word and mode masks, for this user and umask."""
    check_when(sparse=sparse, reflink=reflink)
    keep = preserved(archive, preserve)
    if no_preserve:
        keep -= parse_preserve(no_preserve, "--no-preserve")
    mode = "mode" in keep
    flags = (
        (engine.P_OWNER if "ownership" in keep else 0)
        | (engine.P_MODE if mode else 0)
        | (engine.P_TIMES if "timestamps" in keep else 0)
        | (engine.F_STRICT_OWNER if os.geteuid() == 0 else 0)  # root: a failed chown is an error
        | (engine.P_XATTR if "xattr" in keep else 0)
        | (engine.P_ACL if mode else 0)  # cp keeps ACLs with the mode
        | _SPARSE[sparse]
    )
    # Without --preserve=mode, as cp: a new file gets the source's mode less
    # umask and no special bits; a directory keeps only its sticky bit.
    mask = 0 if mode else umask()
    return CopyFlags(
        flags=flags,
        mode_mask=FULL_MODE if mode else FILE_MODE & ~mask,
        dir_mode_mask=FULL_MODE if mode else DIR_MODE & ~mask,
        links="links" in keep,
        acl=mode,
        sparse=sparse,
        reflink=reflink,
    )


@dataclass(frozen=True)
class DataPath:
    """Per destination file system: the reflink flags its jobs add, and the
    size from which files go through copy_file_range (NEVER: none)."""

    job_flags: int
    copy_range_min: int


def data_path(cf: CopyFlags, fs: int, copy_range_min: int | None = None) -> DataPath:
    """The data path and reflinks for a destination whose statfs type is
    ``fs`` (docs/design.md, "Choosing the data path per file");
    ``copy_range_min`` overrides the choice."""
    clones = engine.OFFLOAD_FS.get(fs) in ("btrfs", "xfs")
    if cf.reflink == "always":
        extra = engine.F_REFLINK_REQUIRE
    elif cf.reflink == "auto" and clones:
        extra = engine.F_REFLINK_TRY
    else:
        extra = 0
    if copy_range_min is None:
        # copy_file_range clones on btrfs/xfs: not with --reflink=never
        offload = fs in engine.OFFLOAD_FS and not (clones and cf.reflink == "never")
        copy_range_min = 0 if offload else engine.NEVER
    return DataPath(cf.flags | extra, copy_range_min)


@dataclass(frozen=True)
class SyncOptions:
    """What ``uringsync sync`` decides differently from ``cp``, with rsync's
    meaning (uringsync/syncargs.py parses the command line into these)."""

    perms: bool = False  # -p
    times: bool = False  # -t
    owner: bool = False  # -o
    group: bool = False  # -g
    symlinks: bool = False  # -l (else symlinks are skipped)
    devices: bool = False  # --devices
    specials: bool = False  # --specials
    hard_links: bool = False  # -H
    acls: bool = False  # -A
    xattrs: bool = False  # -X
    dry_run: bool = False  # -n
    checksum: bool = False  # -c: wins over size_only, which wins over ignore_times
    size_only: bool = False
    ignore_times: bool = False  # -I
    update: bool = False  # -u
    ignore_existing: bool = False
    existing: bool = False
    inplace: bool = False
    # --delta: an updated file's blocks compared with its old version's, and
    # only those that differ written (atomic: into a clone of the old one)
    delta: bool = False
    block_size: int = 65536
    delete: bool = False
    delete_after: bool = False
    delete_excluded: bool = False
    max_delete: int | None = None
    itemize: int = 0  # -i given this many times (2: unchanged entries too)
    fsync: bool = False  # --fsync: files flushed before their rename, file systems at the end
    verify: bool = False  # --verify (ours): files hashed as read, read back from the disk
    # --manifest (ours): every regular file name of the transfer is looked at
    # (Options.on_name), none passed over unseen by the scan
    manifest: bool = False
    # -c reads the destination's data from the device, not the page cache
    # (uringsync verify: a check of the disk, not of memory)
    device_reads: bool = False


def sync_flags(so: SyncOptions) -> CopyFlags:
    """rsync's -p -t -o -g -A -X as the engine's flag word.  The engine sets
    owner and group together: either of -o/-g keeps both (docs/design.md)."""
    flags = (
        (engine.P_OWNER if so.owner or so.group else 0)
        | (engine.P_MODE if so.perms else 0)
        | (engine.P_TIMES if so.times else 0)
        | (engine.F_STRICT_OWNER if os.geteuid() == 0 and (so.owner or so.group) else 0)
        | (engine.P_XATTR if so.xattrs else 0)
        | (engine.P_ACL if so.acls else 0)
        | (engine.F_FSYNC if so.fsync else 0)
        | (engine.F_VERIFY if so.verify else 0)
        | engine.F_SPARSE_AUTO
    )
    # Without -p, as rsync: a new file gets the source's mode less umask;
    # an existing one keeps its own (the walker applies no mode to it).
    mask = 0 if so.perms else umask()
    return CopyFlags(
        flags=flags,
        mode_mask=FULL_MODE if so.perms else FULL_MODE & ~0o7000 & ~mask,
        dir_mode_mask=FULL_MODE if so.perms else FULL_MODE & ~0o7000 & ~mask,
        links=so.hard_links,
        acl=so.acls,
        sparse="auto",
        reflink="auto",
    )
