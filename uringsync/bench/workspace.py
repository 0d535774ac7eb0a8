"""Where the sources and copies live: by default a fresh ext4 in a loop image,
preallocated and mounted under the work directory; the mounts it sits on;
dropping the caches."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uringsync.bench.base import (
    BenchError,
    GiB,
    MiB,
    Say,
    fmt_bytes,
    need,
    now,
    run_quiet,
    say_stderr,
)

HOST_RESERVE = 2 * GiB  # free space the loop image must leave on the host file system
JOURNAL_PER = 8 * MiB  # the ext4 journal: 1 MiB per this much of the file system ...
JOURNAL_MIB = (16, 1024)  # ... but at least and at most these MiB
REUSE_FRACTION = 0.9  # an image is re-used if it has this share of the bytes and inodes needed


@dataclass(frozen=True)
class Mount:
    mountpoint: str
    fstype: str
    source: str
    options: str


def mount_of(path: Path | str) -> Mount:
    """The mount that holds ``path`` (from /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    best = Mount("/", "?", "?", "")
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) < 6 or len(rest) < 2:
                continue
            mp = fields[4].encode().decode("unicode_escape")  # \040 for spaces
            inside = real == mp or real.startswith(mp.rstrip("/") + "/")
            if inside and len(mp) >= len(best.mountpoint):
                opts = fields[5] + ("," + rest[2] if len(rest) > 2 else "")
                best = Mount(mp, rest[0], rest[1], opts)
    return best


