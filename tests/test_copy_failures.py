"""Per-file failures on the real kernel (unreadable sources, symlinks planted
in the destination, a full destination, the file size limit, refused device
nodes, blocked link names): the failing step is reported as one line with
path, operation and reason, the run goes on (exit 23), and nothing half-made
is left behind."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

import uringsync
from tests.support.base import root_only
from tests.support.cli import assert_error_lines, check_cli, run_cli
from tests.support.compare import FIELDS_ALL, FIELDS_CONTENT, assert_same_tree, snapshot
from tests.support.system import mount_tmpfs, umount
from tests.support.trees import rand_bytes, set_tree_times, write_file
from tests.support.users import as_user

NO_OWNER = tuple(f for f in FIELDS_ALL if f not in ("uid", "gid"))


# ----------------------------------------------- permissions (as nobody)


def _readable_tree(world: bytes) -> bytes:
    src = world + b"/src"
    os.makedirs(src + b"/sub")
    write_file(src + b"/ok1", rand_bytes(70_000, 1))
    write_file(src + b"/ok2", b"")
    write_file(src + b"/sub/ok3", rand_bytes(300_000, 3), 0o755)
    os.symlink(b"ok1", src + b"/lnk")
    return src


def _cli_as_nobody(args: list[str]) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    import uringsync.cli

    r = CliRunner().invoke(uringsync.cli.app, args)
    exc = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
    assert exc is None, exc
    return r.exit_code, r.stdout, r.stderr


@root_only
def test_unreadable_file_api(world: bytes) -> None:
    src = _readable_tree(world)
    write_file(src + b"/secret", b"top secret\n", 0o000)
    write_file(src + b"/sub/secret2", rand_bytes(200_000, "s"), 0o000)
    set_tree_times(src)
    want = snapshot(src)
    dst = world + b"/dst"

    def child() -> tuple[int, list[tuple[bytes, str, int, str]], int]:
        res = uringsync.copy([src], dst, archive=True)
        rc_cp = subprocess.run(
            [b"cp", b"-a", src, world + b"/dst_cp"], capture_output=True, check=False
        ).returncode
        return res.exit_code, [(e.path, e.op, e.errno, e.message) for e in res.errors], rc_cp

    code, errors, rc_cp = as_user(child)
    assert code == 23, errors
    assert rc_cp == 1
    assert sorted(os.path.basename(e[0]) for e in errors) == [b"secret", b"secret2"], errors
    for path, _op, err, msg in errors:
        assert err == errno.EACCES
        assert "Permission denied" in msg
        assert os.fsdecode(os.path.basename(path)) in msg
    # everything else arrived intact (owners are nobody's: cp -a as a user can't chown)
    is_secret = lambda p: os.path.basename(p).startswith(b"secret")  # noqa: E731
    assert_same_tree(want, dst, fields=NO_OWNER, exclude=is_secret)
    assert not os.path.lexists(dst + b"/secret")
    assert not os.path.lexists(dst + b"/sub/secret2")
    # and like cp -a run by the same user
    assert_same_tree(world + b"/dst_cp", dst, exclude=is_secret)
    assert snapshot(src) == want


@root_only
def test_unreadable_file_cli_message(world: bytes) -> None:
    src = _readable_tree(world)
    write_file(src + b"/secret", b"top secret\n", 0o000)
    set_tree_times(src)
    dst = world + b"/dst"
    code, _out, err = as_user(
        lambda: _cli_as_nobody(["cp", "-a", os.fsdecode(src), os.fsdecode(dst)])
    )
    assert code == 23, err
    (line,) = assert_error_lines(err.encode(), 1)
    assert b"'" + src + b"/secret'" in line, line
    assert line.endswith(b"Permission denied"), line
    assert os.path.exists(dst + b"/sub/ok3")


@root_only
def test_unreadable_directory(world: bytes) -> None:
    src = _readable_tree(world)
    os.makedirs(src + b"/locked/inner")
    write_file(src + b"/locked/hidden", b"h")
    write_file(src + b"/locked/inner/hidden2", b"h2")
    os.chmod(src + b"/locked", 0o000)
    set_tree_times(src)
    want = snapshot(src)
    dst = world + b"/dst"
    code, _out, err = as_user(
        lambda: _cli_as_nobody(["cp", "-a", os.fsdecode(src), os.fsdecode(dst)])
    )
    assert code == 23, err
    lines = assert_error_lines(err.encode())
    assert lines, "no error reported"
    assert any(
        b"'" + src + b"/locked'" in ln and ln.endswith(b"Permission denied") for ln in lines
    ), lines
    assert not any(b"hidden" in ln for ln in lines)  # nothing below it is tried
    assert not os.path.lexists(dst + b"/locked/hidden")
    assert_same_tree(want, dst, fields=NO_OWNER, exclude=lambda p: p.startswith(b"locked"))


@root_only
def test_vanished_and_unreadable_is_23(world: bytes) -> None:
    """A real failure among vanished files: 23, not 24."""
    src = _readable_tree(world)
    write_file(src + b"/secret", b"s", 0o000)
    write_file(src + b"/goner", b"g")
    set_tree_times(src)
    dst = world + b"/dst"

    def child() -> tuple[int, list[str]]:
        def progress(ev: Any) -> None:
            if ev.kind == "scanned" and ev.src_dir == src:
                os.unlink(src + b"/goner")

        res = uringsync.copy([src], dst, archive=True, progress=progress)
        return res.exit_code, [e.message for e in res.errors]

    # nobody may delete in src only if it's writable: make it so for this test
    os.chmod(src, 0o777)
    set_tree_times(src)
    code, msgs = as_user(child)
    assert code == 23, msgs
    assert any("vanished" in m for m in msgs), msgs
    assert any("Permission denied" in m for m in msgs), msgs


# ------------------------------------------- symlinks planted in the dst


def _planted(tmp: bytes) -> tuple[bytes, bytes, bytes]:
    src = tmp + b"/src"
    os.makedirs(src + b"/sub")
    write_file(src + b"/f", rand_bytes(100_000, "f"))
    write_file(src + b"/sub/g", b"gee\n")
    write_file(src + b"/big", rand_bytes(9 << 20, "big"))
    victim = tmp + b"/victim"
    os.mkdir(victim)
    write_file(victim + b"/file", b"do not touch\n", 0o666)
    write_file(victim + b"/big", b"do not touch either\n", 0o666)
    os.mkdir(victim + b"/dir")
    write_file(victim + b"/dir/g", b"victim g\n", 0o666)
    dst = tmp + b"/dst"
    os.makedirs(dst + b"/src")
    set_tree_times(src)
    set_tree_times(victim)
    return src, victim, dst


@root_only
def test_planted_symlink_file_is_replaced(tmp: bytes) -> None:
    src, victim, dst = _planted(tmp)
    os.symlink(victim + b"/file", dst + b"/src/f")
    os.symlink(victim + b"/big", dst + b"/src/big")  # big: several chunks in flight
    os.symlink(b"../../victim/dir", dst + b"/src/sub_link_unused")
    os.mkdir(dst + b"/src/sub")
    os.symlink(victim + b"/dir/g", dst + b"/src/sub/g")
    v_before = snapshot(victim)
    check_cli(b"cp", b"-a", src, dst)
    assert_same_tree(v_before, victim)
    assert_same_tree(src, dst + b"/src", exclude=lambda p: p == b"sub_link_unused")
    assert not os.path.islink(dst + b"/src/f")


@root_only
def test_planted_symlink_to_dir_for_file(tmp: bytes) -> None:
    """A regular file whose destination is a symlink to a directory: the link is replaced."""
    src, victim, dst = _planted(tmp)
    os.symlink(victim + b"/dir", dst + b"/src/f")
    v_before = snapshot(victim)
    check_cli(b"cp", b"-a", src, dst)
    assert_same_tree(v_before, victim)
    assert_same_tree(src, dst + b"/src")


@root_only
def test_planted_symlink_for_directory_is_error(tmp: bytes) -> None:
    src, victim, dst = _planted(tmp)
    os.symlink(victim + b"/dir", dst + b"/src/sub")
    v_before = snapshot(victim)
    rc, _out, err = run_cli(b"cp", b"-a", src, dst)
    assert rc == 23, err
    (line,) = assert_error_lines(err, 1)
    assert b"'" + dst + b"/src/sub'" in line, line
    assert_same_tree(v_before, victim)
    assert os.readlink(dst + b"/src/sub") == victim + b"/dir"  # left as it was
    assert_same_tree(
        src, dst + b"/src", exclude=lambda p: p.startswith(b"sub"), fields=FIELDS_CONTENT
    )
    assert_same_tree(src + b"/f", dst + b"/src/f")


@root_only
def test_planted_file_for_directory_is_error(tmp: bytes) -> None:
    src, _victim, dst = _planted(tmp)
    write_file(dst + b"/src/sub", b"a file where a dir should go\n")
    rc, _out, err = run_cli(b"cp", b"-a", src, dst)
    assert rc == 23, err
    (line,) = assert_error_lines(err, 1)
    assert b"'" + dst + b"/src/sub'" in line, line
    with open(dst + b"/src/sub", "rb") as f:
        assert f.read() == b"a file where a dir should go\n"
    assert_same_tree(src + b"/f", dst + b"/src/f")


@root_only
def test_planted_symlink_deep_in_tree(tmp: bytes) -> None:
    """The planted link is below several real directories of an earlier copy."""
    src, victim, dst = _planted(tmp)
    os.makedirs(src + b"/a/b/c")
    write_file(src + b"/a/b/c/leaf", b"leaf")
    set_tree_times(src)
    check_cli(b"cp", b"-a", src, dst)
    os.unlink(dst + b"/src/a/b/c/leaf")
    os.symlink(victim + b"/file", dst + b"/src/a/b/c/leaf")
    os.rename(dst + b"/src/sub", dst + b"/src/sub_old")
    os.symlink(victim + b"/dir", dst + b"/src/sub")
    v_before = snapshot(victim)
    rc, _out, err = run_cli(b"cp", b"-a", src, dst)
    assert rc == 23, err
    assert_error_lines(err, 1)
    assert_same_tree(v_before, victim)
    assert_same_tree(src + b"/a", dst + b"/src/a")


# ---------------------------------------------------- a full destination


@root_only
def test_destination_full(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.makedirs(src + b"/sub")
    sizes = {
        b"f1500k": 1_500_000,
        b"f1m": 1 << 20,
        b"sub/f900k": 900_000,
        b"sub/f700k": 700_000,
        b"f600k": 600_000,
        b"f300k": 300_000,
        b"f131073": 131_073,
        b"small": 10,
        b"empty": 0,
        b"huge": (9 << 20) + 5,  # many chunks in flight when the disk fills
    }
    for name, n in sizes.items():
        write_file(src + b"/" + name, rand_bytes(n, name))
    set_tree_times(src)
    mnt = tmp + b"/full"
    os.mkdir(mnt)
    reason = mount_tmpfs(mnt, "2m")
    if reason:
        print(reason)
        pytest.skip(reason)
    try:
        rc, _out, err = run_cli(b"cp", b"-a", src, mnt + b"/dst")
        assert rc == 23, err
        lines = assert_error_lines(err)
        assert lines
        assert any(b"No space left on device" in ln for ln in lines), lines
        for ln in lines:
            assert b"'" in ln, ln  # names a path
        want = snapshot(src)
        got = snapshot(mnt + b"/dst")
        missing = [p for p, r in want.items() if r.type == "reg" and p not in got]
        assert missing, "everything fit in 2 MiB?"
        for p, r in got.items():
            assert p in want, p
            if r.type == "reg":
                assert (r.size, r.sha256) == (want[p].size, want[p].sha256), (
                    f"{p!r} is partial: {r.size} of {want[p].size}"
                )
                assert r.mtime_ns == want[p].mtime_ns and r.mode == want[p].mode, p
        # each missing file was reported
        for p in missing:
            assert any(os.path.basename(p) in ln for ln in lines), (p, lines)
    finally:
        umount(mnt)


@root_only
def test_file_size_limit_leaves_no_partial_file(tmp: bytes) -> None:
    """RLIMIT_FSIZE makes writes fail part way (EFBIG): no partial file may remain."""
    src = tmp + b"/src"
    os.mkdir(src)
    sizes = {
        b"a_small": 50_000,
        b"b_mid": 300_000,
        b"c_big": 2_000_000,
        b"d_huge": (9 << 20) + 1,
        b"e_tiny": 1,
    }
    for name, n in sizes.items():
        write_file(src + b"/" + name, rand_bytes(n, name))
    set_tree_times(src)

    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    rc, _out, err = run_cli(b"cp", b"-a", src, tmp + b"/dst", preexec_fn=pre)
    assert rc == 23, err
    lines = assert_error_lines(err, 3)
    assert all(b"File too large" in ln for ln in lines), lines
    assert sorted(os.listdir(tmp + b"/dst")) == [b"a_small", b"e_tiny"]
    assert_same_tree(
        src, tmp + b"/dst", exclude=lambda p: p in (b"", b"b_mid", b"c_big", b"d_huge")
    )


# ----------------------------------------------- other per-file failures


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
