"""Copy options, as cp takes them, to what the engine needs: which
attributes to keep (-a, -p, --preserve=LIST), --sparse and --reflink, turned
into the engine's flag word (``US_P_*``, ``US_F_*``) and mode masks.  The one
place those words are made: the CLI and the API check and parse the options
here, the walker gets its flags from here.  It imports only the binding."""

from __future__ import annotations

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


class CopyError(Exception):
    """A usage or fatal error: nothing was copied.  ``str()`` is the message."""


def parse_preserve(spec: str) -> set[str]:
    """``--preserve=mode,ownership,...`` as cp takes it."""
    out: set[str] = set()
    for word in filter(None, (w.strip() for w in spec.split(","))):
        if word not in PRESERVE_NAMES:
            raise CopyError(f"invalid argument {word!r} for '--preserve'")
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
class EngineFlags:
    """What every job of a copy carries (the destination adds its reflink
    choice, :func:`reflink_flags`)."""

    flags: int  # US_P_* | US_F_*
    mode_mask: int  # a new file's mode: the source's & mode_mask
    dir_mode_mask: int  # a directory's


def engine_flags(
    *,
    owner: bool,
    mode: bool,
    times: bool,
    xattr: bool,
    acl: bool,
    sparse: str,
    root: bool,
    umask: int,
) -> EngineFlags:
    flags = (
        (engine.P_OWNER if owner else 0)
        | (engine.P_MODE if mode else 0)
        | (engine.P_TIMES if times else 0)
        | (engine.F_STRICT_OWNER if root else 0)  # root: a failed chown is an error
        | (engine.P_XATTR if xattr else 0)
        | (engine.P_ACL if acl else 0)
        | _SPARSE[sparse]
    )
    # Without --preserve=mode, as cp: a new file gets the source's mode less
    # umask and no special bits; a directory keeps only its sticky bit.
    return EngineFlags(
        flags,
        FULL_MODE if mode else FILE_MODE & ~umask,
        FULL_MODE if mode else DIR_MODE & ~umask,
    )


def reflink_flags(reflink: str, clones: bool) -> int:
    """--reflink on a destination that can (``clones``) or cannot clone."""
    if reflink == "always":
        return engine.F_REFLINK_REQUIRE
    if reflink == "auto" and clones:
        return engine.F_REFLINK_TRY
    return 0
