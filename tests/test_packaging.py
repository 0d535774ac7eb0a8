"""The sdist carries what it needs to build, and the wheel built from it has the engine."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import uringsync

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str | Path, cwd: Path = ROOT) -> None:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def test_sdist_builds_a_wheel_with_the_engine(tmp_path: Path) -> None:
    _run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", tmp_path)
    (sdist,) = tmp_path.glob("uringsync-*.tar.gz")
    assert sdist.name == f"uringsync-{uringsync.__version__}.tar.gz"
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for need in ("build_ffi.py", "setup.py", "csrc/api.h", "csrc/engine.h", "pyproject.toml"):
        assert need in names, need
    assert {n for n in names if n.startswith("csrc/") and n.endswith(".c")} == {
        f"csrc/{p.name}" for p in (ROOT / "csrc").glob("*.c")
    }
    assert not [n for n in names if n.endswith((".so", ".o"))]

    # the wheel is built from the unpacked sdist alone, not from the checkout
    with tarfile.open(sdist) as tf:
        tf.extractall(tmp_path / "src", filter="data")
    (srcdir,) = (tmp_path / "src").iterdir()
    _run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path, srcdir)
    (wheel,) = tmp_path.glob("uringsync-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        members = set(zf.namelist())
    assert any(m.startswith("uringsync/_uring") and m.endswith(".so") for m in members), members
    assert {"uringsync/py.typed", "uringsync/_uring.pyi", "uringsync/_version.py"} <= members


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
