"""A disk with bad sectors, for tests: real EIO from the kernel, no dm.

    image file --(FUSE: faultdisk_server.py, fails chosen requests)--> disk
    disk --(loop device, direct I/O, 4 KiB requests)--> ext4, mounted

``fault_disk()`` sets it all up and tears it all down (unmount, losetup -d,
fusermount3 -u, kill the server) even when the test fails.  The fault table
is switchable at run time (``FaultDisk.set_faults``): the server re-reads it
on each request.  Reads are aimed at a file's data with FIEMAP
(``fail_reads``); writes, whose blocks the allocator picks at run time, by
their content (``fail_writes_of``, see ``POISON``).

The server needs Debian's python3-pyfuse3 (the SYSTEM python, /usr/bin/python3)
and fuse3; the test is skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.base import ROOT, PathLike, b

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faultdisk_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
BLOCK = 4096  # the ext4 block size, and the loop device's largest request
# A 4 KiB block of this, at a 4 KiB-aligned file offset, is a block whose
# write the disk refuses once ``fail_writes_of(POISON_MARK)`` is set.
POISON_MARK = b"URINGSYNC-POISON"
POISON = POISON_MARK * (BLOCK // len(POISON_MARK))

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 1
FIEMAP_EXTENT_LAST = 1
_FM = struct.Struct("=QQLLLL")  # struct fiemap
_FE = struct.Struct("=QQQQQLLLL")  # struct fiemap_extent


def _run(*cmd: PathLike, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([b(c) for c in cmd], capture_output=True, check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}): {p.stderr!r}")
    return p


def why_not() -> str | None:
    """None when a fault disk can be made here, else why not."""
    if not ROOT:
        return "needs root (mount, losetup)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    for tool in ("fusermount3", "losetup", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install fuse3 util-linux e2fsprogs)"
    p = subprocess.run([SYSTEM_PYTHON, "-c", "import pyfuse3"], capture_output=True, check=False)
    if p.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import pyfuse3 (apt-get install python3-pyfuse3)"
    return None


def extents(path: PathLike) -> list[tuple[int, int, int]]:
    """(logical, physical, length) in bytes of a file's data (FIEMAP, synced first)."""
    out: list[tuple[int, int, int]] = []
    fd = os.open(b(path), os.O_RDONLY)
    try:
        start, n = 0, 64
        while True:
            buf = bytearray(_FM.size + n * _FE.size)
            _FM.pack_into(buf, 0, start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC, 0, n, 0)
            a = array.array("B", buf)
            fcntl.ioctl(fd, FS_IOC_FIEMAP, a, True)
            raw = a.tobytes()
            mapped = _FM.unpack_from(raw, 0)[3]
            last = False
            for i in range(mapped):
                lo, ph, ln, _r0, _r1, fl, *_ = _FE.unpack_from(raw, _FM.size + i * _FE.size)
                out.append((lo, ph, ln))
                start = lo + ln
                last = bool(fl & FIEMAP_EXTENT_LAST)
            if last or mapped == 0:
                return out
    finally:
        os.close(fd)


def disk_range(path: PathLike, off: int, length: int) -> list[tuple[int, int]]:
    """The disk byte ranges [start, end) that hold [off, off+length) of a file."""
    got = []
    for lo, ph, ln in extents(path):
        s, e = max(off, lo), min(off + length, lo + ln)
        if s < e:
            got.append((ph + s - lo, ph + e - lo))
    assert got, f"no data of {path!r} at [{off}, {off + length}) on disk"
    return got


