"""File systems and process state: tmpfs, ramfs and loop-mounted file systems,
commands that must succeed, open fd counts."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.base import O_DIR, PathLike, b


def mount_tmpfs(path: PathLike, size: str | None = None) -> str | None:
    """Mount a tmpfs at path; return None on success, else the reason."""
    opts = ["-o", f"size={size}"] if size else []
    p = subprocess.run(
        ["mount", "-t", "tmpfs", *opts, "tmpfs", b(path)], capture_output=True, check=False
    )
    if p.returncode != 0:
        return f"mount -t tmpfs failed: {p.stderr.decode(errors='replace').strip()}"
    return None


def umount(path: PathLike) -> None:
    subprocess.run(["umount", "-l", b(path)], capture_output=True, check=False)


def mount_ramfs(path: PathLike) -> str | None:
    """Mount a ramfs (no xattrs at all) at path; None on success, else the reason."""
    p = subprocess.run(["mount", "-t", "ramfs", "ramfs", b(path)], capture_output=True, check=False)
    if p.returncode != 0:
        return f"mount -t ramfs failed: {p.stderr.decode(errors='replace').strip()}"
    return None


@contextlib.contextmanager
def loop_fs(fstype: str, image_dir: PathLike, size: str = "600M") -> Iterator[bytes]:
    """Make a `fstype` file system in an image file and mount it (loop).

    Skips the test, with the reason printed, if mkfs is missing or mounting
    fails.  Always unmounts and detaches the loop device afterwards.
    """
    mkfs = {
        "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
        "btrfs": ["mkfs.btrfs", "-q", "-f"],
        "ext2": ["mkfs.ext2", "-q", "-F"],
        "ext4": ["mkfs.ext4", "-q", "-F"],
    }[fstype]
    if shutil.which(mkfs[0]) is None:
        reason = f"{mkfs[0]} is not installed (apt-get install {fstype}progs)"
        print("SKIP:", reason)
        pytest.skip(reason)
    d = b(image_dir)
    img = os.path.join(d, fstype.encode() + b".img")
    mnt = os.path.join(d, fstype.encode() + b"-mnt")
    os.makedirs(mnt, exist_ok=True)
    subprocess.run([b"truncate", b"-s", size.encode(), img], check=True)
    p = subprocess.run([*[m.encode() for m in mkfs], img], capture_output=True, check=False)
    if p.returncode != 0:
        reason = f"{mkfs[0]} failed: {p.stderr.decode(errors='replace').strip()}"
        print("SKIP:", reason)
        pytest.skip(reason)
    mount = [b"mount", b"-t", fstype.encode(), b"-o", b"loop", img, mnt]
    p = subprocess.run(mount, capture_output=True, check=False)
    if p.returncode != 0:
        os.unlink(img)
        reason = f"mount -t {fstype} -o loop failed: {p.stderr.decode(errors='replace').strip()}"
        print("SKIP:", reason)
        pytest.skip(reason)
    try:
        yield mnt
    finally:
        if subprocess.run([b"umount", mnt], capture_output=True, check=False).returncode:
            subprocess.run([b"umount", b"-l", mnt], capture_output=True, check=False)
        # mount -o loop sets autoclear; detach only what is still on our image
        loops = subprocess.run(
            [b"losetup", b"-j", img], capture_output=True, check=False
        ).stdout.splitlines()
        for ln in loops:
            dev = ln.split(b":", 1)[0]
            subprocess.run([b"losetup", b"-d", dev], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            os.unlink(img)


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_ok(*cmd: PathLike) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([b(c) for c in cmd], capture_output=True, check=False)
    assert p.returncode == 0, f"{cmd!r} failed ({p.returncode}): {p.stderr!r}"
    return p


class Dirs:
    """src/ and dst/ under a base directory, with open fds, closed at the end
    (the ``dirs`` fixture)."""

    def __init__(self, base: bytes) -> None:
        self.src = base + b"/src"
        self.dst = base + b"/dst"
        os.makedirs(self.src, exist_ok=True)
        os.makedirs(self.dst, exist_ok=True)
        self.sfd = os.open(self.src, O_DIR)
        self.dfd = os.open(self.dst, O_DIR)

    def s(self, name: bytes) -> bytes:
        return self.src + b"/" + name

    def d(self, name: bytes) -> bytes:
        return self.dst + b"/" + name

    def close(self) -> None:
        os.close(self.sfd)
        os.close(self.dfd)


def takes_o_direct(directory: bytes) -> bool:
    """Whether the file system of ``directory`` opens files O_DIRECT (a
    probe file made and removed there)."""
    probe = os.path.join(directory, b".odirect-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600))
    except OSError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)
    return True
