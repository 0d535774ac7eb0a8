"""The Python API's arguments and errors: a wrong type is a TypeError, a
value an option cannot take a ValueError (ArgumentError, also a CopyError),
each message in the API's words (no command-line option names), raised
before anything is written; CopyError is an OSError; ``check=True`` raises
PartialCopyError carrying the failures and the Result; every public name is
exported, typed and documented, and ``mypy --strict`` accepts a program
that uses them."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import uringsync
from tests.support.base import REPO_DIR
from tests.support.trees import write_file
from tests.support.users import as_user, world_tmpdir


@pytest.fixture
def src(tmp: bytes) -> bytes:
    os.makedirs(tmp + b"/src/sub")
    write_file(tmp + b"/src/f", b"data")
    write_file(tmp + b"/src/sub/g", b"more")
    return tmp + b"/src"


COPY_TYPE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"archive": "yes"}, "archive must be True or False"),
    ({"one_file_system": 1}, "one_file_system must be True or False"),
    ({"jobs": "2"}, "jobs must be an int"),
    ({"queue_depth": 1.5}, "queue_depth must be an int"),
    ({"preserve": ["mode"]}, "preserve must be a str"),
    ({"sparse": None}, "sparse must be a str"),
    ({"on_error": "print"}, "on_error must be a callable"),
    ({"ignore": ["*.tmp"]}, "ignore must be a callable"),
    ({"check": "no"}, "check must be True or False"),
    ({"manifest_file": 3}, "manifest_file must be a path"),
]

COPY_VALUE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"sparse": "sometimes"}, "invalid sparse 'sometimes': use one of auto, always, never"),
    ({"reflink": "yes"}, "invalid reflink 'yes'"),
    ({"engine": "uring"}, "invalid engine 'uring': use one of auto, io_uring, threads"),
    ({"dereference": "follow"}, "invalid dereference 'follow'"),
    ({"preserve": "mode,bogus"}, "preserve: unknown attribute 'bogus'"),
    ({"queue_depth": 0}, "queue_depth must be from 1 to 1024, not 0"),
    ({"jobs": -1}, "jobs must be at least 0, not -1"),
    ({"copy_range_min": -5}, "copy_range_min must be at least 0"),
]


@pytest.mark.parametrize(("kw", "words"), COPY_TYPE_ERRORS)
def test_copy_type_errors(src: bytes, tmp: bytes, kw: dict[str, Any], words: str) -> None:
    with pytest.raises(TypeError, match=words):
        uringsync.copy(src, tmp + b"/dst", recursive=True, **kw)
    assert not os.path.lexists(tmp + b"/dst")


@pytest.mark.parametrize(("kw", "words"), COPY_VALUE_ERRORS)
def test_copy_value_errors(src: bytes, tmp: bytes, kw: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words) as ei:
        uringsync.copy(src, tmp + b"/dst", recursive=True, **kw)
    assert isinstance(ei.value, uringsync.ArgumentError)
    assert isinstance(ei.value, uringsync.CopyError)
    assert "--" not in str(ei.value)  # the API's words, not the command line's
    assert not os.path.lexists(tmp + b"/dst")


def test_verify_with_reflink_always(src: bytes, tmp: bytes) -> None:
    """A ValueError; its words are still the command line's (cp has no check of its own)."""
    with pytest.raises(uringsync.ArgumentError, match="not with --reflink=always"):
        uringsync.copy(src, tmp + b"/dst", recursive=True, verify=True, reflink="always")
    assert not os.path.lexists(tmp + b"/dst")


@pytest.mark.parametrize(
    ("srcs", "exc", "words"),
    [
        (5, TypeError, "srcs must be a path or a sequence of paths, not int"),
        ([b"ok", 5], TypeError, r"srcs\[1\] must be a path"),
        ([], ValueError, "srcs is empty"),
        ("", ValueError, "srcs is an empty path"),
    ],
)
def test_copy_sources_checked(tmp: bytes, srcs: Any, exc: type, words: str) -> None:
    with pytest.raises(exc, match=words):
        uringsync.copy(srcs, tmp + b"/dst")