def drop_caches() -> None:
    """So that reads really go to the disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class FaultDisk:
    """A mounted ext4 on a disk whose faults the test chooses (``fault_disk``)."""

    def __init__(self, workdir: bytes) -> None:
        self.dir = workdir
        self.image = os.path.join(workdir, b"disk.img")
        self.fuse_mnt = os.path.join(workdir, b"fuse")
        self.table = os.path.join(workdir, b"faults.json")
        self.log = os.path.join(workdir, b"faults.log")
        self.mnt = os.path.join(workdir, b"mnt")
        self.loop = b""
        self.server: subprocess.Popen[bytes] | None = None
        self.faults: list[dict[str, Any]] = []

    # ------------------------------------------------------------ faults

    def set_faults(self, faults: list[dict[str, Any]]) -> None:
        """Replace the table (atomically: the server never sees half of one)."""
        self.faults = list(faults)
        tmp = self.table + b".tmp"
        with open(tmp, "w") as f:
            json.dump({"faults": self.faults}, f)
        os.rename(tmp, self.table)

    def add_faults(self, faults: list[dict[str, Any]]) -> None:
        self.set_faults([*self.faults, *faults])

    def clear(self) -> None:
        self.set_faults([])

    def fail_reads(self, path: PathLike, off: int, length: int = BLOCK) -> None:
        """Reads of the disk blocks holding [off, off+length) of path fail."""
        self.add_faults(
            [{"op": "read", "start": s, "end": e} for s, e in disk_range(path, off, length)]
        )

    def fail_writes_of(self, mark: bytes = POISON_MARK) -> None:
        """Writes of any block containing ``mark`` fail (``POISON``)."""
        self.add_faults([{"op": "write", "match": mark.decode("latin-1")}])

    def corrupt_writes_of(self, mark: bytes = POISON_MARK) -> None:
        """Writes of any block containing ``mark`` succeed, but the disk keeps
        the block with a byte flipped (silent corruption)."""
        self.add_faults([{"op": "corrupt", "match": mark.decode("latin-1")}])

    def injected(self) -> list[str]:
        """The errors the disk returned so far: 'EIO read|write OFF LEN', and
        the writes it corrupted: 'CORRUPT write OFF LEN'."""
        try:
            with open(self.log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    # ---------------------------------------------------------- set-up

    def start(self, size: str, mkfs: list[str]) -> None:
        for d in (self.fuse_mnt, self.mnt):
            os.makedirs(d, exist_ok=True)
        _run("truncate", "-s", size, self.image)
        # mkfs on the image directly: thousands of 4 KiB requests through
        # the FUSE server would be slow
        _run("mkfs.ext4", "-q", "-F", "-b", str(BLOCK), *mkfs, self.image)
        self.set_faults([])
        self.server = subprocess.Popen(
            [SYSTEM_PYTHON, SERVER, self.image, self.fuse_mnt, self.table, self.log],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, b"server.err"), "wb"),  # noqa: SIM115
        )
        disk = os.path.join(self.fuse_mnt, b"disk")
        deadline = time.monotonic() + 60
        while not os.path.ismount(self.fuse_mnt):
            if self.server.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(self.dir, b"server.err"), "rb") as f:
                    raise RuntimeError(f"fault disk server did not mount: {f.read()!r}")
            time.sleep(0.05)
        self.loop = _run("losetup", "--direct-io=on", "-f", "--show", disk).stdout.strip()
        name = os.path.basename(self.loop).decode()
        # one 4 KiB block per request: a bad block fails only itself
        with open(f"/sys/block/{name}/queue/max_sectors_kb", "w") as f:
            f.write("4\n")

    def mount(self, opts: str = "") -> None:
        _run("mount", "-t", "ext4", *(["-o", opts] if opts else []), self.loop, self.mnt)

    def umount(self) -> None:
        if _run("umount", self.mnt, check=False).returncode:
            _run("umount", "-l", self.mnt, check=False)

    def remount(self, opts: str = "") -> None:
        """Unmount and mount again: nothing of the file system stays cached."""
        self.umount()
        self.mount(opts)

    def sysfs(self) -> str:
        """/sys/fs/ext4/<dev> of the mounted file system."""
        return "/sys/fs/ext4/" + os.path.basename(self.loop).decode()

    def stop(self) -> None:
        self.umount()
        if self.loop:
            _run("losetup", "-d", self.loop, check=False)
        if os.path.ismount(self.fuse_mnt):
            _run("fusermount3", "-u", "-z", self.fuse_mnt, check=False)
        if self.server is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(timeout=10)
            if self.server.poll() is None:
                self.server.kill()
                self.server.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.image)


@contextlib.contextmanager
def fault_disk(
    workdir: PathLike, size: str = "64M", mount_opts: str = "", mkfs: tuple[str, ...] = ()
) -> Iterator[FaultDisk]:
    """An ext4 on a fault disk, mounted at ``.mnt``; no faults yet.

    ``mkfs``: more mkfs.ext4 options.  Skips the test when it cannot be made
    here (``why_not``)."""
    reason = why_not()
    if reason:
        print("SKIP:", reason)
        pytest.skip(reason)
    d = FaultDisk(b(workdir))
    try:
        d.start(size, ["-E", "lazy_itable_init=0,lazy_journal_init=0", *mkfs])
        d.mount(mount_opts)
        yield d
    finally:
        d.stop()