def drop_caches() -> None:
    """Write back dirty data, then drop the page cache, dentries and inodes (root)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


class Workspace:
    """Where the sources and copies live.

    With ``loop`` (root): an ext4 made fresh in ``WORKDIR/fs.img``
    (preallocated, so the host file system allocates nothing while timing),
    attached with direct I/O (no second copy in the host's page cache) and
    mounted ``noatime`` at ``WORKDIR/mnt``.  Without: ``WORKDIR`` itself.
    Sources go to ``ROOT/src/NAME``, copies to ``ROOT/dst/LABEL``.
    """

    def __init__(
        self, workdir: Path, *, loop: bool, keep: bool, settle: float, say: Say = say_stderr
    ) -> None:
        self.workdir = workdir.absolute()
        self.loop = loop
        self.keep = keep
        self.settle = settle
        self.say = say
        self.root = self.workdir / "mnt" if loop else self.workdir
        self.image = self.workdir / "fs.img"
        self.device: str | None = None
        self.dio: bool | None = None
        self.image_size = 0
        self.active = False  # the image is ours to remove: attached or made by this run
        self.events: list[dict[str, Any]] = []

    # -- set-up and tear-down

    def setup(self, image_size: int, inodes: int) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.loop:
            self._setup_loop(image_size, inodes)
        (self.root / "src").mkdir(exist_ok=True)
        (self.root / "dst").mkdir(exist_ok=True)
        if any((self.root / "dst").iterdir()):  # copies kept by an earlier --keep run
            self.delete_copies("copies left by an earlier run")

    def _setup_loop(self, size: int, inodes: int) -> None:
        if os.geteuid() != 0:
            raise BenchError(
                "the loop file system needs root (mkfs.ext4, losetup, mount): run as root, "
                "or pass --no-loop to measure in the work directory as it is"
            )
        need("mkfs.ext4", "losetup", "mount", "umount")
        host = mount_of(self.workdir)
        if host.fstype in ("tmpfs", "ramfs"):
            raise BenchError(
                f"{self.workdir} is on {host.fstype}: the loop image would live in memory; "
                "use --workdir on a disk (default /var/tmp/uringsync-bench)"
            )
        self.root.mkdir(exist_ok=True)
        if os.path.ismount(self.root):
            dev = mount_of(self.root).source
            if self._backing(dev) != os.path.realpath(self.image):
                raise BenchError(
                    f"{self.root} is already a mount point (of {dev}), not of {self.image}: "
                    "unmount it or choose another --workdir"
                )
            self.device = dev
            self.active = True
            self._read_dio()
            if self._reuse(size, inodes, f"the mounted {self.image} ({dev})"):
                return
        elif self.image.exists():
            self._attach()
            if self._reuse(size, inodes, f"{self.image} kept by an earlier run"):
                return
        free = shutil.disk_usage(self.workdir).free
        if size > free - HOST_RESERVE:
            raise BenchError(
                f"not enough space for the loop image in {self.workdir}: it needs "
                f"{fmt_bytes(size)} and {HOST_RESERVE // GiB} GiB must stay free, but "
                f"{fmt_bytes(free)} is free; "
                "use --workdir on a larger disk, --image-size, or smaller workloads "
                "(--workloads, --entries, --big-size, --mixed-big)"
            )
        self.say(f"making a {fmt_bytes(size)} ext4 in {self.image} ({inodes} inodes) ...")
        fd = os.open(self.image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.active = True
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            os.close(fd)
            self.image.unlink()
            raise BenchError(f"cannot allocate {fmt_bytes(size)} for {self.image}: {e}") from None
        os.close(fd)
        # nodiscard: a discard would punch the preallocated image full of holes;
        # no lazy init: no kernel thread zeroing inode tables while timing;
        # -m 0: no blocks reserved for root (scratch space, all of it planned);
        # a 1 GiB journal, as mke2fs gives disks of 128 GiB or more (the default
        # for a 30 GiB file system, 128 MiB, stalls making 1,000,000 files)
        mkfs = [
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-J",
            f"size={max(JOURNAL_MIB[0], min(JOURNAL_MIB[1], size // JOURNAL_PER))}",
            "-N",
            str(inodes),
            "-E",
            "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
            str(self.image),
        ]
        p = run_quiet(mkfs)
        if p.returncode != 0:
            self.image.unlink()
            raise BenchError(f"mkfs.ext4 failed: {p.stderr.decode(errors='replace').strip()}")
        self.image_size = size
        self._attach()
        self.events.append({"at": now(), "event": "made the loop file system", "size": size})

    def _reuse(self, size: int, inodes: int, what: str) -> bool:
        """Keep the attached image if it is big enough; else drop it."""
        if self._big_enough(size, inodes):
            self.say(f"re-using {what}")
            self.image_size = self.image.stat().st_size
            return True
        self.say(f"{self.image} is too small for these parameters: making a new one")
        self._detach()
        self.image.unlink()
        return False

    def _attach(self) -> None:
        p = run_quiet(["losetup", "--find", "--show", "--direct-io=on", str(self.image)])
        if p.returncode != 0:  # a host file system without O_DIRECT
            p = run_quiet(["losetup", "--find", "--show", str(self.image)])
        if p.returncode != 0:
            raise BenchError(f"losetup failed: {p.stderr.decode(errors='replace').strip()}")
        self.device = p.stdout.decode().strip()
        self.active = True
        self._read_dio()
        m = run_quiet(["mount", "-t", "ext4", "-o", "noatime", self.device, str(self.root)])
        if m.returncode != 0:
            run_quiet(["losetup", "-d", self.device])
            self.device = None
            raise BenchError(f"mount failed: {m.stderr.decode(errors='replace').strip()}")

    def _read_dio(self) -> None:
        if self.device:
            with contextlib.suppress(OSError):
                name = os.path.basename(self.device)
                self.dio = Path(f"/sys/block/{name}/loop/dio").read_text().strip() == "1"

    @staticmethod
    def _backing(dev: str) -> str | None:
        try:
            name = os.path.basename(dev)
            return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
        except OSError:
            return None

    def _big_enough(self, size: int, inodes: int) -> bool:
        st = os.statvfs(self.root)
        return (
            st.f_blocks * st.f_frsize >= size * REUSE_FRACTION
            and st.f_files >= inodes * REUSE_FRACTION
        )

    def _detach(self) -> None:
        if self.device is None:
            return
        os.sync()
        if run_quiet(["umount", str(self.root)]).returncode != 0:
            run_quiet(["umount", "-l", str(self.root)])
        run_quiet(["losetup", "-d", self.device])
        self.device = None

    def teardown(self) -> None:
        """Unmount and delete the image (loop), or delete the copies (--no-loop);
        with ``keep``, leave everything."""
        if self.keep:
            where = f"{self.root} ({self.device} on {self.image})" if self.loop else str(self.root)
            self.say(f"kept the sources and copies in {where}")
            if self.loop:
                self.say(
                    f"  to remove: umount {self.root}; losetup -d {self.device}; rm {self.image}"
                )
            return
        if self.loop:
            if not self.active:
                return
            self._detach()
            with contextlib.suppress(OSError):
                self.image.unlink()
            with contextlib.suppress(OSError):
                self.root.rmdir()
                self.workdir.rmdir()  # only if nothing else is in it
        else:
            run_quiet(["rm", "-rf", "--one-file-system", str(self.root / "dst")])

    # -- space

    def free(self) -> tuple[int, int]:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize, st.f_favail

    def delete_copies(self, reason: str) -> None:
        """Delete every copy (never between timed runs of one round), then
        sync, trim (--no-loop) and wait ``settle`` seconds before timing again."""
        dst = self.root / "dst"
        t = time.perf_counter()
        p = run_quiet(["rm", "-rf", "--one-file-system", str(dst)])
        if p.returncode != 0:
            raise BenchError(f"cannot delete {dst}: {p.stderr.decode(errors='replace').strip()}")
        dst.mkdir()
        os.sync()
        if not self.loop and os.geteuid() == 0 and shutil.which("fstrim"):
            run_quiet(["fstrim", str(self.root)])
        took = time.perf_counter() - t
        self.say(f"deleted the copies ({reason}) in {took:.1f} s; settling {self.settle:g} s")
        time.sleep(self.settle)
        self.events.append(
            {
                "at": now(),
                "event": "deleted the copies",
                "reason": reason,
                "seconds": round(took, 3),
                "settle": self.settle,
            }
        )

    def make_room(self, nbytes: int, inodes: int, what: str) -> None:
        free_b, free_i = self.free()
        if free_b >= nbytes and free_i >= inodes:
            return
        self.delete_copies(f"room for {what}")
        free_b, free_i = self.free()
        if free_b < nbytes or free_i < inodes:
            raise BenchError(
                f"not enough space on {self.root} for {what}: it needs {fmt_bytes(nbytes)} and "
                f"{inodes} inodes, {fmt_bytes(free_b)} and {free_i} are free even without the "
                "copies; use a larger --image-size, another --workdir, or smaller workloads"
            )

    def destination(self, label: str) -> Path:
        """A name under dst/ that was never used in this run."""
        p = self.root / "dst" / label
        n = 1
        while os.path.lexists(p):
            n += 1
            p = self.root / "dst" / f"{label}.{n}"
        return p
