"""Per-file failure paths that other tests do not reach, each on the real
kernel: the failing step is reported as path, operation and reason, the run
goes on, and nothing half-made is left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import uringsync
from tests.support.base import root_only
from tests.support.users import as_user


@root_only
def test_device_node_refused_to_an_unprivileged_user(world: bytes) -> None:
    src = os.path.join(world, b"src")
    os.mkdir(src)
    os.mknod(os.path.join(src, b"null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(os.path.join(src, b"fifo"))
    with open(os.path.join(src, b"plain"), "wb") as f:
        f.write(b"plain")
    os.chmod(src, 0o755)
    dst = os.path.join(world, b"dst")

    def run() -> tuple[int, list[tuple[bytes, str, int, str]]]:
        res = uringsync.copy([src], dst, archive=True)
        return res.exit_code, [(e.path, e.op, e.errno, e.message) for e in res.errors]

    code, errors = as_user(run)
    assert code == 23
    [(path, op, err, message)] = errors
    assert (path, op, err) == (os.path.join(dst, b"null"), "mknod", 1)
    assert message.startswith("cannot create special file '")
    assert "Operation not permitted" in message
    assert sorted(os.listdir(dst)) == [b"fifo", b"plain"]  # the rest was copied
    assert stat.S_ISFIFO(os.lstat(os.path.join(dst, b"fifo")).st_mode)


def test_hard_link_whose_name_is_blocked(tmp_path: Path) -> None:
    """The link's own name is taken by a directory in the destination: that
    name fails, the data and the other names are there."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "z").mkdir()
    (src / "a" / "f").write_bytes(b"data")
    os.link(src / "a" / "f", src / "z" / "g")
    os.link(src / "a" / "f", src / "z" / "h")
    dst = tmp_path / "dst"
    (dst / "z" / "g").mkdir(parents=True)
    (dst / "z" / "g" / "keep").write_bytes(b"keep")
    res = uringsync.copy([src / "a", src / "z"], dst, archive=True)
    assert res.exit_code == 23
    [e] = res.errors
    assert e.path == os.fsencode(dst / "z" / "g") and e.errno == 21  # EISDIR
    assert "cannot overwrite directory" in e.message
    assert (dst / "z" / "g" / "keep").read_bytes() == b"keep"
    f, h = dst / "a" / "f", dst / "z" / "h"
    assert f.read_bytes() == b"data" and f.stat().st_ino == h.stat().st_ino
    assert res.links == 1


def test_symlink_replaced_by_a_file_after_the_scan(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.symlink("target", src / "l")
    (src / "ok").write_bytes(b"ok")

    def replace() -> None:
        os.unlink(src / "l")
        (src / "l").write_bytes(b"now a file")

    def cb(ev: uringsync.Event) -> None:
        if ev.kind == "scanned" and ev.src_dir == os.fsencode(src):
            replace()

    res = uringsync.copy([src], tmp_path / "dst", archive=True, progress=cb)
    assert res.exit_code == 23
    [e] = res.errors
    assert (e.op, e.errno) == ("readlink", 22)  # EINVAL: not a symlink any more
    assert e.message.startswith(f"cannot read symbolic link '{src}/l'")
    assert not os.path.lexists(tmp_path / "dst" / "l")
    assert (tmp_path / "dst" / "ok").read_bytes() == b"ok"
