"""A FUSE file system serving ONE image file whose reads or writes fail with
EIO where a fault table says (tests/support/faultdisk.py drives it).

Run with the SYSTEM python (Debian's python3-pyfuse3 lives there, not in the
project's interpreter):

    /usr/bin/python3 faultdisk_server.py IMAGE MOUNTPOINT TABLE LOG

The mount point shows one file, ``disk``, backed by IMAGE.  TABLE is a JSON
file, re-read whenever it changes (write a new one and rename it over), like
dm's linear/error segments:

    {"faults": [{"op": "read",  "start": 4096, "end": 8192},
                {"op": "write", "match": "URINGSYNC-POISON"}]}

* ``op``: "read", "write" or "rw";
* ``start``/``end``: a byte range of the image; a request touching it fails
  whole with EIO;
* ``match``: a write whose data contains these bytes (latin-1) fails with
  EIO, wherever the file system put it (a destination file's blocks are
  picked by the allocator at run time, so a sector range cannot aim at them
  beforehand);
* ``op`` "corrupt" (with ``match``): such a write succeeds, but what is
  stored has the match's first byte flipped: a disk that loses data silently.

Each injected error is appended to LOG as one line: ``EIO read OFF LEN``
(``CORRUPT write OFF LEN`` for a corrupted write).
Files are opened with FOPEN_DIRECT_IO: no page cache here, every request of
the loop device above reaches this process.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys

import pyfuse3
import trio

INO = pyfuse3.ROOT_INODE + 1
NAME = b"disk"


class FaultDisk(pyfuse3.Operations):  # type: ignore[misc]
    def __init__(self, image: str, table: str, log: str) -> None:
        super().__init__()
        self.fd = os.open(image, os.O_RDWR)
        self.table_path = table
        self.table_key: tuple[int, int, int] | None = None
        self.faults: list[dict[str, object]] = []
        self.log = open(log, "a", buffering=1)  # noqa: SIM115

    def _load(self) -> None:
        try:
            st = os.stat(self.table_path)
        except FileNotFoundError:
            self.faults, self.table_key = [], None
            return
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self.table_key:
            with open(self.table_path) as f:
                self.faults = list(json.load(f).get("faults", []))
            self.table_key = key

    def _check(self, op: str, off: int, length: int, data: bytes | None = None) -> None:
        self._load()
        for f in self.faults:
            if f.get("op") not in (op, "rw"):
                continue
            if "match" in f:
                hit = data is not None and str(f["match"]).encode("latin-1") in data
            else:
                hit = off < int(f["end"]) and int(f["start"]) < off + length  # type: ignore[call-overload]
            if hit:
                self.log.write(f"EIO {op} {off} {length}\n")
                raise pyfuse3.FUSEError(errno.EIO)

    def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        st = os.fstat(self.fd)
        if ino == pyfuse3.ROOT_INODE:
            a.st_mode = stat.S_IFDIR | 0o755
            a.st_nlink = 2
            a.st_size = 0
        else:
            a.st_mode = stat.S_IFREG | 0o600
            a.st_nlink = 1
            a.st_size = st.st_size
        a.st_ino = ino
        a.st_blksize = 4096
        a.st_blocks = st.st_blocks
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = st.st_mtime_ns
        a.attr_timeout = a.entry_timeout = 0
        return a

    async def getattr(self, inode: int, ctx: object = None) -> pyfuse3.EntryAttributes:
        if inode not in (pyfuse3.ROOT_INODE, INO):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(inode)

    async def setattr(
        self, inode: int, attr: object, fields: object, fh: object, ctx: object
    ) -> pyfuse3.EntryAttributes:
        return self._attr(inode)  # the disk's size is fixed

    async def lookup(self, parent: int, name: bytes, ctx: object = None) -> pyfuse3.EntryAttributes:
        if parent != pyfuse3.ROOT_INODE or name != NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(INO)

    async def opendir(self, inode: int, ctx: object) -> int:
        if inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh: int, start_id: int, token: object) -> None:
        if start_id == 0:
            pyfuse3.readdir_reply(token, NAME, self._attr(INO), 1)

    async def open(self, inode: int, flags: int, ctx: object) -> pyfuse3.FileInfo:
        if inode != INO:
            raise pyfuse3.FUSEError(errno.EISDIR)
        return pyfuse3.FileInfo(fh=INO, direct_io=True, keep_cache=False)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        self._check("read", off, size)
        return os.pread(self.fd, size, off)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        self._check("write", off, len(buf), buf)
        n = len(buf)
        for f in self.faults:
            if f.get("op") != "corrupt":
                continue
            i = buf.find(str(f["match"]).encode("latin-1"))
            if i >= 0:
                self.log.write(f"CORRUPT write {off} {n}\n")
                buf = buf[:i] + bytes([buf[i] ^ 0xFF]) + buf[i + 1 :]
        os.pwrite(self.fd, buf, off)
        return n

    async def fsync(self, fh: int, datasync: bool) -> None:
        os.fsync(self.fd)

    async def flush(self, fh: int) -> None:
        pass

    async def release(self, fh: int) -> None:
        pass

    async def statfs(self, ctx: object) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        return s


def main() -> None:
    image, mnt, table, log = sys.argv[1:5]
    ops = FaultDisk(image, table, log)
    opts = set(pyfuse3.default_options)
    opts.add("fsname=faultdisk")
    opts.discard("default_permissions")
    pyfuse3.init(ops, mnt, opts)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
