"""Checking a copy: the summary a correct copy shares with its source, and
``rsync -naHAXc`` for the rest."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

DIFF_SHOWN = 2000  # characters of rsync's list of differences kept in the error


@dataclass(frozen=True)
class Summary:
    """What a correct copy has the same of: names by type, bytes, link structure."""

    entries: int
    dirs: int
    files: int
    symlinks: int
    others: int
    bytes: int
    inodes: int  # distinct regular-file inodes
    linked: int  # regular-file names whose inode has several names


def walk(root: Path | bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """Every entry below ``root`` (not following symlinks): path, lstat."""
    stack = [os.fsencode(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                yield e.path, st


def summarize(root: Path | bytes) -> Summary:
    dirs = files = symlinks = others = nbytes = linked = 0
    inodes: set[int] = set()
    for _, st in walk(root):
        if stat.S_ISDIR(st.st_mode):
            dirs += 1
        elif stat.S_ISREG(st.st_mode):
            files += 1
            nbytes += st.st_size
            inodes.add(st.st_ino)
            linked += st.st_nlink > 1
        elif stat.S_ISLNK(st.st_mode):
            symlinks += 1
        else:
            others += 1
    entries = dirs + files + symlinks + others
    return Summary(entries, dirs, files, symlinks, others, nbytes, len(inodes), linked)


def check_copy(src: Path, copy: Path, expect: Summary, how: str) -> str | None:
    """None if ``copy`` is a correct copy of ``src``, else what is wrong.

    ``count``: same numbers of names by type, bytes and hard links;
    ``rsync``: also ``rsync -naHAXc --delete`` (contents, metadata, xattrs, ACLs)
    lists nothing; ``none``: no check.
    """
    if how == "none":
        return None
    if not os.path.isdir(copy):
        return f"{copy} is not a directory"
    got = summarize(copy)
    if got != expect:
        diffs = [
            f"{k} {v} (source {getattr(expect, k)})"
            for k, v in asdict(got).items()
            if v != getattr(expect, k)
        ]
        return "copy differs: " + ", ".join(diffs)
    if how == "rsync":
        p = subprocess.run(
            [
                b"rsync",
                b"-naHAXc",
                b"--delete",
                b"--itemize-changes",
                os.fsencode(src) + b"/",
                os.fsencode(copy) + b"/",
            ],
            capture_output=True,
            check=False,
        )
        if p.returncode != 0 or p.stdout.strip():
            out = (p.stdout + p.stderr).decode(errors="backslashreplace")
            return f"rsync -naHAXc lists differences ({p.returncode}): {out[:DIFF_SHOWN]}"
    return None
