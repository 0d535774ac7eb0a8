"""What every part of the bench shares: units, the error that stops it, sizes
as text, quiet subprocesses, required tools, timestamps."""

from __future__ import annotations

import datetime
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
PAGE = 4096  # ext4 block and memory page

Say = Callable[[str], None]


class BenchError(Exception):
    """Stops the benchmark; the message says what to do about it."""


def say_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    """'4G', '64M', '512K', '1.5GiB', '4096' -> bytes (K, M, G, T are powers of 1024)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": KiB, "M": MiB, "G": GiB, "T": TiB}
    mult = units.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in units else t
    try:
        value = float(num)
    except ValueError:
        raise BenchError(
            f"bad size {text!r}: a number with an optional K, M, G or T suffix (powers of 1024)"
        ) from None
    if value < 0 or not math.isfinite(value):
        raise BenchError(f"bad size {text!r}: must be a positive number")
    return int(value * mult)


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def run_quiet(
    argv: Sequence[str | bytes | os.PathLike[str]],
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), capture_output=True, check=False)


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BenchError(
            f"{', '.join(missing)} not found: install it (Debian: apt-get install "
            f"{' '.join(sorted({PACKAGES.get(t, t) for t in missing}))})"
        )


# the Debian package of each tool the bench runs
PACKAGES = {
    "mkfs.ext4": "e2fsprogs",
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "cp": "coreutils",
    "rsync": "rsync",
    "tar": "tar",
    "fio": "fio",
    "xxh128sum": "xxhash",
}


def now() -> str:
    """UTC, to the second, ISO 8601: the timestamps in the JSON."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
