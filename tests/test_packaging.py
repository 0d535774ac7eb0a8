"""Packaging: the sdist carries what it needs to build; `make wheel` makes the
wheel users install (liburing linked in, cp310-abi3, manylinux) and it works
from a fresh venv, away from this checkout; a build without liburing's headers
stops with one message; the man page and shell completions come with it.

The wheel is built once for the module (about 15 s: `make wheel` with
BUILD_FLAGS=--no-isolation, with what is installed here, into tmp); the venv
takes its dependencies from PyPI (pip's cache after the first run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import uringsync
from tests.support.compare import assert_same_tree
from tests.support.trees import write_file

ROOT = Path(__file__).resolve().parent.parent


def _run(
    *cmd: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _clean_env() -> dict[str, str]:
    """The environment without this checkout on Python's path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make wheel` (README, Install), into a temporary directory."""
    out = tmp_path_factory.mktemp("dist")
    _run(
        "make",
        "wheel",
        f"PYTHON={sys.executable}",
        f"DIST={out / 'dist'}",
        f"WHEEL_BUILD={out / 'build'}",
        "BUILD_FLAGS=--no-isolation",
    )
    return out


def test_sdist_carries_the_sources(dist: Path) -> None:
    (sdist,) = (dist / "dist").glob("uringsync-*.tar.gz")
    assert sdist.name == f"uringsync-{uringsync.__version__}.tar.gz"
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for need in (
        "build_ffi.py",
        "build_share.py",
        "setup.py",
        "csrc/api.h",
        "csrc/engine.h",
        "pyproject.toml",
    ):
        assert need in names, need
    assert {n for n in names if n.startswith("csrc/") and n.endswith(".c")} == {
        f"csrc/{p.name}" for p in (ROOT / "csrc").glob("*.c")
    }
    assert not [n for n in names if n.endswith((".so", ".o"))]


def test_wheel_is_abi3_manylinux_with_liburing_inside(dist: Path) -> None:
    """python -m build made the wheel from the sdist alone; auditwheel repaired it."""
    (raw,) = (dist / "build").glob("uringsync-*.whl")
    assert raw.name == f"uringsync-{uringsync.__version__}-cp310-abi3-linux_x86_64.whl"
    (wheel,) = (dist / "dist").glob("uringsync-*.whl")
    assert re.fullmatch(
        rf"uringsync-{re.escape(uringsync.__version__)}-cp310-abi3-manylinux_2_\d+_x86_64\.whl",
        wheel.name,
    ), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        members = set(zf.namelist())
    assert "uringsync/_uring.abi3.so" in members, members
    assert {"uringsync/py.typed", "uringsync/_uring.pyi", "uringsync/_version.py"} <= members
    # libxxhash is bundled (Debian's libxxhash.a lacks the dispatch); liburing is not
    # a library of its own: it is linked into the extension
    libs = [m for m in members if m.startswith("uringsync.libs/")]
    assert not [m for m in libs if "liburing" in m], libs
    for share in (
        "share/man/man1/uringsync.1",
        "share/bash-completion/completions/uringsync",
        "share/zsh/site-functions/_uringsync",
    ):
        assert f"uringsync/{share}" in members
        assert f"uringsync-{uringsync.__version__}.data/data/{share}" in members


def test_wheel_in_a_fresh_venv_copies_a_tree_as_cp(dist: Path, tmp_path: Path) -> None:
    """No liburing.so in the extension's needs, no checkout on the path."""
    (wheel,) = (dist / "dist").glob("uringsync-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        py,
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-input",
        wheel,
        env=_clean_env(),
    )
    r = _run(
        py,
        "-I",
        "-c",
        "import uringsync, uringsync._uring as u; print(uringsync.__file__); print(u.__file__); "
        "print(open('/proc/self/maps').read())",
        cwd=tmp_path,
        env=_clean_env(),
    )
    pkg_file, ext, maps = r.stdout.split("\n", 2)
    assert pkg_file.startswith(str(venv)), pkg_file
    assert ext.startswith(str(venv)) and ext.endswith("_uring.abi3.so"), ext
    assert "liburing" not in maps
    ldd = _run("ldd", ext).stdout
    assert "liburing" not in ldd, ldd
    assert "not found" not in ldd, ldd
    assert "uringsync.libs/libxxhash" in ldd, ldd

    src = tmp_path / "src"
    for i in range(4):
        (src / f"d{i}").mkdir(parents=True)
    for i in range(40):
        write_file(src / f"d{i % 4}" / f"f{i}", os.urandom(i * 997), mode=0o600 + i % 0o100)
    write_file(src / "big", os.urandom(3 << 20))
    os.link(src / "big", src / "d0" / "big-link")
    os.symlink("d1/f1", src / "link")
    os.mkfifo(src / "fifo")
    _run("cp", "-a", src, tmp_path / "by-cp")
    out = _run(
        venv / "bin" / "uringsync",
        "cp",
        "-a",
        src,
        tmp_path / "by-uringsync",
        cwd=tmp_path,
        env=_clean_env(),
    )
    # (a container without io_uring: the one-line notice of the threads engine)
    assert not [e for e in out.stderr.splitlines() if "io_uring unavailable" not in e], out.stderr
    assert_same_tree(tmp_path / "by-cp", tmp_path / "by-uringsync", atime=False)

    # the man page and completions, under the venv's share/
    assert (venv / "share/man/man1/uringsync.1").read_text().startswith('.\\"')
    assert (venv / "share/bash-completion/completions/uringsync").is_file()
    assert (venv / "share/zsh/site-functions/_uringsync").is_file()


