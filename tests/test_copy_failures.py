"""Bad input and hostile conditions: exit codes, one-line messages, state on disk."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
from typing import Any

import pytest

import uringsync
from tests.support.base import root_only
from tests.support.cli import assert_error_lines, check_cli, check_cp, run_cli, run_cp
from tests.support.compare import (
    FIELDS_ALL,
    FIELDS_CONTENT,
    assert_same_tree,
    copy_both,
    rsync_clean,
    snapshot,
)
from tests.support.system import mount_tmpfs, umount
from tests.support.trees import rand_bytes, set_tree_times, write_file
from tests.support.users import as_user

NO_OWNER = tuple(f for f in FIELDS_ALL if f not in ("uid", "gid"))


def scene(tmp: bytes) -> bytes:
    """tmp/scene with: a (file), h (hard link to a), s -> a, src/ (tree), f (file)."""
    sc = tmp + b"/scene"
    os.mkdir(sc)
    write_file(sc + b"/a", rand_bytes(5000, "a"))
    os.link(sc + b"/a", sc + b"/h")
    os.symlink(b"a", sc + b"/s")
    os.makedirs(sc + b"/src/sub/deeper")
    write_file(sc + b"/src/one", b"one\n")
    write_file(sc + b"/src/sub/two", rand_bytes(140_000, "two"))
    write_file(sc + b"/src/sub/deeper/three", b"3")
    write_file(sc + b"/f", b"precious\n")
    write_file(sc + b"/b", b"bee\n")
    set_tree_times(sc)
    return sc


def expect_fatal(args: list[bytes], cwd: bytes, *needles: bytes) -> bytes:
    """exit 1, exactly one `uringsync: ` line containing every needle; returns it."""
    before = snapshot(cwd)
    rc, _out, err = run_cli(b"cp", *args, cwd=cwd)
    assert rc == 1, f"exit {rc}, stderr={err!r}"
    (line,) = assert_error_lines(err, 1)
    for n in needles:
        assert n in line, f"{n!r} not in {line!r}"
    assert_same_tree(before, cwd)  # nothing copied, nothing changed (atimes included)
    return line


# ------------------------------------------------------------ fatal errors


def test_missing_src(tmp: bytes) -> None:
    sc = scene(tmp)
    line = expect_fatal([b"-a", b"nope", b"dst"], sc)
    assert line == b"uringsync: cannot stat 'nope': No such file or directory"


def test_missing_one_of_several_src(tmp: bytes) -> None:
    sc = scene(tmp)
    os.mkdir(sc + b"/into")
    set_tree_times(sc)
    expect_fatal(
        [b"-a", b"a", b"nope", b"src", b"into"], sc, b"'nope'", b"No such file or directory"
    )


def test_missing_src_api(tmp: bytes) -> None:
    sc = scene(tmp)
    with pytest.raises(uringsync.CopyError) as ei:
        uringsync.copy([sc + b"/nope"], sc + b"/dst", archive=True)
    assert "No such file or directory" in str(ei.value)
    assert "nope" in str(ei.value)
    assert not os.path.lexists(sc + b"/dst")


def test_same_file_same_path(tmp: bytes) -> None:
    sc = scene(tmp)
    line = expect_fatal([b"-a", b"a", b"a"], sc)
    assert line == b"uringsync: 'a' and 'a' are the same file"


def test_same_file_hard_link(tmp: bytes) -> None:
    sc = scene(tmp)
    line = expect_fatal([b"-a", b"a", b"h"], sc)
    assert line == b"uringsync: 'a' and 'h' are the same file"


def test_same_file_dst_symlink_to_src(tmp: bytes) -> None:
    sc = scene(tmp)
    line = expect_fatal([b"-a", b"a", b"s"], sc)
    assert line == b"uringsync: 'a' and 's' are the same file"


def test_same_file_src_symlink_to_dst(tmp: bytes) -> None:
    """cp -a s a (s -> a): GNU cp refuses; replacing a by a link to itself loses a."""
    sc = scene(tmp)
    assert run_cp(b"-a", b"s", b"a", cwd=sc)[0] == 1  # what cp does
    line = expect_fatal([b"-a", b"s", b"a"], sc)
    assert line == b"uringsync: 's' and 'a' are the same file"


def test_same_file_into_dir(tmp: bytes) -> None:
    """cp -a a . : the target ./a is a itself."""
    sc = scene(tmp)
    expect_fatal([b"-a", b"a", b"."], sc, b"are the same file")


def test_dst_inside_src(tmp: bytes) -> None:
    sc = scene(tmp)
    line = expect_fatal([b"-a", b"src", b"src/new"], sc)
    assert line == b"uringsync: cannot copy a directory, 'src', into itself, 'src/new'"
    assert not os.path.lexists(sc + b"/src/new")


def test_dst_inside_src_existing_dir(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"-a", b"src", b"src/sub"], sc, b"into itself", b"'src'")


def test_dst_is_src(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"-a", b"src", b"src"], sc, b"into itself")


def test_dst_inside_src_via_symlink(tmp: bytes) -> None:
    sc = scene(tmp)
    os.symlink(b"src/sub", sc + b"/via")
    set_tree_times(sc)
    expect_fatal([b"-a", b"src", b"via/x"], sc, b"into itself")


def test_dir_onto_non_directory(tmp: bytes) -> None:
    sc = scene(tmp)
    line = expect_fatal([b"-a", b"src", b"f"], sc)
    assert line == b"uringsync: cannot overwrite non-directory 'f' with directory 'src'"


def test_dir_onto_symlink_to_file(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"-a", b"src", b"s"], sc, b"cannot overwrite non-directory 's'", b"'src'")


def test_several_src_dst_is_file(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"-a", b"a", b"src", b"f"], sc, b"'f'")


def test_several_src_dst_missing(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"-a", b"a", b"b", b"newdir"], sc, b"'newdir'")
    assert not os.path.lexists(sc + b"/newdir")


def test_directory_without_r(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"src", b"d2"], sc, b"'src'")


def test_missing_destination_operand(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"-a", b"a"], sc, b"'a'")


def test_bad_preserve_value(tmp: bytes) -> None:
    sc = scene(tmp)
    rc, _out, err = run_cli(b"cp", b"-r", b"--preserve=bogus", b"src", b"d2", cwd=sc)
    assert rc == 1
    assert b"Traceback" not in err
    assert b"bogus" in err
    assert not os.path.lexists(sc + b"/d2")


def test_unknown_option(tmp: bytes) -> None:
    sc = scene(tmp)
    rc, _out, err = run_cli(b"cp", b"--bogus", b"a", b"d2", cwd=sc)
    assert rc == 1, (rc, err)
    assert b"Traceback" not in err
    assert b"--bogus" in err
    assert not os.path.lexists(sc + b"/d2")


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


# ----------------------------------------------------------- fd limits


def _many_files_tree(root: bytes) -> None:
    os.mkdir(root)
    for d in range(50):
        dp = root + b"/d%02d" % d
        os.mkdir(dp)
        for i in range(40):
            n = (d * 40 + i) * 7 % 9000
            write_file(dp + b"/f%02d" % i, rand_bytes(n, d * 1000 + i), 0o644 if i % 3 else 0o600)
        os.symlink(b"f00", dp + b"/link")
    p = root + b"/chain"
    for lvl in range(40):
        os.mkdir(p)
        write_file(p + b"/at%02d" % lvl, rand_bytes(lvl * 100, lvl))
        p += b"/c%02d" % lvl
    os.mkdir(p)
    write_file(p + b"/bottom", rand_bytes(140_000, "bottom"))
    set_tree_times(root, seed=11, keep_mtime=False)


@root_only
@pytest.mark.parametrize("qd", [None, b"512"])
def test_ulimit_nofile_64(tmp: bytes, qd: bytes | None) -> None:
    src = tmp + b"/src"
    _many_files_tree(src)
    extra = [b"--queue-depth", qd] if qd else []
    rc, _out, err = run_cli(b"cp", b"-a", *extra, src, tmp + b"/dst", nofile=64)
    assert rc == 0, err
    assert err == b""
    assert_same_tree(src, tmp + b"/dst")
    rsync_clean(src, tmp + b"/dst")


@root_only
def test_ulimit_nofile_64_with_existing_copy(tmp: bytes) -> None:
    """A re-run over a complete copy (every open hits EEXIST) within 64 fds."""
    src = tmp + b"/src"
    _many_files_tree(src)
    os.mkdir(tmp + b"/out")
    check_cli(b"cp", b"-a", src, tmp + b"/out")
    rc, _out, err = run_cli(b"cp", b"-a", src, tmp + b"/out", nofile=64)
    assert rc == 0, err
    assert_same_tree(src, tmp + b"/out/src")


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


# ------------------------------------------------------------- vanished


@root_only
def test_vanished_file(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.makedirs(src + b"/sub")
    for n in (b"a", b"b", b"c", b"d"):
        write_file(src + b"/" + n, rand_bytes(50_000, n))
    write_file(src + b"/sub/x", b"x")
    os.symlink(b"a", src + b"/lnk")
    set_tree_times(src)
    deleted: list[bytes] = []

    def progress(ev: Any) -> None:
        if ev.kind == "scanned" and ev.src_dir == src and not deleted:
            os.unlink(src + b"/c")
            os.unlink(src + b"/lnk")
            deleted.append(b"c")

    dst = tmp + b"/dst"
    res = uringsync.copy([src], dst, archive=True, progress=progress)
    assert deleted, "no 'scanned' event for the source directory"
    assert res.exit_code == 24, res.errors
    assert len(res.errors) == 2, res.errors
    for e in res.errors:
        assert "vanished" in e.message
        assert e.errno == errno.ENOENT
        assert os.path.basename(e.path) in (b"c", b"lnk")
    assert not os.path.lexists(dst + b"/c")
    assert not os.path.lexists(dst + b"/lnk")
    assert_same_tree(src, dst, exclude=lambda p: p == b"")
    assert res.files == 4


@root_only
def test_vanished_directory(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.makedirs(src + b"/gone/inner")
    write_file(src + b"/gone/inner/f", b"f")
    write_file(src + b"/keep", b"k")
    set_tree_times(src)
    deleted = []

    def progress(ev: Any) -> None:
        if ev.kind == "scanned" and ev.src_dir == src and not deleted:
            import shutil

            shutil.rmtree(src + b"/gone")
            deleted.append(1)

    res = uringsync.copy([src], tmp + b"/dst", archive=True, progress=progress)
    assert deleted
    assert res.exit_code == 24, res.errors
    assert res.errors and all("vanished" in e.message for e in res.errors)
    assert os.path.exists(tmp + b"/dst/keep")


@root_only
def test_vanished_exit_code_cli_like(tmp: bytes) -> None:
    """Vanished files are reported through on_error/CLI formatting as one line each."""
    src = tmp + b"/src"
    os.mkdir(src)
    write_file(src + b"/a", b"a")
    write_file(src + b"/b", b"b")
    set_tree_times(src)
    seen: list[Any] = []

    def progress(ev: Any) -> None:
        if ev.kind == "scanned" and ev.src_dir == src and not seen:
            os.unlink(src + b"/b")
            seen.append(ev)

    res = uringsync.copy([src], tmp + b"/dst", archive=True, progress=progress)
    assert res.exit_code == 24
    (e,) = res.errors
    assert isinstance(e, uringsync.FileError)
    assert e.path.endswith(b"/b")
    assert "\n" not in e.message
    assert "'" in e.message


# ---------------------------------------------------- odd symlinks in src


@root_only
def test_symlink_loop_and_dangling(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    os.symlink(b"loop2", src + b"/loop1")
    os.symlink(b"loop1", src + b"/loop2")
    os.symlink(b"self", src + b"/self")
    os.symlink(b"does/not/exist", src + b"/dangling")
    os.symlink(b".", src + b"/dot")
    os.symlink(b"..", src + b"/dotdot")
    write_file(src + b"/f", b"f")
    set_tree_times(src)
    rc, _out, err = run_cli(b"cp", b"-a", src, tmp + b"/us")
    assert rc == 0, err
    assert err == b""
    check_cp(b"-a", src, tmp + b"/cp")
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(src, tmp + b"/us")


@root_only
def test_dangling_symlink_as_src(tmp: bytes) -> None:
    os.symlink(b"nowhere", tmp + b"/dangling")
    os.symlink(b"loop", tmp + b"/loop")
    set_tree_times(tmp)
    for n in (b"dangling", b"loop"):
        copy_both([n], n + b"_us", n + b"_cp", cwd=tmp)
        assert os.readlink(tmp + b"/" + n + b"_us") == os.readlink(tmp + b"/" + n)
        assert_same_tree(tmp + b"/" + n + b"_cp", tmp + b"/" + n + b"_us")


def test_dst_parent_missing(tmp: bytes) -> None:
    sc = scene(tmp)
    rc_cp, _, err_cp = run_cp(b"-a", b"src", b"nodir/x", cwd=sc)
    assert rc_cp == 1
    line = expect_fatal([b"-a", b"src", b"nodir/x"], sc, b"'nodir/x'", b"No such file or directory")
    assert line == b"uringsync: " + err_cp.strip()[len(b"cp: ") :]


def test_file_dst_parent_is_file(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"-a", b"a", b"f/x"], sc, b"'f/x'", b"Not a directory")