def test_sync_and_verify_arguments(src: bytes, tmp: bytes) -> None:
    with pytest.raises(TypeError, match="exclude must be a list of patterns"):
        uringsync.sync(src, tmp + b"/dst", exclude="*.tmp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_delete must be at least 0"):
        uringsync.sync(src, tmp + b"/dst", max_delete=-1)
    with pytest.raises(ValueError, match="invalid engine 'x'"):
        uringsync.sync(src, tmp + b"/dst", engine="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="delete must be True or False"):
        uringsync.sync(src, tmp + b"/dst", delete="yes")  # type: ignore[arg-type]
    assert not os.path.lexists(tmp + b"/dst")
    with pytest.raises(TypeError, match="jobs must be an int"):
        uringsync.verify(src, src, jobs="4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid engine"):
        uringsync.check_manifest(tmp + b"/m", src, engine_name="fast")  # type: ignore[arg-type]


def test_copy_error_is_an_oserror(tmp: bytes) -> None:
    with pytest.raises(OSError) as ei:
        uringsync.copy(tmp + b"/nope", tmp + b"/dst")
    e = ei.value
    assert isinstance(e, uringsync.CopyError) and not isinstance(e, ValueError)
    assert (
        str(e) == "cannot stat " + repr(os.fsdecode(tmp + b"/nope")) + ": No such file or directory"
    )
    assert e.errno is None and e.args == (str(e),)


def _unreadable_tree(root: bytes) -> bytes:
    src = root + b"/src"
    os.makedirs(src + b"/sub")
    write_file(src + b"/ok", b"ok")
    write_file(src + b"/sub/locked", b"no", 0o000)
    write_file(src + b"/sub/fine", b"yes")
    return src


def test_check_true_raises_partial_copy_error() -> None:
    """As nobody (root reads everything): one unreadable file; everything
    else is copied, then PartialCopyError carries the failure and the Result."""
    with world_tmpdir() as w:
        src = _unreadable_tree(w)

        def run(check: bool, dst: bytes) -> Any:
            try:
                res = uringsync.copy(src, dst, recursive=True, check=check, jobs=0)
            except uringsync.PartialCopyError as e:
                return ("raised", str(e), e.errors, e.result.exit_code if e.result else None)
            return ("returned", res.exit_code, res.errors)

        got = as_user(lambda: run(True, w + b"/a"))
        assert got[0] == "raised" and got[3] == uringsync.EXIT_PARTIAL
        assert got[1].startswith("1 entry was not copied; the first: ")
        assert [e.path for e in got[2]] == [src + b"/sub/locked"]
        assert sorted(os.listdir(w + b"/a/sub")) == [b"fine"]
        assert os.path.exists(w + b"/a/ok")
        plain = as_user(lambda: run(False, w + b"/b"))
        assert plain[:2] == ("returned", uringsync.EXIT_PARTIAL)
        assert [e.path for e in plain[2]] == [src + b"/sub/locked"]

        def run_sync() -> Any:
            try:
                uringsync.sync(src + b"/", w + b"/c", check=True, jobs=0)
            except uringsync.PartialCopyError as e:
                return [os.path.basename(x.path) for x in e.errors], isinstance(e, OSError)
            return None

        assert as_user(run_sync) == ([b"locked"], True)


def test_check_true_returns_when_all_copied(src: bytes, tmp: bytes) -> None:
    res = uringsync.copy(src, tmp + b"/dst", recursive=True, check=True)
    assert res.exit_code == 0 and res.files == 2
    res = uringsync.sync(os.fsdecode(src) + "/", tmp + b"/dst2", check=True)
    assert res.exit_code == 0


def test_public_names_exported_and_documented() -> None:
    for name in uringsync.__all__:
        obj = getattr(uringsync, name)
        if callable(obj) and name != "__version__":
            assert inspect.getdoc(obj), f"uringsync.{name} has no docstring"
    for name in ("copytree", "copy2", "copyfile", "PartialCopyError", "ArgumentError"):
        assert name in uringsync.__all__
    assert issubclass(uringsync.CopyError, OSError)
    assert issubclass(uringsync.PartialCopyError, uringsync.CopyError)
    assert issubclass(uringsync.ArgumentError, ValueError)
    assert (REPO_DIR / "uringsync" / "py.typed").exists()


PROGRAM = """
    import shutil
    from pathlib import Path

    import uringsync
    from uringsync import CopyError, PartialCopyError, Result

    def run(src: str, dst: Path) -> int:
        res: Result = uringsync.copy([src], dst, archive=True, sparse="always", check=True)
        uringsync.sync(src + "/", str(dst), delete=True, engine="threads")
        out: Path = uringsync.copytree(src, dst / "t", ignore=shutil.ignore_patterns("*.o"))
        uringsync.copytree(src, "x", copy_function=shutil.copy2, dirs_exist_ok=True)
        name: str = uringsync.copy2(src, "f")
        try:
            uringsync.verify(src, dst)
        except PartialCopyError as e:
            return len(e.errors)
        except CopyError as e:
            print(e.errno, str(e))
        return res.exit_code + len(str(out)) + len(name)
"""

BAD_PROGRAM = """
    import uringsync

    uringsync.copy("a", "b", sparse="sometimes")
"""


def test_mypy_strict_on_a_program_using_the_api(tmp: bytes) -> None:
    pytest.importorskip("mypy")
    prog = tmp + b"/prog.py"
    bad = tmp + b"/bad.py"
    with open(prog, "w") as f:
        f.write(textwrap.dedent(PROGRAM))
    with open(bad, "w") as f:
        f.write(textwrap.dedent(BAD_PROGRAM))
    cmd = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary"]
    cache = ["--cache-dir", os.fsdecode(tmp + b"/.mypy_cache")]
    # run outside the repository; the editable install's import hook is not
    # one mypy follows, so the package is found on MYPYPATH (the wheel's
    # install is tests/test_packaging.py's)
    env = {**os.environ, "MYPYPATH": str(REPO_DIR)}
    run = {"capture_output": True, "text": True, "cwd": tmp, "env": env}
    ok = subprocess.run([*cmd, *cache, prog], **run)  # type: ignore[call-overload]
    assert ok.returncode == 0, ok.stdout + ok.stderr
    nok = subprocess.run([*cmd, *cache, bad], **run)  # type: ignore[call-overload]
    assert nok.returncode == 1 and 'Argument "sparse"' in nok.stdout, nok.stdout