def test_build_without_liburing_headers_stops_with_one_message(dist: Path, tmp_path: Path) -> None:
    """Before any compile: a compiler that finds no system header stands for a
    machine without liburing-dev (and libxxhash-dev)."""
    (sdist,) = (dist / "dist").glob("uringsync-*.tar.gz")
    env = {**_clean_env(), "CC": "gcc --sysroot=/nonexistent"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "-w",
            tmp_path,
            sdist,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "<liburing.h>, <xxhash.h> not found" in out, out
    assert "Debian, Ubuntu: apt-get install liburing-dev libxxhash-dev" in out, out
    assert out.count("cannot build its C extension") == 1, out
    # stopped before the compiler ran on any source
    assert ".c -o " not in out and "csrc/" not in out, out


def test_werror_only_in_development_builds() -> None:
    probe = "import build_ffi; print('-Werror' in build_ffi.CFLAGS)"
    env = {k: v for k, v in _clean_env().items() if k != "URINGSYNC_DEV"}
    assert _run(sys.executable, "-c", probe, env=env).stdout == "False\n"
    assert _run(sys.executable, "-c", probe, env={**env, "URINGSYNC_DEV": "1"}).stdout == "True\n"


def test_man_page_and_completions_follow_the_help(dist: Path, tmp_path: Path) -> None:
    (wheel,) = (dist / "dist").glob("uringsync-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        man = zf.read("uringsync/share/man/man1/uringsync.1").decode()
        bash = zf.read("uringsync/share/bash-completion/completions/uringsync").decode()
    for cmd in ("cp", "sync", "verify", "demo", "bench"):
        assert f'.SS "uringsync {cmd}"' in man
    # cp's own help, whole
    assert "\\-\\-no\\-preserve=ATTR_LIST" in man and "\\-\\-remove\\-destination" in man
    if shutil.which("groff"):
        page = tmp_path / "uringsync.1"
        page.write_text(man)
        r = _run("groff", "-man", "-Tutf8", "-ww", page)
        assert r.stderr == "", r.stderr
        assert "uringsync - copy trees like cp -a" in re.sub(r".\x08", "", r.stdout)

    script = tmp_path / "uringsync.bash"
    script.write_text(bash)
    complete = (
        f"source {script}\n"
        'c() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); '
        '_uringsync; echo "${COMPREPLY[*]}"; }\n'
        "c uringsync ''\nc uringsync cp --arc\nc uringsync cp -a --no-p\n"
        "c uringsync sync --del\nc uringsync verify --engine ''\n"
    )
    lines = [line.split() for line in _run("bash", "-c", complete).stdout.splitlines()]
    assert {"cp", "sync", "verify", "--help", "--version"} <= set(lines[0]), lines
    assert lines[1] == ["--archive"], lines
    assert "--no-preserve=" in lines[2], lines  # takes a value: no space after it
    assert {"--delete", "--delete-after", "--delete-excluded"} <= set(lines[3]), lines
    assert lines[4] == ["auto", "io_uring", "threads"], lines


def test_build_ffi_builds_in_place_from_the_repo_root(tmp_path: Path) -> None:
    """`python build_ffi.py` from a copy of the tree leaves an importable extension in it."""
    copy = tmp_path / "tree"
    copy.mkdir()
    for name in ("build_ffi.py", "pyproject.toml"):
        (copy / name).write_bytes((ROOT / name).read_bytes())
    _run("cp", "-r", ROOT / "csrc", ROOT / "uringsync", copy)
    for so in (copy / "uringsync").glob("*.so"):
        so.unlink()
    _run(sys.executable, "build_ffi.py", cwd=copy)
    check = (
        "import sys, uringsync.engine; f = sys.modules['uringsync._uring'].__file__; "
        f"assert f.startswith({str(copy)!r}), f"
    )
    _run(sys.executable, "-c", check, cwd=copy)
    assert list((copy / "uringsync").glob("_uring*.so"))
