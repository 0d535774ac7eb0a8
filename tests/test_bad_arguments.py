"""Bad command lines and impossible requests: exit 1, one `uringsync: ` line
(the same as cp's where cp has one), and nothing copied or changed."""

from __future__ import annotations

import os

import pytest

import uringsync
from tests.support.cli import assert_error_lines, run_cli, run_cp
from tests.support.compare import assert_same_tree, snapshot
from tests.support.trees import rand_bytes, set_tree_times, write_file


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


# ---------------------------------------------------------- fatal errors


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


def test_dst_parent_missing(tmp: bytes) -> None:
    sc = scene(tmp)
    rc_cp, _, err_cp = run_cp(b"-a", b"src", b"nodir/x", cwd=sc)
    assert rc_cp == 1
    line = expect_fatal([b"-a", b"src", b"nodir/x"], sc, b"'nodir/x'", b"No such file or directory")
    assert line == b"uringsync: " + err_cp.strip()[len(b"cp: ") :]


def test_file_dst_parent_is_file(tmp: bytes) -> None:
    sc = scene(tmp)
    expect_fatal([b"-a", b"a", b"f/x"], sc, b"'f/x'", b"Not a directory")
