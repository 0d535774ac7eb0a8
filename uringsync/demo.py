"""``uringsync demo``: build a sample tree, copy it, check the copy.

The sample has what trips copiers up: thousands of small files, a few big
ones, empty files and directories, symlinks (dangling too), a name that is not
UTF-8, set-id and sticky modes, other owners (as root), nanosecond times
before 1970 and after 2100, hard links across directories, a sparse file,
extended attributes and POSIX ACLs, a FIFO and a device node (as root).
The copy is checked against ``cp -a`` of the same tree and with
``rsync -naHAXc --itemize-changes`` when rsync is installed.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from uringsync import api


def build_sample(root: Path, small_files: int = 3000, seed: int = 1) -> tuple[int, int]:
    """Create the sample tree; returns (entries, bytes)."""
    rnd = random.Random(seed)
    root.mkdir()
    entries = nbytes = 0
    dirs = [root]
    for i in range(60):
        d = rnd.choice(dirs) / f"dir{i:02d}"
        d.mkdir()
        dirs.append(d)
    sizes = [0, 1, 100, 4095, 4096, 4097, 20_000, 65_536, 131_072, 131_073, 300_000]
    for i in range(small_files):
        size = rnd.choice(sizes) if i % 7 == 0 else int(rnd.lognormvariate(8, 1.5)) % 400_000
        (rnd.choice(dirs) / f"file{i:05d}.dat").write_bytes(rnd.randbytes(size))
        nbytes += size
    for i, size in enumerate((3 << 20, 9 << 20, (24 << 20) + 3)):
        (root / f"big{i}.bin").write_bytes(rnd.randbytes(size))
        nbytes += size
    (root / "empty-dir").mkdir()
    os.symlink("file00000.dat", root / "link-relative")
    os.symlink("/nonexistent/target", root / "link-dangling")
    os.symlink("dir00", root / "link-to-dir")
    odd = os.fsencode(root) + b"/caf\xe9-latin1-name"
    with open(odd, "wb") as f:
        f.write(b"not utf-8 name\n")
    setuid = root / "setuid-tool"
    setuid.write_bytes(b"#!/bin/sh\n")
    setuid.chmod(0o4755)
    sticky = root / "sticky-dir"
    sticky.mkdir()
    sticky.chmod(0o1777)
    ro = root / "read-only-dir"
    ro.mkdir()
    (ro / "inside").write_bytes(b"x")
    if os.geteuid() == 0:
        os.chown(root / "file00001.dat", 1234, 5678) if (root / "file00001.dat").exists() else None
        os.chown(setuid, 1000, 1000)
        os.chmod(setuid, 0o4755)
    # hard links across directories, a sparse file, xattrs, special files
    os.link(root / "big2.bin", root / "dir00" / "big2-hardlink.bin")
    os.link(root / "setuid-tool", root / "sticky-dir" / "setuid-tool-link")
    with open(root / "sparse.img", "wb") as f:
        f.truncate(256 << 20)
        f.seek(100 << 20)
        f.write(b"data in the middle of 256 MiB of holes")
    nbytes += 256 << 20
    os.setxattr(root / "big2.bin", "user.checksum", b"\x00\x01 binary\x00value")
    os.setxattr(root / "dir00", "user.project", b"demo")
    if shutil.which("setfacl"):
        subprocess.run(["setfacl", "-m", "u:1234:rw-", str(root / "big1.bin")], check=False)
        subprocess.run(["setfacl", "-d", "-m", "g:5678:r-x", str(root / "dir00")], check=False)
    os.mkfifo(root / "fifo")
    if os.geteuid() == 0:
        os.mknod(root / "null-device", 0o620 | stat.S_IFCHR, os.makedev(1, 3))
    os.utime(root / "big0.bin", ns=(-1_234_567_890_123_456_789, -987_654_321_987_654_321))
    os.utime(root / "big1.bin", ns=(4_200_000_000_123_456_789, 4_300_000_000_987_654_321))
    ro.chmod(0o555)
    for _, dnames, fnames in os.walk(root):
        entries += len(dnames) + len(fnames)
    return entries, nbytes


def run(keep: bool = False, say: Callable[[str], None] = print) -> int:
    base = Path(tempfile.mkdtemp(prefix="uringsync-demo-"))
    try:
        src = base / "sample"
        say(f"building a sample tree in {src} ...")
        entries, nbytes = build_sample(src)
        say(f"  {entries} entries, {nbytes / 2**20:.1f} MiB")

        errors: list[str] = []
        t0 = time.monotonic()
        res = api.copy(
            [src],
            base / "copy-uringsync",
            archive=True,
            on_error=lambda e: errors.append(e.message),
            on_notice=lambda m: say(f"uringsync: {m}"),
        )
        t_us = time.monotonic() - t0
        say(
            f"uringsync cp -a: {res.files} files, {res.dirs} dirs, {res.symlinks} symlinks, "
            f"{res.links} hard links, {res.specials} special files, "
            f"{res.bytes / 2**20:.1f} MiB in {t_us:.2f} s with {res.engine}, exit {res.exit_code}"
        )
        for line in errors:
            say(f"  error: {line}")

        t0 = time.monotonic()
        subprocess.run(["cp", "-a", str(src), str(base / "copy-cp")], check=True)
        t_cp = time.monotonic() - t0
        say(
            f"GNU cp -a:       {t_cp:.2f} s (warm cache, single run: see `benchmarks/` "
            "for real measurements)"
        )

        ok = res.exit_code == 0
        if shutil.which("rsync"):
            for label, ref in (("source", src), ("cp -a copy", base / "copy-cp")):
                out = subprocess.run(
                    [
                        "rsync",
                        "-naHAXc",
                        "--itemize-changes",
                        f"{ref}/",
                        f"{base / 'copy-uringsync'}/",
                    ],
                    capture_output=True,
                    check=False,
                ).stdout.decode(errors="backslashreplace")
                same = out.strip() == ""
                ok = ok and same
                say(
                    f"rsync -naHAXc --itemize-changes vs {label}: "
                    + ("no differences" if same else f"DIFFERENCES:\n{out}")
                )
        else:
            say("rsync is not installed: skipped the independent check")
        say("result: " + ("the copy is identical" if ok else "the copy differs (see above)"))
        return 0 if ok else 1
    finally:
        if keep:
            say(f"kept {base}")
        else:
            for dirpath, dnames, _ in os.walk(base):
                for d in dnames:
                    os.chmod(
                        os.path.join(dirpath, d), 0o700, follow_symlinks=False
                    ) if not os.path.islink(os.path.join(dirpath, d)) else None
            shutil.rmtree(base, ignore_errors=True)
