"""Manifests: one line per regular file name, its XXH3-128 digest and its
path relative to DST, in the format ``xxh128sum`` writes and ``xxh128sum -c``
checks (GNU checksum style, as ``sha256sum`` and coreutils).

``<32 hex digits>  <path>``; a path with a backslash or a newline is
escaped (``\\\\``, ``\\n``) and its line starts with a backslash, as
``sha256sum`` and xxhsum 0.8.2 write it.  Read back: the same, and the
binary-mode marker (``<hex> *<path>``) that ``xxh128sum -b`` writes.
"""

from __future__ import annotations

import errno as E
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

from uringsync import engine

DIGEST_LEN = 16
CHUNK = 1024  # paths hashed per engine batch (their directories open at once)
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class ManifestError(ValueError):
    """A line that is not a manifest line (the message says which)."""


def _needs_escape(path: bytes) -> bool:
    return b"\\" in path or b"\n" in path


def _escape(path: bytes) -> bytes:
    return path.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")


def line(path: bytes, digest: bytes) -> bytes:
    """The manifest line of ``path`` (relative to DST) with ``digest``
    (16 bytes, canonical order), newline included."""
    if _needs_escape(path):
        return b"\\" + digest.hex().encode() + b"  " + _escape(path) + b"\n"
    return digest.hex().encode() + b"  " + path + b"\n"


def result_line(path: bytes, outcome: bytes) -> bytes:
    """What a check prints for ``path``: ``PATH: FAILED`` (``outcome``), the
    path escaped as in a manifest line (``\\PATH`` then), as ``sha256sum -c``
    prints it; no newline."""
    if _needs_escape(path):
        return b"\\" + _escape(path) + b": " + outcome
    return path + b": " + outcome


def _unescape(name: bytes, lineno: int) -> bytes:
    out = bytearray()
    i = 0
    while i < len(name):
        c = name[i : i + 1]
        if c == b"\\":
            nxt = name[i + 1 : i + 2]
            if nxt == b"\\":
                out += b"\\"
            elif nxt == b"n":
                out += b"\n"
            else:
                raise ManifestError(f"line {lineno}: a backslash escapes only \\ and n")
            i += 2
        else:
            out += c
            i += 1
    return bytes(out)


def parse(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(path, digest) of each line of a manifest, in order; blank lines
    are skipped.  Raises ManifestError at the first line that is not one."""
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw:
            continue
        escaped = raw.startswith(b"\\")
        body = raw[1:] if escaped else raw
        hexpart, sep, rest = body.partition(b" ")
        if not sep or rest[:1] not in (b" ", b"*") or len(rest) < 2:
            raise ManifestError(f"line {n}: not '<digest>  <path>'")
        try:
            digest = bytes.fromhex(hexpart.decode("ascii"))
        except ValueError:
            raise ManifestError(f"line {n}: the digest is not hexadecimal") from None
        if len(digest) != DIGEST_LEN:
            raise ManifestError(f"line {n}: not an XXH3-128 digest (32 hex digits)")
        path = rest[1:]
        yield (_unescape(path, n) if escaped else path), digest


class Writer:
    """A manifest being written: ``add(path, digest)`` per name, paths made
    relative to ``root`` (DST: its own name when DST is the file itself)."""

    def __init__(self, path: bytes | str, root: bytes) -> None:
        self.f: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.root = os.path.normpath(root)
        self.prefix = self.root.rstrip(b"/") + b"/"

    def add(self, path: bytes, digest: bytes) -> None:
        path = os.path.normpath(path)
        if path.startswith(self.prefix):
            path = path[len(self.prefix) :]
        elif path == self.root:
            path = os.path.basename(path)
        self.f.write(line(path, digest))

    def close(self) -> None:
        self.f.close()


def _open_dir(dst_fd: int, parts: Sequence[bytes], cache: dict[bytes, int]) -> int:
    """DST's subdirectory ``parts``, opened one name at a time without
    following a symlink (a manifest never leads outside DST)."""
    key = b"/".join(parts)
    fd = cache.get(key)
    if fd is not None:
        return fd
    fd = dst_fd if not parts else _open_dir(dst_fd, parts[:-1], cache)
    if parts:
        fd = os.open(parts[-1], O_DIR | os.O_NOFOLLOW, dir_fd=fd)
        cache[key] = fd
    return fd


def _split(path: bytes) -> tuple[list[bytes], bytes]:
    """A path's directories and name; ValueError when it would leave DST
    (absolute, or a ``..``)."""
    parts = [p for p in path.split(b"/") if p not in (b"", b".")]
    if path.startswith(b"/") or b".." in parts or not parts:
        raise ValueError(path)
    return parts[:-1], parts[-1]


Hashed = bytes | engine.JobError | OSError


def digests(
    ring: engine.Ring, dst_fd: int, paths: Iterable[bytes], flags: int = 0
) -> Iterator[tuple[bytes, Hashed]]:
    """(path, its digest) for each path relative to ``dst_fd``, in order,
    hashed on the engine ``CHUNK`` files at a time (``flags``: F_DEVICE reads
    past the page cache).  A path's directories are opened one name at a
    time, never following a symlink; a path that cannot be reached gets its
    OSError (EXDEV: it would leave DST), one that cannot be read the
    JobError of the failing step."""
    it = iter(paths)
    while True:
        chunk = [p for _, p in zip(range(CHUNK), it, strict=False)]
        if not chunk:
            return
        cache: dict[bytes, int] = {}
        out: list[tuple[bytes, Hashed]] = []
        fds: list[int] = []
        names: list[bytes] = []
        at: list[int] = []
        try:
            for path in chunk:
                try:
                    parts, name = _split(path)
                    fd = _open_dir(dst_fd, parts, cache)
                except ValueError:
                    out.append((path, OSError(E.EXDEV, "a path outside DST")))
                    continue
                except OSError as e:
                    out.append((path, e))
                    continue
                at.append(len(out))
                out.append((path, b""))
                fds.append(fd)
                names.append(name)
            got = engine.hash_files(ring, fds, names, flags)
        finally:
            for fd in cache.values():
                os.close(fd)
        for k, h in zip(at, got, strict=True):
            out[k] = (out[k][0], h)
        yield from out
